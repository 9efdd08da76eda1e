"""Importing reported results (e.g. the research log's rounds) as board rows marked *reported, not re-measured*.

Counts become rates with Wilson intervals; scores without counts keep their value and no interval.
Nothing is invented: a reported candidate with only a note has no metrics, and the gate says "not measured".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..harness.data import read_toml
from ..harness.errors import UserError
from ..harness.stats import wilson
from .board import Board
from .store import Store


def history_cards(path: Path, board: Board) -> list[tuple[dict[str, Any], str | None]]:
    raw = read_toml(path, "history file")
    cards = []
    for i, entry in enumerate(raw.get("reported", [])):
        where = f"{path}: reported[{i}]"
        if not isinstance(entry.get("candidate"), str):
            raise UserError(f"{where}: needs a 'candidate' id")
        condition = str(entry.get("condition", "none"))
        metrics = []
        for name, m in (entry.get("metrics") or {}).items():
            if name.count("/") != 1 or not isinstance(m, dict):
                raise UserError(f"{where}: metric '{name}' must be task/metric = {{successes, n}} or {{value}}")
            task, metric = name.split("/")
            row: dict[str, Any] = {"task": task, "metric": metric, "condition": condition, "judge": None,
                                   "errors": 0, "prompts": m.get("n")}
            if "successes" in m:
                k, n = int(m["successes"]), int(m["n"])
                if not 0 <= k <= n or n == 0:
                    raise UserError(f"{where}: metric '{name}' needs 0 <= successes <= n and n > 0")
                low, high = wilson(k, n)
                row.update(value=k / n, n=n, successes=k, ci_low=low, ci_high=high, interval="wilson")
            elif "value" in m:
                row.update(value=float(m["value"]), n=m.get("n"), successes=None, ci_low=None, ci_high=None,
                           interval="none")
            else:
                raise UserError(f"{where}: metric '{name}' needs successes+n or value")
            metrics.append(row)
        lineage = {k: entry[k] for k in ("round", "baker", "base", "scale", "step", "parent") if k in entry}
        card = {
            "candidate": {"id": entry["candidate"], "kind": "reported", "source": entry.get("source", "reported"),
                          "lineage": lineage},
            "suite": {"name": board.suite, "version": "reported", "conditions": [condition]},
            "judges": [{"name": board.judge, "id": "reported", "rubric_version": "reported"}],
            "metrics": metrics,
            "created": str(entry.get("date", "")),
            "harness": {"version": None, "commit": None},
        }
        cards.append((card, entry.get("note")))
    if not cards:
        raise UserError(f"{path}: no [[reported]] entries")
    return cards


def import_history(path: Path, board: Board, store: Store) -> int:
    cards = history_cards(path, board)
    for card, note in cards:
        store.record(card, reported=True, note=note)
    return len(cards)
