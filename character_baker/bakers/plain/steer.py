"""Steering: the `steer` baker trains nothing and adds a direction to the residual stream.

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
other baker's (`rounds/round.choose_on_dev`); there is no checkpoint to select. The vector each candidate carries
is kept beside it (`steering.safetensors`).
"""

from __future__ import annotations

from typing import Any

import torch

from ...harness.errors import UserError
from ..architectures import Architecture
from ..bake import Bake, Baked, data_hash
from ..experts import Routes
from ..profile import Profile
from ..recipe import Recipe
from .base import PlainBaker
from .settings import SteerSettings


class SteerBaker(PlainBaker):
    name = "steer"
    description = "contrastive activation steering: the profile's in-character minus assistant mean, added as a bias"
    label = "steer"
    bias_file = "steering.safetensors"

    def candidates(self, bake: Bake) -> list[Baked]:
        recipe, steps = bake.recipe, bake.steps
        profile = self._profile_step(bake)
        base_routes = self._base_routes(bake)
        steps.start("train", "skipped: steering adds a vector, it trains nothing")
        layers = steering_layers(profile, recipe)
        vectors = {layer: (profile.mean_character[layer] - profile.mean_antipole[layer]).float() for layer in layers}
        steps.start("select", f"layers {layers} (|d| {', '.join(f'{v.norm():.3g}' for v in vectors.values())})")
        steps.start("merge", f"coefficients {', '.join(f'{x:g}' for x in recipe.scales)}")
        return [self._steered(bake, vectors, coefficient, base_routes) for coefficient in recipe.scales]

    def _steered(self, bake: Bake, vectors: dict[int, torch.Tensor], coefficient: float,
                 base_routes: Routes | None) -> Baked:
        recipe = bake.recipe
        target = self._candidate_dir(recipe, f"L{'-'.join(map(str, vectors))}-x{coefficient:g}")
        lineage = {**self._origin(recipe), "scale": coefficient, "layers": list(vectors),
                   "data_hash": data_hash(bake.char, bake.anti), "recipe_hash": recipe.hash(),
                   "parent": str(recipe.output / "profile")}
        return self._write(bake, target, lineage, {k: coefficient * v for k, v in vectors.items()}, base_routes)

    def add_bias(self, model: Any, arch: Architecture, biases: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        return add_steering(model, arch, biases)

    def remove_bias(self, model: Any, arch: Architecture, original: dict[int, torch.Tensor]) -> None:
        remove_steering(model, arch, original)


def steering_layers(profile: Profile, recipe: Recipe) -> list[int]:
    """`[steer] layers`, each one the profile measured; by default the layer where the two means differ most,
    in units of the activations' spread (|d| / rms sd): raw norms grow with depth and would always pick the last."""
    wanted = SteerSettings.of(recipe).layers
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
