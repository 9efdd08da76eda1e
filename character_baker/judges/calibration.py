"""Judging rows outside any suite (`character-baker judge`) and measuring a judge against labels (`calibrate`)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..harness.character import CONDITIONS
from ..harness.data import atomic_write, iter_jsonl, require_text
from ..harness.errors import UserError
from ..harness.stats import cohen_kappa, wilson
from .reply import ReplyJudge, as_text
from .verdict import Judge, Verdict


@dataclass(frozen=True)
class Row:
    id: str
    prompt: str
    response: str
    answer: str | None = None
    label: bool | None = None
    kind: str | None = None  # what sort of reply a labelled row is (plain, mimicry, keywordless, ...)
    condition: str | None = None  # the condition the reply answered (json: read as a JSON-wrapper reply)


def load_rows(path: str | Path, labelled: bool = False) -> list[Row]:
    rows, seen = [], set()
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        rid = obj.get("id")
        if not isinstance(rid, (str, int)) or not str(rid).strip():
            raise UserError(f"{where}: missing or empty field 'id'")
        if str(rid) in seen:
            raise UserError(f"{where}: duplicate id '{rid}'")
        seen.add(str(rid))
        label = None
        if labelled:
            label = obj.get("sarcastic")
            if not isinstance(label, bool):
                raise UserError(f"{where}: field 'sarcastic' must be true or false")
        answer = obj.get("answer")
        kind = obj.get("kind")
        condition = obj.get("condition")
        if condition is not None and condition not in CONDITIONS:
            raise UserError(f"{where}: field 'condition' must be one of {', '.join(CONDITIONS)}")
        rows.append(Row(str(rid), require_text(obj, "prompt", where), require_text(obj, "response", where),
                        None if answer is None else str(answer), label, kind if isinstance(kind, str) else None,
                        condition))
    return rows


async def judge_rows(judges: list[Judge], rows: list[Row], concurrency: int = 16,
                     progress: bool = True) -> list[list[Verdict]]:
    """Every judge on every row, concurrently, with a progress bar; verdicts[i][j] is row i by judge j."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    semaphore = asyncio.Semaphore(concurrency)
    results: list[list[Verdict]] = [[Verdict() for _ in judges] for _ in rows]
    with Progress(TextColumn("judging"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  disable=not progress) as bar:
        task = bar.add_task("judging", total=len(rows) * len(judges))

        async def one(i: int, j: int) -> None:
            async with semaphore:
                results[i][j] = await judges[j].judge(rows[i].prompt, rows[i].response)
            bar.advance(task)

        await asyncio.gather(*(one(i, j) for i in range(len(rows)) for j in range(len(judges))))
    return results


async def judge_replies(rj: ReplyJudge, rows: list[Row], concurrency: int = 16,
                        progress: bool = True) -> list[dict[str, Any]]:
    """Every verdict on every row, decided by `ReplyJudge.all`: the verdicts `score` gives the same reply."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    semaphore = asyncio.Semaphore(concurrency)
    out: list[dict[str, Any]] = [{} for _ in rows]
    with Progress(TextColumn("judging"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  disable=not progress) as bar:
        task = bar.add_task("judging", total=len(rows))

        async def one(i: int) -> None:
            row = rows[i]
            async with semaphore:
                verdicts = await rj.all(row.prompt, as_text(row.response, row.condition), row.answer)
            out[i] = {"id": row.id, **verdicts}
            bar.advance(task)

        await asyncio.gather(*(one(i) for i in range(len(rows))))
    return out


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    atomic_write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def calibration_report(judge: Judge, rows: list[Row], verdicts: list[Verdict], seed: int = 0) -> dict[str, Any]:
    """Accuracy, precision, recall (Wilson intervals) and Cohen's kappa (bootstrap) against the labels."""
    pairs = [(r.label, v.sarcastic) for r, v in zip(rows, verdicts) if v.sarcastic is not None]
    errors = len(rows) - len(pairs)
    y = np.array([bool(a) for a, _ in pairs])
    p = np.array([bool(b) for _, b in pairs])
    report: dict[str, Any] = {"judge": judge.id, "name": judge.name, "rubric_version": judge.rubric_version,
                              "n": len(pairs), "errors": errors}

    def prop(k: int, n: int) -> dict[str, Any]:
        if n == 0:
            return {"value": None, "k": 0, "n": 0, "ci": None}
        return {"value": k / n, "k": k, "n": n, "ci": list(wilson(k, n))}

    report["accuracy"] = prop(int(np.sum(y == p)), len(y))
    report["precision"] = prop(int(np.sum(y & p)), int(np.sum(p)))
    report["recall"] = prop(int(np.sum(y & p)), int(np.sum(y)))
    kappa = cohen_kappa(list(y), list(p))
    ci = None
    if kappa is not None and len(y) > 1:
        rng = np.random.default_rng(seed)
        boots = []
        for _ in range(2000):
            idx = rng.integers(0, len(y), len(y))
            k = cohen_kappa(list(y[idx]), list(p[idx]))
            if k is not None:
                boots.append(k)
        ci = [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))] if boots else None
    report["kappa"] = {"value": kappa, "ci": ci}
    return report
