"""Steering: two bakers that train nothing and write one bias into the base. `steer` adds a direction to the
residual stream; `router` (MoE) biases the router toward the personality experts.

The profile (the same one push/pull uses) holds, per monitored layer L, the mean layer output on the
in-character replies' tokens and on the assistant replies' tokens. Their difference d_L is the contrastive
"persona vector" of the research log. A candidate adds c · d_L to the residual stream inside the chosen layers,
once per coefficient c of the recipe's `[merge] scales` (the sweep; c = 1 moves the average assistant token to
the average in-character one at that layer).

Why a bias: c · d_L is written as the bias of layer L's attention output projection (o_proj), so the vector is
added to the residual stream after layer L's attention, before its MLP, at every position, exactly as a forward
hook would add it there. The candidate is then a plain checkpoint that every scorer (Inspect's local provider,
vLLM, lm-eval) serves unchanged. Qwen3 and Qwen3-VL have no attention biases: their config's `attention_bias`
is switched on, with zero q/k/v biases (the same function plus the vector); GPT-OSS has them already.

The layers are `[steer] layers`, or by default the one profiled layer whose in-character and assistant means
differ most relative to the spread of its activations. Candidates are chosen among on the dev prompts like any
other baker's (the round's `_on_dev`); there is no checkpoint to select.

Router steering (`RouterBaker`, MoE models): the same profile's expert picks (`experts.pick_experts`), and per
strength s of `[router] strengths` one candidate whose router bias at each picked layer L is raised by s·σ_L for
the personality experts and lowered by s·σ_L for the assistant experts (`experts.router_biases`); GPT-OSS's router
has that bias already, so the candidate has the base's shapes and config (docs/EXPERTS.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..harness.candidates import slug
from ..harness.console import Steps
from ..harness.errors import UserError
from ..harness.loading import Loaded, release_memory
from .architectures import Architecture
from .experts import Routes, add_router_bias, restore_router_bias, router_biases
from .pushpull import Baked, PushPullBaker, _data_hash, _done, _picks_json
from .recipe import Recipe
from .tracker import Profile


class SteerBaker(PushPullBaker):
    name = "steer"
    description = "contrastive activation steering: the profile's in-character minus assistant mean, added as a bias"
    label = "steer"

    def bake(self, recipe: Recipe, progress: bool = True, steps: Steps | None = None) -> list[Baked]:
        steps = steps or Steps(["profile", "train", "select", "merge"], show=progress)
        pack, char, anti, loaded, arch = self._begin(recipe)
        profile = self._prepare(recipe, loaded, arch, char, anti, progress, steps)
        assert profile is not None
        base_routes = self._base_routes(recipe, pack, loaded, arch)
        steps.start("train", "skipped: steering adds a vector, it trains nothing")
        layers = steering_layers(profile, recipe)
        vectors = {layer: (profile.mean_character[layer] - profile.mean_antipole[layer]).float() for layer in layers}
        steps.start("select", f"layers {layers} (|d| {', '.join(f'{v.norm():.3g}' for v in vectors.values())})")
        steps.start("merge", f"coefficients {', '.join(f'{x:g}' for x in recipe.scales)}")
        baked = []
        for coefficient in recipe.scales:
            baked.append(self._steered(recipe, loaded, arch, vectors, coefficient, _data_hash(char, anti),
                                       base_routes))
        steps.note(f"{len(baked)} candidates in {recipe.output / 'candidates'}")
        del loaded
        release_memory()
        return baked

    def _steered(self, recipe: Recipe, loaded: Loaded, arch: Architecture, vectors: dict[int, torch.Tensor],
                 coefficient: float, data_hash: str, base_routes: Routes | None) -> Baked:
        layers = "-".join(map(str, vectors))
        name = f"{recipe.round.lower()}-{slug(Path(recipe.base).name)}-{self.name}-L{layers}-x{coefficient:g}"
        target = recipe.output / "candidates" / name
        base = str(Path(recipe.base).resolve()) if Path(recipe.base).exists() else recipe.base
        lineage = {"round": recipe.round, "baker": self.name, "base": base, "scale": coefficient,
                   "layers": list(vectors), "data_hash": data_hash, "recipe_hash": recipe.hash(),
                   "parent": str(recipe.output / "profile")}
        done = _done(target, lineage)
        if done is not None:
            return Baked(target, done)
        original = add_steering(loaded.model, arch, {k: coefficient * v for k, v in vectors.items()})
        try:
            baked = self._save_candidate(loaded, arch, target, lineage, base_routes)
        finally:
            remove_steering(loaded.model, arch, original)
        from safetensors.torch import save_file

        # the vector itself beside the weights: what was added where, readable without diffing checkpoints
        save_file({f"layer.{k}": (coefficient * v).contiguous() for k, v in vectors.items()},
                  str(target / "steering.safetensors"))
        return baked


class RouterBaker(PushPullBaker):
    name = "router"
    description = "router steering (MoE): the router biased toward the profile's personality experts, no training"
    label = "router"

    def bake(self, recipe: Recipe, progress: bool = True, steps: Steps | None = None) -> list[Baked]:
        steps = steps or Steps(["profile", "train", "select", "merge"], show=progress)
        pack, char, anti, loaded, arch = self._begin(recipe)
        if not arch.router:
            raise UserError(f"{recipe.path}: the router baker steers a mixture of experts; {arch.name} has no router")
        self._prepare(recipe, loaded, arch, char, anti, progress, steps)
        routing, picks = self._expert_picks(recipe, loaded, arch, char, anti, progress, steps)
        base_routes = self._base_routes(recipe, pack, loaded, arch)
        steps.start("train", "skipped: router steering biases the router, it trains nothing")
        steps.start("select", f"{recipe.experts.per_layer} personality and assistant experts per layer at most")
        steps.start("merge", f"strengths {', '.join(f'{x:g}' for x in recipe.router.strengths)} (× each layer's "
                    "router-logit spread)")
        baked = []
        base = str(Path(recipe.base).resolve()) if Path(recipe.base).exists() else recipe.base
        for strength in recipe.router.strengths:
            name = f"{recipe.round.lower()}-{slug(Path(recipe.base).name)}-{self.name}-x{strength:g}"
            target = recipe.output / "candidates" / name
            lineage = {"round": recipe.round, "baker": self.name, "base": base, "scale": strength,
                       "router_strength": strength, "experts": _picks_json(picks),
                       "data_hash": _data_hash(char, anti), "recipe_hash": recipe.hash(),
                       "parent": str(recipe.output / "profile")}
            done = _done(target, lineage)
            if done is not None:
                baked.append(Baked(target, done))
                continue
            biases = router_biases(routing, picks, strength)
            original = add_router_bias(loaded.model, arch, biases)
            try:
                baked.append(self._save_candidate(loaded, arch, target, lineage, base_routes))
            finally:
                restore_router_bias(loaded.model, arch, original)
            from safetensors.torch import save_file

            save_file({f"layer.{k}": v.contiguous() for k, v in biases.items()}, str(target / "router.safetensors"))
        steps.note(f"{len(baked)} candidates in {recipe.output / 'candidates'}")
        del loaded
        release_memory()
        return baked


def steering_layers(profile: Profile, recipe: Recipe) -> list[int]:
    """`[steer] layers`, each one the profile measured; by default the layer where the two means differ most,
    in units of the activations' spread (|d| / rms sd): raw norms grow with depth and would always pick the last."""
    wanted = recipe.steer.layers
    if wanted is not None:
        bad = [x for x in wanted if x not in profile.layers]
        if not wanted or bad:
            raise UserError(f"{recipe.path}: [steer] layers must be among the profiled layers {profile.layers}, "
                            f"got {wanted}")
        return list(dict.fromkeys(wanted))

    def contrast(layer: int) -> float:
        d = profile.mean_character[layer] - profile.mean_antipole[layer]
        return float(d.norm() / profile.sd[layer].pow(2).mean().sqrt().clamp_min(1e-8))

    return [max(profile.layers, key=contrast)]


def _attention(layer: Any) -> Any:
    attn = getattr(layer, "self_attn", None) or getattr(layer, "attn", None)
    if attn is None or not hasattr(attn, "o_proj"):
        raise UserError("steer: this architecture's layers have no self_attn.o_proj to carry the vector")
    return attn


def add_steering(model: Any, arch: Architecture, vectors: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
    """Add each vector to its layer's o_proj bias, creating zero attention biases (and `attention_bias` in the
    config) where the model has none. Returns the biases as they were, for `remove_steering`."""
    layers = arch.layers(model)
    text_config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    original: dict[int, torch.Tensor] = {}
    if not getattr(text_config, "attention_bias", False):
        for layer in layers:
            attn = _attention(layer)
            for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
                linear = getattr(attn, proj)
                if linear.bias is None:
                    linear.bias = torch.nn.Parameter(torch.zeros(linear.out_features, dtype=linear.weight.dtype,
                                                                 device=linear.weight.device), requires_grad=False)
        text_config.attention_bias = True
    for index, vector in vectors.items():
        bias = _attention(layers[index]).o_proj.bias
        original[index] = bias.detach().clone()
        with torch.no_grad():
            bias.add_(vector.to(bias.dtype).to(bias.device))
    return original


def remove_steering(model: Any, arch: Architecture, original: dict[int, torch.Tensor]) -> None:
    layers = arch.layers(model)
    with torch.no_grad():
        for index, bias in original.items():
            _attention(layers[index]).o_proj.bias.copy_(bias)
