"""Regression tests between two candidates on the same prompts, paired: the change, its interval, a p-value.

Exact McNemar for pass/fail metrics with one answer per prompt; otherwise a paired bootstrap over prompts.
A metric regresses when it moves the wrong way by more than its tolerance and the change is significant.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..harness.data import atomic_write
from ..harness.errors import UserError
from ..harness.scorecard import is_proportion
from .board import Board, Measurements, lower_is_better
from .report import format_p, format_value
from .store import Store


@dataclass
class Comparison:
    task: str
    condition: str
    key: str  # metric or metric:judge
    n: int
    baseline: float
    candidate: float
    change: float
    low: float
    high: float
    p_value: float
    test: str
    tolerance: float
    regressed: bool

    @property
    def metric(self) -> str:
        return self.key.split(":")[0]

    @property
    def name(self) -> str:
        return f"{self.task}/{self.key}[{self.condition}]"


def mcnemar_exact(worse: int, better: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pairs."""
    from scipy.stats import binomtest

    n = worse + better
    return 1.0 if n == 0 else float(binomtest(min(worse, better), n, 0.5).pvalue)


def paired_bootstrap(base: np.ndarray, cand: np.ndarray, n_boot: int = 4000, seed: int = 0
                     ) -> tuple[float, float, float]:
    """95 % interval of the mean paired difference and a two-sided bootstrap p-value for "no change"."""
    diffs = cand - base
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(diffs), size=(n_boot, len(diffs)))
    means = diffs[idx].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    if np.all(diffs == 0):
        return 0.0, 0.0, 1.0
    p = 2 * min(float(np.mean(means <= 0)), float(np.mean(means >= 0)))
    return float(low), float(high), min(1.0, p)


def compare(base: dict[str, Any], cand: dict[str, Any], tolerances: dict[str, float], alpha: float = 0.05,
            seed: int = 0) -> list[Comparison]:
    """Every metric both results measured, on the prompts both answered (errors dropped pairwise)."""
    out = []
    for task_cond, base_keys in sorted(base["samples"].items()):
        cand_keys = cand["samples"].get(task_cond)
        if not cand_keys:
            continue
        task, condition = task_cond.split("/")
        for key in sorted(base_keys):
            if key not in cand_keys:
                continue
            b_vals, c_vals = base_keys[key], cand_keys[key]
            prompts = [p for p in b_vals if p in c_vals and _ok(b_vals[p]) and _ok(c_vals[p])]
            if not prompts:
                continue
            b = np.array([_mean(b_vals[p]) for p in prompts])
            c = np.array([_mean(c_vals[p]) for p in prompts])
            metric = key.split(":")[0]
            change = float(c.mean() - b.mean())
            low, high, p_boot = paired_bootstrap(b, c, seed=seed)
            single = all(len(b_vals[p]) == 1 and len(c_vals[p]) == 1 for p in prompts)
            if is_proportion(metric) and single:
                p_value = mcnemar_exact(int(np.sum((b == 1) & (c == 0))), int(np.sum((b == 0) & (c == 1))))
                test = "mcnemar-exact"
            else:
                p_value, test = p_boot, "paired-bootstrap"
            tol = tolerances.get(f"{task}/{metric}", tolerances.get(metric, tolerances.get("*", 0.0)))
            worse = -change if lower_is_better(metric) else change
            out.append(Comparison(task, condition, key, len(prompts), float(b.mean()), float(c.mean()), change,
                                  low, high, p_value, test, tol, bool(worse < -tol and p_value < alpha)))
    return out


def _ok(values: list[float | None]) -> bool:
    return any(v is not None for v in values)


def _mean(values: list[float | None]) -> float:
    xs = [v for v in values if v is not None]
    return float(sum(xs) / len(xs))


def parse_tolerances(text: str | None) -> dict[str, float]:
    """`0.05` (every metric) or `personality/sarcastic=0.1,leak=0` (per metric)."""
    if not text:
        return {}
    out: dict[str, float] = {}
    for part in text.split(","):
        key, _, value = part.rpartition("=")
        try:
            out[key.strip() or "*"] = float(value)
        except ValueError:
            raise UserError(f"--tolerance: '{part}' is not NUMBER or METRIC=NUMBER") from None
    return out


def resolve_result(store: Store, board: Board, frame: Any, ref: str, condition: str | None = None
                   ) -> list[dict[str, Any]]:
    """A candidate id, or a round name (its best measured candidate by the board's rank_by)."""
    rows = frame[(frame.candidate == ref) & (frame.reported == 0)]
    if rows.empty:
        in_round = frame[(frame["round"] == ref) & (frame.reported == 0)]
        if in_round.empty:
            raise UserError(f"'{ref}' is neither a measured candidate nor a round on board '{board.name}'")
        measured = Measurements(in_round)
        scored = [(measured.get(c, board.rank_by) or {}).get("value") for c in in_round.candidate.unique()]
        ranked = sorted(zip(in_round.candidate.unique(), scored, strict=True),
                        key=lambda t: -math.inf if t[1] is None else t[1], reverse=True)
        rows = frame[(frame.candidate == ranked[0][0]) & (frame.reported == 0)]
    ids = rows.drop_duplicates("result_id")
    if condition:
        ids = ids[ids.condition == condition]
    return [store.result(int(i)) for i in ids.sort_values("created").result_id]


def pair_results(base: list[dict[str, Any]], cand: list[dict[str, Any]], allow_mismatch: bool
                 ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Match rows by condition (and judge); refuse different suites or judges unless allowed."""
    pairs = []
    for c in cand:
        same = [b for b in base if b["condition"] == c["condition"]]
        if not same:
            continue
        exact = [b for b in same if b["judge"] == c["judge"] and b["suite_version"] == c["suite_version"]]
        if exact:
            pairs.append((exact[-1], c))
            continue
        b = same[-1]
        if not allow_mismatch:
            what = "suite versions" if b["suite_version"] != c["suite_version"] else "judges"
            raise UserError(f"baseline {b['candidate']} and candidate {c['candidate']} were scored with different "
                            f"{what} ({b['suite_version'] if what == 'suite versions' else b['judge']} vs "
                            f"{c['suite_version'] if what == 'suite versions' else c['judge']}) under condition "
                            f"'{c['condition']}'; rescore one, or pass --allow-mismatch")
        pairs.append((b, c))
    if not pairs:
        raise UserError("baseline and candidate share no condition to compare")
    return pairs


def junit(comparisons: list[Comparison], path: Path, suite_name: str) -> None:
    root = ET.Element("testsuite", name=suite_name, tests=str(len(comparisons)),
                      failures=str(sum(c.regressed for c in comparisons)))
    for c in comparisons:
        case = ET.SubElement(root, "testcase", classname=f"{c.task}.{c.condition}", name=c.key)
        ET.SubElement(case, "system-out").text = describe(c)
        if c.regressed:
            ET.SubElement(case, "failure", message=describe(c))
    atomic_write(path, ET.tostring(root, encoding="utf-8", xml_declaration=True))  # a half-written report is none


def describe(c: Comparison) -> str:
    """One comparison in a line: `REGRESSED personality/sarcastic[none] 80.0% -> 60.0%  change -20.0 pts [...]`."""
    def f(x: float) -> str:
        return format_value(x, c.metric)

    def d(x: float) -> str:
        return format_value(x, c.metric, signed=True)

    verdict = "REGRESSED" if c.regressed else "ok"
    return (f"{verdict:<9} {c.name:<40} {f(c.baseline)} -> {f(c.candidate)}  change {d(c.change)} "
            f"[{d(c.low)}, {d(c.high)}]  p{format_p(c.p_value)} ({c.test}, n={c.n}, tolerance {c.tolerance:g})")
