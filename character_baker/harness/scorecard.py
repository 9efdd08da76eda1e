"""Scorecards: every metric of a run with n, errors and a 95 % interval, plus everything the numbers depend on.

Built from the Inspect logs (per sample and epoch, unreduced), written as JSON beside them.
"""

from __future__ import annotations

import json
import subprocess
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .data import atomic_write
from .stats import cohen_kappa, estimate

SCHEMA = "character-baker.scorecard/1"
PROPORTIONS = {"identity", "sarcastic", "leak", "math", "coherent", "truncated", "in_character", "held",
               "tool_correct", "tool_valid"}


def is_proportion(metric: str) -> bool:
    """Yes/no metrics (a rate: Wilson intervals, counts shown); `leak@3` is turn 3's leak rate."""
    return metric.split("@")[0] in PROPORTIONS


@dataclass
class MetricRow:
    """One metric: value and interval over the valid observations; `n` counts every observation, `errors` the
    failed ones (a failed generation or judgment), so `n - errors` is what the value rests on."""

    task: str
    condition: str
    metric: str
    judge: str | None
    value: float | None
    n: int
    successes: float | None
    errors: int
    ci_low: float | None
    ci_high: float | None
    interval: str
    prompts: int
    k: int | None = None  # capability rows: samples per problem
    pass_at_k: float | None = None
    truncated: int | None = None


@dataclass
class Scorecard:
    candidate: dict[str, Any]
    suite: dict[str, Any]
    judges: list[dict[str, Any]]
    decoding: dict[str, Any]
    harness: dict[str, Any]
    metrics: list[MetricRow] = field(default_factory=list)
    agreement: list[dict[str, Any]] = field(default_factory=list)
    truncated: dict[str, int] = field(default_factory=dict)
    # per "task/condition": {metric key: {prompt id: [value per epoch]}} -- what paired comparisons need
    samples: dict[str, dict[str, dict[str, list[float | None]]]] = field(default_factory=dict)
    # per "task/condition": {prompt id: the first epoch's answer}, for the identity task (short, human-readable)
    examples: dict[str, dict[str, str]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    # the activation monitor (tasks/monitor.py): AUROC against the judge per condition, drift meter per turn
    monitor: dict[str, Any] | None = None
    logs: list[str] = field(default_factory=list)
    created: str = ""
    schema: str = SCHEMA

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def write(self, path: Path) -> None:
        atomic_write(path, json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n")

    def get(self, task: str, metric: str, condition: str = "none", judge: str | None = None) -> MetricRow:
        for row in self.metrics:
            if (row.task, row.metric, row.condition) == (task, metric, condition) and (
                judge is None or row.judge == judge
            ):
                return row
        raise KeyError(f"no metric {task}/{metric} under condition {condition}" + (f" for {judge}" if judge else ""))


def task_short_name(name: str) -> str:
    return name.split("/")[-1]


def per_prompt(samples: list[tuple[str, int, dict[str, Any]]]) -> dict[str, dict[str, list[float | None]]]:
    """{metric key: {prompt id: [value per epoch]}} from (sample id, epoch, score value dict) triples."""
    by_key: dict[str, dict[str, list[float | None]]] = defaultdict(lambda: defaultdict(list))
    for sample_id, _epoch, value in sorted(samples, key=lambda s: (s[0], s[1])):
        for key, x in value.items():
            by_key[key][sample_id].append(None if x is None else float(x))
    return {k: dict(v) for k, v in by_key.items()}


def metric_rows(by_key: dict[str, dict[str, list[float | None]]], task: str, condition: str) -> list[MetricRow]:
    """Rows for one task under one condition, from its per-prompt values."""
    rows = []
    for key in sorted(by_key, key=_natural):
        metric, _, judge = key.partition(":")
        per_prompt = by_key[key]
        proportion = is_proportion(metric)
        est = estimate(per_prompt, proportion=proportion)
        errors = sum(1 for xs in per_prompt.values() for x in xs if x is None)
        rows.append(MetricRow(task, condition, metric, judge or None, est.value, est.n + errors, est.successes, errors,
                              est.low, est.high, est.method, len(per_prompt)))
    return rows


def _natural(key: str) -> tuple[str, int, str]:
    """`in_character@10` after `in_character@9`: a turn's number sorts as a number."""
    metric, _, judge = key.partition(":")
    base, _, turn = metric.partition("@")
    return base, int(turn) if turn.isdigit() else -1, judge


def judge_agreement(samples: list[tuple[str, int, dict[str, Any]]], task: str, condition: str,
                    judges: list[str], metric: str = "sarcastic") -> list[dict[str, Any]]:
    """Cohen's kappa on one yes/no verdict of every pair of judges, over responses both judged. The judge named
    "rule" is the task's own rule (key `metric`; e.g. math's committed-answer rule beside an LLM's `math:llm`)."""
    def key(j: str) -> str:
        return metric if j == "rule" else f"{metric}:{j}"

    out = []
    for i, a in enumerate(judges):
        for b in judges[i + 1:]:
            pairs = [(v[key(a)], v[key(b)]) for _, _, v in samples
                     if v.get(key(a)) is not None and v.get(key(b)) is not None]
            kappa = cohen_kappa([bool(x) for x, _ in pairs], [bool(y) for _, y in pairs])
            agree = sum(1 for x, y in pairs if bool(x) == bool(y)) / len(pairs) if pairs else None
            out.append({"task": task, "condition": condition, "metric": metric, "judges": [a, b], "n": len(pairs),
                        "kappa": kappa,
                        "agreement": agree})
    return out


def harness_info() -> dict[str, Any]:
    from .. import __version__

    commit = None
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).resolve().parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"version": __version__, "commit": commit}


def empty_tasks(card: Scorecard) -> list[str]:
    """task/condition pairs none of whose metrics rests on a single valid observation."""
    by_task: dict[str, list[MetricRow]] = defaultdict(list)
    for r in card.metrics:
        by_task[f"{r.task}/{r.condition}"].append(r)
    return sorted(k for k, rows in by_task.items() if rows and all(valid(r) == 0 for r in rows))


def silent_judges(card: Scorecard) -> list[str]:
    """Judges that produced no valid judgment at all (every one of their rows all errors): a judge endpoint that
    hung or refused every call leaves the judged metrics n/a while the other tasks look fine."""
    silent = []
    for judge in card.judges:
        rows = [r for r in card.metrics if r.judge == judge["name"] and r.n]
        if rows and all(valid(r) == 0 for r in rows):
            silent.append(judge["name"])
    return silent


def format_table(card: Scorecard) -> Any:
    """A rich table of the card's metrics: value, interval, n, errors."""
    from rich.table import Table

    table = Table(title=f"{card.candidate['id']}  ·  suite {card.suite['name']} {card.suite['version']}")
    for col in ("task", "condition", "metric", "judge", "value", "95% CI", "n", "errors"):
        table.add_column(col, justify="right" if col in {"value", "95% CI", "n", "errors"} else "left")
    # n counts every observation; the value and interval rest on n - errors
    for r in card.metrics:
        pct = is_proportion(r.metric)
        table.add_row(r.task, r.condition, r.metric, r.judge or "", _fmt(r.value, pct),
                      f"{_fmt(r.ci_low, pct)}–{_fmt(r.ci_high, pct)}" if r.ci_low is not None else "",
                      str(r.n), str(r.errors) if r.errors else "")
    return table


def valid(row: dict[str, Any] | MetricRow) -> int:
    """Observations a value rests on: all of them minus the failed ones."""
    def num(key: str) -> int:
        x = row.get(key) if isinstance(row, dict) else getattr(row, key)
        return 0 if x is None or x != x else int(x)  # None or NaN (a store row without the figure) counts 0

    return num("n") - num("errors")


def _fmt(x: float | None, pct: bool) -> str:
    if x is None:
        return "n/a"
    return f"{100 * x:.1f}%" if pct else f"{x:.2f}"


def monitor_lines(monitor: dict[str, Any]) -> str:
    """The activation monitor's summary under the score table."""
    lines = []
    for condition, a in (monitor.get("agreement") or {}).items():
        auroc = "n/a (one class only)" if a.get("auroc") is None else (
            f"{a['auroc']:.3f} [{a['ci_low']:.3f}–{a['ci_high']:.3f}]")
        lines.append(f"monitor ({condition}): layer {monitor['layer']} persona direction vs {monitor['judge']}'s "
                     f"sarcastic verdicts: AUROC {auroc} ({a['n_positive']} sarcastic, {a['n_negative']} not)")
    for condition, turns in (monitor.get("drift") or {}).items():
        lines.append(f"monitor drift meter ({condition}): mean projection by turn "
                     + ", ".join(f"{t}: {v:+.2f}" for t, v in turns.items()))
    return "\n".join(lines)
