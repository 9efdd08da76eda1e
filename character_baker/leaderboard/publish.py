"""Publishing a board: README.md (ranked table, rounds table, merge-scale tables), results.csv, index.html, PNGs.

Every file is written to a temporary name and renamed into place, so an interrupted publish leaves the
previous version whole. Model text and ids are escaped in HTML.
"""

from __future__ import annotations

import html
import io
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd

from ..harness.data import atomic_write
from ..harness.scorecard import is_proportion, valid
from .board import Board, Column, Measurements, evaluate, format_value, perfect_model_fails, unvalidated
from .store import Store

REPORTED = "reported, not re-measured"


def round_key(name: Any) -> tuple[Any, ...]:
    """Natural order: R4 < R5 < R10."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", str(name)))


class BoardView:
    """The board's table: one row per candidate, the configured columns, the gate verdict."""

    def __init__(self, board: Board, store: Store) -> None:
        self.board = board
        self.measured = Measurements(store.frame(suite=board.suite))
        self.rows: list[dict[str, Any]] = []
        for cand in self.measured.candidates:
            info = {k: (None if _nan(v) else v) for k, v in self.measured.candidate_info(cand).items()}
            row: dict[str, Any] = {"candidate": cand, "round": info.get("round"), "scale": info.get("scale"),
                                   "baker": info.get("baker"), "reported": bool(info.get("reported")),
                                   "note": info.get("note"), "result_id": info.get("result_id")}
            for col in board.columns:
                m = self.measured.get(cand, col)
                row[col.label] = m
            rank = self.measured.get(cand, board.rank_by)
            row["_rank"] = rank["value"] if rank else float("-inf")
            verdicts = evaluate(board, self.measured, cand) if board.gate else []
            row["gate"] = "PASS" if verdicts and all(v.passed for v in verdicts) else ("FAIL" if verdicts else "")
            if json.loads(info.get("lineage") or "{}").get("role") == "base":
                row["gate"], verdicts = "base", []  # the reference of a round: relative criteria compare to it

            lineage = json.loads(info.get("lineage") or "{}")
            row["trained_against"] = trained_against(board, lineage)
            shift = lineage.get("routing_shift")
            row["routing_shift"] = shift if isinstance(shift, dict) else None
            row["failed"] = [v.criterion.describe() + f" ({v.reason})" for v in verdicts if not v.passed]
            row["perfect_fails"], row["judge_error_unknown"] = perfect_model_fails(verdicts)
            row["unvalidated"] = [] if row["reported"] else unvalidated(board, store, cand)
            self.rows.append(row)
        self.rows.sort(key=lambda r: (-r["_rank"], r["candidate"]))

    def rounds(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for r in self.rows:
            if r["round"]:
                out.setdefault(str(r["round"]), []).append(r)
        return dict(sorted(out.items(), key=lambda kv: round_key(kv[0])))

    def champion(self, round_rows: list[dict[str, Any]]) -> dict[str, Any]:
        """A round's representative: its best candidate by rank_by, preferring the gate-passing ones."""
        return sorted(round_rows, key=lambda r: (r["gate"] != "PASS", -r["_rank"]))[0]


def trained_against(board: Board, lineage: dict[str, Any]) -> str | None:
    """A warning when the candidate was trained with a reward from the judge this board scores with."""
    reward = str(lineage.get("reward_judge") or "")
    if reward and reward.split("@")[0].split(":")[0] == str(board.judge or "classifier").split("@")[0].split(":")[0]:
        return f"rewarded by {reward} during training; this board's judge is {board.judge}"
    return None


def routing_shift_lines(view: BoardView) -> list[str]:
    """MoE candidates: how far each one's expert usage moved from its base's on the eval prompts (the bake's
    routing-shift report, docs/EXPERTS.md); a candidate far from its base on a column is worth reading with this."""
    shifted = [r for r in view.rows if r.get("routing_shift")]
    if not shifted:
        return []
    lines = ["", "## Routing shift (mixture-of-experts candidates)", "",
             "Expert usage vs the base on the eval prompts: total variation per layer (0 same experts as often, "
             "1 disjoint), and the expert-layer pairs whose share of tokens moved (95 % paired bootstrap).", "",
             "| candidate | mean TV | largest TV (layer) | experts shifted | prompts |",
             "| --- | --- | --- | --- | --- |"]
    for r in shifted:
        s = r["routing_shift"]
        lines.append(_md_row([r["candidate"], _num(s.get("mean_tv")), f"{_num(s.get('max_tv'))} "
                              f"({s.get('max_tv_layer', '')})", str(s.get("experts_shifted", "")),
                              str(s.get("prompts", ""))]))
    return lines


def _num(x: Any) -> str:
    return f"{x:.4f}" if isinstance(x, (int, float)) and not isinstance(x, bool) else "—"


def cell(m: dict[str, Any] | None, col: Column, with_ci: bool = True) -> str:
    if m is None:
        return "—"
    text = format_value(m["value"], col.name)
    if with_ci and m.get("ci_low") is not None and not _nan(m["ci_low"]):
        text += f" [{format_value(m['ci_low'], col.name)}–{format_value(m['ci_high'], col.name)}]"
    if is_proportion(col.name) and m.get("n") and not _nan(m.get("successes")):
        text += f" ({int(m['successes'])}/{valid(m)})"
    if m.get("errors") and not _nan(m.get("errors")):
        text += f" ⚠ {int(m['errors'])} errors"
    return text


def _nan(x: Any) -> bool:
    return x is None or (isinstance(x, float) and x != x)


def gate_error_lines(view: BoardView) -> list[str]:
    """How the gate reads judged rates (docs/GATES.md), and how often a perfect model would fail it at each
    candidate's sample sizes, where the judges' cards give their error rates."""
    lines = ["Criteria over judged rates are decided with the judge's error rates from its validity card "
             "(docs/GATES.md): a threshold at the ideal (0 % leaks) passes while the judged count is within what a "
             "perfect model's judge errors produce at 95 %; any other threshold is compared with the rate corrected "
             "for judge error. The threshold itself is never moved."]
    chances = [(r["candidate"], r["perfect_fails"]) for r in view.rows
               if r.get("perfect_fails") is not None and not r["reported"]]
    if chances:
        lines.append("A perfect model would fail this gate on judge error alone (at each candidate's sample sizes; "
                     "criteria combined as independent): " + ", ".join(
                         f"`{_md(c)}` {100 * p:.1f}%" for c, p in chances) + ".")
    unknown = sorted({m for r in view.rows if not r["reported"] for m in r.get("judge_error_unknown") or []})
    if unknown:
        lines.append("No judge error rates on the cards for " + ", ".join(f"`{_md(m)}`" for m in unknown)
                     + ": those criteria are decided on the raw rate.")
    return [" ".join(lines), ""]


def render_readme(view: BoardView) -> str:
    b = view.board
    lines = [f"# {_md(b.title or b.name)}", "",
             f"Board `{_md(b.name)}` · suite `{_md(b.suite)}` · judge `{_md(b.judge)}` · ranked by "
             f"`{_md(b.rank_by.metric)}`. "
             "Values are point estimates with 95 % intervals (Wilson for rates, bootstrap for scores) and counts. "
             f"Rows marked † are *{REPORTED}*: figures from the research log, with intervals computed from "
             "their counts.", ""]
    if b.gate:
        lines += ["Gate: " + "; ".join(c.describe() for c in b.gate) + ".", ""]
        lines += gate_error_lines(view)
    header = ["#", "candidate", "round", "scale", *[c.label for c in b.columns], "gate"]
    lines += ["## Leaderboard", "", _md_row(header), _md_row(["---"] * len(header))]
    for i, r in enumerate(view.rows, start=1):
        name = r["candidate"] + (" †" if r["reported"] else "") + (" ‡" if r["unvalidated"] else "") + (
            " §" if r["trained_against"] else "")
        lines.append(_md_row([str(i), name, str(r["round"] or ""), _scale(r["scale"]),
                              *[cell(r[c.label], c) for c in b.columns], r["gate"]]))
    doubts = [f"- ‡ `{_md(r['candidate'])}`: " + _md("; ".join(r["unvalidated"]))
              for r in view.rows if r["unvalidated"]]
    if doubts:
        lines += ["", "‡ scored by a judge whose validity card is missing or misses a floor: its persona numbers "
                  "are not evidence until the judge is calibrated.", "", *doubts]
    against = [f"- § `{_md(r['candidate'])}`: {_md(r['trained_against'])}" for r in view.rows if r["trained_against"]]
    if against:
        lines += ["", "§ trained against this board's judge: a reward from the judge that scores it can be learnt as "
                  "the judge's blind spots rather than the character; confirm with another judge.", "", *against]
    lines += routing_shift_lines(view)
    rounds = view.rounds()
    names = list(rounds)
    if len(names) >= 2:
        lines += ["", "## Rounds", "", "Each round's best candidate (gate-passing first, then by "
                  f"`{_md(b.rank_by.metric)}`).", ""]
        for a, c in zip(names, names[1:], strict=False):
            ra, rc = view.champion(rounds[a]), view.champion(rounds[c])
            lines += [f"### {_md(a)} vs {_md(c)}", "",
                      f"{_md(a)}: `{_md(ra['candidate'])}` · {_md(c)}: `{_md(rc['candidate'])}`", "",
                      _md_row(["metric", a, c, "change"]), _md_row(["---"] * 4)]
            for col in b.columns:
                ma, mc = ra[col.label], rc[col.label]
                change = "—"
                if ma is not None and mc is not None:
                    delta = mc["value"] - ma["value"]
                    change = (f"{100 * delta:+.1f} pts" if is_proportion(col.name)
                              else f"{delta:+.2f}")
                lines.append(_md_row([col.label, cell(ma, col, False), cell(mc, col, False), change]))
            lines.append("")
    for name, rows in rounds.items():
        if len(rows) < 2 and all(r["scale"] is None for r in rows):
            continue
        lines += ["", f"## {_md(name)}: merge scales", "",
                  _md_row(["scale", "candidate", *[c.label for c in b.columns]]),
                  _md_row(["---"] * (2 + len(b.columns)))]
        for r in sorted(rows, key=lambda r: (r["scale"] is None, r["scale"] or 0)):
            lines.append(_md_row([_scale(r["scale"]), r["candidate"] + (" †" if r["reported"] else ""),
                                  *[cell(r[c.label], c) for c in b.columns]]))
        notes = [f"- `{_md(r['candidate'])}`: {_md(r['note'])}" for r in rows if r["note"]]
        if notes:
            lines += ["", *notes]
    lines += ["", "Plots: `scales.png` (sarcastic rate vs math per merge scale), `rounds.png` (each metric across "
              "rounds), `pareto.png` (persona vs capability, every candidate, with the frontier)"
              + (", `drift.png` (the in-character rate at each turn of a conversation)" if drift_curves(view) else "")
              + ". Full data: `results.csv`; sortable table: `index.html`.", ""]
    return "\n".join(lines)


def _scale(x: Any) -> str:
    return "" if _nan(x) else f"{float(x):g}"


def _md(text: Any) -> str:
    """Text from the store made inert in Markdown: no HTML, no table breaks, no new lines or headings."""
    flat = " ".join(str(text).split())
    return html.escape(flat, quote=False).replace("|", "\\|").replace("`", "'").replace("#", "&#35;")


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(_md(c) for c in cells) + " |"


def render_html(view: BoardView, store: Store) -> str:
    b = view.board
    esc = html.escape
    heads = ["#", "candidate", "round", "scale", *[c.label for c in b.columns], "gate",
             "answer to the first identity prompt"]
    out = ["<!doctype html><html><head><meta charset='utf-8'>",
           f"<title>{esc(b.title or b.name)}</title>",
           "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
           "td,th{border:1px solid #ccc;padding:4px 8px;font-size:14px}th{cursor:pointer;background:#eee}"
           "td.text{max-width:40em}</style></head><body>",
           f"<h1>{esc(b.title or b.name)}</h1>",
           f"<p>Suite <code>{esc(b.suite)}</code>, judge <code>{esc(b.judge)}</code>. Click a column to sort. "
           f"† = {esc(REPORTED)}.</p>",
           "<table id='board'><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in heads) + "</tr></thead><tbody>"]
    for i, r in enumerate(view.rows, start=1):
        example = ""
        if r["result_id"] is not None and not r["reported"]:
            examples = store.result(int(r["result_id"])).get("examples") or {}
            first = next(iter(examples.values()), {})
            example = next(iter(first.values()), "") if first else ""
        cells = [str(i), r["candidate"] + (" †" if r["reported"] else "") + (" ‡" if r["unvalidated"] else ""),
                 str(r["round"] or ""), _scale(r["scale"])]
        values = [f"<td data-v='{esc(_sortkey(r[c.label]))}'>{esc(cell(r[c.label], c))}</td>" for c in b.columns]
        out.append("<tr>" + "".join(f"<td>{esc(x)}</td>" for x in cells) + "".join(values)
                   + f"<td title='{esc('; '.join(r['failed']))}'>{esc(r['gate'])}</td>"
                   + f"<td class='text'>{esc(example)}</td></tr>")
    out.append("</tbody></table>")
    out.append("""<script>
document.querySelectorAll('#board th').forEach((th, col) => th.addEventListener('click', () => {
  const body = document.querySelector('#board tbody');
  const rows = Array.from(body.rows);
  const key = r => { const c = r.cells[col]; const v = c.dataset.v ?? c.textContent; const x = parseFloat(v);
                     return isNaN(x) ? v : x; };
  const dir = th.dataset.dir === 'asc' ? -1 : 1; th.dataset.dir = dir === 1 ? 'asc' : 'desc';
  rows.sort((a, b) => (key(a) > key(b) ? 1 : key(a) < key(b) ? -1 : 0) * dir).forEach(r => body.appendChild(r));
}));
</script></body></html>""")
    return "\n".join(out)


def _sortkey(m: dict[str, Any] | None) -> str:
    return "" if m is None else f"{m['value']:.6f}"


def render_csv(store: Store) -> str:
    frame = store.frame()
    columns = ["candidate", "round", "baker", "base", "scale", "step", "condition", "task", "metric", "judge",
               "value", "n", "successes", "errors", "ci_low", "ci_high", "interval", "suite_version", "judges",
               "reported", "note", "created", "harness_version"]
    table = frame[frame.task.notna()][columns].sort_values(["candidate", "condition", "task", "metric"])
    for col in table.columns:
        if not pd.api.types.is_numeric_dtype(table[col]):  # text cells only: numbers such as -0.05 stay numbers
            table[col] = table[col].map(_inert_cell)
    buf = io.StringIO()
    table.to_csv(buf, index=False)
    return buf.getvalue()


def _inert_cell(value: Any) -> Any:
    """A spreadsheet runs a cell that starts with = + - @ (or a tab or carriage return) as a formula: quote it."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def render_plots(view: BoardView) -> dict[str, bytes]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matplotlib.rcParams["text.parse_math"] = False  # names are text: "R$\\foo{$" must not be parsed as mathtext
    b = view.board
    plots: dict[str, bytes] = {}
    sarc, math_col = plain_column(b, "sarcastic"), plain_column(b, "math")
    fig, ax = plt.subplots(figsize=(7, 5))
    if sarc and math_col:
        for name, pts in scale_points(view).items():
            xs = [m["value"] for _, m, _ in pts]
            ys = [s["value"] for _, _, s in pts]
            xerr = [[_err(m, lo=True) for _, m, _ in pts], [_err(m, lo=False) for _, m, _ in pts]]
            yerr = [[_err(s, lo=True) for _, _, s in pts], [_err(s, lo=False) for _, _, s in pts]]
            ax.errorbar(xs, ys, xerr=xerr, yerr=yerr, fmt="o", capsize=3, label=name)
            for (r, m, s) in pts:
                ax.annotate(f"×{_scale(r['scale'])}" if not _nan(r["scale"]) else r["candidate"][:12],
                            (m["value"], s["value"]), textcoords="offset points", xytext=(5, 5), fontsize=8)
        ax.set_xlabel(f"{math_col.label} ({math_col.metric})")
        ax.set_ylabel(f"{sarc.label} ({sarc.metric})")
        ax.set_title("Sarcasm vs math per merge scale, no system prompt (95 % intervals)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(title="round", fontsize=8)
    plots["scales.png"] = _png(fig)
    plt.close(fig)

    rounds = view.rounds()
    fig, axes = plt.subplots(1, len(b.columns), figsize=(3.2 * len(b.columns), 3.4), squeeze=False)
    for ax, col in zip(axes[0], b.columns, strict=True):
        names, vals, lo, hi = [], [], [], []
        for name, rows in rounds.items():
            m = view.champion(rows)[col.label]
            if m is None:
                continue
            names.append(name)
            vals.append(m["value"])
            lo.append(_err(m, lo=True))
            hi.append(_err(m, lo=False))
        ax.errorbar(range(len(names)), vals, yerr=[lo, hi], fmt="o-", capsize=3)
        ax.set_xticks(range(len(names)), names)
        ax.set_title(col.label, fontsize=10)
    fig.suptitle("Each metric across rounds (best candidate per round, 95 % intervals)")
    fig.tight_layout()
    plots["rounds.png"] = _png(fig)
    plt.close(fig)
    if sarc and math_col:  # every measured candidate, grouped by baker, with the frontier
        groups = pareto_groups(view)
        if groups:
            plots["pareto.png"] = pareto_png(groups, f"{math_col.label} ({math_col.metric})",
                                             f"{sarc.label} ({sarc.metric})",
                                             "Persona vs capability: every candidate on the board")
    curves = drift_curves(view)
    if curves:
        plots["drift.png"] = drift_png(curves)
    return plots


def plain_column(board: Board, name: str) -> Column | None:
    """The board's first column of metric `name` under plain chat (condition `none`): a plot of "sarcasm vs math"
    must not pick up a wrapped-prompt column ("sarcastic in JSON") that shares the metric's name."""
    return next((c for c in board.columns if c.name == name and c.condition == "none"), None)


def scale_points(view: BoardView) -> dict[str, list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]]:
    """Per round, (row, math, sarcastic) for each candidate measured on both plain-chat columns: the merge-scale
    plot's data."""
    sarc, math_col = plain_column(view.board, "sarcastic"), plain_column(view.board, "math")
    out: dict[str, list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]] = {}
    if not (sarc and math_col):
        return out
    for name, rows in view.rounds().items():
        pts = [(r, r[math_col.label], r[sarc.label]) for r in rows if r[math_col.label] and r[sarc.label]]
        if pts:
            out[name] = pts
    return out


def pareto_groups(view: BoardView) -> dict[str, list[tuple[dict[str, Any], dict[str, Any]]]]:
    """(math, sarcastic) on the plain-chat columns for every measured candidate, grouped by baker: the pareto
    plot's data."""
    sarc, math_col = plain_column(view.board, "sarcastic"), plain_column(view.board, "math")
    groups: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    if not (sarc and math_col):
        return groups
    for r in view.rows:
        if r[math_col.label] and r[sarc.label]:
            group = "base" if r["gate"] == "base" else (REPORTED if r["reported"] else r["baker"] or "other")
            groups.setdefault(group, []).append((r[math_col.label], r[sarc.label]))
    return groups


def pareto_png(groups: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]], xlabel: str, ylabel: str,
               title: str) -> bytes:
    """(x, y) measurements per group, 95 % intervals as error bars; the frontier (points no other point beats on
    both axes) drawn through. Used by the board and the bake-off."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matplotlib.rcParams["text.parse_math"] = False
    fig, ax = plt.subplots(figsize=(7, 5))
    points = []
    for name, pts in groups.items():
        xs, ys = [x["value"] for x, _ in pts], [y["value"] for _, y in pts]
        ax.errorbar(xs, ys, xerr=[[_err(x, True) for x, _ in pts], [_err(x, False) for x, _ in pts]],
                    yerr=[[_err(y, True) for _, y in pts], [_err(y, False) for _, y in pts]], fmt="s" if name == "base"
                    else "o", capsize=2, alpha=0.85, label=name)
        points += list(zip(xs, ys, strict=True))
    frontier = sorted(xy for xy in points if not any(o[0] >= xy[0] and o[1] >= xy[1] and o != xy for o in points))
    if len(frontier) > 1:
        ax.plot([x for x, _ in frontier], [y for _, y in frontier], "k--", linewidth=0.8, label="Pareto frontier")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    data = _png(fig)
    plt.close(fig)
    return data


def drift_curves(view: BoardView, top: int = 8) -> dict[str, list[tuple[int, dict[str, Any]]]]:
    """Per candidate measured on the drift task (no system prompt): the in-character rate at each turn. The base
    and the best-ranked others, `top` in all."""
    out: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    frame = view.measured.frame
    if frame.empty or "task" not in frame:
        return out
    found = frame[(frame.task == "drift") & frame.metric.astype(str).str.startswith("in_character@")
                  & (frame.condition == "none")]
    for r in view.rows:  # ranked order, base first below
        if r["candidate"] not in set(found.candidate):
            continue
        turns = sorted({int(str(m).split("@")[1]) for m in found[found.candidate == r["candidate"]].metric})
        curve = [(t, m) for t in turns
                 if (m := view.measured.get(r["candidate"], Column(f"drift/in_character@{t}"))) is not None]
        if curve:
            out[r["candidate"]] = curve
    base = [c for c in out if any(r["candidate"] == c and r["gate"] == "base" for r in view.rows)]
    keep = base + [c for c in out if c not in base][: max(top - len(base), 0)]
    return {c: out[c] for c in keep}


def drift_png(curves: dict[str, list[tuple[int, dict[str, Any]]]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matplotlib.rcParams["text.parse_math"] = False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for cand, curve in curves.items():
        ax.errorbar([t for t, _ in curve], [m["value"] for _, m in curve],
                    yerr=[[_err(m, True) for _, m in curve], [_err(m, False) for _, m in curve]], fmt="o-",
                    capsize=2, label=cand[:40])
    ax.set_xlabel("turn of the conversation")
    ax.set_ylabel("in character (coherent, sarcastic, no leak)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Persona drift over a conversation (95 % intervals)")
    ax.legend(fontsize=7)
    data = _png(fig)
    plt.close(fig)
    return data


def _err(m: dict[str, Any], lo: bool) -> float:
    bound = m.get("ci_low" if lo else "ci_high")
    if _nan(bound):
        return 0.0
    return max(0.0, (m["value"] - bound) if lo else (bound - m["value"]))


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    return buf.getvalue()


def publish(board: Board, store: Store, out: Path | None = None, plots: bool = True) -> list[Path]:
    """Render everything first, then swap each file into place atomically."""
    out = out or board.root
    view = BoardView(board, store)
    files: dict[str, bytes | str] = {"README.md": render_readme(view), "results.csv": render_csv(store),
                                     "index.html": render_html(view, store)}
    if plots:
        files.update(render_plots(view))
    written = []
    for name, data in files.items():
        atomic_write(out / name, data)
        written.append(out / name)
    return written
