"""The neuron-guided push/pull baker: profile -> LoRA-train with the regulariser -> pick a checkpoint by
evaluation -> merge at several scales into candidates.

What is push/pull's own is here: the "profile" step (which hidden units respond to in-character vs assistant
replies: `profile.py`) and the regulariser built from it (`trainer.Regulariser`: push those units toward the
in-character profile, pull others away from the assistant profile, optionally anchor units that carry maths;
docs/LOSS.md). The rest (training, selection on dev, merges, lineage) is every LoRA baker's (`base.LoraBaker`).

    <output>/profile/                   profile.safetensors, profile.json, profile.md
"""

from __future__ import annotations

from typing import Any

from ..bake import Bake
from ..recipe import Recipe
from ..trainer import Regulariser
from .base import LoraBaker


class PushPullBaker(LoraBaker):
    name = "pushpull"
    description = "neuron-guided push/pull LoRA: profile, train with the regulariser, select by eval, merge"
    label = "push/pull"  # on the training progress bar
    lower = "the learning rate or the push/pull coefficients"

    def prepare(self, bake: Bake) -> None:
        """The "profile" step: the profile the regulariser reads."""
        bake.profile = self._profile_step(bake)

    def regulariser(self, bake: Bake, model: Any) -> Regulariser | None:
        assert bake.profile is not None, "prepare makes the profile"
        device = next(model.parameters()).device
        return Regulariser(bake.profile, bake.arch.layers(model), bake.recipe.loss, device)

    def objective(self, recipe: Recipe) -> str:
        return f"push {recipe.loss.push} pull {recipe.loss.pull}"
