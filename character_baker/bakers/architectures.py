"""Architecture adapters: where the decoder layers are, what LoRA targets by default, where the MoE router is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..harness.errors import UserError


@dataclass(frozen=True)
class Architecture:
    name: str
    model_types: tuple[str, ...]
    layers_paths: tuple[str, ...]  # dotted paths from the top model to the decoder-layer list, tried in order
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    expert_parameters: tuple[str, ...] = ()  # fused expert weights, LoRA'd through peft's target_parameters
    router: str | None = None  # submodule of a layer whose output carries the expert choice

    def layers(self, model: Any) -> Any:
        """The decoder layers of a model (also through a peft wrapper)."""
        root = model.get_base_model() if hasattr(model, "get_base_model") else model
        for path in self.layers_paths:
            obj = root
            try:
                for part in path.split("."):
                    obj = getattr(obj, part)
            except AttributeError:
                continue
            return obj
        raise UserError(f"{self.name}: cannot find the decoder layers (tried {', '.join(self.layers_paths)})")


QWEN3 = Architecture("qwen3", ("qwen3", "qwen2"), ("model.layers",))
QWEN3_VL = Architecture("qwen3_vl", ("qwen3_vl", "qwen2_5_vl", "qwen2_vl"), ("model.language_model.layers",))
GPT_OSS = Architecture("gpt_oss", ("gpt_oss",), ("model.layers",),
                       expert_parameters=("mlp.experts.gate_up_proj", "mlp.experts.down_proj"), router="mlp.router")
GENERIC = Architecture("generic", (), ("model.layers", "model.language_model.layers", "transformer.h",
                                       "gpt_neox.layers"))
ARCHITECTURES = {a.name: a for a in (QWEN3, QWEN3_VL, GPT_OSS, GENERIC)}


def resolve(requested: str, model_type: str) -> Architecture:
    """`auto` picks by the checkpoint's model_type (falling back to the generic Llama-like adapter)."""
    if requested != "auto":
        if requested not in ARCHITECTURES:
            raise UserError(f"unknown architecture '{requested}' (known: auto, {', '.join(ARCHITECTURES)})")
        return ARCHITECTURES[requested]
    for arch in ARCHITECTURES.values():
        if model_type in arch.model_types:
            return arch
    return GENERIC


def monitored_layers(n_layers: int, skip_first: int = 2, every: int = 2) -> list[int]:
    """The default rule: skip the first layers, then every other one (11 of GPT-OSS-20B's 24)."""
    return list(range(skip_first, n_layers, every))
