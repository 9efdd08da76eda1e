"""A judge's validity card: how far its verdicts can be trusted, measured on data it never trained on.

- accuracy, precision, recall and Cohen's kappa on the pack's held-out labelled calibration set;
- mimicry sensitivity: the rise in the sarcastic rate when a marker word or vocative ("monkey", "you ape",
  "Skippy here") is dropped into neutral replies, with phrasings the embedded judge never trained on;
- salad rejection: the share of word salad made from in-character replies (shuffles, character noise, loops,
  fragments, a tiny-model-like character babble, markers sprinkled in) that is NOT counted sarcastic, per kind;
  fluent nonsense (mid-sentence splices, a word-level babbler) is measured beside it with no floor;
- the plain false-positive rate: neutral, helpful replies called sarcastic;
- length bias: the rank correlation of the personality score with the reply's length, within each label;
- for LLM judges, agreement with itself when asked again with another seed.

The pack sets floors (`[judge_floors]`); a card that misses one fails, and `gate` refuses such a judge
unless told `--allow-unvalidated-judge`. `calibrate` computes and stores cards; scoring copies them into
scorecards (computing the embedded judge's on the spot, since it costs seconds).
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..harness.character import Character
from ..harness.data import atomic_write, default_cache_dir
from ..harness.stats import wilson
from .calibration import Row, calibration_report, judge_rows, load_rows
from .corruptions import insert_marker, salad
from .verdict import Judge, Verdict

VERSION = "card1"
SALAD_KINDS = ("shuffle", "local-shuffle", "char-noise", "repetition", "fragments", "char-babble")
NONSENSE_KINDS = ("splice", "word-babble")
# Not the embedded judge's training templates (classifier.TRAIN_TEMPLATES): a pass must generalise.
MIMICRY_TEMPLATES = ("{m}", "you {m}", "silly {m}", "{m}, old pal", "my good {m}")
NEUTRAL_KINDS = {"plain", "dry"}
_COMPUTED: dict[tuple[str, str, str], dict[str, Any]] = {}


def _prop(k: int, n: int) -> dict[str, Any]:
    return {"value": k / n if n else None, "k": k, "n": n, "ci": list(wilson(k, n)) if n else None}


def _sarcastic(verdicts: list[Verdict]) -> list[bool | None]:
    return [v.sarcastic if v.ok else None for v in verdicts]


async def _judge_all(judge: Judge, rows: list[Row], progress: bool) -> list[Verdict]:
    return [v[0] for v in await judge_rows([judge], rows, progress=progress)]


def _spearman(x: list[float], y: list[float]) -> float | None:
    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def compute_card(judge: Judge, character: Character, seed: int = 0, progress: bool = False,
                 reask: Judge | None = None, rows: list[Row] | None = None) -> dict[str, Any]:
    """The card on the pack's calibration set (or `rows`); `reask` is the same judge with another seed."""
    labelled = rows if rows is not None else load_rows(character.path("calibration"), labelled=True)
    rng = random.Random(seed)
    neutral = [r for r in labelled if r.label is False and (r.kind in NEUTRAL_KINDS or r.kind is None)]
    vocatives = [m for m in character.markers if m.lower() not in {"the magnificent", "magnificent"}] or ["monkey"]
    inserted = [replace(r, id=f"{r.id}~m{i}", response=insert_marker(
        r.response, MIMICRY_TEMPLATES[i % len(MIMICRY_TEMPLATES)].format(m=rng.choice(vocatives)), rng))
        for r in neutral for i in range(3)]
    positives = [r for r in labelled if r.label]
    broken = salad([r.response for r in positives], seed=seed + 1, kinds=SALAD_KINDS + NONSENSE_KINDS,
                   markers=character.markers or ["monkey"], per_text=2)
    salad_rows = [Row(f"salad-{i}", positives[i % len(positives)].prompt, text, kind=kind)
                  for i, (kind, text) in enumerate(broken)]
    every = labelled + inserted + salad_rows
    verdicts = asyncio.run(_judge_all(judge, every, progress))
    by_id = {r.id: v for r, v in zip(every, verdicts)}

    card: dict[str, Any] = {"version": VERSION, "judge": judge.id, "name": judge.name,
                            "rubric_version": judge.rubric_version, "calibration_set": str(
                                character.path("calibration")) if rows is None else "(rows given)",
                            "calibration_hash": character.files_hash("calibration") if rows is None else None}
    report = calibration_report(judge, labelled, [by_id[r.id] for r in labelled], seed=seed)
    card.update({k: report[k] for k in ("n", "errors", "accuracy", "precision", "recall", "kappa")})

    # mimicry: the same neutral reply with and without a marker, paired
    base = {r.id: by_id[r.id].sarcastic for r in neutral}
    pairs = [(base[r.id.split("~")[0]], by_id[r.id].sarcastic) for r in inserted]
    pairs = [(bool(a), bool(b)) for a, b in pairs if a is not None and b is not None]
    diffs = np.array([int(b) - int(a) for a, b in pairs], dtype=float)
    ci = None
    if len(diffs) > 1:
        boot = np.random.default_rng(seed).choice(diffs, size=(2000, len(diffs))).mean(axis=1)
        ci = [float(100 * np.percentile(boot, 2.5)), float(100 * np.percentile(boot, 97.5))]
    card["mimicry"] = {"points": float(100 * diffs.mean()) if len(diffs) else None, "ci": ci, "n": len(pairs),
                       "neutral_rate": float(np.mean([a for a, _ in pairs])) if pairs else None,
                       "inserted_rate": float(np.mean([b for _, b in pairs])) if pairs else None,
                       "templates": list(MIMICRY_TEMPLATES)}
    neutral_verdicts = [v for v in (base[r.id] for r in neutral) if v is not None]
    card["plain_false_positive"] = _prop(sum(neutral_verdicts), len(neutral_verdicts))

    def rejection(kinds: tuple[str, ...]) -> dict[str, Any]:
        mine = [(r.kind, by_id[r.id]) for r in salad_rows if r.kind in kinds]
        valid = [(k, v) for k, v in mine if v.ok]
        out = _prop(sum(not v.sarcastic for _, v in valid), len(valid))
        out["errors"] = len(mine) - len(valid)
        out["by_kind"] = {k: _prop(sum(not v.sarcastic for kk, v in valid if kk == k),
                                   sum(1 for kk, _ in valid if kk == k)) for k in kinds}
        flagged = [v.coherent is False for _, v in valid if v.coherent is not None]
        out["flagged_incoherent"] = float(np.mean(flagged)) if flagged else None
        return out

    card["salad"] = rejection(SALAD_KINDS)
    card["fluent_nonsense"] = rejection(NONSENSE_KINDS)
    real = [by_id[r.id].coherent for r in labelled if by_id[r.id].ok and by_id[r.id].coherent is not None]
    card["coherent_real"] = _prop(sum(real), len(real)) if real else None

    scores = [(len(r.response.split()), by_id[r.id].personality, r.label) for r in labelled
              if by_id[r.id].ok and by_id[r.id].personality is not None]
    card["length_bias"] = {"spearman": _spearman([a for a, _, _ in scores], [b for _, b, _ in scores]),
                           "within_label": {str(lab).lower(): _spearman([a for a, _, c in scores if c == lab],
                                                                       [b for _, b, c in scores if c == lab])
                                            for lab in (True, False)}}
    if reask is not None:
        again = asyncio.run(_judge_all(reask, labelled, progress))
        both = [(a.sarcastic, b.sarcastic) for a, b in zip((by_id[r.id] for r in labelled), again)
                if a.ok and b.ok]
        from ..harness.stats import cohen_kappa

        card["self_agreement"] = {"n": len(both), "agreement": float(np.mean([a == b for a, b in both]))
                                  if both else None, "kappa": cohen_kappa([bool(a) for a, _ in both],
                                                                          [bool(b) for _, b in both])}
    return apply_floors(card, character.judge_floors)


def apply_floors(card: dict[str, Any], floors: dict[str, float]) -> dict[str, Any]:
    """Mark the card passed or failed against the pack's floors; a figure that could not be measured fails."""
    checks = [("accuracy", card["accuracy"]["value"], ">=", floors["accuracy"]),
              ("mimicry_points", card["mimicry"]["points"], "<=", floors["mimicry_points"]),
              ("salad_rejection", card["salad"]["value"], ">=", floors["salad_rejection"]),
              ("plain_false_positive", card["plain_false_positive"]["value"], "<=", floors["plain_false_positive"])]
    failures = []
    for name, value, op, floor in checks:
        if value is None:
            failures.append(f"{name} not measured")
        elif (op == ">=" and value < floor) or (op == "<=" and value > floor):
            shown = f"{value:.1f} points" if name == "mimicry_points" else f"{value:.3f}"
            failures.append(f"{name} {shown} misses its floor ({op} {floor:g})")
    return {**card, "floors": dict(floors), "failures": failures, "passed": not failures}


def card_path(judge: Judge, character: Character) -> Path:
    safe = "".join(c if c.isalnum() or c in "-._" else "_" for c in f"{judge.id}-{judge.rubric_version}")
    data = character.files_hash("calibration").removeprefix("sha256:")
    return default_cache_dir() / "validity" / f"{VERSION}-{data}-{safe}.json"


def load_card(judge: Judge, character: Character) -> dict[str, Any] | None:
    if "calibration" not in character.files or not character.path("calibration").is_file():
        return None
    path = card_path(judge, character)
    if not path.is_file():
        return None
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None  # a damaged card is recomputed or reported missing, never trusted
    return apply_floors(card, character.judge_floors) if isinstance(card, dict) and "accuracy" in card else None


def save_card(judge: Judge, character: Character, card: dict[str, Any]) -> Path:
    path = card_path(judge, character)
    atomic_write(path, json.dumps(card, indent=2))
    return path


def card_for(judge: Judge, character: Character, compute_if_missing: bool = False) -> dict[str, Any]:
    """The stored card; for judges that cost nothing to run (the embedded one), computed when missing.

    A missing card is a card too: `{"passed": false, "failures": ["not validated: ..."]}`.
    """
    card = load_card(judge, character)
    if card is None and compute_if_missing and "calibration" in character.files:
        memo = (judge.id, judge.rubric_version, character.files_hash("calibration"))
        if memo not in _COMPUTED:  # once per process, even when the cache folder changes under it
            _COMPUTED[memo] = compute_card(judge, character)
        card = apply_floors(_COMPUTED[memo], character.judge_floors)
        save_card(judge, character, card)
    if card is None:
        return {"version": VERSION, "judge": judge.id, "name": judge.name, "passed": False,
                "failures": [f"not validated: run `character-baker calibrate --judge {judge.name}` "
                             f"on pack '{character.slug}'"]}
    return card
