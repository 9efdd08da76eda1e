"""The activation profile: forward hooks on decoder-layer outputs, the profiling pass that streams both data sets
through a model (and counts MoE expert choices per example: `experts.py`), and the profile of in-character vs
assistant units.

Profiling streams sums and sums of squares over assistant tokens only (float64), so memory does not grow
with the number of examples. The profile gives, per layer, each unit's means in both sets, the pooled
spread, the effect size d = (mean_character - mean_assistant) / pooled sd, and the selected push units
(largest d: most in-character), pull units (smallest d: most assistant-mode) and, optionally, anchor units.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..harness.data import Pair, share_files
from ..harness.errors import UserError
from .architectures import Architecture, monitored_layers
from .distributed import all_reduce_sum, rank
from .examples import collate, encode
from .experts import RouteCounter, Routing, RoutingBuilder, experts_per_token, routing_report
from .recipe import ProfileConfig

SETS = ("character", "antipole")
EPS = 1e-6


class LayerHooks:
    """Forward hooks that keep each monitored layer's output (B, T, H) while `active`; grads flow through."""

    def __init__(self, layers: Any, indices: list[int]) -> None:
        n = len(layers)
        bad = [i for i in indices if not 0 <= i < n]
        if bad:
            raise UserError(f"monitored layer index {bad[0]} is out of range: the model has {n} decoder layers")
        self.outputs: dict[int, torch.Tensor] = {}
        self.active = False
        self._handles = [layers[i].register_forward_hook(self._hook(i)) for i in indices]

    def _hook(self, index: int) -> Any:
        def hook(module: Any, args: Any, output: Any) -> None:
            if self.active:
                self.outputs[index] = output[0] if isinstance(output, tuple) else output  # 5.x: a plain tensor

        return hook

    @contextmanager
    def capture(self) -> Iterator[dict[int, torch.Tensor]]:
        self.outputs.clear()
        self.active = True
        try:
            yield self.outputs
        finally:
            self.active = False

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


@dataclass
class RunningStats:
    """Count, sum and sum of squares per unit, accumulated in float64."""

    n: float = 0.0
    total: torch.Tensor | None = None
    squares: torch.Tensor | None = None

    def add(self, x: torch.Tensor) -> None:  # x: (N, H) assistant-token activations
        x = x.detach().to(torch.float64)
        s, q = x.sum(0).cpu(), (x * x).sum(0).cpu()
        self.total = s if self.total is None else self.total + s
        self.squares = q if self.squares is None else self.squares + q
        self.n += x.shape[0]

    def merge(self, other: RunningStats) -> RunningStats:
        if other.total is None:
            return self
        if self.total is None:
            return RunningStats(other.n, other.total.clone(), other.squares.clone())  # type: ignore[union-attr]
        return RunningStats(self.n + other.n, self.total + other.total, self.squares + other.squares)  # type: ignore[operator]

    @property
    def mean(self) -> torch.Tensor:
        assert self.total is not None
        return self.total / max(self.n, 1.0)

    @property
    def var(self) -> torch.Tensor:
        assert self.squares is not None
        return (self.squares / max(self.n, 1.0) - self.mean ** 2).clamp_min(0.0)


@dataclass
class Profile:
    """Per monitored layer: targets and unit selections for the regulariser, plus the statistics behind them."""

    layers: list[int]
    mean_character: dict[int, torch.Tensor]
    mean_antipole: dict[int, torch.Tensor]
    sd: dict[int, torch.Tensor]
    effect: dict[int, torch.Tensor]  # the selection's effect size per unit
    push: dict[int, torch.Tensor]
    pull: dict[int, torch.Tensor]
    anchor: dict[int, torch.Tensor]
    anchor_target: dict[int, torch.Tensor]
    category_effect: dict[str, dict[int, torch.Tensor]] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)  # "set/category" -> assistant tokens seen
    routing: Routing | None = None  # MoE: per-example expert choices (experts.py)
    meta: dict[str, Any] = field(default_factory=dict)

    def save(self, out: Path) -> None:
        from safetensors.torch import save_file

        out.mkdir(parents=True, exist_ok=True)
        tensors: dict[str, torch.Tensor] = {}
        for name in ("mean_character", "mean_antipole", "sd", "effect", "push", "pull", "anchor", "anchor_target"):
            for layer, t in getattr(self, name).items():
                tensors[f"{name}.{layer}"] = t.contiguous()
        for cat, per_layer in self.category_effect.items():
            for layer, t in per_layer.items():
                tensors[f"category_effect.{cat}.{layer}"] = t.contiguous()
        if self.routing is not None:
            tensors.update(self.routing.tensors())
        save_file(tensors, str(out / "profile.safetensors"))
        share_files(out)  # safetensors writes 0600
        (out / "profile.json").write_text(json.dumps({
            "layers": self.layers, "tokens": self.tokens, "meta": self.meta,
            "routing": None if self.routing is None else self.routing.meta()}, indent=2))

    @classmethod
    def load(cls, out: Path) -> Profile:
        from safetensors.torch import load_file

        meta = json.loads((out / "profile.json").read_text())
        tensors = load_file(str(out / "profile.safetensors"))
        fields: dict[str, dict[int, torch.Tensor]] = defaultdict(dict)
        cats: dict[str, dict[int, torch.Tensor]] = defaultdict(dict)
        routing = None if not meta.get("routing") else Routing.from_tensors(tensors, meta["routing"])
        for key, t in tensors.items():
            if key.startswith("routing."):
                continue
            if key.startswith("category_effect."):
                _, cat, layer = key.split(".")
                cats[cat][int(layer)] = t
            else:
                name, layer = key.rsplit(".", 1)
                fields[name][int(layer)] = t
        return cls(layers=meta["layers"], category_effect=dict(cats), tokens=meta["tokens"],
                   routing=routing, meta=meta["meta"], **{k: dict(v) for k, v in fields.items()})


def select_units(stats: dict[tuple[str, str], dict[int, RunningStats]], layers: list[int], units: int,
                 selection: str, anchor_units: int = 0) -> Profile:
    """Means, pooled spreads and effect sizes from the accumulated statistics, and the chosen units."""
    categories = sorted({cat for (_, cat) in stats if ("character", cat) in stats and ("antipole", cat) in stats})
    if not categories:
        raise UserError("profiling needs in-character and antipole examples of at least one common category")
    if selection != "multi" and selection not in categories:
        raise UserError(f"profile selection '{selection}' is neither 'multi' nor a profiled category "
                        f"({', '.join(categories)})")
    category_effect: dict[str, dict[int, torch.Tensor]] = {c: {} for c in categories}
    prof: dict[str, dict[int, torch.Tensor]] = defaultdict(dict)
    for layer in layers:
        for cat in categories:
            a, b = stats[("character", cat)][layer], stats[("antipole", cat)][layer]
            pooled = ((a.n * a.var + b.n * b.var) / max(a.n + b.n, 1.0)).sqrt() + EPS
            category_effect[cat][layer] = ((a.mean - b.mean) / pooled).float()
        pooled_char = _merge(stats, "character", categories, layer)
        pooled_anti = _merge(stats, "antipole", categories, layer)
        sd = ((pooled_char.n * pooled_char.var + pooled_anti.n * pooled_anti.var)
              / max(pooled_char.n + pooled_anti.n, 1.0)).sqrt() + EPS
        effect = (torch.stack([category_effect[c][layer] for c in categories]).mean(0) if selection == "multi"
                  else category_effect[selection][layer])
        k = min(units, effect.numel() // 2)
        push = torch.topk(effect, k).indices.sort().values
        pull = torch.topk(-effect, k).indices.sort().values
        prof["mean_character"][layer] = pooled_char.mean.float()
        prof["mean_antipole"][layer] = pooled_anti.mean.float()
        prof["sd"][layer] = sd.float()
        prof["effect"][layer] = effect
        prof["push"][layer] = push
        prof["pull"][layer] = pull
        anchor = torch.tensor([], dtype=torch.long)
        target = torch.tensor([])
        if anchor_units and "math" in categories:
            # reasoning units: high on math prompts in both sets, relative to all categories; not pushed or pulled
            math_both = stats[("character", "math")][layer].merge(stats[("antipole", "math")][layer])
            all_both = pooled_char.merge(pooled_anti)
            score = ((math_both.mean - all_both.mean) / sd).float()
            score[push] = -float("inf")
            score[pull] = -float("inf")
            anchor = torch.topk(score, min(anchor_units, effect.numel() - 2 * k)).indices.sort().values
            target = math_both.mean.float()[anchor]
        prof["anchor"][layer] = anchor
        prof["anchor_target"][layer] = target
    tokens = {f"{s}/{c}": int(stats[(s, c)][layers[0]].n) for (s, c) in stats}
    return Profile(layers=layers, category_effect=category_effect, tokens=tokens,
                   meta={"units": units, "selection": selection, "anchor_units": anchor_units,
                         "categories": categories}, **{k: dict(v) for k, v in prof.items()})


def _merge(stats: dict[tuple[str, str], dict[int, RunningStats]], which: str, categories: list[str],
           layer: int) -> RunningStats:
    out = RunningStats()
    for cat in categories:
        out = out.merge(stats[(which, cat)][layer])
    return out


def _sum_over_ranks(stats: dict[tuple[str, str], dict[int, RunningStats]], keys: list[tuple[str, str]],
                    layers: list[int], width: int) -> None:
    """Each rank's counts, sums and sums of squares replaced by their totals over all ranks (a rank that saw no
    batch of a category contributes zeros), so every rank selects the units one process would."""
    for key in keys:
        for layer in layers:
            st = stats[key][layer]
            zeros = torch.zeros(width, dtype=torch.float64)
            packed = torch.cat([torch.tensor([st.n], dtype=torch.float64),
                                zeros if st.total is None else st.total, zeros if st.squares is None else st.squares])
            total = all_reduce_sum(packed)
            stats[key][layer] = RunningStats(float(total[0]), total[1:width + 1], total[width + 1:])


def _width(model: Any) -> int:
    """The decoder's hidden size: the length of each unit vector the ranks sum."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return int(config.hidden_size)


def report(profile: Profile, top: int = 8, experts_per_layer: int = 3) -> str:
    """Markdown: top units per layer, overlap of the unit sets between categories, MoE expert usage."""
    lines = ["# Neuron profile", "",
             f"Selection: **{profile.meta.get('selection')}**, {profile.meta.get('units')} push and pull units per "
             f"layer, monitored layers {profile.layers}. Assistant tokens profiled: "
             + ", ".join(f"{k} {v}" for k, v in sorted(profile.tokens.items())) + ".", "",
             "## Top units per layer", "", "| layer | push (unit: d) | pull (unit: d) |", "| --- | --- | --- |"]
    for layer in profile.layers:
        eff = profile.effect[layer]
        push = torch.topk(eff, min(top, eff.numel())).indices.tolist()
        pull = torch.topk(-eff, min(top, eff.numel())).indices.tolist()
        lines.append(f"| {layer} | " + ", ".join(f"{u}: {eff[u]:+.2f}" for u in push) + " | "
                     + ", ".join(f"{u}: {eff[u]:+.2f}" for u in pull) + " |")
    cats = sorted(profile.category_effect)
    if len(cats) > 1:
        k = int(profile.meta.get("units", 32))
        lines += ["", f"## Overlap of push-unit sets between categories (Jaccard, top {k} per layer, mean over "
                  "layers)", "", "Math-only profiling finds different units than multi-category (the R4 → R5 "
                  "lesson): low overlap means one category's units do not stand for the others.", "",
                  "| | " + " | ".join(cats) + " |", "| --- |" + " --- |" * len(cats)]
        tops = {c: {layer: set(torch.topk(profile.category_effect[c][layer], k).indices.tolist())
                    for layer in profile.layers} for c in cats}
        for a in cats:
            row = []
            for b in cats:
                j = [len(tops[a][la] & tops[b][la]) / max(len(tops[a][la] | tops[b][la]), 1) for la in profile.layers]
                row.append(f"{sum(j) / len(j):.2f}")
            lines.append(f"| {a} | " + " | ".join(row) + " |")
    if profile.routing is not None:
        lines.append(routing_report(profile.routing, experts_per_layer).rstrip("\n"))
    return "\n".join(lines) + "\n"


def profile_model(model: Any, tokenizer: Any, arch: Architecture, character: list[Pair], antipole: list[Pair],
                  cfg: ProfileConfig, progress: bool = True) -> Profile:
    """Stream both sets through the model (no grad), accumulating assistant-token statistics per category."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    layer_list = arch.layers(model)
    indices = list(cfg.layers) if cfg.layers else monitored_layers(len(layer_list), cfg.skip_first, cfg.every)
    hooks = LayerHooks(layer_list, indices)
    counter = RouteCounter(model, arch, indices) if arch.router else None
    routes = RoutingBuilder(counter) if counter is not None else None
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
    me, ranks = rank()  # launched as ranks (bakers/distributed): each takes every ranks-th batch, then all are summed
    try:
        with Progress(TextColumn("profiling"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      disable=not progress) as bar:
            task = bar.add_task("profiling", total=len(batches[me::ranks]))
            for index, (name, cat, items) in enumerate(batches):
                if index % ranks != me:
                    continue
                batch = collate([encode(tokenizer, p, cfg.max_length) for p in items], tokenizer.pad_token_id)
                mask = (batch["labels"] != -100).to(device)
                if counter is not None:
                    counter.arm(mask)
                with torch.no_grad(), hooks.capture() as outputs:
                    model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))
                if routes is not None:
                    routes.add(name, cat, mask, index)
                for layer, h in outputs.items():
                    stats[(name, cat)][layer].add(h[mask])
                bar.advance(task)
    finally:
        hooks.remove()
        if counter is not None:
            counter.remove()
        model.train(was_training)
    if ranks > 1:
        _sum_over_ranks(stats, sorted({(name, cat) for name, cat, _ in batches}), indices, _width(model))
        if counter is not None and routes is not None:
            counter.moments = all_reduce_sum(counter.moments)
            routes.gather()
    profile = select_units(stats, indices, cfg.units, cfg.selection, cfg.anchor_units)
    if routes is not None:
        profile.routing = routes.build(experts_per_token(model))
    return profile

