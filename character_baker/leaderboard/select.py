"""Choosing one candidate among several by the board's gate: the checkpoint a bake keeps, the merge a round reports,
each baker's entry in a bake-off.

Scoring is the caller's (an in-memory model mid-training, a served checkpoint): what is shared is the rule, applied
to whatever the caller recorded in a store of dev-split scorecards. Chosen on the eval prompts, the reported figures
would be the best of several draws on the very prompts they are reported on; so callers record the dev split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .board import Board, Measurements, Verdict, evaluate


@dataclass
class Choice:
    """What the gate made of each candidate on the dev prompts, and the one chosen (None: no candidates)."""

    chosen: str | None
    measured: Measurements
    verdicts: dict[str, list[Verdict]]


def rank_key(board: Board, measured: Measurements, candidate: str, verdicts: list[Verdict]) -> tuple[bool, int, float]:
    """Gate-passing first, then most criteria passed, then the board's `rank_by` (a candidate without it last)."""
    rank = measured.get(candidate, board.rank_by)
    value = rank["value"] if rank and rank.get("value") is not None else float("-inf")
    return all(v.passed for v in verdicts), sum(v.passed for v in verdicts), value


def choose(board: Board, measured: Measurements, candidates: Sequence[str]) -> Choice:
    """Gate every candidate on what `measured` holds and take the best by `rank_key`; on a tie the earliest in
    `candidates` (for checkpoints: the fewest steps)."""
    verdicts = {cid: evaluate(board, measured, cid) for cid in candidates}
    chosen = None
    for cid in candidates:  # max() by hand: the first of equal keys wins, whatever the key's type
        if chosen is None or rank_key(board, measured, cid, verdicts[cid]) > \
                rank_key(board, measured, chosen, verdicts[chosen]):
            chosen = cid
    return Choice(chosen, measured, verdicts)
