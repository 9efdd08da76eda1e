"""People's labels of real replies: the gold file a board's labelling page writes and `calibrate --gold` reads.

One JSON line per label in the pack's calibration format (`id`, `prompt`, `response`, `sarcastic`) plus `leak`,
`coherent`, who labelled it and when (UTC), where the reply came from, and what each judge said at scoring time.
Lines are appended whole under a lock (append-only, atomic per line), so a labelling session can stop anywhere
and resume; a reply labelled twice keeps its latest label. The file lives under the board's folder
(`labels/gold.jsonl`), away from every judge's training data: nothing here is read by a judge's training split.

Agreement of each judge with those labels: per judge and verdict (in character, leak, coherent), accuracy,
Cohen's kappa with a 95 % bootstrap interval over labelled replies, and n. The pack's calibration set measures a
judge on labels its makers wrote; this measures it on real transcripts a person labelled.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..harness.errors import UserError
from ..harness.stats import cohen_kappa, wilson

GOLD = Path("labels") / "gold.jsonl"
LABEL_FIELDS = ("sarcastic", "leak", "coherent")


def gold_path(board_root: Path) -> Path:
    return board_root / GOLD


def append_label(path: Path, row: dict[str, Any], labeller: str) -> dict[str, Any]:
    """Write one label (stamped with the labeller and UTC time) as one whole line; returns what was written."""
    if not isinstance(row.get("id"), str) or not row["id"]:
        raise UserError(f"{path}: a label needs the reply's 'id'")
    if not isinstance(row.get("sarcastic"), bool):
        raise UserError(f"{path}: field 'sarcastic' (in character) must be true or false")
    for key in ("leak", "coherent"):
        if row.get(key) is not None and not isinstance(row[key], bool):
            raise UserError(f"{path}: field '{key}' must be true, false or absent")
    if not labeller.strip():
        raise UserError(f"{path}: a label needs a labeller")
    out = {**row, "labeller": labeller.strip(), "labelled_at": datetime.now(UTC).isoformat(timespec="seconds")}
    line = (json.dumps(out, ensure_ascii=False) + "\n").encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line)  # one write of one line under the lock: readers see whole lines or none
        os.fsync(fd)
    finally:
        os.close(fd)
    return out


def read_labels(path: Path) -> dict[str, dict[str, Any]]:
    """Labels by reply id, the latest line winning; a line cut off by a crash (no newline) is ignored."""
    if not path.is_file():
        return {}
    out: dict[str, dict[str, Any]] = {}
    text = path.read_text(encoding="utf-8")
    for lineno, line in enumerate(text.split("\n")[:-1] if not text.endswith("\n") else text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            raise UserError(f"{path}:{lineno}: not a JSON object") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
            raise UserError(f"{path}:{lineno}: a label needs a string field 'id'")
        out[obj["id"]] = obj
    return out


# --- judges against people ---------------------------------------------------------------------------------


FIELDS = {"sarcastic": "in character", "leak": "leak", "coherent": "coherent"}


def kappa_interval(human: Sequence[bool], judge: Sequence[bool], n_boot: int = 2000, seed: int = 0
                   ) -> tuple[float, float] | None:
    """95 % percentile bootstrap over the labelled replies; None when fewer than two or kappa never defined."""
    n = len(human)
    if n < 2:
        return None
    h, j = np.asarray(human, dtype=bool), np.asarray(judge, dtype=bool)
    rng = np.random.default_rng(seed)
    ks = [k for idx in rng.integers(0, n, size=(n_boot, n)) if (k := cohen_kappa(h[idx], j[idx])) is not None]
    if not ks:
        return None
    low, high = np.percentile(ks, [2.5, 97.5])
    return float(low), float(high)


def agreement(pairs: Sequence[tuple[bool, bool]]) -> dict[str, Any]:
    """(human, judge) pairs -> accuracy with its Wilson interval, kappa with its bootstrap interval, n."""
    human = [h for h, _ in pairs]
    judge = [j for _, j in pairs]
    n = len(pairs)
    agree = sum(h == j for h, j in pairs)
    ci = wilson(agree, n) if n else None
    kappa = cohen_kappa(human, judge) if n else None
    return {"n": n, "accuracy": None if ci is None else {"value": agree / n, "k": agree, "n": n, "ci": list(ci)},
            "kappa": {"value": kappa, "ci": kappa_interval(human, judge)}}


def human_agreement(labels: Sequence[dict[str, Any]], verdicts: Sequence[dict[str, dict[str, Any]]]
                    ) -> dict[str, dict[str, Any]]:
    """Per judge and field, agreement with the labels. verdicts[i]: judge name -> {field: bool | None} for
    labels[i]; a field the person or the judge left open is not counted."""
    pairs: dict[str, dict[str, list[tuple[bool, bool]]]] = {}
    for label, by_judge in zip(labels, verdicts, strict=True):
        for judge, verdict in by_judge.items():
            for f in FIELDS:
                h, j = label.get(f), verdict.get(f)
                if isinstance(h, bool) and j is not None:
                    pairs.setdefault(judge, {}).setdefault(f, []).append((h, bool(j)))
    return {judge: {f: agreement(p) for f, p in fields.items()} for judge, fields in sorted(pairs.items())}
