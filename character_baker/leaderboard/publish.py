"""Publishing a board: README.md (ranked table, rounds table, merge-scale tables), results.csv, index.html, PNGs.

`index.html` is the `view` app's board page (`templates/board.html`) rendered once, self-contained: the same
criteria, PASS/FAIL, validity cards and agreement with people, the plots beside it by relative name, and no link to a
server. Every file is written to a temporary name and renamed into place, so an interrupted publish leaves the
previous version whole. Model and board text is escaped in HTML (Jinja's autoescaping) and made inert in Markdown
(`report.md`); a page shows the first `SHOWN_REPLY` characters of a reply and says when it cut one.
"""

from __future__ import annotations

import html
import io
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, FileSystemLoader
from markupsafe import Markup

from ..harness.data import atomic_write_all
from .board import Board, Column, Measurements, evaluate, lower_is_better, perfect_model_fails, unvalidated
from .labels import gold_path, human_agreement, read_labels
from .report import cell, cell_text, format_value, md, md_code, md_row, missing, scale_label
from .store import Store

REPORTED = "reported, not re-measured"
TEMPLATES = Path(__file__).parent / "templates"
SHOWN_REPLY = 500  # characters of a reply a board page shows; the whole reply is in the transcripts (`view`)
GATE_ORDER = {"base": 0, "PASS": 1}  # then FAIL, or no gate at all


def round_key(name: Any) -> tuple[Any, ...]:
    """Natural order: R4 < R5 < R10."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", str(name)))


class BoardView:
    """The board's table: one row per candidate, the configured columns, the gate verdict. Rows are ranked: the base
    pinned first, then gate-passing candidates, then the others, each by the board's `rank_by` (a lower-is-better
    metric such as leaks ranks its smallest first)."""

    def __init__(self, board: Board, store: Store) -> None:
        self.board = board
        self.measured = Measurements(store.frame(suite=board.suite))
        self.rows: list[dict[str, Any]] = []
        sign = -1.0 if lower_is_better(board.rank_by.name) else 1.0
        for cand in self.measured.candidates:
            info = {k: (None if missing(v) else v) for k, v in self.measured.candidate_info(cand).items()}
            row: dict[str, Any] = {"candidate": cand, "round": info.get("round"), "scale": info.get("scale"),
                                   "baker": info.get("baker"), "reported": bool(info.get("reported")),
                                   "note": info.get("note"), "result_id": info.get("result_id")}
            for col in board.columns:
                m = self.measured.get(cand, col)
                row[col.label] = m
            rank = self.measured.get(cand, board.rank_by)
            row["_rank"] = sign * rank["value"] if rank else float("-inf")  # bigger is better
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
        self.rows.sort(key=lambda r: (GATE_ORDER.get(r["gate"], 2), -r["_rank"], r["candidate"]))

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
        lines.append(md_row([r["candidate"], format_value(s.get("mean_tv"), spec=".4f"),
                             f"{format_value(s.get('max_tv'), spec='.4f')} ({s.get('max_tv_layer', '')})",
                             str(s.get("experts_shifted", "")), str(s.get("prompts", ""))]))
    return lines


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
                         f"`{md_code(c)}` {format_value(p, True)}" for c, p in chances) + ".")
    unknown = sorted({m for r in view.rows if not r["reported"] for m in r.get("judge_error_unknown") or []})
    if unknown:
        lines.append("No judge error rates on the cards for " + ", ".join(f"`{md_code(m)}`" for m in unknown)
                     + ": those criteria are decided on the raw rate.")
    return [" ".join(lines), ""]


def render_readme(view: BoardView) -> str:
    b = view.board
    lines = [f"# {md(b.title or b.name)}", "",
             f"Board `{md_code(b.name)}` · suite `{md_code(b.suite)}` · judge `{md_code(b.judge)}` · ranked by "
             f"`{md_code(b.rank_by.metric)}`: the base first, then gate-passing candidates. "
             "Values are point estimates with 95 % intervals (Wilson for rates, bootstrap for scores) and counts. "
             f"Rows marked † are *{REPORTED}*: figures from the research log, with intervals computed from "
             "their counts.", ""]
    if b.gate:  # board text: each criterion in a code span, where Markdown and HTML are literal
        lines += ["Gate: " + "; ".join(f"`{md_code(c.describe())}`" for c in b.gate) + ".", ""]
        lines += gate_error_lines(view)
    header = ["#", "candidate", "round", "scale", *[c.label for c in b.columns], "gate"]
    lines += ["## Leaderboard", "", md_row(header), md_row(["---"] * len(header))]
    for i, r in enumerate(view.rows, start=1):
        name = r["candidate"] + (" †" if r["reported"] else "") + (" ‡" if r["unvalidated"] else "") + (
            " §" if r["trained_against"] else "")
        lines.append(md_row([str(i), name, str(r["round"] or ""), scale_label(r["scale"]),
                             *[cell(r[c.label], c) for c in b.columns], r["gate"]]))
    doubts = [f"- ‡ `{md_code(r['candidate'])}`: " + md("; ".join(r["unvalidated"]))
              for r in view.rows if r["unvalidated"]]
    if doubts:
        lines += ["", "‡ scored by a judge whose validity card is missing or misses a floor: its persona numbers "
                  "are not evidence until the judge is calibrated.", "", *doubts]
    against = [f"- § `{md_code(r['candidate'])}`: {md(r['trained_against'])}" for r in view.rows
               if r["trained_against"]]
    if against:
        lines += ["", "§ trained against this board's judge: a reward from the judge that scores it can be learnt as "
                  "the judge's blind spots rather than the character; confirm with another judge.", "", *against]
    lines += routing_shift_lines(view)
    rounds = view.rounds()
    names = list(rounds)
    if len(names) >= 2:
        lines += ["", "## Rounds", "", "Each round's best candidate (gate-passing first, then by "
                  f"`{md_code(b.rank_by.metric)}`).", ""]
        for a, c in zip(names, names[1:], strict=False):
            ra, rc = view.champion(rounds[a]), view.champion(rounds[c])
            lines += [f"### {md(a)} vs {md(c)}", "",
                      f"{md(a)}: `{md_code(ra['candidate'])}` · {md(c)}: `{md_code(rc['candidate'])}`", "",
                      md_row(["metric", a, c, "change"]), md_row(["---"] * 4)]
            for col in b.columns:
                ma, mc = ra[col.label], rc[col.label]
                change = "—"
                if ma is not None and mc is not None:
                    change = format_value(mc["value"] - ma["value"], col.name, signed=True)
                lines.append(md_row([col.label, cell(ma, col, False), cell(mc, col, False), change]))
            lines.append("")
    for name, rows in rounds.items():
        if len(rows) < 2 and all(r["scale"] is None for r in rows):
            continue
        lines += ["", f"## {md(name)}: merge scales", "",
                  md_row(["scale", "candidate", *[c.label for c in b.columns]]),
                  md_row(["---"] * (2 + len(b.columns)))]
        for r in sorted(rows, key=lambda r: (r["scale"] is None, r["scale"] or 0)):
            lines.append(md_row([scale_label(r["scale"]), r["candidate"] + (" †" if r["reported"] else ""),
                                 *[cell(r[c.label], c) for c in b.columns]]))
        notes = [f"- `{md_code(r['candidate'])}`: {md(r['note'])}" for r in rows if r["note"]]
        if notes:
            lines += ["", *notes]
    lines += ["", "Plots: `scales.png` (sarcastic rate vs math per merge scale), `rounds.png` (each metric across "
              "rounds), `pareto.png` (persona vs capability, every candidate, with the frontier)"
              + (", `drift.png` (the in-character rate at each turn of a conversation)" if drift_curves(view) else "")
              + ". Full data: `results.csv`; sortable table: `index.html`.", ""]
    return "\n".join(lines)


# --- the board page: `view` serves it, `publish` writes it once as index.html ----------------------------------------

def page_env() -> Environment:
    """The Jinja environment of every board page, the app's and the published one: autoescaped, so model and board
    text is never markup (escaped as the standard library's `html.escape` writes it)."""
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True, finalize=_escaped)
    env.globals.update(cell_text=cell_text, scale_label=scale_label, reported=REPORTED)
    return env


def _escaped(value: Any) -> Any:
    if isinstance(value, str) and not isinstance(value, Markup):
        return Markup(html.escape(value))
    return value


def excerpt(text: str, limit: int = SHOWN_REPLY) -> dict[str, Any]:
    """What a page shows of a reply: its first `limit` characters, its length, and whether it was cut."""
    return {"text": text[:limit], "total": len(text), "cut": len(text) > limit}


def measured_results(view: BoardView, store: Store) -> dict[str, dict[str, Any]]:
    """Each measured (not reported) candidate's newest result as the store holds it, by candidate."""
    return {r["candidate"]: store.result(int(r["result_id"])) for r in view.rows
            if not r["reported"] and r["result_id"] is not None}


def first_reply(result: dict[str, Any] | None) -> dict[str, Any] | None:
    """The candidate's answer to the first identity prompt recorded with a result, as a page shows it."""
    examples = (result or {}).get("examples") or {}
    first = next(iter(examples.values()), {})
    text = next(iter(first.values()), None) if isinstance(first, dict) else None
    return excerpt(str(text)) if text is not None else None


def judge_cards(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each judge's validity card as recorded with the newest result that has one (floors, failures, and the
    agreement with people `calibrate --gold` put on it)."""
    cards: dict[str, dict[str, Any]] = {}
    for result in sorted(results.values(), key=lambda r: str(r.get("created") or "")):
        for j in result.get("judges") or []:
            if isinstance(j, dict) and isinstance(j.get("validity"), dict):
                cards[str(j.get("name"))] = {"name": j.get("name"), "id": j.get("id"), **j["validity"]}
    return list(cards.values())


def people_agreement(board: Board) -> dict[str, Any]:
    """Agreement with people: `calibrate --gold`'s report beside the gold file, else computed from the labels and
    the verdicts the judges gave at scoring time."""
    gold = gold_path(board.root)
    stored = gold.with_name("agreement.json")
    if stored.is_file():
        return {"source": f"calibrate --gold ({stored.name})", **json.loads(stored.read_text(encoding="utf-8"))}
    labels = list(read_labels(gold).values())
    if not labels:
        return {}
    return {"source": "labels vs the verdicts recorded at scoring time", "labels": len(labels),
            "judges": human_agreement(labels, [lab.get("judged") or {} for lab in labels])}


def board_context(view: BoardView, store: Store, plots: list[str], static: bool) -> dict[str, Any]:
    """What the board page shows. `static`: the published index.html, which links to no server (plots by relative
    name, replies cut with a note instead of a link)."""
    results = measured_results(view, store)
    return {"board": view.board, "rows": view.rows, "columns": view.board.columns,
            "replies": {r["candidate"]: first_reply(results.get(r["candidate"])) for r in view.rows},
            "cards": judge_cards(results), "human": people_agreement(view.board),
            "labelled": len(read_labels(gold_path(view.board.root))), "plots": plots, "static": static}


def render_html(view: BoardView, store: Store, plots: list[str] | tuple[str, ...] = ()) -> str:
    """index.html: the board page, self-contained (its style and sorting inline, `plots` beside it in the folder)."""
    return page_env().get_template("board.html").render(**board_context(view, store, list(plots), static=True))


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
                ax.annotate(f"×{scale_label(r['scale'])}" if not missing(r["scale"]) else r["candidate"][:12],
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
    if missing(bound):
        return 0.0
    return max(0.0, (m["value"] - bound) if lo else (bound - m["value"]))


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    return buf.getvalue()


def publish(board: Board, store: Store, out: Path | None = None, plots: bool = True) -> list[Path]:
    """Render everything first, then write the set as one (`atomic_write_all`): a page and its plots are never from
    two different publishes."""
    out = out or board.root
    view = BoardView(board, store)
    images = render_plots(view) if plots else {}
    files: dict[str, bytes | str] = {"README.md": render_readme(view), "results.csv": render_csv(store),
                                     "index.html": render_html(view, store, sorted(images)), **images}
    atomic_write_all({out / name: data for name, data in files.items()})
    return [out / name for name in files]
