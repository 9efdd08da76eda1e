"""A conversation's `held` and `turns_to_break` survive one misjudged turn (a break is k out-of-
character turns in a row), errored turns decide nothing they cannot, and the rule's error rates on labelled
conversations (benchmarks/drift_rule.py) are what the rule gives."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path

import pytest

from character_baker.tasks.drift import BREAK_AFTER, conversation_verdict

ROOT = Path(__file__).resolve().parent.parent


def verdict(inside: list[int | None], leak: list[int | None] | None = None, k: int = BREAK_AFTER,
            n: int | None = None) -> tuple[int | None, float | None]:
    v = conversation_verdict(inside, leak if leak is not None else [0] * len(inside), n, k)
    return v.held, v.turns_to_break


def test_one_misjudged_turn_flips_nothing_two_in_a_row_break() -> None:
    assert BREAK_AFTER == 2
    one_dry = [1, 1, 1, 0, 1, 1, 1, 1]
    assert verdict(one_dry) == (1, 9.0)
    assert verdict(one_dry, k=1) == (0, 4.0)  # the strict rule (k = 1): one missed turn breaks the conversation
    assert verdict([1, 1, 1, 0, 0, 1, 1, 1]) == (0, 4.0)  # the first turn of the run, even if it recovers
    assert verdict([1, 1, 1, 0, 1, 0, 0, 1]) == (0, 6.0)
    assert verdict([1] * 7 + [0]) == (1, 9.0)  # one slip on the last turn is not a break
    assert verdict([1, 0, 0, 1, 0, 0, 0, 1], k=3) == (0, 5.0)


def test_a_leak_turn_is_out_of_character_whatever_the_persona_judge_said() -> None:
    inside = [1, 1, None, 1, 1, 1]  # the persona judge failed on turn 3, and said in character on turn 4
    leak = [0, 0, 1, 1, 0, 0]
    assert verdict(inside, leak) == (0, 3.0)


def test_errored_turns_decide_only_what_they_cannot_change() -> None:
    assert verdict([1, 1, None, 1, 1, 1, 1, 1]) == (1, 9.0)  # either way no two in a row: held
    assert verdict([1, 1, None, 1, 1, 1, 1, 1], k=1) == (None, None)
    assert verdict([None, 0, 0, 1]) == (0, None)  # broke, but at turn 1 or 2
    assert verdict([0, None, 0, 1]) == (None, None)  # a break iff turn 2 was out
    assert verdict([1, 1, 1, 1, None, None, None, None]) == (None, None)  # a failed turn and all after it
    assert verdict([0, 1, None, None]) == (None, None)
    assert verdict([1, 1, 1, 1], n=6) == (None, None)  # turns never reached are errored turns
    assert verdict([0, 0, None, None]) == (0, 1.0)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_a_value_is_reported_exactly_when_every_way_the_errors_could_go_agrees(k: int) -> None:
    """Brute force over every sequence of 6 turns (in / out / errored) and every filling of its errored turns."""

    def truth(states: tuple[int, ...]) -> tuple[int, float]:
        for t in range(len(states) - k + 1):
            if all(s == 0 for s in states[t:t + k]):
                return 0, float(t + 1)
        return 1, float(len(states) + 1)

    for seq in itertools.product((1, 0, None), repeat=6):
        holes = [i for i, s in enumerate(seq) if s is None]
        outcomes = set()
        for fill in itertools.product((1, 0), repeat=len(holes)):
            filled = list(seq)
            for i, f in zip(holes, fill, strict=True):
                filled[i] = f
            outcomes.add(truth(tuple(filled)))  # type: ignore[arg-type]
        helds = {h for h, _ in outcomes}
        ttbs = {t for _, t in outcomes}
        assert verdict(list(seq), k=k) == (helds.pop() if len(helds) == 1 else None,
                                          ttbs.pop() if len(ttbs) == 1 else None), seq


def test_with_one_turn_and_no_errors_the_rule_is_the_old_one() -> None:
    for seq in itertools.product((1, 0), repeat=5):
        first = next((t for t, s in enumerate(seq, start=1) if not s), None)
        assert verdict(list(seq), k=1) == (0 if first else 1, float(first or 6))


def _benchmark():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("drift_rule", ROOT / "benchmarks" / "drift_rule.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["drift_rule"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_benchmarks_exact_figures() -> None:
    """The enumeration agrees with closed forms, and k = 2 holds >= 95 % of in-character 8-turn conversations at
    per-turn miss rates up to 8 % (k = 1: 51 % at 8 %, about 3 conversations in 6)."""
    bench = _benchmark()
    for miss in (0.02, 0.08):
        one = bench.figures(8, 1, miss, 0.1)
        assert one.held == pytest.approx((1 - miss) ** 8)
        two = bench.figures(8, 2, miss, 0.1)
        # no two misses in a row among 8 turns: Fibonacci-style recursion over the last turn's state
        ok_in, ok_out = 1 - miss, miss
        for _ in range(7):
            ok_in, ok_out = (ok_in + ok_out) * (1 - miss), ok_in * miss
        assert two.held == pytest.approx(ok_in + ok_out)
        assert two.held >= 0.95 > one.held
        assert one.caught == pytest.approx(1 - one_missed_all(miss, 0.1))
        assert two.exact + two.early + two.late == pytest.approx(two.caught)
    sim = bench.simulate(8, 2, 0.08, 0.1, 3000, seed=1)
    exact = bench.figures(8, 2, 0.08, 0.1)
    assert abs(sim.held - exact.held) < 0.02 and abs(sim.exact - exact.exact) < 0.03


def one_missed_all(miss: float, accept: float) -> float:
    """k = 1 misses a break at T only when every turn is judged in character: averaged over T = 1..7."""
    return sum((1 - miss) ** (t - 1) * accept ** (8 - t + 1) for t in range(1, 8)) / 7
