"""Mixture-of-experts: which experts carry the character, router steering, expert-targeted LoRA, and what a bake
did to the routing. See docs/EXPERTS.md for the statistics and the steering math.

The profiling pass counts, per example and per monitored layer, how many of its assistant tokens the router sent
to each expert and the summed gate weight they got there (`RouteCounter`). Per layer and expert that gives the
routing frequency f = routed tokens / tokens on the in-character replies (C) and on the assistant replies (A),
and the effect Δ = f_C - f_A (the risk difference SteerMoE ranks experts by), with a 95 % interval from a
bootstrap over examples (tokens of one reply are not independent). Personality experts have Δ > 0 with the whole
interval above 0; assistant experts Δ < 0 with the interval below 0 (`pick_experts`).

Router steering adds s · σ_L to the router logit of layer L's personality experts and subtracts it from its
assistant experts, where σ_L is the spread of that router's logits on the profiled tokens: written into the
router's bias, so a candidate is a plain checkpoint every scorer serves.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..harness.data import share_files
from ..harness.errors import UserError
from .architectures import Architecture

SETS = ("character", "antipole")
REPS = 1000  # bootstrap resamples


def routers(model: Any, arch: Architecture, indices: list[int] | None = None) -> dict[int, Any]:
    """Layer index -> its router module (every layer when `indices` is None)."""
    if not arch.router:
        return {}
    layers = arch.layers(model)
    out = {}
    for i in range(len(layers)) if indices is None else indices:
        module = layers[i]
        for part in arch.router.split("."):
            module = getattr(module, part)
        out[i] = module
    return out


class RouteCounter:
    """Forward hooks on routers: per example of the next batch, the tokens the mask keeps that went to each expert
    and their summed gate weight; and the running moments of the router logits (for σ_L). GPT-OSS's router
    returns (logits, top-k gate weights, top-k indices) for the flattened batch."""

    def __init__(self, model: Any, arch: Architecture, indices: list[int] | None = None) -> None:
        self.modules = routers(model, arch, indices)
        self.layers = list(self.modules)
        self.mask: torch.Tensor | None = None
        self._got: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.moments = torch.zeros(len(self.layers), 3, dtype=torch.float64)  # n, sum, sum of squares
        self._handles = [m.register_forward_hook(self._hook(pos)) for pos, m in enumerate(self.modules.values())]

    def _hook(self, pos: int) -> Any:
        def hook(module: Any, args: Any, output: Any) -> None:
            if self.mask is None or not isinstance(output, tuple) or len(output) < 3:
                return
            logits, gates, chosen = output[0], output[1], output[2]
            batch, length = self.mask.shape
            n_exp = logits.shape[-1]
            keep = self.mask.reshape(-1).to(chosen.device)
            example = torch.arange(batch, device=chosen.device).repeat_interleave(length)[keep]
            chosen = chosen.reshape(-1, chosen.shape[-1])[keep]
            flat = (example[:, None] * n_exp + chosen).reshape(-1)
            counts = torch.bincount(flat, minlength=batch * n_exp).reshape(batch, n_exp)
            weights = gates.reshape(-1, gates.shape[-1])[keep].float().reshape(-1)
            summed = torch.zeros(batch * n_exp, device=weights.device).index_add_(0, flat, weights)
            self._got[pos] = (counts.float().cpu(), summed.reshape(batch, n_exp).cpu())
            kept = logits.reshape(-1, n_exp)[keep].double()
            self.moments[pos] += torch.stack([torch.tensor(float(kept.numel()), dtype=torch.float64),
                                              kept.sum().cpu(), (kept * kept).sum().cpu()])

        return hook

    def arm(self, mask: torch.Tensor) -> None:
        """Count the next forward pass's tokens where `mask` (batch, length) is true."""
        self.mask = mask.bool()
        self._got = {}

    def take(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(counts, gate sums), each (batch, layers, experts), of the pass since `arm`."""
        assert self.mask is not None
        self.mask = None
        missing = [self.layers[p] for p in range(len(self.layers)) if p not in self._got]
        if missing:
            raise UserError(f"the routers of layers {missing} did not report their expert choices (a fused MoE "
                            "kernel replaces them?): load the model without hub kernels to profile experts")
        counts = torch.stack([self._got[p][0] for p in range(len(self.layers))], 1)
        gates = torch.stack([self._got[p][1] for p in range(len(self.layers))], 1)
        return counts, gates

    @property
    def logit_sd(self) -> torch.Tensor:
        n, s, q = self.moments.unbind(1)
        mean = s / n.clamp_min(1.0)
        return (q / n.clamp_min(1.0) - mean ** 2).clamp_min(0.0).sqrt().float()

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


@dataclass
class Routing:
    """Per profiled example of each set: its assistant tokens, category, and per monitored layer and expert the
    routed-token count and summed gate weight; σ_L of each layer's router logits."""

    layers: list[int]
    categories: list[str]
    tokens: dict[str, torch.Tensor]  # set -> (n,)
    category: dict[str, torch.Tensor]  # set -> (n,) index into categories
    counts: dict[str, torch.Tensor]  # set -> (n, layers, experts)
    gates: dict[str, torch.Tensor]
    logit_sd: torch.Tensor  # (layers,)
    top_k: int = 0

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {"routing.logit_sd": self.logit_sd.contiguous()}
        for s in self.counts:
            for name in ("tokens", "category", "counts", "gates"):
                out[f"routing.{name}.{s}"] = getattr(self, name)[s].contiguous()
        return out

    def meta(self) -> dict[str, Any]:
        return {"layers": self.layers, "categories": self.categories, "top_k": self.top_k}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Routing:
        parts: dict[str, dict[str, torch.Tensor]] = {"tokens": {}, "category": {}, "counts": {}, "gates": {}}
        for key, t in tensors.items():
            if key.startswith("routing.") and key != "routing.logit_sd":
                _, name, s = key.split(".")
                parts[name][s] = t
        return cls(layers=meta["layers"], categories=meta["categories"], logit_sd=tensors["routing.logit_sd"],
                   top_k=int(meta.get("top_k", 0)), **parts)

    @property
    def n_experts(self) -> int:
        return int(next(iter(self.counts.values())).shape[-1])


class RoutingBuilder:
    """Collects `RouteCounter` batches of the profiling pass into a `Routing`."""

    def __init__(self, counter: RouteCounter) -> None:
        self.counter = counter
        # per set: (batch index, tokens per example, counts, gate sums, category), in the order batches came
        self.rows: dict[str, list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor, str]]] = {s: [] for s in SETS}

    def add(self, which: str, category: str, mask: torch.Tensor, index: int = 0) -> None:
        counts, gates = self.counter.take()
        self.rows[which].append((index, mask.sum(1).float().cpu(), counts, gates, category))

    def gather(self) -> None:
        """Every rank's rows (ranks profile alternate batches), in the batch order of one process."""
        from .distributed import all_gather

        parts = all_gather(self.rows)
        self.rows = {s: sorted((row for part in parts for row in part[s]), key=lambda row: row[0]) for s in SETS}

    def build(self, top_k: int) -> Routing:
        cats = sorted({c for rows in self.rows.values() for *_, c in rows})
        out: dict[str, dict[str, torch.Tensor]] = {"tokens": {}, "category": {}, "counts": {}, "gates": {}}
        for s, rows in self.rows.items():
            if not rows:
                continue
            out["tokens"][s] = torch.cat([r[1] for r in rows])
            out["counts"][s] = torch.cat([r[2] for r in rows])
            out["gates"][s] = torch.cat([r[3] for r in rows])
            out["category"][s] = torch.cat([torch.full((len(r[1]),), cats.index(r[4])) for r in rows])
        return Routing(layers=list(self.counter.layers), categories=cats, logit_sd=self.counter.logit_sd,
                       top_k=top_k, **out)


@dataclass
class ExpertEffects:
    """Per (monitored layer position, expert): routing frequencies, Δ with its interval, mean gate when routed."""

    freq_character: torch.Tensor
    freq_antipole: torch.Tensor
    delta: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor
    gate_character: torch.Tensor
    gate_antipole: torch.Tensor
    examples: dict[str, int]


def _bootstrap_freq(counts: torch.Tensor, tokens: torch.Tensor, reps: int, gen: torch.Generator) -> torch.Tensor:
    """(reps, layers, experts) routing frequencies of example resamples (ratio of sums: long replies weigh more,
    as their tokens do in the point estimate)."""
    n = counts.shape[0]
    draws = torch.randint(n, (reps, n), generator=gen)
    weights = torch.zeros(reps, n).scatter_add_(1, draws, torch.ones(reps, n))
    routed = weights @ counts.reshape(n, -1)
    return (routed / (weights @ tokens).clamp_min(1.0)[:, None]).reshape(reps, *counts.shape[1:])


def expert_effects(routing: Routing, category: str | None = None, reps: int = REPS, seed: int = 0) -> ExpertEffects:
    """Δ = f_character - f_antipole per layer and expert, on one category or pooled over all."""
    gen = torch.Generator().manual_seed(seed)
    parts = {}
    for s in SETS:
        if s not in routing.counts:
            raise UserError("the profile has no routing statistics of the "
                            f"{'in-character' if s == 'character' else 'assistant'} replies")
        keep = torch.ones_like(routing.tokens[s], dtype=torch.bool)
        if category is not None:
            if category not in routing.categories:
                raise UserError(f"[experts] category '{category}' was not profiled "
                                f"({', '.join(routing.categories)})")
            keep = routing.category[s] == routing.categories.index(category)
        if not keep.any():
            raise UserError(f"no {s} replies of category '{category}' were profiled")
        counts, gates, tokens = routing.counts[s][keep], routing.gates[s][keep], routing.tokens[s][keep]
        freq = counts.sum(0) / tokens.sum().clamp_min(1.0)
        gate = gates.sum(0) / counts.sum(0).clamp_min(1.0)
        parts[s] = (freq, gate, _bootstrap_freq(counts, tokens, reps, gen), int(keep.sum()))
    boot = parts["character"][2] - parts["antipole"][2]
    return ExpertEffects(
        freq_character=parts["character"][0], freq_antipole=parts["antipole"][0],
        delta=parts["character"][0] - parts["antipole"][0], low=torch.quantile(boot, 0.025, dim=0),
        high=torch.quantile(boot, 0.975, dim=0), gate_character=parts["character"][1],
        gate_antipole=parts["antipole"][1], examples={s: parts[s][3] for s in SETS})


Picks = dict[int, dict[str, list[int]]]  # layer -> {"personality": [experts], "assistant": [experts]}


def pick_experts(routing: Routing, per_layer: int, category: str | None = None) -> Picks:
    """Per monitored layer, up to `per_layer` personality experts (largest Δ whose interval is above 0) and as many
    assistant experts (smallest Δ, interval below 0). A layer where no expert's routing differs gets none."""
    eff = expert_effects(routing, category)
    picks: Picks = {}
    for pos, layer in enumerate(routing.layers):
        order = torch.argsort(eff.delta[pos], descending=True).tolist()
        personality = [e for e in order if eff.low[pos, e] > 0][:per_layer]
        assistant = [e for e in reversed(order) if eff.high[pos, e] < 0][:per_layer]
        picks[layer] = {"personality": personality, "assistant": assistant}
    return picks


def require_picks(picks: Picks, where: str) -> Picks:
    if not any(p["personality"] or p["assistant"] for p in picks.values()):
        raise UserError(f"{where}: the profile found no expert whose routing differs between in-character and "
                        "assistant replies (every interval contains 0): nothing to steer or target; profile more "
                        "examples or lower [experts] per_layer")
    return picks


def stability(routing: Routing, picks: Picks) -> dict[tuple[int, int], str]:
    """(layer, expert) -> "k/m": in how many of the m profiled categories the expert's Δ has the picked sign with
    its interval excluding 0 (categories profiled in both sets only). 1/4 means one category carries the pick."""
    both = [i for i, c in enumerate(routing.categories)
            if all(s in routing.category and bool((routing.category[s] == i).any()) for s in SETS)]
    per_cat = {routing.categories[i]: expert_effects(routing, routing.categories[i], seed=1) for i in both}
    out = {}
    for pos, layer in enumerate(routing.layers):
        for side, sign in (("personality", 1), ("assistant", -1)):
            for e in picks[layer][side]:
                agree = sum(1 for eff in per_cat.values()
                            if (eff.low[pos, e] > 0 if sign > 0 else eff.high[pos, e] < 0))
                out[(layer, e)] = f"{agree}/{len(per_cat)}"
    return out


def routing_report(routing: Routing, per_layer: int = 3) -> str:
    """The profile.md section: each layer's top personality and assistant experts, their effect and stability."""
    eff = expert_effects(routing)
    picks = pick_experts(routing, per_layer)
    stable = stability(routing, picks)
    lines = ["", "## Experts: personality and assistant", "",
             f"Per monitored layer, the experts routed to more often on in-character replies (personality) and on "
             f"assistant replies (assistant): Δ = routing frequency in character − on assistant replies (share of "
             f"tokens whose top-{routing.top_k} includes the expert), 95 % bootstrap interval over examples "
             f"({eff.examples['character']} in-character, {eff.examples['antipole']} assistant), the mean gate "
             "weight when routed (in character / assistant), and in how many categories the same sign holds with "
             "its interval excluding 0. Only experts whose whole interval is on one side are listed.", "",
             "| layer | σ logits | personality experts | assistant experts |", "| --- | --- | --- | --- |"]

    def cell(pos: int, layer: int, e: int) -> str:
        return (f"e{e}: {eff.delta[pos, e]:+.3f} [{eff.low[pos, e]:+.3f}, {eff.high[pos, e]:+.3f}], gate "
                f"{eff.gate_character[pos, e]:.2f}/{eff.gate_antipole[pos, e]:.2f}, {stable[(layer, e)]}")

    for pos, layer in enumerate(routing.layers):
        lines.append(f"| {layer} | {routing.logit_sd[pos]:.3g} | "
                     + ("; ".join(cell(pos, layer, e) for e in picks[layer]["personality"]) or "—") + " | "
                     + ("; ".join(cell(pos, layer, e) for e in picks[layer]["assistant"]) or "—") + " |")
    return "\n".join(lines) + "\n"


def expert_table(routing: Routing) -> Any:
    """Every (layer, expert) pooled and per category: frequencies, Δ with its interval, gate weights; the
    profile's `experts.csv`, for reading the whole profile in pandas rather than the report's picks."""
    import pandas as pd

    rows = []
    both = [c for i, c in enumerate(routing.categories)
            if all(bool((routing.category[s] == i).any()) for s in SETS if s in routing.category)]
    for category in [None, *both]:
        eff = expert_effects(routing, category)
        for pos, layer in enumerate(routing.layers):
            for e in range(routing.n_experts):
                rows.append({"layer": layer, "expert": e, "category": category or "all",
                             "freq_character": float(eff.freq_character[pos, e]),
                             "freq_antipole": float(eff.freq_antipole[pos, e]), "delta": float(eff.delta[pos, e]),
                             "ci_low": float(eff.low[pos, e]), "ci_high": float(eff.high[pos, e]),
                             "gate_character": float(eff.gate_character[pos, e]),
                             "gate_antipole": float(eff.gate_antipole[pos, e]),
                             "examples_character": eff.examples["character"],
                             "examples_antipole": eff.examples["antipole"]})
    return pd.DataFrame(rows)


# -- router steering -----------------------------------------------------------------------------------------

def router_biases(routing: Routing, picks: Picks, strength: float) -> dict[int, torch.Tensor]:
    """Layer -> the vector added to its router's logits: +strength·σ_L on personality experts, −strength·σ_L on
    assistant experts, 0 elsewhere."""
    out = {}
    for pos, layer in enumerate(routing.layers):
        p = picks.get(layer, {"personality": [], "assistant": []})
        if not (p["personality"] or p["assistant"]):
            continue
        bias = torch.zeros(routing.n_experts)
        bias[p["personality"]] = strength * float(routing.logit_sd[pos])
        bias[p["assistant"]] = -strength * float(routing.logit_sd[pos])
        out[layer] = bias
    return out


def add_router_bias(model: Any, arch: Architecture, biases: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
    """Add each vector to its layer's router bias; returns the biases as they were (`restore_router_bias`)."""
    found = routers(model, arch, list(biases))
    original = {}
    for layer, vector in biases.items():
        bias = getattr(found[layer], "bias", None)
        if bias is None:
            raise UserError(f"{arch.name}: the router of layer {layer} has no bias to carry the steering")
        original[layer] = bias.detach().clone()
        with torch.no_grad():
            bias.add_(vector.to(bias.dtype).to(bias.device))
    return original


def restore_router_bias(model: Any, arch: Architecture, original: dict[int, torch.Tensor]) -> None:
    found = routers(model, arch, list(original))
    with torch.no_grad():
        for layer, bias in original.items():
            found[layer].bias.copy_(bias)


# -- expert-targeted LoRA ------------------------------------------------------------------------------------

def expert_lora_targets(arch: Architecture, picks: Picks) -> list[str]:
    """peft `target_parameters` for the fused expert weights of the layers with picked experts only."""
    return [f"layers.{layer}.{param}" for layer, p in sorted(picks.items()) if p["personality"] or p["assistant"]
            for param in arch.expert_parameters]


def freeze_unpicked_experts(model: Any, picks: Picks) -> int:
    """Zero and keep at zero the LoRA factors of every expert the profile did not pick, so their weights are the
    base's exactly after any number of steps and any merge scale. peft's ParamWrapper lays expert e's factors
    out as rows e·r … e·r + r − 1 of A and columns j with j mod E = e of B. Returns the wrappers masked."""
    masked = 0
    for name, module in model.named_modules():
        if not (hasattr(module, "num_experts") and hasattr(module, "lora_A") and module.num_experts > 1):
            continue
        found = re.search(r"(?:^|\.)layers\.(\d+)\.", name)
        if found is None:
            continue
        p = picks.get(int(found.group(1)), {"personality": [], "assistant": []})
        chosen = set(p["personality"]) | set(p["assistant"])
        n = module.num_experts
        for adapter in module.lora_A:
            a, b = module.lora_A[adapter].weight, module.lora_B[adapter].weight
            r = a.shape[0] // n
            keep_a = torch.tensor([i // r in chosen for i in range(a.shape[0])], dtype=a.dtype, device=a.device)
            keep_b = torch.tensor([j % n in chosen for j in range(b.shape[1])], dtype=b.dtype, device=b.device)
            with torch.no_grad():
                a.mul_(keep_a[:, None])
                b.mul_(keep_b[None, :])
            a.register_hook(lambda g, m=keep_a: g * m[:, None])
            b.register_hook(lambda g, m=keep_b: g * m[None, :])
            masked += 1
    return masked


# -- routing shift: what a bake did to the routing -----------------------------------------------------------

@dataclass
class Routes:
    """Per prompt: tokens, and per MoE layer and expert, the tokens routed there."""

    layers: list[int]
    tokens: torch.Tensor  # (n,)
    counts: torch.Tensor  # (n, layers, experts)
    top_k: int
    prompts: list[str]

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({"tokens": self.tokens.contiguous(), "counts": self.counts.contiguous()}, str(path),
                  metadata={"layers": json.dumps(self.layers), "top_k": str(self.top_k),
                            "prompts": json.dumps(self.prompts)})
        share_files(path.parent)  # safetensors writes 0600

    @classmethod
    def load(cls, path: Path) -> Routes:
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(str(path), "pt") as f:
            meta = f.metadata()
        t = load_file(str(path))
        return cls(json.loads(meta["layers"]), t["tokens"], t["counts"], int(meta["top_k"]),
                   json.loads(meta["prompts"]))


def count_routes(model: Any, tokenizer: Any, arch: Architecture, prompts: list[str], batch_size: int = 8) -> Routes:
    """Every MoE layer's expert choices on the prompts (as chat turns ready for the reply), all their tokens."""
    counter = RouteCounter(model, arch)
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                           add_generation_prompt=True) for p in prompts]
    device = next(model.parameters()).device
    tokens, counts = [], []
    was_training = model.training
    model.eval()
    side, pad = tokenizer.padding_side, tokenizer.pad_token
    tokenizer.padding_side = "right"
    if pad is None:  # padding is masked out of the counts: any token will do
        tokenizer.pad_token = tokenizer.eos_token
    try:
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True,
                            add_special_tokens=False)
            counter.arm(enc["attention_mask"])
            with torch.no_grad():
                model(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device))
            got, _ = counter.take()
            counts.append(got)
            tokens.append(enc["attention_mask"].sum(1).float())
    finally:
        counter.remove()
        tokenizer.padding_side, tokenizer.pad_token = side, pad
        model.train(was_training)
    return Routes(counter.layers, torch.cat(tokens), torch.cat(counts), experts_per_token(model), list(prompts))


def experts_per_token(model: Any) -> int:
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return int(getattr(config, "num_experts_per_tok", 0) or getattr(config, "experts_per_token", 0) or 0)


def routing_shift(base: Routes, candidate: Routes, reps: int = REPS, seed: int = 0) -> dict[str, Any]:
    """Per layer: total variation between the base's and the candidate's expert usage on the same prompts (0: the
    same experts as often; 1: disjoint), and the experts whose frequency moved with a 95 % paired-bootstrap
    interval (over prompts) excluding 0."""
    if base.prompts != candidate.prompts or base.counts.shape != candidate.counts.shape:
        raise UserError("routing shift: the base and the candidate were counted on different prompts")
    k = max(base.top_k, 1)
    n = base.tokens.shape[0]
    gen = torch.Generator().manual_seed(seed)
    draws = torch.randint(n, (reps, n), generator=gen)
    weights = torch.zeros(reps, n).scatter_add_(1, draws, torch.ones(reps, n))
    total = base.tokens.sum().clamp_min(1.0)
    f_base, f_cand = base.counts.sum(0) / total, candidate.counts.sum(0) / total
    boot = (weights @ (candidate.counts - base.counts).reshape(n, -1)) / (weights @ base.tokens).clamp_min(1.0)[:, None]
    boot = boot.reshape(reps, *base.counts.shape[1:])
    low, high = torch.quantile(boot, 0.025, dim=0), torch.quantile(boot, 0.975, dim=0)
    layers = []
    for pos, layer in enumerate(base.layers):
        delta = f_cand[pos] - f_base[pos]
        moved = [e for e in torch.argsort(delta.abs(), descending=True).tolist()
                 if low[pos, e] > 0 or high[pos, e] < 0]
        layers.append({"layer": layer, "tv": float(0.5 * delta.abs().sum() / k),
                       "more": [[e, round(float(delta[e]), 4)] for e in moved if delta[e] > 0],
                       "less": [[e, round(float(delta[e]), 4)] for e in moved if delta[e] < 0]})
    tvs = [x["tv"] for x in layers]
    worst = max(layers, key=lambda x: x["tv"])
    return {"prompts": n, "tokens": int(total), "mean_tv": round(sum(tvs) / len(tvs), 4),
            "max_tv": round(worst["tv"], 4), "max_tv_layer": worst["layer"],
            "experts_shifted": sum(len(x["more"]) + len(x["less"]) for x in layers), "layers": layers}


def shift_report(shift: dict[str, Any], name: str) -> str:
    lines = [f"# Routing shift: {name}", "",
             f"Expert usage of the candidate vs its base on the same {shift['prompts']} eval prompts "
             f"({shift['tokens']} tokens, prompt tokens ready for the reply). TV = total variation between the two "
             "usage distributions (0 same, 1 disjoint); experts listed moved with a 95 % paired-bootstrap interval "
             "over prompts excluding 0 (Δ = change in the share of tokens routed to them).", "",
             f"Mean TV {shift['mean_tv']:.4f}; largest {shift['max_tv']:.4f} at layer {shift['max_tv_layer']}; "
             f"{shift['experts_shifted']} expert-layer pairs shifted.", "",
             "| layer | TV | used more (e: Δ) | used less (e: Δ) |", "| --- | --- | --- | --- |"]
    for x in shift["layers"]:
        lines.append(f"| {x['layer']} | {x['tv']:.4f} | "
                     + (", ".join(f"e{e}: {d:+.4f}" for e, d in x["more"]) or "—") + " | "
                     + (", ".join(f"e{e}: {d:+.4f}" for e, d in x["less"]) or "—") + " |")
    return "\n".join(lines) + "\n"


def shift_summary(shift: dict[str, Any]) -> dict[str, Any]:
    """What the lineage keeps (the board shows it); the whole report is `routing_shift.json` beside the weights."""
    return {k: shift[k] for k in ("prompts", "mean_tv", "max_tv", "max_tv_layer", "experts_shifted")}
