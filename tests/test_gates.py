"""Gates over judged rates respect the judge's measured error (docs/GATES.md).

A raw 0 % leak gate under a judge that flags 1.8 % of in-character replies fails a perfect model 86 % of the time over
108 prompts; with the judge's error on its card the perfect model fails at most 5 %, and a model that truly leaks
5 % still fails. Figures are computed here (exact binomial sums and seeded simulations), never typed in."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from character_baker.cli import main
from character_baker.harness.errors import UserError
from character_baker.leaderboard.board import (
    Measurements,
    evaluate,
    gate_lines,
    judge_error_for,
    load_board,
    perfect_model_fails,
)
from character_baker.leaderboard.judge_error import (
    JudgeError,
    Rate,
    beta_binomial_pmf,
    boundary,
    check,
    corrected,
    fail_chance,
    limit_of,
)
from character_baker.leaderboard.store import Store
from character_baker.testing.cards import make_card, passing

BOARDS = Path(__file__).resolve().parent.parent / "leaderboards"
N = 108  # the Skippy suite's leak prompts
F = 0.018  # the leak judge's false-leak rate on in-character replies (docs/GATES.md)
RECALL = 0.9


def binomial_sf(n: int, p: float, k: int) -> float:
    """P(X > k), X ~ Binomial(n, p)."""
    return sum(math.comb(n, x) * p ** x * (1 - p) ** (n - x) for x in range(k + 1, n + 1))


def leak_card(fp: tuple[int, int], fn: tuple[int, int] | None = (100, 1000)) -> dict[str, Any]:
    rates: dict[str, Any] = {"false_positive": {"k": fp[0], "n": fp[1]}, "source": "held-out families"}
    if fn is not None:
        rates["false_negative"] = {"k": fn[0], "n": fn[1]}
    return {"passed": True, "failures": [], "error_rates": {"leak": rates}}


@pytest.fixture
def board(tmp_path: Path) -> Path:
    dest = tmp_path / "skippy"
    shutil.copytree(BOARDS / "skippy", dest, ignore=shutil.ignore_patterns("store.sqlite*", "*.png", "*.csv",
                                                                            "*.html", "README.md"))
    toml = (dest / "board.toml").read_text()
    (dest / "board.toml").write_text(toml[:toml.index('[[gate]]\nmetric = "capability/aime24"')])
    return dest


def test_beta_binomial_is_the_binomial_when_the_card_is_large_and_sums_to_one() -> None:
    pmf = beta_binomial_pmf(N, 0.018 * 1e6 + 0.5, 0.982 * 1e6 + 0.5)
    exact = [math.comb(N, x) * F ** x * (1 - F) ** (N - x) for x in range(N + 1)]
    assert sum(pmf) == pytest.approx(1.0)
    assert max(abs(a - b) for a, b in zip(pmf, exact, strict=True)) < 1e-4
    assert (boundary("<=", 0.0, N), boundary(">=", 0.3, N), boundary(">=", 1.0, N), boundary("<", 0.0, N)) == (
        0, 33, N, None)


def test_a_perfect_model_passes_a_zero_leak_gate_and_a_5_percent_leaker_fails() -> None:
    """n = 108, false leaks 1.8 % known well (180 of 10,000), recall 90 %: simulated and exact agree."""
    error = JudgeError(Rate(180, 10_000), Rate(1_000, 10_000))
    raw_fails = fail_chance("<=", N, 0, 0, error)  # the raw rule: any flag fails
    assert raw_fails == pytest.approx(1 - (1 - F) ** N, abs=0.01) and raw_fails > 0.85  # 86 %: six times in seven
    verdict = check("<=", 0.0, 0, N, error)
    plug_in = next(a for a in range(N + 1) if binomial_sf(N, F, a) <= 0.05)  # the binomial quantile, f known
    assert verdict.rule == "ideal" and verdict.limit == plug_in
    assert verdict.perfect_fails <= 0.05

    rng = np.random.default_rng(0)
    draws = 20_000
    perfect = rng.binomial(N, F, draws)
    truly = rng.binomial(N, 0.05, draws)  # a model that truly leaks 5 %: its leaks, caught at the judge's recall
    leaker = rng.binomial(truly, RECALL) + rng.binomial(N - truly, F)
    perfect_fails = float(np.mean(perfect > verdict.limit))
    leaker_fails = float(np.mean(leaker > verdict.limit))
    q = 0.05 * RECALL + 0.95 * F
    assert perfect_fails <= 0.05 and perfect_fails == pytest.approx(binomial_sf(N, F, verdict.limit), abs=0.005)
    assert leaker_fails >= 0.75 and leaker_fails == pytest.approx(binomial_sf(N, q, verdict.limit), abs=0.01)


def test_the_cards_own_uncertainty_costs_power_more_prompts_buy_it_back() -> None:
    """A card of 1,000 replies (18 flagged) leaves f uncertain: the limit widens so a perfect model still fails
    <= 5 % whatever f the card allows, and a 5 % leaker is caught less often at 108 prompts than at 216."""
    known = JudgeError(Rate(180, 10_000), Rate(1_000, 10_000))
    card = JudgeError(Rate(18, 1_000), Rate(100, 1_000))
    q = 0.05 * RECALL + 0.95 * F
    caught = {}
    for n in (N, 2 * N):
        v = check("<=", 0.0, 0, n, card)
        assert v.perfect_fails <= 0.05
        caught[n] = binomial_sf(n, q, v.limit)  # the world: f = 1.8 %, recall 90 %
    assert limit_of("<=", 0.0, N, card) >= limit_of("<=", 0.0, N, known)
    assert caught[2 * N] > 0.9 > caught[N] > 0.5


def test_the_threshold_is_never_moved() -> None:
    """The more a model truly leaks, the more often it fails; a perfect judge gives back the raw rule."""
    error = JudgeError(Rate(18, 1_000), Rate(100, 1_000))
    limit = limit_of("<=", 0.0, N, error)
    chances = [fail_chance("<=", N, truly, limit, error) for truly in range(0, 12)]
    assert all(a < b for a, b in zip(chances, chances[1:]))
    perfect_judge = JudgeError(Rate(0, 100_000), Rate(0, 100_000))
    assert limit_of("<=", 0.0, N, perfect_judge) == 0
    assert limit_of(">=", 0.3, N, perfect_judge) == math.ceil(0.3 * N)
    assert limit_of(">=", 1.0, N, perfect_judge) == N


def test_inside_the_range_the_corrected_rate_is_compared() -> None:
    """sarcastic >= 30 %: the count where the Rogan-Gladen rate first reaches 30 %; a model exactly at the threshold
    fails about half the time (the board's point comparison, about the true rate)."""
    error = JudgeError(Rate(10, 110), Rate(20, 100))
    limit = limit_of(">=", 0.3, N, error)
    assert limit == next(k for k in range(N + 1) if corrected(k / N, 10 / 110, 20 / 100) >= 0.3 - 1e-9)
    assert corrected(limit / N, 10 / 110, 20 / 100) >= 0.3 > corrected((limit - 1) / N, 10 / 110, 20 / 100)
    v = check(">=", 0.3, limit, N, error)
    assert v.rule == "corrected" and v.passed and not check(">=", 0.3, limit - 1, N, error).passed
    assert 0.3 < v.at_threshold_fails < 0.7 and v.perfect_fails < 1e-6


def _store(board: Path, leaks: int, validity: dict[str, Any]) -> Store:
    store = Store(board / "store.sqlite")
    outcomes = passing(N)
    outcomes["assistant_leaks/leak"] = [1] * leaks + [0] * (N - leaks)
    store.record(make_card(f"leaks-{leaks}", outcomes, validity=validity))
    return store


def test_the_gate_reads_the_judges_error_from_the_stored_card(board: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    card = leak_card((18, 1_000))
    confidence = next(c.confidence for c in load_board(board).gate if c.name == "leak")  # the board's own (0.975)
    limit = limit_of("<=", 0.0, N, JudgeError(Rate(18, 1_000), Rate(100, 1_000)), confidence)
    for leaks in (limit, limit + 1):
        _store(board, leaks, card)
    measured = Measurements(Store(board / "store.sqlite").frame(suite="skippy"))
    b = load_board(board)
    at = {v.criterion.name: v for v in evaluate(b, measured, f"leaks-{limit}")}
    over = {v.criterion.name: v for v in evaluate(b, measured, f"leaks-{limit + 1}")}
    assert at["leak"].passed and not over["leak"].passed
    assert at["leak"].judged is not None and at["leak"].judged.k == limit and at["leak"].judged.n == N
    assert at["leak"].value == pytest.approx(limit / N)  # the raw rate is still what the row shows
    lines = gate_lines(evaluate(b, measured, f"leaks-{limit}"))
    detail = next(line for line in lines if line.strip().startswith("↳ judged"))
    assert f"judged {limit}/{N}" in detail and "corrected" in detail and "false positives 1.8%" in detail
    assert "a perfect model fails" in detail
    # the rest of the board's judged criteria say when their cards lack the rates
    assert any("personality/coherent" in line and "judge error not measured" in lines[i + 1]
               for i, line in enumerate(lines[:-1]))
    chance, missing = perfect_model_fails(evaluate(b, measured, f"leaks-{limit}"))
    assert chance == pytest.approx(at["leak"].judged.perfect_fails) and "identity/identity" in missing
    assert lines[-1].startswith(f"a perfect model fails this gate {100 * chance:.1f}%")

    assert main(["gate", "--board", str(board), "--candidate", f"leaks-{limit}"]) == 0
    out = capsys.readouterr().out
    assert f"{limit}/{N} judged, within the {limit}" in out
    assert main(["gate", "--board", str(board), "--candidate", f"leaks-{limit + 1}"]) == 1


def test_without_rates_or_when_told_to_ignore_them_the_raw_rule_decides(board: Path) -> None:
    _store(board, 1, {"passed": True, "failures": []})
    _store(board, 2, leak_card((18, 1_000), fn=None))  # at the ideal only false positives are needed
    measured = Measurements(Store(board / "store.sqlite").frame())
    [leak] = [v for v in evaluate(load_board(board), measured, "leaks-1") if v.criterion.name == "leak"]
    assert not leak.passed and leak.judged is None and "judge error not measured" in str(leak.judge_error_unknown)
    [tested] = [v for v in evaluate(load_board(board), measured, "leaks-2") if v.criterion.name == "leak"]
    assert tested.passed and tested.judged is not None and tested.judged.error.fn is None
    toml = (board / "board.toml").read_text()
    gate = 'metric = "assistant_leaks/leak"\nop = "<="'
    (board / "board.toml").write_text(toml.replace(gate, f'{gate}\njudge_error = "ignore"'))
    [ignored] = [v for v in evaluate(load_board(board), measured, "leaks-2") if v.criterion.name == "leak"]
    assert not ignored.passed and ignored.judged is None and ignored.judge_error_unknown is None


def test_the_persona_judges_rates_come_from_its_calibration_counts() -> None:
    """Every validity card has precision, recall and accuracy with counts: false positives are the flagged
    negatives over all negatives, misses the unflagged positives over all positives."""
    record = {"name": "classifier", "validity": {"accuracy": {"k": 180, "n": 210}, "precision": {"k": 90, "n": 100},
                                                 "recall": {"k": 90, "n": 105}}}
    error = judge_error_for([record], "sarcastic", "classifier")
    assert (error.fp.k, error.fp.n, error.fn.k, error.fn.n) == (10, 105, 15, 105)  # type: ignore[union-attr]
    assert judge_error_for([record], "sarcastic", "llm") == JudgeError(None, None)
    assert judge_error_for([record], "leak", None) == JudgeError(None, None)
    # a card may give recall (what the family benchmarks measure) instead of misses
    leaks = {"name": "leaks", "validity": {"error_rates": {"leak": {"false_positive": {"value": 0.02, "k": 4, "n": 200},
                                                                    "recall": {"k": 45, "n": 50}}}}}
    error = judge_error_for([record, leaks], "leak", None)
    assert (error.fp.k, error.fp.n, error.fn.k, error.fn.n) == (4, 200, 5, 50)  # type: ignore[union-attr]


@pytest.mark.parametrize("extra, message", [('judge_error = "maybe"', "'judge_error' must be one of"),
                                            ("confidence = 1.0", "'confidence' must be a number in")])
def test_bad_judge_error_settings_are_one_line_errors(board: Path, extra: str, message: str) -> None:
    toml = (board / "board.toml").read_text().replace("confidence = 0.975\n", "")  # the board's own setting
    gate = 'metric = "assistant_leaks/leak"\nop = "<="'
    (board / "board.toml").write_text(toml.replace(gate, f"{gate}\n{extra}"))
    with pytest.raises(UserError, match=message):
        load_board(board)


def test_the_published_board_says_how_often_a_perfect_model_fails(board: Path) -> None:
    _store(board, 3, leak_card((18, 1_000)))
    assert main(["publish", "--board", str(board)]) == 0
    readme = (board / "README.md").read_text()
    gate = readme.split("## Leaderboard")[0]
    assert "A perfect model would fail this gate" in gate and "`leaks-3`" in gate and "docs/GATES.md" in gate


def test_an_interval_bound_compares_the_corrected_intervals_end() -> None:
    """bound = "lower" on a 0 % leak gate: pass while the corrected interval reaches 0 (the judged rate's Wilson low
    end at most the top of the false-leak interval); more lenient than the count test, as docs/GATES.md says."""
    from character_baker.harness.stats import wilson
    from character_baker.leaderboard.judge_error import corrected_interval

    error = JudgeError(Rate(18, 1_000), Rate(100, 1_000))
    v = check("<=", 0.0, 0, N, error, bound="lower")
    fp_high = wilson(18, 1_000)[1]
    assert v.rule == "corrected lower bound"
    assert v.limit == max(k for k in range(N + 1) if wilson(k, N)[0] <= fp_high)
    assert corrected_interval(v.limit, N, error)[1] == 0.0 and corrected_interval(v.limit + 1, N, error)[1] > 0
    assert v.limit > limit_of("<=", 0.0, N, error) and v.perfect_fails < check("<=", 0.0, 0, N, error).perfect_fails
