"""Boards: which metrics a leaderboard shows, and the gate that decides whether a candidate (a round) passes.

A board is a folder `leaderboards/<name>/` with `board.toml`; its store and published pages live beside it.
Metrics are named `task/metric` (e.g. `personality/sarcastic`); judged metrics take the board's judge
unless a column or criterion names another. A criterion over a judged rate is decided with the judge's measured
error rates from its validity card (`judge_error.py`, docs/GATES.md) whenever the card gives them.
"""

from __future__ import annotations

import json
import math
import operator
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..harness.data import check_keys, read_toml
from ..harness.errors import UserError
from ..harness.scorecard import is_proportion, valid
from .judge_error import JudgedCheck, JudgeError, Rate, check, missing_rates, parse_rate
from .report import format_value
from .store import Store

BOARD_KEYS = ("name", "title", "suite", "judge", "store", "rank_by", "columns", "gate", "max_error_share")
COLUMN_KEYS = ("metric", "condition", "label", "judge")
CRITERION_KEYS = ("op", "threshold", "bound", "relative_to", "max_error_share", "judge_error", "confidence")
OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq}
BOUNDS = ("point", "lower", "upper")
JUDGED = {"sarcastic", "personality"}
# metrics where smaller is better (the rest: bigger is better)
LOWER_IS_BETTER = {"leak", "truncated"}


def lower_is_better(metric: str) -> bool:
    """By metric family: `leak`, `leak@3` (a drift turn's leak rate) and `leak:llm` are all lower-is-better."""
    return re.split(r"[@:]", metric, maxsplit=1)[0] in LOWER_IS_BETTER

# rates decided by a judge (a classifier, an LLM, a rule bank): a gate over one should know the judge's error, and
# says so when the card does not give it. Any other proportion whose card gives error rates is tested too.
JUDGED_RATES = {"leak", "sarcastic", "coherent", "identity", "in_character", "held"}
JUDGE_ERROR_MODES = ("test", "ignore")


@dataclass(frozen=True)
class Column:
    metric: str  # task/metric
    condition: str = "none"
    label: str = ""
    judge: str | None = None

    @property
    def task(self) -> str:
        return self.metric.split("/")[0]

    @property
    def name(self) -> str:
        return self.metric.split("/")[1]


@dataclass(frozen=True)
class Criterion(Column):
    op: str = ">="
    threshold: float = 0.0
    bound: str = "point"
    relative_to: str | None = None  # "base" (the candidate's lineage base) or a candidate id
    max_error_share: float = 0.05  # more failed generations/judgments than this and the criterion fails
    judge_error: str = "test"  # "test": judged rates are decided with the judge's error rates; "ignore": raw
    confidence: float = 0.95  # at the ideal (e.g. 0 % leaks) a perfect model passes at least this often

    def describe(self) -> str:
        rel = f" vs {self.relative_to}" if self.relative_to else ""
        bound = "" if self.bound == "point" else f" ({self.bound} bound)"
        return f"{self.metric}[{self.condition}]{rel}{bound} {self.op} {format_value(self.threshold, self.name)}"


@dataclass
class Board:
    name: str
    root: Path
    suite: str
    judge: str
    rank_by: Column
    columns: list[Column]
    gate: list[Criterion]
    title: str = ""
    store_path: Path = field(default_factory=Path)
    max_error_share: float = 0.05

    def open_store(self, override: str | Path | None = None) -> Store:
        path = override or os.environ.get("CHARACTER_BAKER_STORE") or self.store_path
        return Store(path)

    def column(self, metric: str, label: str = "", condition: str = "none") -> Column:
        """A column of this board as `[[columns]]` would give it: the board's judge for a judged metric."""
        raw = {"metric": metric, "condition": condition, **({"label": label} if label else {})}
        return _column(raw, f"board {self.name}: {metric}", Column, self.judge)


def _column(raw: Any, where: str, cls: type = Column, default_judge: str | None = None,
            default_share: float = 0.05) -> Any:
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected a table")
    check_keys(raw, COLUMN_KEYS + (CRITERION_KEYS if cls is Criterion else ()), where)
    for key in ("condition", "label", "judge", "relative_to"):
        if key in raw and not isinstance(raw[key], str):
            raise UserError(f"{where}: '{key}' must be a string")
    metric = raw.get("metric")
    if not isinstance(metric, str) or metric.count("/") != 1:
        raise UserError(f"{where}: 'metric' must look like task/metric, e.g. personality/sarcastic")
    kwargs: dict[str, Any] = {"metric": metric, "condition": str(raw.get("condition", "none")),
                              "label": str(raw.get("label", metric.split("/")[1])),
                              "judge": raw.get("judge", default_judge if metric.split("/")[1] in JUDGED else None)}
    if cls is Criterion:
        op = raw.get("op", ">=")
        if op not in OPS:
            raise UserError(f"{where}: 'op' must be one of {', '.join(OPS)}, got {op!r}")
        bound = raw.get("bound", "point")
        if bound not in BOUNDS:
            raise UserError(f"{where}: 'bound' must be one of {', '.join(BOUNDS)}, got {bound!r}")
        threshold = raw.get("threshold")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
            raise UserError(f"{where}: 'threshold' must be a finite number")
        if is_proportion(metric.split("/")[1].split(":")[0]):  # a rate: 0.05 is 5 %; a change in a rate: -1 .. 1
            low = -1.0 if raw.get("relative_to") else 0.0
            if not low <= threshold <= 1:
                hint = f" (a percent? {threshold:g} % is {threshold / 100:g})" if 1 < abs(threshold) <= 100 else ""
                raise UserError(f"{where}: 'threshold' {threshold:g} is outside [{low:g}, 1]: {metric} is a "
                                f"proportion{hint}")
        mode = raw.get("judge_error", "test")
        if mode not in JUDGE_ERROR_MODES:
            raise UserError(f"{where}: 'judge_error' must be one of {', '.join(JUDGE_ERROR_MODES)}, got {mode!r}")
        confidence = raw.get("confidence", 0.95)
        if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0.5 <= confidence < 1:
            raise UserError(f"{where}: 'confidence' must be a number in [0.5, 1), got {confidence!r}")
        kwargs.update(op=op, bound=bound, threshold=float(threshold), relative_to=raw.get("relative_to"),
                      max_error_share=_share(raw.get("max_error_share", default_share), f"{where}: max_error_share"),
                      judge_error=mode, confidence=float(confidence))
    return cls(**kwargs)


def _share(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise UserError(f"{where} must be a number in [0, 1], got {value!r}")
    return float(value)


def _store_path(store: str, board_toml: Path) -> Path:
    """`store` is a file inside the board's folder: a board read from elsewhere (a pull request, a shared folder)
    must not create or overwrite a SQLite file anywhere it names. Another store is --store or $CHARACTER_BAKER_STORE,
    chosen by whoever runs the command."""
    folder = board_toml.parent
    name = os.path.normpath(store) if store else ""  # by name: a link the user placed in the folder is theirs
    if not name or os.path.isabs(name) or name == "." or name.split(os.sep)[0] == "..":
        raise UserError(f"{board_toml}: store = {store!r} is not a file inside the board's folder {folder} (write a "
                        "name such as \"store.sqlite\"; for a store elsewhere pass --store or set "
                        "$CHARACTER_BAKER_STORE)")
    return folder / name


def load_board(name_or_path: str | Path, boards_dir: str | Path = "leaderboards") -> Board:
    path = Path(name_or_path)
    if not path.exists():
        path = Path(boards_dir) / str(name_or_path)
    if path.is_dir():
        path = path / "board.toml"
    if not path.is_file():
        raise UserError(f"board '{name_or_path}': no {Path(boards_dir) / str(name_or_path) / 'board.toml'} "
                        "(pass --board NAME from the project root, or a path to the board folder)")
    raw = read_toml(path, "board")
    check_keys(raw, BOARD_KEYS, str(path))
    for key in ("name", "title", "suite", "judge", "store"):
        if key in raw and not isinstance(raw[key], str):
            raise UserError(f"{path}: '{key}' must be a string, got {type(raw[key]).__name__}")
    for key in ("columns", "gate"):
        if not isinstance(raw.get(key, []), list):
            raise UserError(f"{path}: '{key}' must be an array of tables ([[{key}]]), got {type(raw[key]).__name__}")
    judge = str(raw.get("judge", "classifier"))
    share = _share(raw.get("max_error_share", 0.05), f"{path}: max_error_share")
    columns = [_column(c, f"{path}: columns[{i}]", Column, judge) for i, c in enumerate(raw.get("columns", []))]
    if not columns:
        raise UserError(f"{path}: needs at least one [[columns]] entry")
    gate = [_column(c, f"{path}: gate[{i}]", Criterion, judge, share) for i, c in enumerate(raw.get("gate", []))]
    rank = raw.get("rank_by", {"metric": columns[0].metric})
    return Board(
        name=str(raw.get("name", path.parent.name)), root=path.parent, suite=str(raw.get("suite", "skippy")),
        judge=judge, rank_by=_column(rank if isinstance(rank, dict) else {"metric": rank}, f"{path}: rank_by",
                                     Column, judge),
        columns=columns, gate=gate, title=str(raw.get("title", "")),
        store_path=_store_path(str(raw.get("store", "store.sqlite")), path), max_error_share=share,
    )



class Measurements:
    """The newest value of every (candidate, condition, task, metric, judge) on a board, for O(1) lookups, and the
    judge records (validity cards included) of the scorecard each value came from (`Store.frame` puts them in
    `frame.attrs["judge_records"]`, one JSON text keyed by result id)."""

    def __init__(self, frame: Any) -> None:
        self.frame = frame
        raw = getattr(frame, "attrs", {}).get("judge_records")
        self.judge_records: dict[int, list[dict[str, Any]]] = {
            int(k): v for k, v in json.loads(raw).items()} if isinstance(raw, str) else {}
        rows = frame[frame.task.notna()].sort_values("created", na_position="first")
        self.rows: dict[tuple[Any, ...], dict[str, Any]] = {}
        for row in rows.to_dict("records"):
            judge = row["judge"] if isinstance(row["judge"], str) else None
            self.rows[(row["candidate"], row["condition"], row["task"], row["metric"], judge)] = row
        self.candidates = list(dict.fromkeys(frame.candidate))

    def get(self, candidate: str, col: Column) -> dict[str, Any] | None:
        """None when never measured (a reported row without the judge's name still counts for judged metrics)."""
        row = self.rows.get((candidate, col.condition, col.task, col.name, col.judge))
        if row is None and col.judge is not None:
            row = self.rows.get((candidate, col.condition, col.task, col.name, None))
            row = row if row is not None and row["reported"] else None
        if row is None or row["value"] is None or (isinstance(row["value"], float) and math.isnan(row["value"])):
            return None
        return row

    def candidate_info(self, candidate: str) -> dict[str, Any]:
        rows = self.frame[self.frame.candidate == candidate]
        return rows.iloc[-1].to_dict() if not rows.empty else {}


@dataclass
class Verdict:
    criterion: Criterion
    passed: bool
    value: float | None
    low: float | None
    high: float | None
    compared: float | None
    reason: str
    judged: JudgedCheck | None = None  # the judge-error test, when the criterion's judge gave its error rates
    judge_error_unknown: str | None = None  # a judged rate decided raw: what the card did not give


def judge_error_for(records: list[dict[str, Any]], metric: str, judge: str | None) -> JudgeError:
    """The error rates of the judge behind `metric` from the scorecard's judge records.

    Read first from a card's `error_rates[metric]` (`{"false_positive": {"k", "n"}, "false_negative": {"k", "n"}}`,
    or `"recall"` for the second), on the judge's record when the criterion names one, else on any record that
    gives them; for `sarcastic`, derived from the judge's confusion counts on its calibration set (precision,
    recall, accuracy), which every card has.
    """
    mine = [r for r in records if isinstance(r, dict) and (judge is None or r.get("name") == judge)]
    for record in reversed(mine):
        card = record.get("validity") or {}
        given = (card.get("error_rates") or {}).get(metric) if isinstance(card, dict) else None
        if isinstance(given, dict):
            where = f"{record.get('name', '?')} card: {given.get('source') or 'error_rates'}"
            fn = parse_rate(given.get("false_negative"), where)
            recall = parse_rate(given.get("recall"), where)  # a recall of k/n is n - k misses of n
            if fn is None and recall is not None:
                fn = Rate(recall.n - recall.k, recall.n, recall.source)
            return JudgeError(parse_rate(given.get("false_positive"), where), fn)
    if metric == "sarcastic":
        for record in reversed(mine):
            card = record.get("validity") or {}
            try:
                precision, recall, accuracy = card["precision"], card["recall"], card["accuracy"]
                flagged, hits, positives, total = (int(precision["n"]), int(precision["k"]), int(recall["n"]),
                                                   int(accuracy["n"]))
            except (KeyError, TypeError, ValueError):
                continue
            where = f"{record.get('name', '?')} card: calibration set"
            fp = Rate(flagged - hits, total - positives, where) if total > positives else None
            fn = Rate(positives - hits, positives, where) if positives else None
            return JudgeError(fp, fn)
    return JudgeError(None, None)


def evaluate(board: Board, measured: Measurements, candidate: str) -> list[Verdict]:
    """Each gate criterion on a candidate; a metric never measured fails as "not measured"."""
    verdicts = []
    for c in board.gate:
        row = measured.get(candidate, c)
        if row is None:
            verdicts.append(Verdict(c, False, None, None, None, None, "not measured"))
            continue
        n = int(row["n"] or 0)
        errors = n - valid(row)
        if n and errors / n > c.max_error_share:
            verdicts.append(Verdict(c, False, row["value"], row["ci_low"], row["ci_high"], None,
                                    f"{errors}/{n} observations failed ({100 * errors / n:.1f}%, above "
                                    f"{100 * c.max_error_share:g}%): rerun to retry them"))
            continue
        value = {"point": row["value"], "lower": row["ci_low"], "upper": row["ci_high"]}[c.bound]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            verdicts.append(Verdict(c, False, row["value"], None, None, None, f"no {c.bound} bound recorded"))
            continue
        compared = float(value)
        judged = None if c.relative_to else _judged(c, row, measured)
        if isinstance(judged, JudgedCheck):
            verdicts.append(Verdict(c, judged.passed, row["value"], row["ci_low"], row["ci_high"], compared,
                                    _judged_reason(judged), judged))
            continue
        unknown = judged  # a judged rate whose card lacks the rates: decided raw, and said so
        if c.relative_to:
            ref_id = reference_id(measured.frame, candidate, c.relative_to)
            ref = measured.get(ref_id, c) if ref_id else None
            if ref is None:
                verdicts.append(Verdict(c, False, row["value"], row["ci_low"], row["ci_high"], None,
                                        f"reference {c.relative_to} ({ref_id or 'unknown'}) not measured"))
                continue
            compared -= float(ref["value"])
        passed = bool(OPS[c.op](compared, c.threshold))
        verdicts.append(Verdict(c, passed, row["value"], row["ci_low"], row["ci_high"], compared,
                                "pass" if passed else "fail", judge_error_unknown=unknown))
    return verdicts


def _judged(c: Criterion, row: dict[str, Any], measured: Measurements) -> JudgedCheck | str | None:
    """The judge-error test of a criterion over a judged rate; a string saying what is missing when the card does
    not give the rates it needs; None when the criterion is not over a judged rate (or opts out)."""
    if c.judge_error == "ignore" or not is_proportion(c.name) or c.op not in ("<=", "<", ">=", ">"):
        return None
    records = measured.judge_records.get(int(row["result_id"]), []) if "result_id" in row else []
    error = judge_error_for(records, c.name, c.judge)
    if error.fp is None and error.fn is None and c.name not in JUDGED_RATES:
        return None  # not a judged rate, and no card claims it
    n = valid(row)
    successes = row.get("successes")
    k = round(float(successes)) if successes is not None and successes == successes else round(row["value"] * n)
    missing = missing_rates(c.op, c.threshold, n, error, c.bound)
    if missing:
        return f"judge error not measured ({' and '.join(missing)} not on the card): decided on the raw rate"
    return check(c.op, c.threshold, k, n, error, c.confidence, c.bound)


def _judged_reason(j: JudgedCheck) -> str:
    verdict = "pass" if j.passed else "fail"
    if j.limit is None:
        return "fail: no judged count meets it under the judge's error"
    lower = j.op in ("<=", "<")
    if j.rule == "ideal":
        where = ("within" if j.passed else "above") if lower else ("at or above" if j.passed else "below")
        return (f"{verdict}: {j.k}/{j.n} judged, {where} the {j.limit} a perfect model reaches at "
                f"{100 * j.confidence:g}% under the judge's error")
    figure = {"corrected": j.corrected, "corrected lower bound": j.corrected_low,
              "corrected upper bound": j.corrected_high}[j.rule]
    shown = "—" if figure is None else f"{100 * figure:.1f}%"
    return f"{verdict}: {j.rule} rate {shown} ({j.k}/{j.n} judged)"


def reference_id(frame: Any, candidate: str, relative_to: str) -> str | None:
    """`base` is the candidate's lineage base: the board row whose candidate id or source equals it."""
    if relative_to != "base":
        return relative_to
    bases = frame[frame.candidate == candidate].base.dropna()
    if bases.empty:
        return None
    base = str(bases.iloc[0])
    match = frame[(frame.candidate == base) | (frame.source == base)]
    return str(match.candidate.iloc[0]) if not match.empty else None


def gate_lines(verdicts: list[Verdict]) -> list[str]:
    """One line per criterion (a judged rate adds a line with its raw and corrected figures), then the chance a
    perfect model fails the whole gate."""
    lines = []
    for v in verdicts:
        c = v.criterion
        ci = f" [{format_value(v.low, c.name)}–{format_value(v.high, c.name)}]" if v.low is not None else ""
        shown = format_value(v.value, c.name) + ci
        if c.relative_to and v.compared is not None:
            shown += f", change {format_value(v.compared, spec='.3f', signed=True)}"
        lines.append(f"{'PASS' if v.passed else 'FAIL'}  {c.describe():<48} value {shown}  ({v.reason})")
        if v.judged is not None:
            lines.append(f"      ↳ {v.judged.describe()}")
        elif v.judge_error_unknown:
            lines.append(f"      ↳ {v.judge_error_unknown}")
    summary = perfect_model_line(verdicts)
    return lines + ([summary] if summary else [])


def perfect_model_fails(verdicts: list[Verdict]) -> tuple[float | None, list[str]]:
    """The chance a perfect model fails the gate on judge error: 1 - prod(1 - p) over the judged criteria, which
    assumes their judge errors are independent (criteria over the same replies are not quite), and the judged
    criteria it could not include (their cards lack the rates). None when no criterion was tested."""
    tested = [v.judged.perfect_fails for v in verdicts if v.judged is not None]
    missing = [v.criterion.metric for v in verdicts if v.judge_error_unknown]
    if not tested:
        return None, missing
    return 1 - math.prod(1 - p for p in tested), missing


def perfect_model_line(verdicts: list[Verdict]) -> str | None:
    chance, missing = perfect_model_fails(verdicts)
    if chance is None and not missing:
        return None
    tail = f"; judge error not measured for {', '.join(missing)}" if missing else ""
    if chance is None:
        return f"a perfect model's chance of failing this gate: not computed{tail}"
    each = ", ".join(f"{v.criterion.name} {100 * v.judged.perfect_fails:.1f}%" for v in verdicts if v.judged)
    return (f"a perfect model fails this gate {100 * chance:.1f}% of the time on judge error ({each}; "
            f"combined as independent){tail}")


def judge_cards(store: Store, candidate: str, suite: str) -> dict[str, dict[str, Any]]:
    """The validity card of every judge that scored a candidate (by judge name), from its stored scorecards."""
    cards: dict[str, dict[str, Any]] = {}
    for (raw,) in store.db.execute("SELECT judges FROM results WHERE candidate = ? AND suite = ? ORDER BY created",
                                   (candidate, suite)):
        for record in json.loads(raw or "[]"):
            if isinstance(record, dict) and record.get("name") and record.get("id") != "reported":
                cards[record["name"]] = record.get("validity") or {"passed": False, "failures": ["no validity card"]}
    return cards


SHOWN_FAILURES = 3  # a card's failures named in one line; the rest are counted


def unvalidated(board: Board, store: Store, candidate: str) -> list[str]:
    """One line per judge the gate relies on whose validity card is missing or misses a floor."""
    needed = sorted({c.judge for c in board.gate if c.judge and c.name in JUDGED | {"coherent"}})
    cards = judge_cards(store, candidate, board.suite)
    lines = []
    for name in needed:
        card = cards.get(name)
        if card is None:
            continue  # never measured by this judge: the criterion fails as "not measured"
        if not card.get("passed"):
            failures = card.get("failures") or ["failed"]
            shown = "; ".join(failures[:SHOWN_FAILURES])
            if len(failures) > SHOWN_FAILURES:  # the card has them all: `calibrate --judge NAME` prints it
                shown += f"; and {len(failures) - SHOWN_FAILURES} more (its validity card lists them)"
            lines.append(f"judge '{name}' ({card.get('judge', '?')}): {shown}")
    return lines

