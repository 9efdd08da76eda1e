"""A bake-off: several bakers on one round recipe (same base, data, steps and judge), met on one board.

`rounds/bakeoff.toml` names the round recipe, the bakers and the control:

    recipe = "demo.toml"              # the shared recipe, read as written
    bakers = ["sft", "pushpull", "dpo", "sdft", "steer"]
    control = "sft"                   # every other baker is compared with it, prompt by prompt
    output = "runs/rounds/bakeoff"
    board = "../leaderboards/bakeoff"
    [override.steer.merge]            # only what a baker needs changed (here: steering's coefficient sweep)
    scales = [1.0, 2.0, 4.0]

Each baker bakes into `<output>/<baker>` as round `<name>-<baker>` (its candidates form one series on the board's
plots), the base and every candidate are scored once on the eval prompts, each baker's reported candidate is
chosen among its own on the dev prompts (as a round chooses), and each chosen candidate is compared with the
control's by paired tests on the same eval prompts (`leaderboard/regress.py`). The board, a persona-vs-math
Pareto plot of every candidate and `bakeoff.md` (the table and the comparisons) are published together.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..bakers.recipe import Recipe, load_recipe, recipe_from
from ..harness.candidates import resolve_candidate
from ..harness.console import Steps, quiet_libraries
from ..harness.data import atomic_write, check_keys, read_toml
from ..harness.errors import UserError
from ..harness.scorecard import is_proportion
from ..leaderboard.board import Board, Measurements, Verdict, evaluate, unvalidated
from ..leaderboard.report import cell, format_value, md, md_code, md_row, results_table
from ..tasks.score import ScoreOptions, score_candidate
from .demo import build_base
from .preflight import check as preflight_check
from .round import base_id, board_for, card_summary, choose_on_dev

KEYS = ("name", "recipe", "bakers", "control", "output", "board", "override")


@dataclass
class Bakeoff:
    path: Path
    name: str
    recipe: Recipe  # the shared recipe as written
    bakers: list[str]
    control: str
    output: Path
    board: str
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    def recipe_for(self, baker: str) -> Recipe:
        """The shared recipe with this baker, its own output and round, the bake-off's board and its overrides."""
        raw = copy.deepcopy(self.recipe.raw)
        _merge(raw, copy.deepcopy(self.overrides.get(baker, {})))
        raw.update(baker=baker, round=f"{self.name}-{baker}", output=str((self.output / baker).resolve()))
        raw.setdefault("score", {})["board"] = self.board
        return recipe_from(raw, self.recipe.path)


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def load_bakeoff(path: str | Path) -> Bakeoff:
    path = Path(path)
    raw = read_toml(path, "bake-off file")
    check_keys(raw, KEYS, str(path))
    from ..bakers import available

    bakers = raw.get("bakers")
    if not isinstance(bakers, list) or not bakers or not all(isinstance(b, str) for b in bakers):
        raise UserError(f"{path}: bakers must be a non-empty list of baker names")
    unknown = [b for b in bakers if b not in available()]
    if unknown or len(set(bakers)) != len(bakers):
        what = f"unknown baker {unknown[0]!r}" if unknown else "a baker is named twice"
        raise UserError(f"{path}: bakers: {what} (installed: {', '.join(sorted(available()))})")
    control = raw.get("control", "sft")
    if control not in bakers:
        raise UserError(f"{path}: control = {control!r} is not among the bakers {bakers}")
    overrides = raw.get("override", {})
    if not isinstance(overrides, dict) or any(k not in bakers or not isinstance(v, dict) for k, v in overrides.items()):
        raise UserError(f"{path}: [override.<baker>] tables must name bakers of this bake-off ({', '.join(bakers)})")
    if not isinstance(raw.get("recipe"), str):
        raise UserError(f"{path}: recipe = \"<round recipe>.toml\" is required")
    recipe = load_recipe(path.parent / raw["recipe"])
    board = raw.get("board")
    if not isinstance(board, str):
        raise UserError(f"{path}: board = \"<folder with board.toml>\" is required")
    near = path.parent / board
    bakeoff = Bakeoff(path=path, name=str(raw.get("name", "bakeoff")), recipe=recipe, bakers=bakers, control=control,
                      output=Path(str(raw.get("output", "runs/rounds/bakeoff"))),
                      board=str(near.resolve() if near.exists() else board), overrides=overrides)
    for baker in bakers:  # every derived recipe is checked before anything runs
        bakeoff.recipe_for(baker)
    return bakeoff


def run_bakeoff(path: str | Path, progress: bool = True) -> int:
    """0 when every baker produced a candidate and the bake-off was published (a bake-off reports, it does not
    gate); the comparisons say which baker did better or worse than the control."""
    from ..bakers import get_baker
    from ..leaderboard.publish import publish, trained_against

    bakeoff = load_bakeoff(path)
    started = time.monotonic()
    shared = bakeoff.recipe
    steps = Steps(["build base", "preconditions", *[f"bake {b}" for b in bakeoff.bakers], "score", "choose",
                   "compare", "publish"], show=True)
    quiet_libraries()
    if shared.build:
        steps.start("build base", shared.base)
        build_base(shared, progress, steps)
    steps.start("preconditions")
    problems = preflight_check(shared.path, shared.score.judge)
    if problems:
        raise UserError("preconditions failed: " + " | ".join(problems))
    board = board_for(bakeoff.recipe_for(bakeoff.control))
    store = board.open_store()
    baked: dict[str, list[Any]] = {}
    for baker in bakeoff.bakers:
        steps.start(f"bake {baker}")
        baked[baker] = get_baker(baker).bake(bakeoff.recipe_for(baker), progress=progress, steps=steps)

    sc = shared.score
    opts = ScoreOptions.from_recipe(shared, bakeoff.output / "scores")
    specs = [("base", shared.base, base_id(bakeoff.name, shared.base),
              {"round": bakeoff.name, "role": "base"})]
    specs += [(baker, str(b.path), None, b.lineage) for baker in bakeoff.bakers for b in baked[baker]]
    steps.start("score", f"the base and {len(specs) - 1} candidates on the eval prompts, judge {sc.judge or 'default'}")
    candidates: dict[str, list[Any]] = {}
    for baker, spec, cid, lineage in specs:
        cand = resolve_candidate(spec, candidate_id=cid, batch_size=sc.batch_size,
                                 trust_remote_code=shared.trust_remote_code)
        cand.lineage = {**lineage, **cand.lineage}
        t0 = time.monotonic()
        card, _ = score_candidate(cand, opts)
        store.record(card.to_json())
        candidates.setdefault(baker, []).append(cand)
        steps.note(f"{cand.id}: {card_summary(card)}  ({time.monotonic() - t0:.0f} s)")
    base = candidates.pop("base")[0]

    steps.start("choose", "each baker's candidate on the dev prompts")
    measured = Measurements(store.frame(suite=board.suite))
    chosen: dict[str, str] = {}
    dev_recipe = bakeoff.recipe_for(bakeoff.control)
    dev_recipe.output = bakeoff.output
    for baker, cands in candidates.items():
        if len(cands) == 1:
            chosen[baker] = cands[0].id
        else:
            pick = choose_on_dev(dev_recipe, board, [base, *cands], opts).chosen
            if pick is None:
                raise UserError(f"bake-off: no candidate of {baker} could be chosen")
            chosen[baker] = pick
        warning = trained_against(board, next(c for c in cands if c.id == chosen[baker]).lineage)
        steps.note(f"{baker}: {chosen[baker]}" + (f"  [yellow](warning: {warning})[/yellow]" if warning else ""))
    verdicts = {cid: evaluate(board, measured, cid) for cid in chosen.values()}

    steps.start("compare", f"each baker against the control ({bakeoff.control}), paired on the eval prompts")
    comparisons = compare_with_control(store, board, chosen, bakeoff.control)
    for baker, lines in comparisons.items():
        better = sum(line.startswith("better") for line in lines)
        worse = sum(line.startswith("worse") for line in lines)
        steps.note(f"{baker}: {better} metrics better, {worse} worse than {bakeoff.control} (p < 0.05)")
    ids = [base.id, *chosen.values()]
    steps.out.print(results_table(board, measured, ids, verdicts, None,
                                  names={cid: f"{baker}: {cid}" for baker, cid in chosen.items()}))

    steps.start("publish")
    publish(board, store)
    all_ids = {baker: [c.id for c in cands] for baker, cands in candidates.items()}
    atomic_write(board.root / "pareto.png", pareto_plot(board, measured, all_ids, base.id))
    doubts = {cid: unvalidated(board, store, cid) for cid in chosen.values()}
    atomic_write(board.root / "bakeoff.md", report(bakeoff, board, measured, base.id, chosen, verdicts, comparisons,
                                                   doubts))
    atomic_write(bakeoff.output / "bakeoff.json", json.dumps(
        {"chosen": chosen, "comparisons": comparisons, "minutes": round((time.monotonic() - started) / 60, 2)},
        indent=2))
    steps.note(f"board published: {board.root / 'README.md'}; {board.root / 'bakeoff.md'}, "
               f"{board.root / 'pareto.png'}")
    return 0


def compare_with_control(store: Any, board: Board, chosen: dict[str, str], control: str) -> dict[str, list[str]]:
    """Per baker, each metric of the chosen candidate against the control's on the same prompts: "better …",
    "worse …" (p < 0.05, exact McNemar or paired bootstrap) or "same …"."""
    from ..leaderboard.board import lower_is_better
    from ..leaderboard.regress import compare, pair_results, resolve_result
    from ..leaderboard.report import format_p

    frame = store.frame(suite=board.suite)
    baseline = resolve_result(store, board, frame, chosen[control])
    out: dict[str, list[str]] = {}
    for baker, cid in chosen.items():
        if baker == control:
            continue
        lines = []
        for b, c in pair_results(baseline, resolve_result(store, board, frame, cid), allow_mismatch=False):
            for comp in compare(b, c, {}):
                significant = comp.p_value < 0.05 and comp.change != 0
                up = (comp.change > 0) != lower_is_better(comp.metric)  # by family: leak@3 too
                word = ("better" if up else "worse") if significant else "same"
                pct = is_proportion(comp.metric)
                lines.append(f"{word} {comp.name}: {format_value(comp.baseline, pct)} → "
                             f"{format_value(comp.candidate, pct)} "
                             f"(p{format_p(comp.p_value)}, n={comp.n})")
        out[baker] = lines
    return out


def pareto_plot(board: Board, measured: Measurements, ids: dict[str, list[str]], base: str) -> bytes:
    """Every candidate as (math, sarcastic) with 95 % intervals, one colour per baker, and the frontier."""
    from ..leaderboard.publish import pareto_png

    persona, math = board.column("personality/sarcastic"), board.column("math_probes/math")
    groups = {}
    for baker, cids in [("base", [base]), *ids.items()]:
        pts = [(m, p) for cid in cids if (m := measured.get(cid, math)) and (p := measured.get(cid, persona))]
        if pts:
            groups[baker] = pts
    return pareto_png(groups, "math (eval prompts)", "sarcastic (eval prompts, no system prompt)",
                      "Persona vs capability, every candidate of every baker")


def report(bakeoff: Bakeoff, board: Board, measured: Measurements, base: str, chosen: dict[str, str],
           verdicts: dict[str, list[Verdict]], comparisons: dict[str, list[str]],
           doubts: dict[str, list[str]] | None = None) -> str:
    """The bake-off's page; `doubts` (per candidate: its judges' failed cards) mark a gate ‡, as a round would not
    count them."""
    cols = board.columns
    lines = [f"# Bake-off `{md_code(bakeoff.name)}`: {md(', '.join(bakeoff.bakers))} on "
             f"`{md_code(bakeoff.recipe.path.name)}`", "",
             f"Same base (`{md_code(bakeoff.recipe.base)}`), data, steps and judge (`{md_code(board.judge)}`); each "
             "baker's candidate chosen on the dev prompts among its own, reported on the eval prompts. Control: "
             f"`{md_code(bakeoff.control)}`.", "",
             md_row(["baker", "candidate", *[c.label for c in cols], "gate"]),
             md_row(["---"] * (len(cols) + 3))]
    for baker, cid in [("base", base), *chosen.items()]:
        gate = "base" if baker == "base" else ("PASS" if all(v.passed for v in verdicts[cid]) else "FAIL")
        if baker != "base" and (doubts or {}).get(cid):
            gate += " ‡"
        lines.append(md_row([baker, cid, *[cell(measured.get(cid, c), c) for c in cols], gate]))
    marked = sorted({d for cid in chosen.values() for d in (doubts or {}).get(cid, [])})
    if marked:
        lines += ["", "‡ judge not validated: a round would FAIL on it whatever the figures (" +
                  md("; ".join(marked)) + ")"]
    lines += ["", f"## Against the control ({md(bakeoff.control)}), paired on the same eval prompts", ""]
    for baker, found in comparisons.items():
        lines.append(f"- **{md(baker)}**")
        lines += [f"  - {md(line)}" for line in found]
    lines += ["", "![persona vs math](pareto.png)", ""]
    return "\n".join(lines)
