"""A judge's validity card: how far its verdicts can be trusted, measured on data it never trained on.

- accuracy, precision, recall and Cohen's kappa on the pack's held-out labelled calibration set;
- mimicry sensitivity: the rise in the sarcastic rate when a marker word or vocative ("monkey", "you ape",
  "Skippy here") is dropped into neutral replies, with phrasings the embedded judge never trained on;
- salad rejection: the share of word salad made from in-character replies (shuffles, character noise, loops,
  fragments, a tiny-model-like character babble, markers sprinkled in) that is NOT counted sarcastic, per kind;
  fluent nonsense (mid-sentence splices, a word-level babbler) is measured beside it with no floor;
- the plain false-positive rate: neutral, helpful replies called sarcastic;
- length bias: the rank correlation of the personality score with the reply's length, within each label;
- for LLM judges, agreement with itself when asked again with another seed;
- for the embedded judges, leave one family out (`families`, below): each judge trained without a way of writing
  and measured on it, per family, with length bias by bucket; the card fails when a family misses its floor.

The pack sets floors (`[judge_floors]`); a card that misses one fails, and `gate` refuses such a judge
unless told `--allow-unvalidated-judge`. `calibrate` computes and stores cards; scoring copies them into
scorecards (computing the embedded judge's on the spot, since it costs seconds).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import threading
import time
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

VERSION = "card3"  # card2: leave-one-family-out section (`families`) for the embedded judges; card3: `error_rates`
SALAD_KINDS = ("shuffle", "local-shuffle", "char-noise", "repetition", "fragments", "char-babble")
NONSENSE_KINDS = ("splice", "word-babble")
# Not the embedded judge's training templates (classifier.TRAIN_TEMPLATES): a pass must generalise.
MIMICRY_TEMPLATES = ("{m}", "you {m}", "silly {m}", "{m}, old pal", "my good {m}")
NEUTRAL_KINDS = {"plain", "dry"}
_COMPUTED: dict[tuple[str, str, str], dict[str, Any]] = {}


def _prop(k: int, n: int) -> dict[str, Any]:
    return {"value": k / n if n else None, "k": k, "n": n, "ci": list(wilson(k, n)) if n else None}


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
        out["judged_coherent"] = _prop(len(flagged) - sum(flagged), len(flagged))
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
    if _has_families(judge, character):
        # leave-one-family-out retrains both judges once per family (minutes): a card reads the figures recorded for
        # this data and code (`judge/families.json`, the disk cache) and says so when there are none
        card["families"] = family_section(character, compute_if_missing=False)
        if card["families"] is None:
            card["families_note"] = ("not measured for this judge split and code: python benchmarks/judge_families.py "
                                     "--lofo records it")
    card["error_rates"] = error_rates(card, character if rows is None else None)
    return apply_floors(card, character.judge_floors)


def _pooled(rates: list[dict[str, Any]]) -> dict[str, int]:
    return {"k": sum(int(r["k"]) for r in rates), "n": sum(int(r["n"]) for r in rates)}


def error_rates(card: dict[str, Any], character: Character | None = None) -> dict[str, Any]:
    """The judges' error rates a gate corrects for (docs/GATES.md), each measured on replies the judge never trained
    on, as counts: `coherent` on the calibration set (every reply there is coherent: its misses) and on the word salad
    made from it (judged coherent: its false positives); `leak` pooled over the leak families, each left out of
    training in turn (false leaks over the non-leaking families, recall over the leaking ones); `identity` (rules,
    trained on nothing) on the identity answers of the pack's two example transcripts, in character and not.
    `sarcastic` needs no entry: the gate reads the card's calibration confusion counts."""
    out: dict[str, Any] = {}
    if character is not None:
        out.update(identity_error_rates(character))
    real, salad_coherent = card.get("coherent_real"), (card.get("salad") or {}).get("judged_coherent")
    if real and real.get("n") and salad_coherent and salad_coherent.get("n"):
        out["coherent"] = {"false_positive": {"k": salad_coherent["k"], "n": salad_coherent["n"]},
                           "false_negative": {"k": real["n"] - real["k"], "n": real["n"]},
                           "source": "calibration set (never trained on) and word salad made from it"}
    leaks = (card.get("families") or {}).get("leaks") or {}
    negatives = [f["rate"] for f in leaks.values() if f.get("measure") == "false_leaks"]
    positives = [f["rate"] for f in leaks.values() if f.get("measure") == "recall"]
    if negatives and positives:
        out["leak"] = {"false_positive": _pooled(negatives), "recall": _pooled(positives),
                       "source": f"leave-one-family-out: {len(negatives)} non-leaking and {len(positives)} leaking "
                                 "families, pooled"}
    return out


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
    if card.get("families") is not None:
        fams = family_floors_applied(card["families"], {k: float(floors.get(k, v)) for k, v in FAMILY_FLOORS.items()})
        card = {**card, "families": fams}
        failures += fams["failures"]
    return {**card, "floors": dict(floors), "failures": failures, "passed": not failures}


def card_path(judge: Judge, character: Character) -> Path:
    safe = "".join(c if c.isalnum() or c in "-._" else "_" for c in f"{judge.id}-{judge.rubric_version}")
    data = character.files_hash("calibration").removeprefix("sha256:")
    if _has_families(judge, character):  # the families section also reads the leak split and the leak judge
        from .leaks import LEAKS_VERSION

        data += "-" + _digest(character.files_hash("judge_leaks"), LEAKS_VERSION, FAMILIES_VERSION)[:8]
    return default_cache_dir() / "validity" / f"{VERSION}-{data}-{safe}.json"


def _has_families(judge: Judge, character: Character) -> bool:
    """The embedded judges' card carries the leave-one-family-out section (an LLM judge trains on nothing)."""
    return str(judge.id).startswith("classifier:") and "judge" in character.files and "judge_leaks" in character.files


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


# ---- leave one family out ---------------------------------------------------------------------------------------
#
# Leave one family out: how the embedded judges do on a way of writing they never trained on.
#
# A family is one way of writing a reply (`family` in the judge split, else `kind`): in character short, long or in
# markdown, plain short, plain long technical, markdown-heavy plain, mimicry, soft closers, apologies for detail,
# creator/purpose statements, mocked stock phrases, sign-off lines... A judge measured on sets that share families
# with its training data looks better than it is. Here each judge is trained again without one family and measured
# on that family:
#
# - the persona classifier (`classifier.UnitModel`): the sarcastic rate of the left-out family — recall when the
#   family is sarcastic, false positives when not — with the coherence check and the full judge's threshold;
# - the leak judge (`leaks.LeakJudge`, pattern bank included): the leak rate of the left-out family — recall when
#   it leaks, false leaks when not — with the full judge's threshold;
# - length bias: the sarcastic rate of the non-sarcastic families, out of family, by length bucket (20-400 words).
#
# Every rate has its n and Wilson interval; `validity.apply_floors` fails the card when a family misses its floor.
# Retraining per family costs minutes on two cores (about as much as training both judges: measured in
# benchmarks/judge_families.md), so the section is cached on disk by what it depends on (the judge and leak splits,
# the markers, how the training replies read, the judges' versions) and kept beside the judge split
# (`judge/families.json`, written by `benchmarks/judge_families.py --lofo`) so that a checkout whose data and code
# match it never recomputes it. The persona half and the leak half are keyed apart: the toy pack reads the same
# split (same persona half) with other forbidden identities (its own leak half).

FAMILIES_VERSION = "fam1"
# floors of the leave-one-family-out figures; a pack may set its own under [judge_floors] with these keys
FAMILY_FLOORS = {"family_recall": 0.80, "family_false_positive": 0.10, "family_leak_recall": 0.90,
                  "family_false_leaks": 0.05}
LENGTH_BUCKETS = ((20, 50), (50, 100), (100, 200), (200, 400))
FAMILY_RECORD = "families.json"
_FAMILIES: dict[str, dict[str, Any]] = {}
_FAMILIES_LOCK = threading.Lock()


def family_floors(character: Character) -> dict[str, float]:
    return {k: float(character.judge_floors.get(k, v)) for k, v in FAMILY_FLOORS.items()}


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() + b"\0")
    return h.hexdigest()[:16]


def persona_key(character: Character) -> str:
    """What the persona half depends on: the judge split, the markers, how its replies read (`structure.read`
    through `classifier.prepare`), and the versions of the classifier, the coherence check and this code."""
    from . import classifier, embedding
    from .coherence import VERSION as COHERENCE_VERSION

    pattern = classifier.marker_pattern(character.markers)
    return _digest(FAMILIES_VERSION, classifier.CLASSIFIER_VERSION, embedding.VERSION, COHERENCE_VERSION,
                   character.files_hash("judge"), *character.markers, "",
                   *(classifier.prepare(r.response, pattern) for r in classifier.judge_rows(character)))


def leak_key(character: Character) -> str:
    """What the leak half depends on: both splits, the pack's leak patterns and forbidden identities, how the
    replies read (`leaks.prepare`), and the versions of the leak judge, its attitude model and this code."""
    from . import classifier, embedding, leaks

    read = (leaks.prepare(r.text) for r in leaks.training_rows(character))
    return _digest(FAMILIES_VERSION, leaks.LEAKS_VERSION, classifier.CLASSIFIER_VERSION, embedding.VERSION,
                   character.files_hash("judge", "judge_leaks"), *character.leak_patterns, "",
                   *character.forbidden_identities, "", *read)


def persona_lofo(character: Character, seed: int = 0) -> dict[str, Any]:
    """The persona classifier, each family of its judge split left out in turn: per family and by length bucket."""
    from ..harness.structure import read
    from . import embedding
    from .classifier import ClassifierJudge, UnitModel, judge_rows, marker_pattern, prepare

    started = time.perf_counter()
    judge = ClassifierJudge.for_character(character)
    rows = judge_rows(character)
    pattern = marker_pattern(character.markers)
    coherent = [c.coherent for c in judge.trained.coherence.check([read(r.response).prose for r in rows])]
    out: dict[str, Any] = {}
    plain: list[tuple[int, bool]] = []
    with embedding.memoised():
        for family in sorted({r.family or "unlabelled" for r in rows}):
            inside = [i for i, r in enumerate(rows) if (r.family or "unlabelled") == family]
            model = UnitModel([r for r in rows if (r.family or "unlabelled") != family], pattern, character.markers,
                              seed)
            probs = model.probability([prepare(rows[i].response, pattern) for i in inside])
            called = [bool(coherent[i]) and bool(p >= judge.trained.threshold) for i, p in zip(inside, probs)]
            labels = {rows[i].sarcastic for i in inside}
            if len(labels) != 1:  # a family mixing labels is measured as accuracy
                k = sum(c == rows[i].sarcastic for i, c in zip(inside, called))
                out[family] = {"label": None, "measure": "accuracy", "rate": _prop(k, len(inside))}
                continue
            label = labels.pop()
            out[family] = {"label": label, "measure": "recall" if label else "false_positive",
                           "rate": _prop(sum(called), len(called)), "mean_probability": float(np.mean(probs))}
            if not label:
                plain += [(len(rows[i].response.split()), c) for i, c in zip(inside, called)]
    length = {}
    for lo, hi in LENGTH_BUCKETS:
        got = [c for n, c in plain if lo <= n < hi or (hi == LENGTH_BUCKETS[-1][1] and n >= hi)]
        length[f"{lo}-{hi}"] = _prop(sum(got), len(got))
    return {"families": out, "length": length, "seconds": round(time.perf_counter() - started, 1)}


def leak_lofo(character: Character, seed: int = 0) -> dict[str, Any]:
    """The leak judge (pattern bank and identity check included), each family of its training rows (the leak split
    and the judge split's replies it reads, `persona:<family>`) left out in turn."""
    from . import embedding
    from .leaks import LeakJudge, training_rows

    started = time.perf_counter()
    full = LeakJudge.for_character(character)
    rows = training_rows(character)
    out: dict[str, Any] = {}
    with embedding.memoised():
        for family in sorted({r.family for r in rows}):
            inside = [r for r in rows if r.family == family]
            judge = LeakJudge(character, seed, rows=[r for r in rows if r.family != family], threshold=full.threshold)
            called = [bool(v.leak) for v in judge.judge_many([r.text for r in inside])]
            labels = {r.leak for r in inside}
            if len(labels) != 1:
                k = sum(c == r.leak for c, r in zip(called, inside))
                out[family] = {"label": None, "measure": "accuracy", "rate": _prop(k, len(inside))}
                continue
            label = labels.pop()
            out[family] = {"label": label, "measure": "recall" if label else "false_leaks",
                           "rate": _prop(sum(called), len(called))}
    return {"families": out, "seconds": round(time.perf_counter() - started, 1)}


def record_path(character: Character) -> Path:
    """The record kept beside the judge split: {"persona": {key: half}, "leaks": {key: half}}."""
    return character.path("judge").with_name(FAMILY_RECORD)


RECORD_FORMAT = "families-record-1"


def _read_record(path: Path) -> dict[str, Any]:
    try:
        got = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}  # missing or damaged: recomputed, never trusted
    ok = isinstance(got, dict) and got.get("format") == RECORD_FORMAT
    return {w: got.get(w) if isinstance(got.get(w), dict) else {} for w in ("persona", "leaks")} if ok else {}


def _half(character: Character, which: str, key: str, compute_if_missing: bool, fresh: bool = False,
          ) -> dict[str, Any] | None:
    """One half ("persona" or "leaks") from this process, the record, the disk cache, or computed and cached."""
    memo = f"{which}:{key}"
    cache = default_cache_dir() / "families" / f"{which}-{key}.json"
    got = None if fresh else (_FAMILIES.get(memo) or _read_record(record_path(character)).get(which, {}).get(key)
                              or _read_record(cache).get(which, {}).get(key))
    if got is None and (compute_if_missing or fresh):
        got = persona_lofo(character) if which == "persona" else leak_lofo(character)
        atomic_write(cache, json.dumps({"format": RECORD_FORMAT, which: {key: got}}, indent=1))
    if got is not None:
        _FAMILIES[memo] = got
    return got


def family_section(character: Character, compute_if_missing: bool = True, fresh: bool = False,
                   write_record: bool = False) -> dict[str, Any] | None:
    """The leave-one-family-out section of the embedded judges' card, with its floors applied: each half from this
    process, the record beside the judge split, the disk cache, or computed (and cached) when `compute_if_missing`
    (always, with `fresh`). With `write_record`, the halves are kept in the record (other keys' halves stay: the
    toy pack reads the same split with other forbidden identities)."""
    keys = {"persona": persona_key(character), "leaks": leak_key(character)}
    with _FAMILIES_LOCK:
        halves = {w: _half(character, w, k, compute_if_missing, fresh) for w, k in keys.items()}
        if any(h is None for h in halves.values()):
            return None
        if write_record:
            record = _read_record(record_path(character))
            for w, k in keys.items():
                record.setdefault(w, {})[k] = halves[w]
            atomic_write(record_path(character),
                         json.dumps({"format": RECORD_FORMAT, **record}, indent=1, sort_keys=True) + "\n")
    section = {"version": FAMILIES_VERSION, "keys": keys, "persona": halves["persona"]["families"],
               "leaks": halves["leaks"]["families"], "length": halves["persona"]["length"],
               "seconds": {w: h["seconds"] for w, h in halves.items()}}
    return family_floors_applied(section, family_floors(character))


def family_floors_applied(section: dict[str, Any], floors: dict[str, float]) -> dict[str, Any]:
    """Each family marked against its floor; `failures` lists the families that miss theirs."""
    out = {**section, "floors": dict(floors), "failures": []}
    for judge, recall_key, false_key in (("persona", "family_recall", "family_false_positive"),
                                         ("leaks", "family_leak_recall", "family_false_leaks")):
        marked = {}
        for family, f in section[judge].items():
            if f["label"] is None:
                op, floor = ">=", 1 - floors[false_key]
            elif f["label"]:
                op, floor = ">=", floors[recall_key]
            else:
                op, floor = "<=", floors[false_key]
            value = f["rate"]["value"]
            passed = value is not None and (value >= floor if op == ">=" else value <= floor)
            marked[family] = {**f, "op": op, "floor": floor, "passed": passed}
            if not passed:
                shown = "not measured" if value is None else f"{f['measure']} {value:.3f} (n={f['rate']['n']})"
                out["failures"].append(f"family {judge}/{family}: {shown} misses its floor ({op} {floor:g})")
        out[judge] = marked
    return out


def leave_one_family_out(character: Character, write_record: bool = True,
                         halves: tuple[str, ...] = ("persona", "leaks")) -> dict[str, Any]:
    """The section with `halves` computed now (not read from any cache; the others from the caches), with floors:
    what the benchmark reports; kept in the disk cache and, with `write_record`, in the record beside the judge
    split for the card to read."""
    keys = {"persona": persona_key(character), "leaks": leak_key(character)}
    with _FAMILIES_LOCK:
        for which in halves:
            _half(character, which, keys[which], True, fresh=True)
    section = family_section(character, write_record=write_record)
    assert section is not None
    return section


def identity_error_rates(character: Character) -> dict[str, Any]:
    """The identity rules on the identity questions' answers in the pack's example transcripts (`id-*` rows): the
    in-character ones judged not to affirm the character (misses), the assistant ones judged to (false positives)."""
    from .reply import as_text
    from .rules import identity_verdict

    def judged(key: str) -> list[bool] | None:
        path = character.root / "examples" / f"{key}_transcript.jsonl"
        if not path.is_file():
            return None
        rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
        return [identity_verdict(as_text(r["response"]).readable, character.aliases, character.forbidden_identities)[0]
                for r in rows if str(r.get("id", "")).startswith("id-")]

    mine, other = judged("skippy"), judged("assistant")
    if not mine or not other:
        return {}
    return {"identity": {"false_positive": {"k": sum(other), "n": len(other)},
                         "false_negative": {"k": len(mine) - sum(mine), "n": len(mine)},
                         "source": "identity answers of the pack's example transcripts"}}
