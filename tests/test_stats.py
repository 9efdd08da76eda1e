"""Intervals checked against hand computations."""

from __future__ import annotations

import math

import pytest

from character_baker.harness.stats import cluster_bootstrap, cohen_kappa, estimate, wilson


def test_wilson_matches_the_hand_computation() -> None:
    # 7/19, z = 1.96: centre (p + z²/2n)/(1 + z²/n), half-width z·sqrt(p(1-p)/n + z²/4n²)/(1 + z²/n)
    n, k, z = 19, 7, 1.959963984540054
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low, high = wilson(k, n)
    assert (low, high) == pytest.approx((centre - half, centre + half))
    assert (round(low, 3), round(high, 3)) == (0.191, 0.590)  # the research log's 19-59 %
    assert wilson(0, 10)[0] == pytest.approx(0.0, abs=1e-12) and wilson(10, 10)[1] == pytest.approx(1.0)
    assert wilson(0, 10)[1] == pytest.approx(0.2775, abs=1e-4)


def test_estimate_excludes_errors_and_counts_successes() -> None:
    est = estimate({"a": [1], "b": [0], "c": [None], "d": [1]}, proportion=True)
    assert (est.value, est.n, est.successes, est.method) == (pytest.approx(2 / 3), 3, 2, "wilson")
    assert (est.low, est.high) == pytest.approx(wilson(2, 3))
    assert estimate({"a": [None]}, proportion=True).value is None


def test_epochs_use_a_bootstrap_over_prompts_and_are_wider_than_naive() -> None:
    # 10 prompts x 4 epochs: each prompt is all-1 or all-0, so the 40 answers carry only 10 prompts of evidence
    clusters = {f"p{i}": [1.0] * 4 if i < 5 else [0.0] * 4 for i in range(10)}
    est = estimate(clusters, proportion=True)
    assert est.method == "bootstrap-prompts" and est.n == 40 and est.value == 0.5
    naive_low, naive_high = wilson(20, 40)
    assert est.high - est.low > naive_high - naive_low
    assert cluster_bootstrap(list(clusters.values()), seed=1) == cluster_bootstrap(list(clusters.values()), seed=1)


def test_scores_use_the_bootstrap() -> None:
    est = estimate({f"p{i}": [float(i % 11)] for i in range(30)}, proportion=False)
    assert est.method == "bootstrap-prompts" and est.successes is None
    assert est.low < est.value < est.high


def test_cohen_kappa_hand_values() -> None:
    a = [True, True, False, False, True, False, True, False]
    b = [True, False, False, False, True, False, True, True]
    # observed 6/8; pa = pb = 0.5 -> chance 0.5 -> kappa 0.5
    assert cohen_kappa(a, b) == pytest.approx(0.5)
    assert cohen_kappa(a, a) == pytest.approx(1.0)
    assert cohen_kappa([True, True], [True, True]) is None
