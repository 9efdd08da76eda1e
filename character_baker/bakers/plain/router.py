"""Router steering: the `router` baker (MoE models) trains nothing and biases the router.

The profile's expert picks (`experts.pick_experts`, from the same profile push/pull uses), and per strength s of
`[router] strengths` one candidate whose router bias at each picked layer L is raised by s·σ_L for the personality
experts and lowered by s·σ_L for the assistant experts (σ_L: the spread of that layer's router logits;
`experts.router_biases`). GPT-OSS's router has that bias already, so the candidate has the base's shapes and config
(docs/EXPERTS.md). The biases each candidate carries are kept beside it (`router.safetensors`).
"""

from __future__ import annotations

from typing import Any

import torch

from ...harness.errors import UserError
from ..architectures import Architecture
from ..bake import Bake, Baked, data_hash, picks_json
from ..experts import add_router_bias, restore_router_bias, router_biases
from .base import PlainBaker
from .settings import RouterSettings


class RouterBaker(PlainBaker):
    name = "router"
    description = "router steering (MoE): the router biased toward the profile's personality experts, no training"
    label = "router"
    bias_file = "router.safetensors"

    def candidates(self, bake: Bake) -> list[Baked]:
        recipe, arch, steps = bake.recipe, bake.arch, bake.steps
        if not arch.router:
            raise UserError(f"{recipe.path}: the router baker steers a mixture of experts; {arch.name} has no router")
        self._profile_step(bake)
        routing, picks = self._expert_picks(bake)
        base_routes = self._base_routes(bake)
        steps.start("train", "skipped: router steering biases the router, it trains nothing")
        strengths = RouterSettings.of(recipe).strengths
        steps.start("select", f"{recipe.experts.per_layer} personality and assistant experts per layer at most")
        steps.start("merge", f"strengths {', '.join(f'{x:g}' for x in strengths)} (× each layer's "
                    "router-logit spread)")
        baked = []
        for strength in strengths:
            lineage = {**self._origin(recipe), "scale": strength, "router_strength": strength,
                       "experts": picks_json(picks), "data_hash": data_hash(bake.char, bake.anti),
                       "recipe_hash": recipe.hash(), "parent": str(recipe.output / "profile")}
            baked.append(self._write(bake, self._candidate_dir(recipe, f"x{strength:g}"), lineage,
                                     router_biases(routing, picks, strength), base_routes))
        return baked

    def add_bias(self, model: Any, arch: Architecture, biases: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        return add_router_bias(model, arch, biases)

    def remove_bias(self, model: Any, arch: Architecture, original: dict[int, torch.Tensor]) -> None:
        restore_router_bias(model, arch, original)
