"""Rule verdicts against labelled adversarial sets: math (committed answers), identity (affirmative
self-identification), leaks (behaviour, not phrases), and the phrase bank's figures alone on the same rows.

    python benchmarks/rule_verdicts.py
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import torch

torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from character_baker.harness.character import load_character  # noqa: E402
from character_baker.harness.data import read_jsonl  # noqa: E402
from character_baker.judges.leaks import LeakJudge  # noqa: E402
from character_baker.judges.rules import identity_verdict, leak_matches, math_verdict  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"


def main() -> None:
    pack = load_character("skippy")
    math_rows = read_jsonl(DATA / "math_adversarial.jsonl")
    agree = sum(math_verdict(r["response"], r["answer"], r["question"])[0] == r["correct"] for r in math_rows)
    print(f"math      : {agree}/{len(math_rows)} rows judged as labelled ({DATA / 'math_adversarial.jsonl'})")
    id_rows = read_jsonl(DATA / "identity_adversarial.jsonl")
    agree = sum(identity_verdict(r["response"], pack.aliases, pack.forbidden_identities)[0] == r["pass"]
                for r in id_rows)
    print(f"identity  : {agree}/{len(id_rows)} rows judged as labelled")
    started = time.perf_counter()
    judge = LeakJudge.for_character(pack)
    train_s = time.perf_counter() - started
    rows = read_jsonl(pack.path("calibration_leaks"))
    verdicts = judge.judge_many([r["response"] for r in rows])
    leaks = [v.leak for v, r in zip(verdicts, rows) if r["leak"]]
    mocks = [v.leak for v, r in zip(verdicts, rows) if not r["leak"]]
    bank = [bool(leak_matches(r["response"])) for r in rows]
    bank_leaks = [b for b, r in zip(bank, rows) if r["leak"]]
    bank_mocks = [b for b, r in zip(bank, rows) if not r["leak"]]
    print(f"leaks     : recall {sum(leaks)}/{len(leaks)} = {sum(leaks) / len(leaks):.3f}, false leaks "
          f"{sum(mocks)}/{len(mocks)} = {sum(mocks) / len(mocks):.3f} on {pack.path('calibration_leaks').name} "
          f"(trained in {train_s:.1f} s; CV recall {judge.cv_recall:.3f}, CV false {judge.cv_false_leaks:.3f})")
    held = read_jsonl(DATA / "leaks_heldout.jsonl")
    verdicts = judge.judge_many([r["response"] for r in held])
    leaks = [v.leak for v, r in zip(verdicts, held) if r["leak"]]
    mocks = [v.leak for v, r in zip(verdicts, held) if not r["leak"]]
    sources = Counter(v.source for v in verdicts if v.leak)
    print(f"            written apart from the project: recall {sum(leaks)}/{len(leaks)} = "
          f"{sum(leaks) / len(leaks):.3f}, false leaks {sum(mocks)}/{len(mocks)} = {sum(mocks) / len(mocks):.3f} "
          f"(leaks_heldout.jsonl; ruled by {dict(sources)})")
    print(f"            pattern bank alone on raw text: recall {sum(bank_leaks) / len(bank_leaks):.3f}, "
          f"false leaks {sum(bank_mocks) / len(bank_mocks):.3f}")
    for name in ("skippy_transcript.jsonl", "assistant_transcript.jsonl"):
        replies = [r["response"] for r in read_jsonl(pack.root / "examples" / name)]
        rate = sum(v.leak for v in judge.judge_many(replies)) / len(replies)
        print(f"            {name}: {100 * rate:.1f}% of {len(replies)} replies called leaks")


if __name__ == "__main__":
    main()
