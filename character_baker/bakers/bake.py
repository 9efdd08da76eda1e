"""One bake: the context every step reads (`Bake`), the steps every baker shares (`BakerBase`: opening the bake,
the activation profile, MoE expert picks and base routes, writing a candidate with its lineage), and the public
helpers the bakers' modules share (the output folder's claim, the data and its hash, a finished candidate).

Everything lands in the recipe's output folder; rerunning the same recipe skips what is done:

    <output>/bake.json                  recipe hash, base, round (refuses another recipe's folder)
    <output>/profile/                   profile.safetensors, profile.json, profile.md (experts.csv: MoE)
    <output>/routing/base.safetensors   MoE: the base's expert choices on the eval prompts (routing shift)
    <output>/candidates/<name>/         the candidates (safetensors) with candidate.json lineage (MoE: and
                                        routing_shift.md/json)

The LoRA bakers (`lora/`) add training, the choice of a checkpoint on dev and merges; the plain bakers (`plain/`)
write the base with one bias changed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..harness.candidates import LINEAGE_FILE, slug
from ..harness.character import Character, load_character
from ..harness.console import Steps
from ..harness.data import Pair, atomic_write, load_pairs, share_files
from ..harness.errors import UserError
from ..harness.loading import Loaded, copy_processor_files, load_base, release_memory, set_template_defaults
from .architectures import Architecture, resolve
from .distributed import barrier, is_main
from .experts import (
    Picks,
    Routes,
    Routing,
    count_routes,
    expert_table,
    pick_experts,
    require_picks,
    routing_shift,
    shift_report,
    shift_summary,
)
from .profile import Profile, profile_model, report
from .recipe import Recipe


@dataclass
class Baked:
    path: Path
    lineage: dict[str, Any]


@dataclass
class Bake:
    """One bake in progress, what its steps read: the recipe, the character pack and the pairs trained on
    (in-character and antipole), the base as loaded and its architecture, and how to report (a progress bar, the
    round's step headers). `profile` is the activation profile once a step has made it (push/pull's regulariser)."""

    recipe: Recipe
    pack: Character
    char: list[Pair]
    anti: list[Pair]
    loaded: Loaded
    arch: Architecture
    progress: bool = True
    steps: Steps = field(default_factory=lambda: Steps([], show=False))
    profile: Profile | None = None

    @property
    def output(self) -> Path:
        return self.recipe.output

    @classmethod
    def open(cls, recipe: Recipe, progress: bool = True, steps: Steps | None = None,
             device: str | None = None) -> Bake:
        """Claim the output folder, read the data, load the base: the opening of every bake (and of every rank,
        each on its own `device`)."""
        claim_output(recipe)
        pack, char, anti = read_data(recipe)
        loaded = load_base(recipe.base, dtype=recipe.dtype, device=device, trust_remote_code=recipe.trust_remote_code)
        if recipe.score.reasoning_effort:  # trained, profiled and routed under the effort it is scored with
            set_template_defaults(loaded.tokenizer, reasoning_effort=recipe.score.reasoning_effort)
        return cls(recipe, pack, char, anti, loaded, resolve(recipe.architecture, loaded.model_type), progress,
                   steps or Steps([], show=False))

    def release(self) -> None:
        """Let go of the base (the merges load their own copies) and free its memory; the bake holds no model
        after this."""
        self.loaded = None  # type: ignore[assignment]
        release_memory()


class BakerBase:
    """The steps every baker shares; `lora.base.LoraBaker` trains, `plain.base.PlainBaker` writes the base with
    one bias changed."""

    name = "base"
    description = ""
    label = "base"  # on the training progress bar

    def bake(self, recipe: Recipe, progress: bool = True, steps: Steps | None = None) -> list[Baked]:
        raise NotImplementedError

    def profile(self, recipe: Recipe, progress: bool = True) -> tuple[Profile, Path]:
        """Profile the base model (cached in <output>/profile)."""
        return self._profile(Bake.open(recipe, progress)), recipe.output / "profile" / "profile.md"

    def _profile(self, bake: Bake) -> Profile:
        """The activation profile of the base on both data sets (read back from <output>/profile when there)."""
        recipe = bake.recipe
        where = recipe.output / "profile"
        if (where / "profile.safetensors").is_file():
            return Profile.load(where)
        # as ranks, every rank profiles its share and gets the summed profile; rank 0 writes it, and the others wait
        # for the write, so a later call finds it on every rank alike
        profile = profile_model(bake.loaded.model, bake.loaded.tokenizer, bake.arch, bake.char, bake.anti,
                                recipe.profile, bake.progress)
        profile.meta.update(base=recipe.base, architecture=bake.arch.name, recipe_hash=recipe.hash())
        if is_main():
            profile.save(where)
            (where / "profile.md").write_text(report(profile, experts_per_layer=recipe.experts.per_layer),
                                              encoding="utf-8")
            if profile.routing is not None:  # every expert, pooled and per category (profile.md lists the picks)
                expert_table(profile.routing).to_csv(where / "experts.csv", index=False)
        barrier()
        return profile

    def _profile_step(self, bake: Bake) -> Profile:
        """The "profile" step: the profile, with its header and where it is."""
        recipe, steps = bake.recipe, bake.steps
        steps.start("profile", f"{len(bake.char)} in-character vs {len(bake.anti)} assistant replies")
        cached = (recipe.output / "profile" / "profile.safetensors").is_file()
        profile = self._profile(bake)
        steps.note(f"{'cached' if cached else 'profiled'}: layers {profile.layers}, "
                   f"{recipe.output / 'profile' / 'profile.md'}")
        return profile

    def _expert_picks(self, bake: Bake) -> tuple[Routing, Picks]:
        """MoE: the experts the profile picks ([experts]), for expert-targeted LoRA and router steering."""
        recipe, arch = bake.recipe, bake.arch
        if not arch.router:
            raise UserError(f"{recipe.path}: expert picks (expert_lora = \"profile\", router steering) are for MoE "
                            f"models; {arch.name} has no router")
        profile = self._profile(bake)
        if profile.routing is None:
            raise UserError(f"{recipe.output / 'profile'} was profiled without expert choices (an older profile): "
                            "remove that folder to profile again")
        picks = require_picks(pick_experts(profile.routing, recipe.experts.per_layer, recipe.experts.category or None),
                              str(recipe.path))
        bake.steps.note("experts: " + "; ".join(f"L{layer} +{p['personality']} -{p['assistant']}"
                                                for layer, p in picks.items() if p["personality"] or p["assistant"]))
        return profile.routing, picks

    def _base_routes(self, bake: Bake) -> Routes | None:
        """MoE: the base's expert choices on the eval prompts, before any training touches the weights (cached)."""
        recipe, arch = bake.recipe, bake.arch
        if not arch.router:
            return None
        where = recipe.output / "routing" / "base.safetensors"
        if where.is_file():
            return Routes.load(where)
        prompts = list(dict.fromkeys(p.prompt for kind in ("identity", "personality", "math_probes")
                                     for p in bake.pack.prompts(kind)))
        routes = count_routes(bake.loaded.model, bake.loaded.tokenizer, arch, prompts, recipe.profile.batch_size)
        routes.save(where)
        return routes

    def _candidate_dir(self, recipe: Recipe, what: str) -> Path:
        """Where a candidate goes: `<round>-<base>-<baker>-<what>` under <output>/candidates."""
        name = f"{recipe.round.lower()}-{slug(Path(recipe.base).name)}-{self.name}-{what}"
        return recipe.output / "candidates" / name

    def _origin(self, recipe: Recipe) -> dict[str, Any]:
        """The lineage every candidate opens with: its round, baker and base (a local base by its full path)."""
        base = str(Path(recipe.base).resolve()) if Path(recipe.base).exists() else recipe.base
        return {"round": recipe.round, "baker": self.name, "base": base}

    def _save_candidate(self, loaded: Loaded, arch: Architecture, target: Path, lineage: dict[str, Any],
                        base_routes: Routes | None) -> Baked:
        """Write a candidate: weights, lineage and, for a MoE model, how its routing moved from the base's."""
        if base_routes is not None:
            shift = routing_shift(base_routes, count_routes(loaded.model, loaded.tokenizer, arch, base_routes.prompts))
            lineage = {**lineage, "routing_shift": shift_summary(shift)}
        save_merged(loaded, target)
        if base_routes is not None:
            write_json(target / "routing_shift.json", shift)
            (target / "routing_shift.md").write_text(shift_report(shift, target.name), encoding="utf-8")
        write_json(target / LINEAGE_FILE, {"lineage": lineage})
        return Baked(target, lineage)


def conductor_device(recipe: Recipe) -> str | None:
    """Where the round's own process holds the base for the choice on dev and the merges: a model trained as ranks
    may not fit one card, so it is spread over the visible GPUs ("auto"); else the one device (None)."""
    return "auto" if recipe.distributed.processes > 1 and torch.cuda.is_available() else None


def save_merged(loaded: Loaded, target: Path) -> None:
    """Full weights as safetensors; a dequantised MXFP4 model is saved as the plain weights it now holds."""
    tmp = target.with_name(target.name + ".partial")
    model = loaded.model
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
        if hasattr(model, "hf_quantizer"):
            model.hf_quantizer = None
    model.save_pretrained(tmp, safe_serialization=True)
    loaded.tokenizer.save_pretrained(tmp)
    copy_processor_files(loaded.source, tmp)  # a VL candidate needs its base's preprocessor_config.json
    share_files(tmp)  # safetensors leaves its weights 0600: a candidate is as readable as any other output
    if target.exists():
        import shutil

        shutil.rmtree(target)
    tmp.rename(target)


def read_data(recipe: Recipe) -> tuple[Character, list[Pair], list[Pair]]:
    """The character pack, and the in-character and antipole pairs a bake trains on (the pack's, or the recipe's
    [data] files)."""
    pack = load_character(recipe.character)
    char = load_pairs(recipe.character_data) if recipe.character_data else pack.character_pairs
    anti = load_pairs(recipe.antipole_data) if recipe.antipole_data else pack.antipole_pairs
    return pack, char, anti


def data_hash(char: list[Pair], anti: list[Pair]) -> str:
    """The lineage's `data_hash`: what the candidate was made from."""
    h = hashlib.sha256()
    for p in char + anti:
        h.update(f"{p.category}\0{p.prompt}\0{p.response}\0".encode())
    return "sha256:" + h.hexdigest()[:16]


def preflight(recipe: Recipe) -> None:
    """Checks that need only the model's config, so a bad recipe fails before any weights load."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(recipe.base, trust_remote_code=recipe.trust_remote_code)
    except (OSError, ValueError) as e:
        raise UserError(f"{recipe.path}: [model] base {recipe.base!r}: cannot read its config "
                        f"({str(e).splitlines()[0]})") from None
    text = getattr(config, "text_config", None) or config
    n_layers = getattr(text, "num_hidden_layers", None)
    bad = [i for i in (recipe.profile.layers or []) if n_layers is not None and not 0 <= i < n_layers]
    if bad:
        raise UserError(f"{recipe.path}: [profile] layers: monitored layer index {bad[0]} is out of range: "
                        f"the model has {n_layers} decoder layers")


def claim_output(recipe: Recipe) -> Path:
    """The output folder belongs to one recipe: refuse to mix two bakes in one folder."""
    preflight(recipe)
    out = recipe.output
    out.mkdir(parents=True, exist_ok=True)
    meta = out / "bake.json"
    if meta.is_file():
        previous = json.loads(meta.read_text()).get("recipe_hash")
        if previous != recipe.hash():
            raise UserError(f"{out} holds a bake of another recipe (hash {previous}, this one {recipe.hash()}); "
                            "set a different output or remove that folder")
    else:
        write_json(meta, {"recipe_hash": recipe.hash(), "round": recipe.round, "base": recipe.base,
                          "recipe": str(recipe.path)})
    return out


def finished(target: Path, lineage: dict[str, Any]) -> dict[str, Any] | None:
    """The lineage of a candidate already written from the same inputs (what it measured included), else None."""
    f = target / LINEAGE_FILE
    if not f.is_file():
        return None
    stored = json.loads(f.read_text()).get("lineage") or {}
    return stored if {k: v for k, v in stored.items() if k != "routing_shift"} == lineage else None


def picks_json(picks: Picks) -> dict[str, dict[str, list[int]]]:
    """The lineage's `experts`: per layer, the picked personality and assistant experts (layers with none left out)."""
    return {str(layer): p for layer, p in picks.items() if p["personality"] or p["assistant"]}


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, json.dumps(data, indent=2, default=str))
