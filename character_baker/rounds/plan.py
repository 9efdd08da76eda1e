"""The plan of a round, and the entry point the GPU tox environments run before installing anything big.

Standard library only (with the recipe parser), so `tox -e r6 -- --dry-run` prints the plan in seconds and
`tox -e r6` checks the preconditions before the multi-GB GPU install:
    python -m character_baker.rounds.plan rounds/r6.toml [--dry-run]
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..bakers import GROUP
from ..bakers.lora.settings import GRPOSettings
from ..bakers.plain.settings import RouterSettings, SteerSettings
from ..bakers.recipe import Recipe, declared, load_recipe
from ..harness.character import QUICK_TASKS
from ..harness.errors import UserError
from .preflight import candidate_count, check


def plan(recipe: Recipe) -> str:
    """What a round will do, with the recipe's estimates, without doing any of it."""
    from .preflight import PLANNING_CONFIGS, planning_config, resolve_base, weights_present

    raw_base = resolve_base(recipe.raw) or recipe.base
    present, where = weights_present(raw_base)
    s = recipe.score
    n_cands = candidate_count(recipe)
    layers = f"every {recipe.profile.every} after {recipe.profile.skip_first}"
    config = planning_config(recipe) or Path(where) / "config.json"
    cfg: dict[str, Any] = {}
    if config.is_file():
        cfg = json.loads(config.read_text())
        n = (cfg.get("text_config") or cfg).get("num_hidden_layers")
        if n:
            chosen = recipe.profile.layers or list(range(recipe.profile.skip_first, n, recipe.profile.every))
            layers = f"monitored layers {chosen} of {n}"
    from .preflight import budget_for

    budget = budget_for(recipe)
    t = recipe.train
    source = "config.json"
    if config.parent == PLANNING_CONFIGS:  # no weights here: the config-only copy shipped for planning
        source = f"the shipped planning config {config.relative_to(PLANNING_CONFIGS.parents[2])}"
    if budget and recipe.distributed.processes > 1:
        memory = _distributed_lines(recipe, cfg, source, n_cands)
    elif budget:
        memory = (f"  memory         ~{budget['train_total']:.1f} GB to train, computed from {source} "
                  f"({budget['parameters']:.2f}B parameters): weights {budget['weights']:.1f} + LoRA and AdamW "
                  f"{budget['lora_optimizer']:.2f} + activations {budget['activations']:.1f} at batch "
                  f"{t.batch_size} x {t.max_length} tokens, checkpointing {'on' if t.gradient_checkpointing else 'off'}"
                  f"\n  disk           ~{budget['merges_disk']:.1f} GB for {n_cands} merged candidates in "
                  f"{recipe.output}")
    else:
        memory = "  memory         (base config not found: computed when the weights are present)"
    lines = [
        f"Round {recipe.round} ({recipe.path})",
        f"  base model     {recipe.base}  [{'found: ' + where if present else 'NOT FOUND: ' + where}]",
        f"  baker          {recipe.baker}: {_baker_line(recipe, layers)}",
        f"  candidates     {_sweep(recipe)} -> {n_cands} candidates + the base",
        f"  scoring        persona suite ({', '.join(s.tasks)}) under {', '.join(s.conditions)}; judge "
        f"{s.judge or '$CHARACTER_BAKER_JUDGE or classifier'}"
        + (f"; capability {s.capability_data} k={s.capability_k}" if s.capability else "; no capability suite"),
        f"  board          {s.board}: record, gate, publish",
        f"  output         {recipe.output}",
        memory,
        _engine_line(recipe),
        *filter(None, [_selection_line(recipe, budget["weights"] if budget else None)]),
        _wall_time_line(recipe, n_cands),
        f"  recipe says    ~{recipe.estimate.memory_gb:g} GB GPU memory, ~{recipe.estimate.hours:g} h"
        if recipe.estimate.memory_gb or recipe.estimate.hours else "  recipe says    (no estimate)",
    ]
    return "\n".join(lines)


def _distributed_lines(recipe: Recipe, cfg: dict[str, Any], source: str, n_cands: int) -> str:
    """The per-rank memory plan, the merged candidates' disk and the vLLM layout of a multi-process recipe."""
    from .preflight import rank_memory, serving_layout

    d, t, e = recipe.distributed, recipe.train, recipe.engine
    r, v = rank_memory(cfg, recipe), serving_layout(cfg, recipe)
    quant = (cfg.get("text_config") or cfg).get("quantization_config") or {}
    dtype = (f"bf16, its {quant['quant_method'].upper()} experts dequantised for training as r6"
             if quant.get("quant_method") else "bf16")
    per = f" / {r['shards']:.0f}" if r["shards"] > 1 else ", a full copy per rank"
    gathered = (f" + gathered layer {r['gathered']:.1f} ({r['gathered_parameters']:.2f}B parameters, the largest "
                f"unit gathered at once)" if r["gathered"] else "")
    verdict = "fits" if r["total"] <= d.gpu_memory_gb else "DOES NOT FIT"
    lines = [
        f"  per rank       ~{r['total']:.1f} of {d.gpu_memory_gb:g} GB ({verdict}): {d.processes} ranks, {d.strategy}"
        f", {d.nodes} node{'s' if d.nodes > 1 else ''}; computed from {source} ({r['parameters']:.2f}B parameters "
        f"in {dtype}): weights {r['weights']:.1f} ({r['full_weights']:.1f}{per}) + LoRA and AdamW "
        f"{r['lora_optimizer']:.2f} + activations {r['activations']:.1f} + logits {r['logits']:.1f} at batch "
        f"{t.batch_size} x {t.max_length} tokens per rank, checkpointing {'on' if t.gradient_checkpointing else 'off'}"
        f"{gathered}",
        f"  disk           ~{r['merges_disk']:.1f} GB for {n_cands} merged bf16 candidates in {recipe.output}",
    ]
    if v["tp"]:
        layout = (f"tensor parallel {v['tp']:.0f} (the smallest power of two dividing the heads that fits; recipe: "
                  f"{e.tensor_parallel_size}): per GPU {v['per_gpu']:.1f} of {v['budget']:.1f} GB")
    else:
        layout = (f"NO tensor-parallel size up to {v['largest_tp']:.0f} fits: {v['per_gpu'] / v['largest_tp']:.1f} "
                  f"GB per GPU at {v['largest_tp']:.0f} against {v['budget']:.1f} GB")
    lines.append(
        f"  vllm layout    {layout} ({v['share']:g} x {d.gpu_memory_gb:g} GB) = bf16 weights {v['weights']:.1f} + KV "
        f"cache {v['kv_cache']:.1f} ({v['length']:.0f} tokens x {e.max_concurrency} requests x "
        f"{v['kv_per_token'] / 1e3:.1f} kB/token; sliding-window layers counted at full length, an upper bound), "
        f"split over the tensor-parallel GPUs; {v['at_once']:.0f} candidate{'s' if v['at_once'] != 1 else ''} "
        f"scored at once on {v['gpus']:.0f} GPUs")
    return "\n".join(lines)


# Generation throughput the wall-time estimate assumes (new tokens/s, all requests of one model together). Only
# `inprocess` is measured on a GPU (HF static batches of 16, GPT-OSS-20B shape, H200: 279/s); the others are
# assumptions until benchmarks/ measures them on a GPU: vLLM ~15x static batches, transformers' continuous
# batching ~2x. Start-up: loading a 20B checkpoint and (vLLM) its CUDA graphs.
ASSUMED_TOKENS_PER_S = {"vllm": 4000.0, "transformers": 560.0, "inprocess": 279.0}
ASSUMED_STARTUP_S = {"vllm": 120.0, "transformers": 60.0, "inprocess": 30.0}
AIME_PROBLEMS = {"aime24": 30, "aime25": 30, "fixture": 12}
SHARED_PROMPTS = {"assistant_leaks": "personality"}  # generated once, cached per candidate


def _engine_line(recipe: Recipe) -> str:
    e = recipe.engine
    which = {"auto": "auto (vllm on a CUDA GPU with vllm installed, else transformers serve)",
             "inprocess": "inprocess (the harness's own batched generate, no server)"}.get(e.name, e.name)
    share = f"{e.gpu_memory_utilization:g}" if e.gpu_memory_utilization is not None else "engine default"
    return (f"  engine         {which}; tensor parallel {e.tensor_parallel_size}, data parallel "
            f"{e.data_parallel_size}, GPU memory share {share}, max model length {e.max_model_len or 'model default'}"
            f", {e.max_concurrency} requests in flight; " + _placement(e))


def _placement(e: Any) -> str:
    """Where the servers run: one model at a time, or one per device group at once (docs/ENGINES.md)."""
    judge = f"; judge GPUs {e.judge_devices} kept out" if e.judge_devices else ""
    if len(e.device_groups) > 1:
        return (f"{len(e.device_groups)} models at once, one server per device group "
                f"({', '.join(repr(g) for g in e.device_groups)}){judge}")
    pinned = f" on {e.device_groups[0]!r}" if e.device_groups else ""
    return f"one server per model{pinned}, stopped before the next loads{judge}"


def _prompts(recipe: Recipe, split: str, task: str) -> int:
    """Replies one model gives a task on a split under one condition (user turns, for conversations)."""
    pack = Path(recipe.character)
    if not pack.is_dir():
        pack = Path(__file__).resolve().parents[1] / "characters" / recipe.character
    name = {"drift": "conversations", "tools": "tool_requests"}.get(task, SHARED_PROMPTS.get(task, task))
    file = pack / split / f"{name}.jsonl"
    if not file.is_file():
        return 0
    count = 0
    for line in file.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            continue
        turns = row.get("turns") or row.get("messages") if isinstance(row, dict) else None
        users = [t for t in turns if not isinstance(t, dict) or t.get("role", "user") == "user"] if turns else [1]
        count += len(users) * (2 if task == "tools" else 1)  # a tool call, then the answer
    return count


def assumed_engine(recipe: Recipe) -> str:
    """The engine the estimates assume: the recipe's, or for "auto" the one `choose_engine` picks on such a box."""
    if recipe.engine.name != "auto":
        return recipe.engine.name
    return "vllm" if recipe.preconditions.gpu else "transformers"


def wall_time(recipe: Recipe, n_cands: int) -> dict[str, float]:
    """The round's scoring generation as a computed estimate: new-token budgets of every reply (an upper bound:
    replies may stop early) over the engine's assumed throughput, plus one start-up per model and split."""
    s = recipe.score
    engine = assumed_engine(recipe)
    models = n_cands + 1

    def replies(split: str, tasks: list[str], conditions: list[str]) -> int:
        unique = {SHARED_PROMPTS.get(t, t) for t in tasks}
        return len(conditions) * sum(_prompts(recipe, split, t) for t in unique)

    eval_replies = models * replies("eval", s.tasks, s.conditions)
    extra = [t for t in s.chosen_tasks if t not in s.tasks]
    eval_replies += 2 * (replies("eval", extra, s.conditions) + replies("eval", s.tasks, s.chosen_conditions))
    dev_replies = models * replies("dev", s.tasks, s.conditions) if n_cands > 1 else 0
    tokens = (eval_replies + dev_replies) * s.max_tokens
    aime = 0
    if s.capability:
        aime = models * AIME_PROBLEMS.get(s.capability_data, 30) * s.capability_k * s.capability_max_tokens
    starts = models * (2 if n_cands > 1 else 1)
    # device groups score that many models at once, each at the assumed throughput of one engine
    at_once = max(1, min(len(recipe.engine.device_groups), models))
    seconds = ((tokens + aime) / ASSUMED_TOKENS_PER_S[engine] + starts * ASSUMED_STARTUP_S[engine]) / at_once
    return {"engine_assumed": engine, "replies": eval_replies + dev_replies, "tokens": tokens, "aime_tokens": aime,
            "tokens_per_s": ASSUMED_TOKENS_PER_S[engine], "starts": starts, "at_once": at_once,
            "hours": seconds / 3600}


ASSUMED_SAVE_GB_PER_S = 1.0  # writing a merged checkpoint's safetensors (local NVMe, bf16), an assumption


def selection_time(recipe: Recipe, weights_gb: float | None) -> dict[str, Any] | None:
    """Checkpoint selection both ways, computed: in memory (the model is on the GPU mid-training: static batches, no
    start-up) against saving each checkpoint merged and serving it (a write of the weights and an engine start-up
    per checkpoint, then the engine's throughput). Which path is cheaper depends on the recipe's sizes; the round
    selects in memory, and the plan says when serving would have been cheaper. None: the baker saves no
    checkpoints, or the weights' size is unknown."""

    t = recipe.train
    if recipe.baker in ("steer", "router") or not t.save_steps or weights_gb is None:
        return None
    checkpoints = -(-t.max_steps // t.save_steps) + 1  # and the base, for the curve
    per = sum(min(_prompts(recipe, "dev", task), recipe.select.limit or 10**9) for task in QUICK_TASKS)
    tokens = checkpoints * per * recipe.select.max_tokens
    engine = assumed_engine(recipe)
    served = engine if engine != "inprocess" else "transformers"
    in_memory = tokens / ASSUMED_TOKENS_PER_S["inprocess"]
    serving = checkpoints * (weights_gb / ASSUMED_SAVE_GB_PER_S + ASSUMED_STARTUP_S[served]) + \
        tokens / ASSUMED_TOKENS_PER_S[served]
    return {"checkpoints": checkpoints, "replies": checkpoints * per, "tokens": tokens, "in_memory_s": in_memory,
            "served_s": serving, "engine": served}


def _selection_line(recipe: Recipe, weights_gb: float | None) -> str | None:
    w = selection_time(recipe, weights_gb)
    if w is None:
        return None
    verdict = ("in memory is cheaper and is what the round does" if w["in_memory_s"] <= w["served_s"] else
               "serving would be cheaper here; the round still selects in memory")
    per = w["replies"] / w["checkpoints"]
    return (f"  selection      {w['checkpoints']:.0f} checkpoints x {per:.0f} dev replies x "
            f"{recipe.select.max_tokens} tokens at most: in memory ~{w['in_memory_s'] / 60:.0f} min, saved and served "
            f"by {w['engine']} ~{w['served_s'] / 60:.0f} min (a {weights_gb:.1f} GB write and a start-up each; "
            f"ASSUMED throughputs as below): {verdict}")


def _wall_time_line(recipe: Recipe, n_cands: int) -> str:
    w = wall_time(recipe, n_cands)
    return (f"  scoring time   ~{w['hours']:.1f} h computed: {w['replies']:,.0f} replies x {recipe.score.max_tokens} "
            f"tokens at most ({w['tokens'] / 1e6:.2f} M) + AIME {w['aime_tokens'] / 1e6:.2f} M tokens, at an "
            f"ASSUMED {w['tokens_per_s']:,.0f} new tokens/s ({w['engine_assumed']}, not measured on this card) + "
            f"{w['starts']:.0f} engine start-ups" + (f", {w['at_once']} models at once" if w["at_once"] > 1 else "")
            + "; training not included")


def _sweep(recipe: Recipe) -> str:
    router = RouterSettings.of(recipe)
    if _plugin(recipe):
        return "as many as the plug-in writes (planned as one per merge scale)"
    if recipe.baker == "router":
        return f"router strengths {', '.join(f'{x:g}' for x in router.strengths)}"
    text = f"{'coefficients' if recipe.baker == 'steer' else 'merge scales'} " \
           f"{', '.join(f'{x:g}' for x in recipe.scales)}"
    if router.combine:
        text += f", each plain and router-steered at {', '.join(f'{x:g}' for x in router.strengths)}"
    return text


def _plugin(recipe: Recipe) -> str | None:
    """Where a baker from another package comes from (None for this package's bakers, which the plan describes)."""
    where = declared(GROUP).get(recipe.baker, "")
    return None if where.startswith("character_baker.") else where


def _baker_line(recipe: Recipe, layers: str) -> str:
    """What the baker will do, in one line (named here, not asked of the baker: the plan runs before the install)."""
    t, loss, router = recipe.train, recipe.loss, RouterSettings.of(recipe)
    if plugin := _plugin(recipe):
        return f"a plug-in baker ({plugin}): what it trains is its own, the plan cannot say"
    if recipe.baker == "steer":
        wanted = SteerSettings.of(recipe).layers
        where = f"layers {wanted}" if wanted else "the profiled layer of largest contrast"
        return f"profile {layers}; the in-character minus assistant mean, added as an attention output bias at " \
               f"{where}; no training"
    experts = recipe.experts
    picks = f"up to {experts.per_layer} personality and {experts.per_layer} assistant experts per profiled layer " \
            f"({experts.category or 'all categories'})"
    if recipe.baker == "router":
        return f"profile {layers}; {picks}; router bias +/- s x each router's logit spread, s in " \
               f"{', '.join(f'{x:g}' for x in router.strengths)}; no training"
    on_experts = {"none": "", "all": " + every expert", "profile": f" + the profile's experts ({picks})"}
    lora = (f"LoRA r={t.lora_r} on {', '.join(t.targets or ['q/k/v/o'])}{on_experts[t.expert_lora]}; "
            f"{t.max_steps} steps, checkpoint every {t.save_steps}")
    if router.combine:
        lora += f"; each merge also router-steered at s = {', '.join(f'{x:g}' for x in router.strengths)}"
    if recipe.baker == "pushpull":  # only push/pull profiles and regularises (sft is its control)
        return f"profile {recipe.profile.selection} units={recipe.profile.units} {layers}; {lora}; " \
               f"push {loss.push} pull {loss.pull}"
    return lora + {"dpo": f"; DPO beta {loss.beta:g}, in-character chosen over antipole",
                   "sdft": "; SFT on the base's own restatements, no regulariser",
                   "grpo": f"; GRPO, {GRPOSettings.of(recipe).generations} samples per prompt rewarded by the "
                           f"embedded judges, KL beta {loss.beta:g}"}.get(recipe.baker, "; no regulariser")


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    dry_run = "--dry-run" in args
    rest = [a for a in args if a != "--dry-run"]
    if not rest:
        print("usage: python -m character_baker.rounds.plan RECIPE.toml [--dry-run] [round args]",
              file=sys.stderr)
        return 2
    try:
        recipe = load_recipe(rest[0])
    except UserError as e:
        print(f"character-baker: error: {e}", file=sys.stderr)
        return 2
    from .preflight import scaling_problem

    refused = scaling_problem(recipe)  # a multi-process plan that cannot fit is refused, dry run or not
    if refused:
        if dry_run:
            print(plan(recipe))
        print(f"character-baker: error: {refused}", file=sys.stderr)
        return 2
    problems = [] if recipe.build else check(recipe.path, recipe.score.judge)
    if dry_run:
        print(plan(recipe))
        for p in problems:
            print(f"  precondition   {p}")
        print("dry run: nothing was installed, trained or scored")
        return 0
    if problems:
        for p in problems:
            print(f"precondition failed: {p}", file=sys.stderr)
        return 2
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-c", str(root / "constraints" / "gpu.txt"),
                    f"{root}[gpu]"], check=True)
    return subprocess.run(["character-baker", "round", *rest]).returncode


if __name__ == "__main__":
    sys.exit(main())
