"""How the leaderboard's figures are written, in one place for the gate, the round, the bake-off, `publish` and
`view`: the one number formatter (`format_value`), a measurement's cell (`cell`, and `cell_text` for a compact value
with its full interval on hover), Markdown made inert (`md`, `md_code`, `md_row`), and the gate's presentation for a
round and a bake-off (`verdict_line`, `criterion_figure`, `results_table`).

The board imports this module (its criteria describe themselves with `format_value`), so nothing here imports the
board: what is read of a column, a verdict or the measurements is read by attribute.
"""

from __future__ import annotations

import html
import math
import numbers
import re
from collections.abc import Sequence
from typing import Any

from ..harness.scorecard import is_proportion, valid

NONE = "—"  # what a missing figure reads as

# the round's summary metrics (task, metric, label): the results table's columns and a scorecard's one-line summary
SUMMARY = (("personality", "coherent", "coherent"), ("identity", "identity", "identity"),
           ("personality", "sarcastic", "sarcastic"), ("assistant_leaks", "leak", "leaks"),
           ("math_probes", "math", "math"))


def format_value(x: Any, metric: str | bool = False, spec: str | None = None, signed: bool = False) -> str:
    """The one number formatter. `metric` names the metric (a proportion when `is_proportion`) or says `True` for a
    proportion. A proportion is written in percent (`97.5%`) and, `signed`, a change in one in points (`+2.1 pts`);
    any other number `7.12` (`+0.05` signed). `spec` replaces the default digits (`.1f` for percent, `.2f` else):
    `.0f`, `.4f`, `g`. None, NaN and anything not a number read `—`."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real) or math.isnan(x):
        return NONE
    percent = is_proportion(metric) if isinstance(metric, str) else bool(metric)
    sign = "+" if signed else ""
    if percent:
        return f"{100 * x:{sign}{spec or '.1f'}}" + (" pts" if signed else "%")
    return f"{x:{sign}{spec or '.2f'}}"


def format_p(p: float) -> str:
    """A p-value after "p": `=0.042`, or ` < 0.001` (a bootstrap or exact test never shows p = 0)."""
    return " < 0.001" if p < 0.001 else f"={p:.3g}"


def missing(x: Any) -> bool:
    """None or NaN: a figure the store does not have."""
    return x is None or (isinstance(x, float) and math.isnan(x))


def scale_label(x: Any) -> str:
    """A merge scale as written in tables and plots: `0.75`, `1`; empty when none."""
    return "" if missing(x) else format_value(float(x), spec="g")


def _metric(col: Any) -> str:
    return col if isinstance(col, str) else col.name


def cell(m: dict[str, Any] | None, col: Any, with_ci: bool = True) -> str:
    """A measurement as one cell: `97.5% [95.1%–99.0%] (117/120) ⚠ 3 errors`; `col` is a column or a metric name."""
    if m is None:
        return NONE
    metric = _metric(col)
    text = format_value(m["value"], metric)
    if with_ci and not missing(m.get("ci_low")):
        text += f" [{format_value(m['ci_low'], metric)}–{format_value(m['ci_high'], metric)}]"
    if is_proportion(metric) and m.get("n") and not missing(m.get("successes")):
        text += f" ({int(m['successes'])}/{valid(m)})"
    if m.get("errors") and not missing(m.get("errors")):
        text += f" ⚠ {int(m['errors'])} errors"
    return text


def cell_text(m: dict[str, Any] | None, col: Any) -> tuple[str, str]:
    """(compact value, the whole cell for the hover): `97.5%` and `97.5% [95.1%–99.0%] (117/120)`; a value with
    failed observations is marked `⚠` in both."""
    if m is None:
        return NONE, "not measured"
    short = format_value(m["value"], _metric(col))
    if m.get("errors") and not missing(m.get("errors")):
        short += " ⚠"
    return short, cell(m, col)


# --- Markdown -------------------------------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\*_~\[|])")


def md(text: Any) -> str:
    """Text from the store or the board's TOML made inert in Markdown: one line, no HTML (escaped), no emphasis,
    link or image (`*`, `_`, `~`, `[` escaped), no table break (`|`), no heading (a leading `#` escaped: elsewhere
    in a line it is plain text), no code span (`` ` ``)."""
    return re.sub(r"^#", r"\\#", _inert(text))


def _inert(text: Any) -> str:
    """`md` but for the heading: what a table cell needs (a `#` there starts no heading)."""
    flat = " ".join(str(text).split())
    return _MD_SPECIAL.sub(r"\\\1", html.escape(flat, quote=False)).replace("`", "'")


def md_code(text: Any) -> str:
    """Text to go inside a code span (`` `…` ``), where Markdown and HTML are already literal: one line, and no
    backtick that could close the span."""
    return " ".join(str(text).split()).replace("`", "'")


def md_row(cells: Sequence[Any]) -> str:
    """One Markdown table row, every cell made inert like `md`."""
    return "| " + " | ".join(_inert(c) for c in cells) + " |"


# --- the gate, for a round and a bake-off ----------------------------------------------------------------------------

def criterion_figure(v: Any, row: dict[str, Any]) -> str:
    """The figure a criterion was judged on: `3/3`, `41.0% [30–53]`, `-2.1 pts vs base`."""
    c = v.criterion
    if c.relative_to and v.compared is not None:
        return format_value(v.compared, c.name, signed=True) + " vs base"
    if c.name in {"identity", "math"} and row.get("n"):
        return f"{int(row['successes'])}/{valid(row)}"
    text = format_value(row["value"], c.name)
    if c.name == "sarcastic" and row.get("ci_low") is not None:  # the interval in percent, without the signs
        text += f" [{format_value(100 * row['ci_low'], spec='.0f')}–{format_value(100 * row['ci_high'], spec='.0f')}]"
    return text


def verdict_line(name: str, chosen: str | None, verdicts: Sequence[Any], measured: Any,
                 doubts: Sequence[str] | None = None) -> tuple[bool, str]:
    """A round's one line and whether it succeeded. A judge whose validity card fails (`doubts`) makes it FAIL: its
    numbers are no evidence; the figures still show what the gate saw, after the reason they do not count."""
    if chosen is None:
        return False, f"{name}: FAIL (no candidate was produced)"
    success = bool(verdicts) and all(v.passed for v in verdicts) and not doubts
    parts = []
    for v in verdicts:
        row = measured.get(chosen, v.criterion)
        text = "not measured" if row is None else criterion_figure(v, row)
        parts.append(f"{v.criterion.label} {text}" + ("" if v.passed else " ✗"))
    if doubts:
        return False, (f"{name}: FAIL — {chosen}: judge not validated ({'; '.join(doubts)}); gate on its numbers: "
                       f"{', '.join(parts)}")
    return success, f"{name}: {'SUCCESS' if success else 'FAIL'} — {chosen} ({', '.join(parts)})"


def results_table(board: Any, measured: Any, ids: Sequence[str], verdicts: dict[str, Sequence[Any]],
                  chosen: str | None, names: dict[str, str] | None = None) -> Any:
    """Base (`ids[0]`) and candidates side by side as a rich table: each `SUMMARY` metric without a system prompt
    with its interval and counts, and the gate."""
    from rich.table import Table

    table = Table(title="base vs candidates (no system prompt, eval prompts)", title_justify="left")
    table.add_column("model")
    for _, _, label in SUMMARY:
        table.add_column(label, justify="right")
    table.add_column("gate")
    cols = [board.column(f"{task}/{metric}", label) for task, metric, label in SUMMARY]
    for cid in ids:
        gate = "base" if cid == ids[0] else ("PASS" if all(v.passed for v in verdicts.get(cid, [])) else "FAIL")
        name = (names or {}).get(cid, cid) + (" ◀ chosen" if cid == chosen else "")
        table.add_row(name, *[cell(measured.get(cid, c), c) for c in cols], gate)
    return table


__all__ = ["NONE", "SUMMARY", "cell", "cell_text", "criterion_figure", "format_value", "md", "md_code", "md_row",
           "missing", "results_table", "scale_label", "verdict_line"]
