"""Synthetic scorecards made with the real per-prompt and metric code, for store, gate and publish tests."""

from __future__ import annotations

from typing import Any

from ..harness.scorecard import metric_rows, per_prompt


def make_card(cid: str, outcomes: dict[str, list[float | None]], *, round_: str | None = None,
              scale: float | None = None, suite_version: str = "sha256:test", judge: str = "classifier:test",
              example: str = "I am Skippy.", conditions: tuple[str, ...] = ("none",),
              validity: dict[str, Any] | None = None) -> dict[str, Any]:
    """A scorecard built with the real per-prompt and metric code from per-prompt outcomes.

    outcomes: {"task/metric[:judge]": [value per prompt]}. validity: the judge's card (default: one that passed).
    """
    metrics, samples = [], {}
    for condition in conditions:
        by_task: dict[str, list[tuple[str, int, dict[str, Any]]]] = {}
        for key, values in outcomes.items():
            task, metric = key.split("/")
            for i, v in enumerate(values):
                by_task.setdefault(task, []).append((f"p{i:03d}", 1, {metric: v}))
        for task, triples in by_task.items():
            merged: dict[tuple[str, int], dict[str, Any]] = {}
            for sid, ep, val in triples:
                merged.setdefault((sid, ep), {}).update(val)
            values = per_prompt([(sid, ep, v) for (sid, ep), v in merged.items()])
            metrics += [r.__dict__ for r in metric_rows(values, task, condition)]
            samples[f"{task}/{condition}"] = values
    return {
        "schema": "character-baker.scorecard/1",
        "candidate": {"id": cid, "kind": "model", "source": f"/models/{cid}",
                      "lineage": {k: v for k, v in (("round", round_), ("scale", scale)) if v is not None}},
        "suite": {"name": "skippy", "version": suite_version, "conditions": list(conditions)},
        "judges": [{"name": "classifier", "id": judge, "rubric_version": "clf1",
                    "validity": validity if validity is not None else {"passed": True, "failures": []}}],
        "metrics": metrics, "samples": samples,
        "examples": {f"identity/{c}": {"id-01": example} for c in conditions},
        "decoding": {}, "harness": {"version": "test"}, "created": f"2026-11-25T00:00:{len(cid) % 60:02d}",
    }


def passing(n: int = 20) -> dict[str, list[float | None]]:
    return {"identity/identity": [1] * 3, "assistant_leaks/leak": [0] * n, "math_probes/math": [1] * 4,
            "personality/coherent": [1] * n,
            "personality/sarcastic:classifier": [1, 1, 0, 1] * (n // 4),
            "personality/personality:classifier": [7.0, 8.0, 2.0, 6.0] * (n // 4)}
