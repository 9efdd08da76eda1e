"""A round, end to end: preconditions -> bake -> score the base and every candidate -> record -> gate ->
publish -> verdict. Exit 0 when the gate passes, 1 when it fails, 2 on errors.

Every step is resumable: the baker skips finished work, scoring resumes from its Inspect logs, recording
replaces rows, publishing rewrites the board atomically.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pickle
import queue
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from ..bakers.recipe import Recipe, load_recipe
from ..harness.candidates import Candidate, resolve_candidate
from ..harness.character import WRAPPERS
from ..harness.console import Steps, console, quiet_libraries
from ..harness.data import atomic_write
from ..harness.errors import UserError
from ..harness.scorecard import Scorecard
from ..leaderboard.board import Board, Measurements, evaluate, load_board, unvalidated
from ..leaderboard.report import SUMMARY, format_value, results_table, verdict_line
from ..leaderboard.select import Choice, choose
from ..serving.engine import pinned_env
from ..tasks.score import ScoreOptions, score_candidate
from .demo import build_base
from .preflight import check as preflight_check

J = TypeVar("J")
R = TypeVar("R")

@dataclass
class RoundResult:
    success: bool
    line: str
    chosen: str | None
    toy: bool = False


def board_for(recipe: Recipe) -> Board:
    return load_board(recipe.board_file("score"))


ROUND_STEPS = ["build base", "preconditions", "profile", "train", "select", "merge", "choose", "score", "gate",
               "publish"]


def run_round(path: str | Path, dry_run: bool = False, progress: bool = True) -> RoundResult | None:
    if dry_run:
        from .plan import main as print_plan

        print_plan([str(path), "--dry-run"])
        return None
    recipe = load_recipe(path)
    with output_lock(recipe.output):
        return _run_round(recipe, progress)


LOCK_NAME = ".round.lock"


@contextlib.contextmanager
def output_lock(folder: Path) -> Iterator[None]:
    """One round at a time on an output folder: two would bake, score and record everything twice over each
    other's files. An OS lock (`flock`), not a pid file alone: the kernel drops it when its holder dies, so a
    killed round's lock is simply taken over; the file holds the holder's pid for the error message."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise UserError(f"{folder}: another round is running on this output folder (pid {holder}); wait for it "
                            "to end or give this recipe another output") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock; the file stays, an unlocked file is free


def _run_round(recipe: Recipe, progress: bool) -> RoundResult:
    started = time.monotonic()
    state = _State(recipe)
    # step headers and the results table are plain lines, printed in pipes and logs too; `progress` is the bars
    steps = Steps(ROUND_STEPS if recipe.build else ROUND_STEPS[1:])
    quiet_libraries()
    if recipe.build:
        steps.start("build base", str(recipe.base))
        build_base(recipe, progress, steps)
    steps.start("preconditions")
    problems = preflight_check(recipe.path, recipe.score.judge)
    if problems:
        raise UserError("preconditions failed: " + " | ".join(problems))
    if recipe.preconditions.gpu:  # no silent CPU: a torch that cannot use the GPU stops the round here
        from ..serving.engine import require_cuda

        require_cuda()
    steps.note("base weights found, judge reachable" + (", torch sees CUDA" if recipe.preconditions.gpu else ""))
    board = board_for(recipe)
    store = board.open_store()

    from ..bakers import get_baker

    baked = get_baker(recipe.baker).bake(recipe, progress=progress, steps=steps)
    state.mark("bake", [str(b.path) for b in baked])

    specs = [(recipe.base, base_id(recipe.round.lower(), recipe.base), {"round": recipe.round, "role": "base"})]
    specs += [(str(b.path), None, b.lineage) for b in baked]
    sc = recipe.score
    opts = ScoreOptions.from_recipe(recipe, recipe.output / "scores")
    candidates = []
    for spec, cid, lineage in specs:
        cand = resolve_candidate(spec, candidate_id=cid, batch_size=recipe.score.batch_size,
                                 trust_remote_code=recipe.trust_remote_code)
        cand.lineage = {**lineage, **cand.lineage}
        if spec == recipe.base:
            cand.lineage["round"] = recipe.round
        candidates.append(cand)
    ids = [c.id for c in candidates]
    # which candidate the round reports is chosen before any eval prompt is scored: on the dev prompts when there
    # are several (chosen on eval, the reported figures would be the best of several draws on the prompts they
    # are reported on)
    chosen = ids[1] if len(ids) == 2 else None
    if len(ids) > 2:
        steps.start("choose", f"{len(ids) - 1} candidates and the base on the dev prompts")
        chosen = choose_on_dev(recipe, board, candidates, opts, lambda text: steps.note(f"dev {text}")).chosen
        steps.note(f"chosen on the dev prompts, reported on the eval prompts: {chosen}")
    extras = _chosen_extras(opts, sc)
    groups = recipe.engine.device_groups
    steps.start("score", f"{len(specs)} models on the eval prompts, judge {sc.judge or 'default'}"
                + (f"; the base and the chosen also {', '.join(_extras(sc))}" if extras != [opts] else "")
                + (f"; {len(groups)} at once on device groups {', '.join(groups)}" if len(groups) > 1 else ""))

    def record(cand: Candidate, cards: list[Scorecard]) -> None:
        for card in cards:
            store.record(card.to_json())

    score_models(candidates, lambda c: extras if c.id in (ids[0], chosen) else [opts], groups, steps.note, record)
    state.mark("score", ids)

    from ..leaderboard.publish import publish

    steps.start("gate", str(board.root / "board.toml"))
    measured = Measurements(store.frame(suite=board.suite))
    verdicts = {cid: evaluate(board, measured, cid) for cid in ids[1:]}
    from ..leaderboard.publish import trained_against

    warning = next((trained_against(board, c.lineage) for c in candidates if c.id == chosen), None)
    if warning:
        steps.note(f"[yellow]warning: {chosen} was {warning}[/yellow]")
    doubts = unvalidated(board, store, chosen) if chosen else []
    result = RoundResult(*verdict_line(recipe.round, chosen, verdicts.get(chosen, []) if chosen else [], measured,
                                       doubts), chosen)
    result.toy = recipe.build is not None
    steps.out.print(results_table(board, measured, ids, verdicts, chosen))
    steps.start("publish")
    publish(board, store)
    steps.note(f"board published: {board.root / 'README.md'} (and results.csv, index.html, the plots)")
    state.mark("gate", {"chosen": chosen, "success": result.success, "line": result.line,
                        "minutes": round((time.monotonic() - started) / 60, 2)})
    return result


def _chosen_extras(opts: ScoreOptions, sc: Any) -> list[ScoreOptions]:
    """How the base and the chosen candidate are scored: the round's tasks plus [score] chosen_tasks under the
    round's conditions, then the round's tasks under [score] chosen_conditions (not the extra tasks: drift inside
    a JSON wrapper was asked by nobody). Each card holds its own conditions, so neither replaces the other's rows;
    the other candidates get the first card without the extra tasks."""
    extra_tasks = [t for t in sc.chosen_tasks if t not in opts.tasks]
    wrapped = [c for c in sc.chosen_conditions if c not in opts.conditions]
    plan = [replace(opts, tasks=(*opts.tasks, *extra_tasks))]
    if wrapped:
        # its own scorecard.json; AIME ran with the first card (it has no wrapped prompts)
        plan.append(replace(opts, conditions=tuple(wrapped), capability=None, out=opts.out / "wrapped"))
    return plan


def _extras(sc: Any) -> list[str]:
    return [f"the {t} task" for t in sc.chosen_tasks] + (
        [f"{', '.join(sc.chosen_conditions)} prompts"] if sc.chosen_conditions else [])


def card_summary(card: Any) -> str:
    """One scorecard in a line: the headline rates without a system prompt, drift, each wrapper, truncation."""
    parts = []
    for task, metric, label in SUMMARY:
        rows = [r for r in card.metrics if r.task == task and r.metric == metric and r.condition == "none"]
        if rows and rows[0].value is not None:
            parts.append(f"{label} {format_value(rows[0].value, True, '.0f')}")
    held = [r for r in card.metrics if r.task == "drift" and r.metric == "held" and r.condition == "none"]
    if held and held[0].value is not None:  # multi-turn: in character through the whole conversation
        parts.append(f"held {held[0].successes:.0f}/{held[0].n} conversations")
    for condition in dict.fromkeys(r.condition for r in card.metrics if r.condition in WRAPPERS):
        inside = [f"{label} {format_value(r.value, True, '.0f')}" for task, metric, label in SUMMARY
                  for r in card.metrics
                  if (r.task, r.metric, r.condition) == (task, metric, condition) and r.value is not None
                  and label in ("sarcastic", "coherent", "math")]
        parts.append(f"in {condition}: " + ", ".join(inside))
    cut = [r for r in card.metrics if r.metric == "truncated" and r.condition == "none" and r.value]
    if cut:  # a harmony model that stopped before answering: failures above, named here
        parts.append("truncated " + ", ".join(f"{r.task} {format_value(r.value, True, '.0f')}" for r in cut))
    return " · ".join(parts)


def choose_on_dev(recipe: Recipe, board: Board, candidates: list[Candidate], opts: ScoreOptions,
                  note: Callable[[str], None] | None = None) -> Choice:
    """Score the base (first) and the candidates on the whole dev split, then choose among the candidates by the
    gate (`leaderboard/select.py`). The whole split: on `[select] limit` = 30 prompts per task the demo chose its
    ×0.75 merge over ×1 (58 % vs 71 % sarcastic, 14 % vs 2 % leaks on eval)."""
    from ..leaderboard.store import Store

    dev = Store(recipe.output / "dev" / "store.sqlite")
    dev_opts = replace(opts, split="dev", capability=None, out=recipe.output / "dev")
    # the base too: "vs base" criteria compare on the same prompts
    score_models(candidates, lambda _: [dev_opts], recipe.engine.device_groups, note or (lambda _: None),
                 lambda _, cards: dev.record(cards[0].to_json()))
    return choose(board, Measurements(dev.frame(suite=board.suite)), [c.id for c in candidates[1:]])


# --- several models at once -------------------------------------------------------------------------------------


def score_on_groups(jobs: Sequence[J], groups: Sequence[str], score_one: Callable[[J, str], R],
                    done: Callable[[J, R], None]) -> None:
    """Each job on one free device group, as many at once as there are groups: a worker takes a free group from
    the queue, runs its job there and puts the group back for the next job. `done` runs in the calling thread, in
    the jobs' order: the store's SQLite connection belongs to that thread, and rows are recorded in the order
    sequential scoring records them. A failed job lets the others finish (their servers stop cleanly) and be
    recorded, then the first failure is raised."""
    free: queue.SimpleQueue[str] = queue.SimpleQueue()
    for group in groups:
        free.put(group)

    def work(job: J) -> R:
        group = free.get()
        try:
            return score_one(job, group)
        finally:
            free.put(group)

    error: Exception | None = None
    with ThreadPoolExecutor(max_workers=len(groups), thread_name_prefix="device-group") as pool:
        futures = [pool.submit(work, job) for job in jobs]
        for job, future in zip(jobs, futures, strict=True):
            try:
                result = future.result()
            except Exception as e:  # noqa: BLE001 - raised below, once the other jobs are done and recorded
                error = error or e
                continue
            done(job, result)
    if error is not None:
        raise error


def score_models(candidates: list[Candidate], plans: Callable[[Candidate], list[ScoreOptions]],
                 groups: Sequence[str], note: Callable[[str], None],
                 done: Callable[[Candidate, list[Scorecard]], None]) -> None:
    """Score every candidate under its plans (one scorecard each) and hand the cards to `done` in the candidates'
    order. No device groups: one model at a time in this process, on whatever is visible (as always); one group:
    the same, its engines pinned to it; several: `score_on_groups`, each model in a process of its own."""
    if len(groups) <= 1:
        pin = groups[0] if groups else None
        for cand in candidates:
            t0 = time.monotonic()
            cards = [score_candidate(cand, replace(o, devices=pin))[0] for o in plans(cand)]
            done(cand, cards)
            note(f"{cand.id}: {' · '.join(card_summary(c) for c in cards)}  ({time.monotonic() - t0:.0f} s)")
        return

    def score_one(cand: Candidate, group: str) -> list[Scorecard]:
        note(f"{cand.id}: started on devices {group}")
        t0 = time.monotonic()
        cards = score_in_child(cand, [replace(o, devices=group) for o in plans(cand)])
        note(f"{cand.id}: finished on devices {group}: {' · '.join(card_summary(c) for c in cards)}  "
             f"({time.monotonic() - t0:.0f} s)")
        return cards

    score_on_groups(candidates, groups, score_one, done)


# Several models at once run in one process each, not in threads: Inspect allows one eval per process (a second
# concurrent `eval_set` raises "Multiple concurrent calls to eval_async are not allowed", inspect_ai 0.3.285, tried),
# and a served candidate's endpoint rides on process-wide environment variables (tasks/score.engine_for). A plain
# `python -c` child, not multiprocessing: spawn re-imports the caller's main script (a script that starts a round
# without an `if __name__ == "__main__"` guard would start it again, tried), and fork cannot carry the round's
# threads or a CUDA context left from baking. The child's environment pins it before its interpreter starts.
CHILD = "import sys; from character_baker.rounds.round import score_pinned; score_pinned(sys.argv[1], sys.argv[2])"


def score_in_child(candidate: Candidate, plans: list[ScoreOptions]) -> list[Scorecard]:
    """`score_pinned` in a fresh interpreter that sees only its group's devices; the scorecards (also written beside
    their logs) and any error come back pickled through a private folder."""
    import character_baker

    group = plans[0].devices
    package = str(Path(character_baker.__file__).resolve().parent.parent)  # the child imports this very code
    path = os.pathsep.join(p for p in (package, os.environ.get("PYTHONPATH", "")) if p)
    with tempfile.TemporaryDirectory(prefix="cb-score-") as folder:
        job, out = Path(folder) / "job.pickle", Path(folder) / "result.pickle"
        job.write_bytes(pickle.dumps((candidate, plans)))
        code = subprocess.call([sys.executable, "-c", CHILD, str(job), str(out)], stdin=subprocess.DEVNULL,
                               env={**os.environ, **pinned_env(group), "PYTHONPATH": path})
        if not out.is_file():
            raise UserError(f"scoring {candidate.id} on devices {group}: its process ended with code {code} before "
                            "answering (killed, or out of memory); rerun the round to resume (finished samples are "
                            "kept)")
        kind, value = pickle.loads(out.read_bytes())  # written by our own child, in a folder only we can read
    if kind == "error":
        raise value
    return list(value)


def score_pinned(job: str, out: str) -> None:
    """A child's whole job: one model under each plan, in a process that sees only its group's devices (its server,
    and a model it would load itself). Writes ("cards", [...]) or ("error", exception) to `out`."""
    candidate, plans = pickle.loads(Path(job).read_bytes())
    quiet_libraries()
    try:
        result: tuple[str, Any] = ("cards", [score_candidate(candidate, o)[0] for o in plans])
    except Exception as e:  # noqa: BLE001 - handed to the round's process, which raises it
        if not isinstance(e, UserError):
            traceback.print_exc()
        result = ("error", e)
    try:
        data = pickle.dumps(result)
    except Exception:  # noqa: BLE001 - an exception that does not pickle still comes back as its one line
        data = pickle.dumps(("error", UserError(f"scoring {candidate.id}: {type(result[1]).__name__}: {result[1]}")))
    atomic_write(Path(out), data)


def base_id(name: str, base: str) -> str:
    """The id a round (or bake-off) called `name` records its base model under."""
    from ..harness.candidates import slug

    return f"{name}-base-{slug(Path(base).name)}"


class _State:
    """round.json: which steps finished, for people reading the output folder (the steps resume themselves)."""

    def __init__(self, recipe: Recipe) -> None:
        self.path = recipe.output / "round.json"
        self.data: dict[str, Any] = {"recipe": str(recipe.path), "recipe_hash": recipe.hash(), "steps": {}}
        if self.path.is_file():
            try:
                old = json.loads(self.path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                old = None  # a damaged record is only a record: the steps know from their own outputs what is done
                console().print(f"[yellow]{self.path}: unreadable, starting a new record (finished steps are kept)")
            if isinstance(old, dict) and old.get("recipe_hash") == recipe.hash() and isinstance(old.get("steps"), dict):
                self.data = old

    def mark(self, step: str, value: Any) -> None:
        self.data["steps"][step] = value
        atomic_write(self.path, json.dumps(self.data, indent=2, default=str))
