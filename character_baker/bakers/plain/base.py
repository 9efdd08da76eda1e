"""`PlainBaker`, what the bakers that train nothing share: open the bake, write each candidate as the base with one
bias added (and the bias itself beside it), give the bias back before the next. A plain baker says which
candidates (`candidates`) and how its bias goes in and out (`add_bias`, `remove_bias`).

    <output>/profile/                   the activation profile (shared with push/pull)
    <output>/candidates/<name>/         plain checkpoints with candidate.json lineage and the bias they carry
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ...harness.console import Steps
from ...harness.data import share_files
from ..architectures import Architecture
from ..bake import Bake, Baked, BakerBase, finished
from ..experts import Routes
from ..recipe import Recipe


class PlainBaker(BakerBase):
    """No training: the steps "train" and "select" are headers only, and each candidate is a plain checkpoint."""

    bias_file = "bias.safetensors"  # the bias kept beside each candidate, by layer

    def bake(self, recipe: Recipe, progress: bool = True, steps: Steps | None = None) -> list[Baked]:
        steps = steps or Steps(["profile", "train", "select", "merge"], show=progress)
        bake = Bake.open(recipe, progress, steps)
        baked = self.candidates(bake)
        steps.note(f"{len(baked)} candidates in {recipe.output / 'candidates'}")
        bake.release()
        return baked

    def candidates(self, bake: Bake) -> list[Baked]:
        """Every candidate of the bake (each through `_write`), with the round's step headers."""
        raise NotImplementedError

    def add_bias(self, model: Any, arch: Architecture, biases: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        """Add `biases` (layer -> vector) to the model; returns what they replaced, for `remove_bias`."""
        raise NotImplementedError

    def remove_bias(self, model: Any, arch: Architecture, original: dict[int, torch.Tensor]) -> None:
        raise NotImplementedError

    def _write(self, bake: Bake, target: Path, lineage: dict[str, Any], biases: dict[int, torch.Tensor],
               base_routes: Routes | None) -> Baked:
        """One candidate: the base plus `biases`, saved with its lineage, the biases beside it (`bias_file`); one
        written from the same inputs before is returned as it is."""
        done = finished(target, lineage)
        if done is not None:
            return Baked(target, done)
        original = self.add_bias(bake.loaded.model, bake.arch, biases)
        try:
            baked = self._save_candidate(bake.loaded, bake.arch, target, lineage, base_routes)
        finally:
            self.remove_bias(bake.loaded.model, bake.arch, original)
        from safetensors.torch import save_file

        # the bias itself beside the weights: what was added where, readable without diffing checkpoints
        save_file({f"layer.{k}": v.contiguous() for k, v in biases.items()}, str(target / self.bias_file))
        share_files(target)  # safetensors writes 0600
        return baked
