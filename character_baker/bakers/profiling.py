"""Profiling a model: which hidden units respond to in-character vs assistant-mode replies, per category."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch

from ..harness.data import Pair
from .architectures import Architecture, monitored_layers
from .examples import collate, encode
from .recipe import ProfileConfig
from .tracker import LayerHooks, Profile, RunningStats, select_units


def profile_model(model: Any, tokenizer: Any, arch: Architecture, character: list[Pair], antipole: list[Pair],
                  cfg: ProfileConfig, progress: bool = True) -> Profile:
    """Stream both sets through the model (no grad), accumulating assistant-token statistics per category."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    layer_list = arch.layers(model)
    indices = list(cfg.layers) if cfg.layers else monitored_layers(len(layer_list), cfg.skip_first, cfg.every)
    hooks = LayerHooks(layer_list, indices)
    routed: dict[str, list[list[int]]] = {}
    current: dict[str, Any] = {}
    router_handles = []
    if arch.router:
        for pos, i in enumerate(indices):
            module = layer_list[i]
            for part in arch.router.split("."):
                module = getattr(module, part)
            router_handles.append(module.register_forward_hook(_router_hook(pos, routed, current)))
    stats: dict[tuple[str, str], dict[int, RunningStats]] = defaultdict(lambda: defaultdict(RunningStats))
    batches = []
    for name, pairs in (("character", character), ("antipole", antipole)):
        by_cat: dict[str, list[Pair]] = defaultdict(list)
        for p in pairs:
            by_cat[p.category or "all"].append(p)
        for cat, items in sorted(by_cat.items()):
            for start in range(0, len(items), cfg.batch_size):
                batches.append((name, cat, items[start:start + cfg.batch_size]))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with Progress(TextColumn("profiling"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      disable=not progress) as bar:
            task = bar.add_task("profiling", total=len(batches))
            for name, cat, items in batches:
                batch = collate([encode(tokenizer, p, cfg.max_length) for p in items], tokenizer.pad_token_id)
                mask = (batch["labels"] != -100).to(device)
                current.update(category=cat, mask=mask.reshape(-1), n_layers=len(indices))
                with torch.no_grad(), hooks.capture() as outputs:
                    model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))
                for layer, h in outputs.items():
                    stats[(name, cat)][layer].add(h[mask])
                bar.advance(task)
    finally:
        hooks.remove()
        for h in router_handles:
            h.remove()
        model.train(was_training)
    profile = select_units(stats, indices, cfg.units, cfg.selection, cfg.anchor_units)
    profile.experts = routed
    return profile


def _router_hook(pos: int, routed: dict[str, list[list[int]]], current: dict[str, Any]) -> Any:
    """Count the experts chosen for assistant tokens (GPT-OSS routers return logits, scores, indices)."""

    def hook(module: Any, args: Any, output: Any) -> None:
        if not isinstance(output, tuple) or len(output) < 3:
            return
        logits, indices = output[0], output[2]
        n_experts = logits.shape[-1]
        chosen = indices.reshape(-1, indices.shape[-1])[current["mask"]]
        counts = torch.bincount(chosen.reshape(-1), minlength=n_experts).tolist()
        table = routed.setdefault(current["category"], [[0] * n_experts for _ in range(current["n_layers"])])
        table[pos] = [a + b for a, b in zip(table[pos], counts, strict=True)]

    return hook
