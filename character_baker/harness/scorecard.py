"""Scorecards: every metric of a run with n, errors and a 95 % interval, plus everything the numbers depend on.

Built from the Inspect logs (per sample and epoch, unreduced), written as JSON beside them.
"""

from __future__ import annotations

import json
import math
import subprocess
from collections import defaultdict
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .data import atomic_write
from .errors import UserError
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


# --- the scorecard's schema ---------------------------------------------------------------------------------------
# One place for what a scorecard may hold, by type and by meaning: `record` (and `score --board`, a round, history
# import) checks a card here before any row is written, and the store checks the rows it reads back with the same
# functions (`check_metric`, `check_judges`), so a row recorded before a check cannot reach a gate either.

# what a value can be beyond "a finite number": rates in [0, 1] (`is_proportion`), the judges' 0-10 personality
# score, the first turn of a break (1 or later), AIME accuracies
RANGES: dict[str, tuple[float, float]] = {"personality": (0.0, 10.0), "turns_to_break": (1.0, math.inf),
                                          "json_valid": (0.0, 1.0), "aime": (0.0, 1.0), "aime24": (0.0, 1.0),
                                          "aime25": (0.0, 1.0)}
MAX_DEPTH = 32  # free-form sections (decoding, validity cards, the monitor): deeper than anything the harness writes
CANDIDATE_KEYS = ("id", "kind", "source", "model", "model_args", "lineage", "content")
SUITE_KEYS = ("name", "character", "version", "split", "failed_samples", "tasks", "conditions")
JUDGE_KEYS = ("name", "id", "rubric_version", "training", "validity")
AGREEMENT_KEYS = ("task", "condition", "metric", "judges", "n", "kappa", "agreement")


def value_range(metric: str) -> tuple[float, float] | None:
    """The values a metric (or its per-prompt values) can take; None: any finite number."""
    return (0.0, 1.0) if is_proportion(metric) else RANGES.get(metric.split("@")[0])


def read_scorecard(path: Path) -> dict[str, Any]:
    """A scorecard file as `record` reads it: JSON, ours, and possible; one line naming the file otherwise."""
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not a readable scorecard ({str(e).splitlines()[0]})") from None
    except RecursionError:
        raise UserError(f"{path}: not a readable scorecard (JSON nested too deeply)") from None
    if not isinstance(card, dict) or card.get("schema") != SCHEMA:
        schema = card.get("schema") if isinstance(card, dict) else type(card).__name__
        raise UserError(f"{path}: not a character-baker scorecard (schema {schema!r})")
    check_scorecard(card, str(path))
    return card


def check_scorecard(card: Any, where: str) -> None:
    """A scorecard the store can take: every field of its type, every figure possible. One line naming `where`
    (the file) and the field otherwise."""
    from .candidates import check_id, check_lineage
    from .data import check_keys

    if not isinstance(card, dict):
        raise UserError(f"{where}: a scorecard is a JSON object, got {_kind(card)}")
    check_keys(card, [f.name for f in fields(Scorecard)], where)
    if card.get("schema") not in (None, SCHEMA):
        raise UserError(f"{where}: not a character-baker scorecard (schema {card.get('schema')!r})")
    cand, suite, metrics = card.get("candidate"), card.get("suite"), card.get("metrics")
    if not isinstance(cand, dict) or not isinstance(cand.get("id"), str):
        raise UserError(f"{where}: 'candidate.id' is missing or not a string")
    check_id(cand["id"], f"{where}: candidate.id")
    _near_typos(cand, CANDIDATE_KEYS, f"{where}: candidate")
    for key in ("kind", "source", "model", "content"):
        _text(cand.get(key), f"{where}: candidate.{key}", optional=True)
    _section(cand.get("model_args"), f"{where}: candidate.model_args", optional=True)
    lineage = cand.get("lineage")
    _section(lineage, f"{where}: candidate.lineage", optional=True)
    if lineage:
        check_lineage(lineage, f"{where}: candidate")
        for key, x in lineage.items():
            if _number(x) and not math.isfinite(x):
                raise UserError(f"{where}: candidate.lineage.{key} must be a finite number, got {x!r}")
    if not isinstance(suite, dict) or not all(isinstance(suite.get(k), str) for k in ("name", "version")):
        raise UserError(f"{where}: 'suite.name' and 'suite.version' must be strings")
    _near_typos(suite, SUITE_KEYS, f"{where}: suite")
    for key in ("character", "split"):
        _text(suite.get(key), f"{where}: suite.{key}", optional=True)
    if suite.get("tasks") is not None and not _strings(suite["tasks"]):
        raise UserError(f"{where}: suite.tasks must be a list of strings, got {_kind(suite['tasks'])}")
    _counts(suite.get("failed_samples"), f"{where}: suite.failed_samples")
    conditions = check_conditions(suite.get("conditions"), f"{where}: suite.conditions")
    check_judges(card.get("judges"), where)
    if not isinstance(metrics, list):
        raise UserError(f"{where}: 'metrics' must be a list, got {_kind(metrics)}")
    seen: dict[tuple[Any, ...], int] = {}
    for i, m in enumerate(metrics):
        check_metric(m, where, f"metrics[{i}]", conditions)
        key = (m["task"], m["metric"], m.get("judge"), m["condition"])
        if key in seen:
            raise UserError(f"{where}: metrics[{i}] ({_label(m)}) repeats metrics[{seen[key]}]")
        seen[key] = i
    check_samples(card.get("samples"), where, conditions)
    _examples(card.get("examples"), where, conditions)
    _agreement(card.get("agreement"), where)
    _counts(card.get("truncated"), f"{where}: truncated")
    timings = card.get("timings")
    _section(timings, f"{where}: 'timings'", optional=True)
    for key, x in (timings or {}).items():
        if not _number(x) or not math.isfinite(x) or x < 0:
            raise UserError(f"{where}: timings[{key!r}] must be a finite number >= 0, got {_show(x)}")
    for key in ("decoding", "harness", "monitor"):
        _section(card.get(key), f"{where}: '{key}'", optional=True)
    logs = card.get("logs")
    if logs is not None and not _strings(logs):
        raise UserError(f"{where}: 'logs' must be a list of strings, got {_kind(logs)}")
    if card.get("created") is not None and not isinstance(card["created"], str):
        raise UserError(f"{where}: 'created' must be a string, got {_kind(card['created'])}")


def check_conditions(conditions: Any, where: str) -> list[str] | None:
    """The suite's conditions: a list of known condition names, each once; None when the card gives none."""
    import difflib

    from .character import CONDITIONS

    if conditions is None:
        return None
    if not isinstance(conditions, list):  # a string would be recorded letter by letter
        raise UserError(f"{where} must be a list of conditions, got {_kind(conditions)}")
    for c in conditions:
        if not isinstance(c, str):
            raise UserError(f"{where}: each condition is a string, got {_kind(c)}")
        if c not in CONDITIONS:
            near = difflib.get_close_matches(c, CONDITIONS, n=1, cutoff=0.6)
            raise UserError(f"{where}: {c!r} is not a condition" + (f" (did you mean '{near[0]}'?)" if near else
                                                                      f" (conditions: {', '.join(CONDITIONS)})"))
    if len(set(conditions)) != len(conditions):
        raise UserError(f"{where}: a condition is named twice")
    return conditions


def check_judges(judges: Any, where: str) -> None:
    """Who judged: name, id and rubric version as strings (the store keys rows by them), a validity card (what the
    gate trusts) as an object whose `passed` is true or false and whose `failures` are lines of text."""
    if judges is None:
        return
    if not isinstance(judges, list):
        raise UserError(f"{where}: 'judges' must be a list, got {_kind(judges)}")
    for i, j in enumerate(judges):
        at = f"{where}: judges[{i}]"
        if not isinstance(j, dict):
            raise UserError(f"{at} must be an object, got {_kind(j)}")
        _near_typos(j, JUDGE_KEYS, at)
        for key in ("name", "id", "rubric_version"):
            if not isinstance(j.get(key), str):
                raise UserError(f"{at}.{key} must be a string, got {_kind(j.get(key))}")
        _section(j.get("training"), f"{at}.training", optional=True, any_type=True)
        card = j.get("validity")
        _section(card, f"{at}.validity", optional=True)
        if not card:
            continue
        if "passed" in card and not isinstance(card["passed"], bool):
            raise UserError(f"{at}.validity.passed must be true or false, got {_kind(card['passed'])}")
        if card.get("failures") is not None and not _strings(card["failures"]):
            raise UserError(f"{at}.validity.failures must be a list of strings")
        for key in ("judge", "name"):
            _text(card.get(key), f"{at}.validity.{key}", optional=True)
        _section(card.get("error_rates"), f"{at}.validity.error_rates", optional=True)


def check_metric(m: Any, where: str, at: str, conditions: list[str] | None = None) -> None:
    """One metric row, by type and by meaning: counts that add up (`errors` <= `n`, `successes` + `errors` <= `n`,
    each prompt observed), finite figures in the metric's range, an interval the right way round, a rate that is
    its successes over its valid observations, no value without one, and a condition the card measured."""
    from .data import check_keys

    if not isinstance(m, dict) or not all(isinstance(m.get(k), str) for k in ("task", "metric", "condition")):
        raise UserError(f"{where}: {at} needs string 'task', 'metric' and 'condition'")
    check_keys(m, [f.name for f in fields(MetricRow)], f"{where}: {at}")
    for key in ("judge", "interval"):
        if m.get(key) is not None and not isinstance(m[key], str):
            raise UserError(f"{where}: {at}.{key} must be a string or null, got {_kind(m[key])}")
    for key in ("n", "errors", "prompts", "truncated", "k"):
        x = m.get(key)
        if x is not None and (isinstance(x, bool) or not isinstance(x, int) or x < (1 if key == "k" else 0)):
            raise UserError(f"{where}: {at}.{key} must be a whole number >= {1 if key == 'k' else 0} or null")
    row = f"{where}: {at} ({_label(m)})"
    for key in ("value", "ci_low", "ci_high", "successes", "pass_at_k"):
        x = m.get(key)
        if x is not None and (not _number(x) or not math.isfinite(x)):
            raise UserError(f"{row}: {key} must be a finite number, got {_show(x)}")
    if conditions is not None and m["condition"] not in conditions:
        raise UserError(f"{row}: condition {m['condition']!r} is not one of the suite's conditions "
                        f"({', '.join(conditions) or 'none given'}); its rows would be dropped")
    n, errors, successes, value = m.get("n"), m.get("errors") or 0, m.get("successes"), m.get("value")
    if n is not None:
        if errors > n:
            raise UserError(f"{row}: errors {errors} is more than n {n} (n counts every observation, errors too)")
        if successes is not None and successes + errors > n + 1e-9:
            raise UserError(f"{row}: successes {successes:g} + errors {errors} is more than n {n}")
        for key in ("prompts", "truncated"):
            if m.get(key) is not None and m[key] > n:
                raise UserError(f"{row}: {key} {m[key]} is more than n {n}")
        if value is not None and n - errors == 0:
            raise UserError(f"{row}: a value with no valid observation (n {n}, errors {errors})")
    if successes is not None and successes < 0:
        raise UserError(f"{row}: successes {successes:g} is below 0")
    span = value_range(m["metric"]) if m["task"] != "capability" or m["metric"] in RANGES else None
    for key in ("value", "ci_low", "ci_high"):
        if span is not None and m.get(key) is not None:
            _within(m[key], span, f"{row}: {key}")
    if m.get("pass_at_k") is not None:
        _within(m["pass_at_k"], (0.0, 1.0), f"{row}: pass_at_k")
    if m.get("ci_low") is not None and m.get("ci_high") is not None and m["ci_low"] > m["ci_high"] + 1e-12:
        raise UserError(f"{row}: ci_low {m['ci_low']!r} is above ci_high {m['ci_high']!r}")
    if (is_proportion(m["metric"]) and None not in (n, successes, value) and n - errors > 0
            and abs(value - successes / (n - errors)) > 1e-6):
        raise UserError(f"{row}: value {value!r} is not successes / (n - errors) = {successes:g}/{n - errors}")


def check_samples(samples: Any, where: str, conditions: list[str] | None) -> None:
    """{"task/condition": {metric key: {prompt id: [value per epoch]}}}: numbers or null, in the metric's range."""
    if samples is None:
        return
    if not isinstance(samples, dict):
        raise UserError(f"{where}: 'samples' must be an object, got {_kind(samples)}")
    for tc, by_key in samples.items():
        at = f"{where}: samples[{tc!r}]"
        _task_condition(tc, at, conditions)
        if not isinstance(by_key, dict):
            raise UserError(f"{at} must be an object, got {_kind(by_key)}")
        for key, by_prompt in by_key.items():
            # capability: AIME's per-problem 0/1; another lm-eval task's own metric may take any finite value
            span = value_range(key.partition(":")[0]) if not tc.startswith("capability/") else RANGES.get(key)
            low, high = span or (-math.inf, math.inf)
            if not isinstance(by_prompt, dict):
                raise UserError(f"{at}[{key!r}] must be an object, got {_kind(by_prompt)}")
            for pid, values in by_prompt.items():
                if not isinstance(values, list):
                    raise UserError(f"{at}[{key!r}][{pid!r}] must be a list, got {_kind(values)}")
                # the common case at full speed (a store row holds thousands); the message only for a bad one
                if all(x is None or (type(x) is float or type(x) is int) and low <= x <= high and x - x == 0
                       for x in values):
                    continue
                for e, x in enumerate(values):
                    if x is None:
                        continue
                    if not _number(x) or not math.isfinite(x):
                        raise UserError(f"{at}[{key!r}][{pid!r}][{e}] must be a number or null, got {_show(x)}")
                    if span is not None:
                        _within(x, span, f"{at}[{key!r}][{pid!r}][{e}]")


def _examples(examples: Any, where: str, conditions: list[str] | None) -> None:
    if examples is None:
        return
    if not isinstance(examples, dict):
        raise UserError(f"{where}: 'examples' must be an object, got {_kind(examples)}")
    for tc, by_prompt in examples.items():
        at = f"{where}: examples[{tc!r}]"
        _task_condition(tc, at, conditions)
        if not isinstance(by_prompt, dict) or not all(isinstance(x, str) for x in by_prompt.values()):
            raise UserError(f"{at} must be an object of texts by prompt id, got {_kind(by_prompt)}")


def _agreement(agreement: Any, where: str) -> None:
    if agreement is None:
        return
    if not isinstance(agreement, list):
        raise UserError(f"{where}: 'agreement' must be a list, got {_kind(agreement)}")
    for i, a in enumerate(agreement):
        at = f"{where}: agreement[{i}]"
        if not isinstance(a, dict):
            raise UserError(f"{at} must be an object, got {_kind(a)}")
        _near_typos(a, AGREEMENT_KEYS, at)
        for key in ("task", "condition", "metric"):
            _text(a.get(key), f"{at}.{key}", optional=key == "metric")
        if not _strings(a.get("judges")):
            raise UserError(f"{at}.judges must be a list of strings")
        if isinstance(a.get("n"), bool) or not isinstance(a.get("n"), int) or a["n"] < 0:
            raise UserError(f"{at}.n must be a whole number >= 0")
        for key, span in (("kappa", (-1.0, 1.0)), ("agreement", (0.0, 1.0))):
            x = a.get(key)
            if x is not None:
                if not _number(x) or not math.isfinite(x):
                    raise UserError(f"{at}.{key} must be a finite number or null, got {_show(x)}")
                _within(x, span, f"{at}.{key}")


def _task_condition(key: str, at: str, conditions: list[str] | None) -> None:
    task, slash, condition = key.partition("/")
    if not slash or not task or not condition:
        raise UserError(f"{at}: a key is 'task/condition'")
    if conditions is not None and condition not in conditions:
        raise UserError(f"{at}: condition {condition!r} is not one of the suite's conditions "
                        f"({', '.join(conditions) or 'none given'})")


def _counts(counts: Any, where: str) -> None:
    """{name: whole number >= 0} (failed samples, truncated replies per task/condition)."""
    if counts is None:
        return
    if not isinstance(counts, dict):
        raise UserError(f"{where} must be an object, got {_kind(counts)}")
    for key, x in counts.items():
        if isinstance(x, bool) or not isinstance(x, int) or x < 0:
            raise UserError(f"{where}[{key!r}] must be a whole number >= 0, got {_show(x)}")


def _section(obj: Any, where: str, optional: bool = False, any_type: bool = False) -> None:
    """A free-form object (decoding, a validity card, the monitor): an object, no deeper than MAX_DEPTH."""
    if obj is None and optional:
        return
    if not any_type and not isinstance(obj, dict):
        raise UserError(f"{where} must be an object, got {_kind(obj)}")
    if _depth(obj) > MAX_DEPTH:
        raise UserError(f"{where} is nested deeper than {MAX_DEPTH} levels")


def _depth(obj: Any) -> int:
    """How deep lists and objects nest (iteratively: a deep one must not exhaust the stack to be measured)."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, depth)
            if depth > MAX_DEPTH:
                break
            stack.extend((x, depth + 1) for x in (node.values() if isinstance(node, dict) else node))
    return deepest


def _near_typos(obj: dict[str, Any], known: tuple[str, ...], where: str) -> None:
    """A key one typo from a known one is an error (the field would be lost); other extra keys are kept."""
    import difflib

    for key in obj:
        if key not in known:
            near = difflib.get_close_matches(str(key), known, n=1, cutoff=0.8)
            if near:
                raise UserError(f"{where}: unknown key '{key}' (did you mean '{near[0]}'?)")


def _within(x: float, span: tuple[float, float], where: str) -> None:
    low, high = span
    if not low <= x <= high:
        raise UserError(f"{where} {x!r} is outside [{low:g}, {high:g}]" if math.isfinite(high) else
                        f"{where} {x!r} is below {low:g}")


def _text(x: Any, where: str, optional: bool = False) -> None:
    if x is None and optional:
        return
    if not isinstance(x, str):
        raise UserError(f"{where} must be a string, got {_kind(x)}")


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _strings(x: Any) -> bool:
    return isinstance(x, list) and all(isinstance(s, str) for s in x)


def _kind(x: Any) -> str:
    return "null" if x is None else type(x).__name__


def _show(x: Any) -> str:
    """A bad figure as the user wrote it: NaN and inf by name, anything else by its type."""
    if _number(x):
        return "NaN" if x != x else repr(x)
    return _kind(x)


def _label(m: dict[str, Any]) -> str:
    return f"{m['task']}/{m['metric']}" + (f":{m['judge']}" if m.get("judge") else "") + f", {m['condition']}"
