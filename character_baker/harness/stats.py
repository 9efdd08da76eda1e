"""Intervals for the rates and scores we report: Wilson for proportions, a bootstrap over prompts otherwise."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its 95 % interval and how it was computed."""

    value: float | None
    low: float | None
    high: float | None
    n: int  # valid observations (errors excluded)
    successes: float | None  # proportions only: number of 1s
    method: str


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval: well-behaved at 0/n and n/n, where the normal approximation collapses."""
    if n <= 0:
        raise ValueError("wilson interval needs n > 0")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low, high = centre - half, centre + half
    # at 0/n and n/n the bound is exactly 0 or 1; keep float noise (1e-17) out of tables
    return (0.0 if successes == 0 else max(0.0, low)), (1.0 if successes == n else min(1.0, high))


def cluster_bootstrap(
    clusters: Sequence[Sequence[float]], n_boot: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile interval of the pooled mean, resampling whole clusters (all answers to one prompt).

    k sampled answers to one prompt are correlated; resampling prompts, not answers, keeps the
    interval honest about how many independent prompts there really are.
    """
    sums = np.array([float(np.sum(c)) for c in clusters])
    counts = np.array([len(c) for c in clusters], dtype=float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(clusters), size=(n_boot, len(clusters)))
    pooled = sums[idx].sum(axis=1) / np.maximum(counts[idx].sum(axis=1), 1.0)
    low, high = np.percentile(pooled, [2.5, 97.5])
    return float(low), float(high)


def estimate(
    by_prompt: Mapping[str, Sequence[float | None]], proportion: bool, n_boot: int = 2000, seed: int = 0
) -> Estimate:
    """Pooled estimate over prompts (each with one or more epochs); None entries are errors and excluded.

    Proportions with one answer per prompt get a Wilson interval; several answers per prompt, or
    scores, get a bootstrap over prompts.
    """
    clusters = [[float(v) for v in values if v is not None] for values in by_prompt.values()]
    clusters = [c for c in clusters if c]
    n = sum(len(c) for c in clusters)
    if n == 0:
        return Estimate(None, None, None, 0, None, "none")
    total = float(sum(sum(c) for c in clusters))
    value = total / n
    successes = total if proportion else None
    if proportion and all(len(c) == 1 for c in clusters):
        low, high = wilson(int(round(total)), n)
        return Estimate(value, low, high, n, successes, "wilson")
    if len(clusters) == 1:
        return Estimate(value, None, None, n, successes, "none")
    low, high = cluster_bootstrap(clusters, n_boot=n_boot, seed=seed)
    return Estimate(value, low, high, n, successes, "bootstrap-prompts")


def cohen_kappa(a: Sequence[bool], b: Sequence[bool]) -> float | None:
    """Agreement between two binary raters beyond chance; None when undefined (no pairs, or chance = 1)."""
    if len(a) != len(b):
        raise ValueError("kappa needs paired ratings")
    n = len(a)
    if n == 0:
        return None
    x = np.asarray(a, dtype=bool)
    y = np.asarray(b, dtype=bool)
    observed = float(np.mean(x == y))
    pa, pb = float(np.mean(x)), float(np.mean(y))
    chance = pa * pb + (1 - pa) * (1 - pb)
    if chance >= 1.0:
        return None
    return (observed - chance) / (1 - chance)
