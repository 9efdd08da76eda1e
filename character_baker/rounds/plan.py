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

from ..bakers.recipe import Recipe, load_recipe
from ..harness.errors import UserError
from .preflight import candidate_count, check


def plan(recipe: Recipe) -> str:
    """What a round will do, with the recipe's estimates, without doing any of it."""
    from .preflight import resolve_base, weights_present

    raw_base = resolve_base(recipe.raw) or recipe.base
    present, where = weights_present(raw_base)
    s = recipe.score
    n_cands = candidate_count(recipe)
    layers = f"every {recipe.profile.every} after {recipe.profile.skip_first}"
    config = Path(where) / "config.json"
    if present and config.is_file():
        cfg = json.loads(config.read_text())
        n = (cfg.get("text_config") or cfg).get("num_hidden_layers")
        if n:
            chosen = recipe.profile.layers or list(range(recipe.profile.skip_first, n, recipe.profile.every))
            layers = f"monitored layers {chosen} of {n}"
    from .preflight import budget_for

    budget = budget_for(recipe)
    t = recipe.train
    if budget:
        memory = (f"  memory         ~{budget['train_total']:.1f} GB to train, computed from config.json "
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
        f"  recipe says    ~{recipe.estimate.memory_gb:g} GB GPU memory, ~{recipe.estimate.hours:g} h"
        if recipe.estimate.memory_gb or recipe.estimate.hours else "  recipe says    (no estimate)",
    ]
    return "\n".join(lines)


def _sweep(recipe: Recipe) -> str:
    if recipe.baker == "router":
        return f"router strengths {', '.join(f'{x:g}' for x in recipe.router.strengths)}"
    text = f"{'coefficients' if recipe.baker == 'steer' else 'merge scales'} " \
           f"{', '.join(f'{x:g}' for x in recipe.scales)}"
    if recipe.router.combine:
        text += f", each plain and router-steered at {', '.join(f'{x:g}' for x in recipe.router.strengths)}"
    return text


def _baker_line(recipe: Recipe, layers: str) -> str:
    """What the baker will do, in one line (named here, not asked of the baker: the plan runs before the install)."""
    t, loss = recipe.train, recipe.loss
    if recipe.baker == "steer":
        where = f"layers {recipe.steer.layers}" if recipe.steer.layers else "the profiled layer of largest contrast"
        return f"profile {layers}; the in-character minus assistant mean, added as an attention output bias at " \
               f"{where}; no training"
    experts = recipe.experts
    picks = f"up to {experts.per_layer} personality and {experts.per_layer} assistant experts per profiled layer " \
            f"({experts.category or 'all categories'})"
    if recipe.baker == "router":
        return f"profile {layers}; {picks}; router bias +/- s x each router's logit spread, s in " \
               f"{', '.join(f'{x:g}' for x in recipe.router.strengths)}; no training"
    on_experts = {"none": "", "all": " + every expert", "profile": f" + the profile's experts ({picks})"}
    lora = (f"LoRA r={t.lora_r} on {', '.join(t.targets or ['q/k/v/o'])}{on_experts[t.expert_lora]}; "
            f"{t.max_steps} steps, checkpoint every {t.save_steps}")
    if recipe.router.combine:
        lora += (f"; each merge also router-steered at s = {', '.join(f'{x:g}' for x in recipe.router.strengths)}")
    if recipe.baker == "pushpull":  # only push/pull profiles and regularises (sft is its control)
        return f"profile {recipe.profile.selection} units={recipe.profile.units} {layers}; {lora}; " \
               f"push {loss.push} pull {loss.pull}"
    return lora + {"dpo": f"; DPO beta {loss.beta:g}, in-character chosen over antipole",
                   "sdft": "; SFT on the base's own restatements, no regulariser"}.get(recipe.baker,
                                                                                        "; no regulariser")


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
