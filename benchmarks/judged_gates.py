"""How the judge-error gate (docs/GATES.md) behaves on a 0 % leak criterion, computed exactly.

For a judge with false-leak rate f on in-character replies (measured on a card of `card` replies) and recall r,
over n prompts:

    limit         the most judged leaks that pass (the rule at the ideal)
    perfect raw   the chance a perfect model fails the raw rule (any judged leak fails): 1 - (1 - f)^n
    perfect       the chance a perfect model fails the rule, f drawn from the card's posterior (what the gate reports)
    perfect@f     the same with f exactly the true 1.8 %
    leaks 2 % / 5 %   the chance a model that truly leaks that much fails (its judged rate: f + p (r - f))

`--measured` adds the embedded leak judge's own out-of-fold figures (false leaks and recall on the pack's judge
split, 5-fold): the counts a card would carry for it.

    .tox/py/bin/python benchmarks/judged_gates.py [--measured]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from character_baker.leaderboard.judge_error import JudgeError, Rate, fail_chance, limit_of  # noqa: E402

F = 0.018


def binomial_sf(n: int, p: float, k: int | None) -> float:
    """P(X > k), X ~ Binomial(n, p); k None: every count fails."""
    if k is None:
        return 1.0
    return sum(math.comb(n, x) * p ** x * (1 - p) ** (n - x) for x in range(k + 1, n + 1))


def row(f_k: int, f_n: int, recall: float, n: int, confidence: float = 0.95) -> str:
    f = f_k / f_n
    error = JudgeError(Rate(f_k, f_n), Rate(round((1 - recall) * 1000), 1000))
    limit = limit_of("<=", 0.0, n, error, confidence)
    cells = [f"{f_k}/{f_n}", f"{100 * recall:.0f}%", str(n), str(limit), f"{100 * (1 - (1 - f) ** n):.1f}%",
             f"{100 * fail_chance('<=', n, 0, limit, error):.1f}%", f"{100 * binomial_sf(n, f, limit):.1f}%"]
    for p in (0.02, 0.05):
        cells.append(f"{100 * binomial_sf(n, f + p * (recall - f), limit):.1f}%")
    return " | ".join(f"{c:>10}" for c in cells)


def measured() -> tuple[int, int, float]:
    """(false leaks, in-character replies, recall) of the embedded leak judge, out of fold on its judge split."""
    import torch

    from character_baker.harness.character import load_character
    from character_baker.judges.leaks import LeakJudge, _leak_rows, _persona_rows

    torch.set_num_threads(1)
    pack = load_character("skippy")
    judge = LeakJudge.for_character(pack)
    negatives = sum(not y for _, y in _leak_rows(pack) + _persona_rows(pack))
    return round(judge.cv_false_leaks * negatives), negatives, judge.cv_recall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--measured", action="store_true")
    args = ap.parse_args()
    header = ["card f", "recall", "n", "limit", "perf. raw", "perfect", "perfect@f", "leaks 2%", "leaks 5%"]
    print(" | ".join(f"{h:>10}" for h in header))
    cards = [(4, 222), (18, 1000), (180, 10_000)]
    for recall in (0.72, 0.9):
        for f_k, f_n in cards:
            for n in (108, 216, 324):
                print(row(f_k, f_n, recall, n))
    print("confidence 0.975 (two criteria at the ideal sharing a 5 % budget):")
    for n in (108, 216):
        print(row(18, 1000, 0.9, n, 0.975))
    if args.measured:
        k, n_neg, recall = measured()
        print(f"embedded leak judge, out of fold: false leaks {k}/{n_neg} = {100 * k / n_neg:.2f}%, "
              f"recall {100 * recall:.1f}%")
        for n in (108, 216):
            print(row(k, n_neg, recall, n))


if __name__ == "__main__":
    main()
