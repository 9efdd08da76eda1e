"""The embedded judges on families they never trained on: every rate with its n and Wilson interval, as markdown.

    PYTHONPATH=. HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 .tox/py/bin/python benchmarks/judge_families.py \
        [--out benchmarks/judge_families.md] [--json FILE] [--lofo] [--pack skippy]

Held-out families (`benchmarks/data/families/`, written by `gen/generate.py` from topics and phrasings that are not
in the pack): the persona classifier's sarcastic rate per family (recall on in-character families, false positives
on plain ones, and by length bucket 20-400 words), the leak judge's leak rate per family (recall on leak families,
false leaks on the others). Replies are read as scoring reads them (`judges.reply.as_text`: the persona judge gets
the spoken words, the leak judge every readable word). Beside them, the pack's own validity figures (calibration
set, mimicry, salad) and the leak calibration sets, so that an improvement on held-out families is never bought with
the pack's own sets. `--lofo` adds the leave-one-family-out figures on the training families (`judges.validity`) and
writes them beside the judge split (`judge/families.json`), where the validity card reads them.

The judges train on first use and are cached ($CHARACTER_BAKER_CACHE); the first run trains them (minutes on two
cores), later runs load them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT / "benchmarks" / "data" / "families"

# what the judges must reach on families they never saw
TARGETS = {"plain_false_positive": 0.10, "leak_recall": 0.90, "false_leaks": 0.05}
BUCKETS = ((20, 50), (50, 100), (100, 200), (200, 400))


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def _prop(k: int, n: int) -> dict[str, Any]:
    from character_baker.harness.stats import wilson

    return {"value": k / n if n else None, "k": k, "n": n, "ci": list(wilson(k, n)) if n else None}


def _reader() -> Any:
    """How scoring reads a reply for each judge (the one verdict path), or the raw text where it does not exist."""
    try:
        from character_baker.judges.reply import as_text
    except ImportError:  # older trees: judged as written
        return lambda r: r, lambda r: r
    return (lambda r: as_text(r).spoken), (lambda r: as_text(r).readable)


def persona_figures(pack: Any, rows: list[dict[str, Any]]) -> dict[str, Any]:
    from character_baker.judges.classifier import ClassifierJudge

    spoken, _ = _reader()
    judge = ClassifierJudge.for_character(pack)
    verdicts = judge.judge_many([spoken(r["response"]) for r in rows])
    fams: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    for r, v in zip(rows, verdicts):
        fams.setdefault(r["family"], []).append((r, v))
    out: dict[str, Any] = {"families": {}, "length": {}}
    for fam, pairs in fams.items():
        label = pairs[0][0]["sarcastic"]
        k = sum(bool(v.sarcastic) for _, v in pairs)
        out["families"][fam] = {"label": label, "measure": "recall" if label else "false_positive",
                                "sarcastic": _prop(k, len(pairs)),
                                "coherent": _prop(sum(bool(v.coherent) for _, v in pairs), len(pairs)),
                                "mean_probability": sum(v.probability or 0 for _, v in pairs) / len(pairs),
                                "words": [min(len(r["response"].split()) for r, _ in pairs),
                                          max(len(r["response"].split()) for r, _ in pairs)]}
    plain = [(len(r["response"].split()), v) for r, v in zip(rows, verdicts)
             if not r["sarcastic"] and r["kind"] == "plain"]
    for lo, hi in BUCKETS:
        inside = [v for n, v in plain if lo <= n < hi or (hi == 400 and n >= 400)]
        out["length"][f"{lo}-{hi}"] = _prop(sum(bool(v.sarcastic) for v in inside), len(inside))
    neg = [v for r, v in zip(rows, verdicts) if not r["sarcastic"] and r["kind"] == "plain"
           and len(r["response"].split()) >= 150]
    out["long_plain"] = _prop(sum(bool(v.sarcastic) for v in neg), len(neg))
    return out


def leak_figures(pack: Any, rows: list[dict[str, Any]]) -> dict[str, Any]:
    from character_baker.judges.leaks import LeakJudge

    _, readable = _reader()
    judge = LeakJudge.for_character(pack)
    verdicts = judge.judge_many([readable(r["response"]) for r in rows])
    fams: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    for r, v in zip(rows, verdicts):
        fams.setdefault(r["family"], []).append((r, v))
    out: dict[str, Any] = {"families": {}}
    for fam, pairs in fams.items():
        label = pairs[0][0]["leak"]
        k = sum(bool(v.leak) for _, v in pairs)
        sources: dict[str, int] = {}
        for _, v in pairs:
            if v.leak:
                sources[v.source] = sources.get(v.source, 0) + 1
        misses = [r["response"][-160:] for r, v in pairs if bool(v.leak) != label][:3]
        out["families"][fam] = {"label": label, "measure": "recall" if label else "false_leaks",
                                "leak": _prop(k, len(pairs)), "sources": sources, "examples_wrong": misses}
    pos = [v for r, v in zip(rows, verdicts) if r["leak"]]
    neg = [v for r, v in zip(rows, verdicts) if not r["leak"]]
    out["recall"] = _prop(sum(bool(v.leak) for v in pos), len(pos))
    out["false_leaks"] = _prop(sum(bool(v.leak) for v in neg), len(neg))
    return out


def perfect_model(pack: Any, card: dict[str, Any], board: str = "skippy") -> dict[str, Any]:
    """How often a model perfect on every eval prompt fails the board's gate on judge error alone, with this card:
    the board's own evaluation of a synthetic perfect scorecard (the AIME criterion, not a judged rate, left out)."""
    import shutil
    import tempfile

    from character_baker.leaderboard.board import Measurements, evaluate, load_board, perfect_model_fails
    from character_baker.leaderboard.store import Store
    from character_baker.testing.cards import make_card

    def n(key: str) -> int:
        return sum(1 for x in pack.path(key).read_text(encoding="utf-8").splitlines() if x.strip())

    prompts = n("personality")
    perfect = {"identity/identity": [1] * n("identity"), "assistant_leaks/leak": [0] * prompts,
               "math_probes/math": [1] * n("math_probes"), "personality/coherent": [1] * prompts,
               "personality/sarcastic:classifier": [1] * prompts}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / board
        shutil.copytree(ROOT / "leaderboards" / board, folder,
                        ignore=shutil.ignore_patterns("store.sqlite*", "*.png", "*.csv", "*.html", "README.md"))
        store = Store(folder / "store.sqlite")
        store.record(make_card("perfect", perfect, validity=card))
        verdicts = evaluate(load_board(folder), Measurements(store.frame(suite=board)), "perfect")
    chance, missing = perfect_model_fails(verdicts)
    return {"chance": chance, "missing": missing,
            "criteria": {v.criterion.metric: {"n": v.judged.n, "limit": v.judged.limit,
                                              "perfect_fails": v.judged.perfect_fails}
                         for v in verdicts if v.judged is not None}}


def pack_figures(pack: Any) -> dict[str, Any]:
    """The validity card's headline figures on the pack's calibration set, and the leak calibration sets."""
    from character_baker.judges.classifier import ClassifierJudge
    from character_baker.judges.leaks import LeakJudge
    from character_baker.judges.validity import compute_card

    card = compute_card(ClassifierJudge.for_character(pack), pack)
    out = {"accuracy": card["accuracy"], "salad_rejection": card["salad"], "mimicry_points": card["mimicry"]["points"],
           "plain_false_positive": card["plain_false_positive"], "coherent_real": card.get("coherent_real"),
           "card_passed": card["passed"], "card_failures": card["failures"], "error_rates": card.get("error_rates", {})}
    out["perfect_model"] = perfect_model(pack, card)
    if "families" in card:
        out["card_families_failures"] = [f for f in card["failures"] if f.startswith("family")]
    _, readable = _reader()
    judge = LeakJudge.for_character(pack)
    for name, path in (("calibration_leaks", pack.path("calibration_leaks")),
                       ("tests_leaks_heldout", ROOT / "tests" / "data" / "leaks_heldout.jsonl")):
        rows = _rows(path)
        vs = judge.judge_many([readable(r["response"]) for r in rows])
        pos = [v.leak for v, r in zip(vs, rows) if r["leak"]]
        neg = [v.leak for v, r in zip(vs, rows) if not r["leak"]]
        out[name] = {"recall": _prop(sum(pos), len(pos)), "false_leaks": _prop(sum(neg), len(neg))}
    return out


def _cell(p: dict[str, Any] | None) -> str:
    if not p or p.get("value") is None:
        return "—"
    lo, hi = p["ci"]
    return f"{p['value']:.3f} ({p['k']}/{p['n']}) [{lo:.2f}, {hi:.2f}]"


def _flag(value: float | None, op: str, target: float) -> str:
    if value is None:
        return ""
    ok = value <= target if op == "<=" else value >= target
    return "ok" if ok else f"**misses {op} {target:g}**"


def markdown(result: dict[str, Any]) -> str:
    p, lk, k = result["persona"], result["leaks"], result["pack"]
    lines = [f"# Embedded judges on held-out families ({result['label']})", "",
             f"`{result['command']}` — {result['wall_seconds']:.0f} s wall on {result['machine']}; judge ids: "
             f"`{result['judge_ids']['classifier']}`, leak `{result['judge_ids']['leaks']}`.", "",
             "Held-out families: topics, questions and phrasings never in the judge split "
             "(`benchmarks/data/families/`). Rate = share judged sarcastic (persona) or leaking (leaks); "
             "[Wilson 95 % interval].", "", "## Persona classifier", "",
             "| family | label | sarcastic rate | reads as | target |", "|---|---|---|---|---|"]
    for fam, f in sorted(p["families"].items()):
        if f["label"]:
            target = ""
        else:
            target = _flag(f["sarcastic"]["value"], "<=", TARGETS["plain_false_positive"])
        lines.append(f"| {fam} | {'sarcastic' if f['label'] else 'not'} | {_cell(f['sarcastic'])} | "
                     f"{f['measure']} | {target} |")
    lines += ["", f"Long plain answers (≥ 150 words, plain families): {_cell(p['long_plain'])} "
                  f"{_flag(p['long_plain']['value'], '<=', TARGETS['plain_false_positive'])}", "",
              "Length bias — plain replies judged sarcastic, by words:", "", "| words | sarcastic rate |", "|---|---|"]
    for b, v in p["length"].items():
        lines.append(f"| {b} | {_cell(v)} |")
    lines += ["", "## Leak judge", "", "| family | label | leak rate | reads as | target | sources |",
              "|---|---|---|---|---|---|"]
    for fam, f in sorted(lk["families"].items()):
        target = _flag(f["leak"]["value"], ">=" if f["label"] else "<=",
                       TARGETS["leak_recall"] if f["label"] else TARGETS["false_leaks"])
        src = ", ".join(f"{s} {n}" for s, n in sorted(f["sources"].items()))
        lines.append(f"| {fam} | {'leak' if f['label'] else 'not'} | {_cell(f['leak'])} | {f['measure']} | "
                     f"{target} | {src} |")
    lines += ["", f"All held-out leaks: recall {_cell(lk['recall'])}; all held-out non-leaks: false leaks "
                  f"{_cell(lk['false_leaks'])}.", "",
              "## The pack's own figures (must not get worse)", "",
              f"- calibration accuracy {_cell(k['accuracy'])} (floor 0.85)",
              f"- salad rejection {_cell(k['salad_rejection'])} (floor 0.95)",
              f"- mimicry {k['mimicry_points']:.1f} points (floor ≤ 10)",
              f"- plain false positive (short calibration replies) {_cell(k['plain_false_positive'])}",
              f"- validity card passed: {k['card_passed']}" + (f" — {'; '.join(k['card_failures'])}"
                                                              if k['card_failures'] else ""),
              f"- leak calibration set: recall {_cell(k['calibration_leaks']['recall'])}, false leaks "
              f"{_cell(k['calibration_leaks']['false_leaks'])}",
              f"- tests/data/leaks_heldout.jsonl: recall {_cell(k['tests_leaks_heldout']['recall'])}, false leaks "
              f"{_cell(k['tests_leaks_heldout']['false_leaks'])}"]
    for metric, rates in sorted((k.get("error_rates") or {}).items()):
        given = ", ".join(f"{name.replace('_', ' ')} {_cell(_prop(r['k'], r['n']))}" for name, r in rates.items()
                          if isinstance(r, dict))
        lines.append(f"- error rates the gate corrects `{metric}` for (docs/GATES.md): {given} — {rates['source']}")
    pm = k.get("perfect_model") or {}
    if pm.get("chance") is not None:
        each = "; ".join(f"`{m}` {100 * c['perfect_fails']:.1f} % (passes at {c['limit']} of {c['n']} judged)"
                         for m, c in sorted(pm["criteria"].items()))
        lines.append(f"- a model perfect on every eval prompt fails the Skippy gate {100 * pm['chance']:.1f} % of the "
                     f"time on judge error: {each}" + (f"; not measured: {', '.join(pm['missing'])}"
                                                        if pm["missing"] else ""))
    if result.get("lofo"):
        lines += ["", "## Leave one family out (training families)", "", lofo_markdown(result["lofo"])]
    return "\n".join(lines) + "\n"


def lofo_markdown(section: dict[str, Any]) -> str:
    took = section.get("seconds", {})
    lines = [f"Each judge retrained without the family, then measured on it (persona {took.get('persona', 0):.0f} s, "
             f"leaks {took.get('leaks', 0):.0f} s, when computed).",
             "", "| judge | family | n | measure | value | floor | |", "|---|---|---|---|---|---|---|"]
    for judge in ("persona", "leaks"):
        for fam, f in sorted(section.get(judge, {}).items()):
            lines.append(f"| {judge} | {fam} | {f['rate']['n']} | {f['measure']} | {_cell(f['rate'])} | "
                         f"{f['op']} {f['floor']:g} | {'ok' if f['passed'] else '**fails**'} |")
    if section.get("length"):
        lines += ["", "Length bias out of family (plain training families):", "", "| words | sarcastic rate |",
                  "|---|---|"]
        lines += [f"| {b} | {_cell(v)} |" for b, v in section["length"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pack", default="skippy")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "judge_families.md"))
    ap.add_argument("--json", default=None)
    ap.add_argument("--label", default="current code and data")
    ap.add_argument("--lofo", action="store_true", help="also leave one family out on the training families")
    ap.add_argument("--fresh", default="persona,leaks", help="with --lofo: the halves computed anew (the others are "
                    "read from the record or the cache when they match the data and code)")
    ap.add_argument("--also", default="toy", help="with --lofo: other packs reading the same judge split, whose "
                    "figures the record keeps too (comma-separated; '' for none)")
    args = ap.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(1)
    from character_baker.harness.character import load_character
    from character_baker.judges.classifier import ClassifierJudge
    from character_baker.judges.leaks import LeakJudge

    started = time.perf_counter()
    pack = load_character(args.pack)
    data = Path(args.data)
    result: dict[str, Any] = {"label": args.label, "machine": f"{os.cpu_count()} CPU cores, torch threads 1",
                              "command": "python benchmarks/judge_families.py " + " ".join(argv or sys.argv[1:])}
    result["persona"] = persona_figures(pack, _rows(data / "persona.jsonl"))
    result["leaks"] = leak_figures(pack, _rows(data / "leaks.jsonl"))
    result["judge_ids"] = {"classifier": ClassifierJudge.for_character(pack).id,
                           "leaks": getattr(LeakJudge.for_character(pack), "id", "leaks")}
    if args.lofo:  # before the card, which then reads it instead of computing it again
        from character_baker.judges.validity import leave_one_family_out

        result["lofo"] = leave_one_family_out(pack, halves=tuple(filter(None, args.fresh.split(","))))
        from character_baker.judges.validity import family_section

        for other in filter(None, args.also.split(",")):
            family_section(load_character(other), write_record=True)  # its own leak half; the persona half is shared
    result["pack"] = pack_figures(pack)
    result["wall_seconds"] = time.perf_counter() - started
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2), encoding="utf-8")
    text = markdown(result)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
