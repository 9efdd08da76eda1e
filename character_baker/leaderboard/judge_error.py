"""Gates over judged rates that respect the judge's measured error (the rule and its reasons: docs/GATES.md).

A judge calls a reply 1 (a leak, sarcastic, coherent) with probability 1 - fn when it truly is and fp when it truly
is not; both rates come from the judge's validity card as counts (k errors of n labelled replies). A criterion
"rate <= t" over n replies claims that at most b* = floor(t n) replies truly are 1 (">= t": at least ceil(t n)).

- **At the ideal** (b* = 0 for lower-is-better, b* = n for higher-is-better: "no leak at all" at this n) no judge
  can show the claim, and comparing any estimate with the threshold fails a perfect model about half the time or
  more (the raw rate under a 1.8 % false-leak judge: 86 % at n = 108). The criterion passes while the judged count
  is within what a perfect model produces with probability >= `confidence`: the count's quantile under
  FP ~ Binomial(n, fp) (or TP ~ Binomial(n, 1 - fn)), the card's rate integrated over its Jeffreys posterior
  Beta(k + 1/2, n - k + 1/2) (so the count is beta-binomial: the card's own uncertainty widens it). A perfect model
  then fails at most 1 - confidence of the time; a model truly over the threshold fails once the sample shows more
  flags than judge error explains.
- **Anywhere else** the criterion compares the rate corrected for judge error (Rogan-Gladen,
  (q - fp) / (1 - fp - fn)) with the threshold: the board's point comparison, made about the true rate instead of
  the judged one (a model exactly at the threshold passes about half the time, as before). bound = "lower" /
  "upper" compares the corrected interval's bound instead.

The threshold on the true rate is never moved. With no judge error (a perfect judge measured on a large card) both
rules reduce to the raw comparison. Every decision is a judged-count limit, so the chance that a model with any
true count fails is exact: `fail_chance`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ..harness.stats import wilson

LOWER_OPS = ("<=", "<")
HIGHER_OPS = (">=", ">")
EPS = 1e-9


@dataclass(frozen=True)
class Rate:
    """A judge error rate measured on its card: k errors in n labelled replies, and where it was measured."""

    k: int
    n: int
    source: str = ""

    @property
    def value(self) -> float:
        return self.k / self.n

    @property
    def ci(self) -> tuple[float, float]:
        return wilson(self.k, self.n)

    @property
    def prior(self) -> tuple[float, float]:
        """Beta(k + 1/2, n - k + 1/2): the Jeffreys posterior of the rate."""
        return self.k + 0.5, self.n - self.k + 0.5


@dataclass(frozen=True)
class JudgeError:
    """fp = P(judged 1 | truly 0), fn = P(judged 0 | truly 1) for one metric; either may be unmeasured."""

    fp: Rate | None
    fn: Rate | None


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def beta_binomial_pmf(n: int, a: float, b: float) -> list[float]:
    """P(X = x), x = 0..n, for X ~ Binomial(n, p) with p ~ Beta(a, b)."""
    if n <= 0:
        return [1.0]
    base = _log_beta(a, b)
    pmf = [math.exp(math.lgamma(n + 1) - math.lgamma(x + 1) - math.lgamma(n - x + 1)
                    + _log_beta(x + a, n - x + b) - base) for x in range(n + 1)]
    total = sum(pmf)
    return [p / total for p in pmf]


def _convolve(a: list[float], b: list[float]) -> list[float]:
    out = [0.0] * (len(a) + len(b) - 1)
    for i, x in enumerate(a):
        if x:
            for j, y in enumerate(b):
                out[i + j] += x * y
    return out


@lru_cache(maxsize=4096)
def judged_count_pmf(n: int, truly: int, fp: Rate | None, fn: Rate | None) -> tuple[float, ...]:
    """The judged count's distribution when `truly` of n replies are 1: TP over them (rate 1 - fn) plus FP over the
    rest (rate fp), each rate integrated over its posterior. An unmeasured rate counts as 0 (`missing_rates` says
    when that matters)."""
    tp = beta_binomial_pmf(truly, fn.n - fn.k + 0.5, fn.k + 0.5) if fn is not None else [0.0] * truly + [1.0]
    fpos = beta_binomial_pmf(n - truly, *fp.prior) if fp is not None else [1.0] + [0.0] * (n - truly)
    return tuple(_convolve(tp, fpos))


def boundary(op: str, threshold: float, n: int) -> int | None:
    """b*: the most (lower-is-better ops) or fewest (higher-is-better) truly-1 replies of n the criterion allows;
    None when no count satisfies it ("< 0", "> 1")."""
    tn = threshold * n
    if op == "<=":
        b = min(math.floor(tn + EPS), n)
    elif op == "<":
        b = min(math.ceil(tn - EPS) - 1, n)
    elif op == ">=":
        b = max(math.ceil(tn - EPS), 0)
    elif op == ">":
        b = max(math.floor(tn + EPS) + 1, 0)
    else:
        raise ValueError(f"no judge-error rule for op {op!r}")
    return b if 0 <= b <= n else None


def ideal(op: str, n: int) -> int:
    """A perfect model's count of truly-1 replies: none when lower is better, all when higher is."""
    return 0 if op in LOWER_OPS else n


def rule_of(op: str, threshold: float, n: int, bound: str) -> str:
    """Which rule decides: "ideal" (the count test), "corrected" (the corrected rate) or "corrected <bound> bound"."""
    if bound != "point":
        return f"corrected {bound} bound"
    return "ideal" if boundary(op, threshold, n) == ideal(op, n) else "corrected"


def corrected(q: float, fp: float, fn: float) -> float | None:
    """Rogan-Gladen: the true rate that a judged rate q implies, (q - fp) / (1 - fp - fn), clipped to [0, 1]; None
    when the judge is no better than chance (1 - fp - fn <= 0)."""
    if 1 - fp - fn <= 0:
        return None
    return min(1.0, max(0.0, (q - fp) / (1 - fp - fn)))


def corrected_interval(k: int, n: int, error: JudgeError) -> tuple[float | None, float | None, float | None]:
    """The corrected rate and a conservative 95 % interval: the judged rate's Wilson ends, each paired with the
    judge rates' interval ends that push it furthest (low: fp high, fn low; high: fp low, fn high). An unmeasured
    rate is taken as 0."""
    q_low, q_high = wilson(k, n)
    fp = error.fp.value if error.fp else 0.0
    fn = error.fn.value if error.fn else 0.0
    fp_low, fp_high = error.fp.ci if error.fp else (0.0, 0.0)
    fn_low, fn_high = error.fn.ci if error.fn else (0.0, 0.0)
    return corrected(k / n, fp, fn), corrected(q_low, fp_high, fn_low), corrected(q_high, fp_low, fn_high)


def _meets(op: str, x: float | None, threshold: float) -> bool:
    if x is None:
        return False
    return {"<=": x <= threshold + EPS, "<": x < threshold - EPS, ">=": x >= threshold - EPS,
            ">": x > threshold + EPS}[op]


def limit_of(op: str, threshold: float, n: int, error: JudgeError, confidence: float = 0.95,
             bound: str = "point") -> int | None:
    """The judged-count limit that decides: lower-is-better, the most judged 1s that pass (k <= limit);
    higher-is-better, the fewest (k >= limit). None: no count passes."""
    b = boundary(op, threshold, n)
    if b is None:
        return None
    rule = rule_of(op, threshold, n, bound)
    if rule == "ideal":
        pmf = judged_count_pmf(n, b, error.fp, error.fn)
        alpha = 1 - confidence
        if op in LOWER_OPS:  # the smallest a with P(K > a) <= alpha
            tail = 1.0
            for a, p in enumerate(pmf):
                tail -= p
                if tail <= alpha + 1e-12:
                    return a
            return n
        below = 0.0  # the largest m with P(K < m) <= alpha
        for m, p in enumerate(pmf):
            if below + p > alpha + 1e-12:
                return m
            below += p
        return n
    # the corrected rate (or its interval's bound) is monotone in k: the passing counts are a prefix or a suffix
    pick = {"corrected": 0, "corrected lower bound": 1, "corrected upper bound": 2}[rule]
    ok = [_meets(op, corrected_interval(k, n, error)[pick], threshold) for k in range(n + 1)]
    if op in LOWER_OPS:
        return max((k for k in range(n + 1) if ok[k]), default=None)
    return min((k for k in range(n + 1) if ok[k]), default=None)


def passes(op: str, k: int, limit: int | None) -> bool:
    if limit is None:
        return False
    return k <= limit if op in LOWER_OPS else k >= limit


def fail_chance(op: str, n: int, truly: int, limit: int | None, error: JudgeError) -> float:
    """P(the criterion fails) for a model with `truly` of its n replies truly 1, under the judge's error."""
    pmf = judged_count_pmf(n, truly, error.fp, error.fn)
    return float(sum(p for k, p in enumerate(pmf) if not passes(op, k, limit)))


def missing_rates(op: str, threshold: float, n: int, error: JudgeError, bound: str = "point") -> list[str]:
    """The rates the rule needs that the card does not give ("false positives", "misses"): the count test at the
    ideal needs only the rate a perfect model meets; the corrected rate needs both."""
    if boundary(op, threshold, n) is None:
        return []
    if rule_of(op, threshold, n, bound) == "ideal":
        want_fp, want_fn = op in LOWER_OPS, op in HIGHER_OPS
    else:
        want_fp = want_fn = True
    return [name for name, want, rate in (("false positives", want_fp, error.fp), ("misses", want_fn, error.fn))
            if want and rate is None]


@dataclass(frozen=True)
class JudgedCheck:
    """What the gate computed for one criterion over a judged rate."""

    k: int  # judged 1s among the valid replies
    n: int
    op: str
    threshold: float
    confidence: float
    error: JudgeError
    rule: str  # ideal | corrected | corrected lower bound | corrected upper bound
    limit: int | None  # see limit_of
    passed: bool
    corrected: float | None
    corrected_low: float | None
    corrected_high: float | None
    at_threshold_fails: float  # chance a model exactly at the threshold fails
    perfect_fails: float  # chance a perfect model fails

    def describe(self) -> str:
        """Raw and corrected figures, the judge's rates, the limit, and how often a perfect model fails."""
        raw_low, raw_high = wilson(self.k, self.n)
        parts = [f"judged {self.k}/{self.n} = {_pct(self.k / self.n)} [{_pct(raw_low)}–{_pct(raw_high)}]"]
        rates = [f"{name} {_rate(r)}" for name, r in (("false positives", self.error.fp), ("misses", self.error.fn))
                 if r is not None]
        parts.append("judge " + ", ".join(rates))
        if self.corrected is not None:
            parts.append(f"corrected {_pct(self.corrected)} [{_pct(self.corrected_low)}–{_pct(self.corrected_high)}]")
        side = "≤" if self.op in LOWER_OPS else "≥"
        limit = "no count" if self.limit is None else f"{side} {self.limit}/{self.n} judged"
        how = (f"within what a perfect model's judged count reaches at {100 * self.confidence:g}%"
               if self.rule == "ideal" else f"the {self.rule} rate meets the threshold")
        parts.append(f"passes at {limit} ({how})")
        if self.rule != "ideal":
            parts.append(f"a model at the threshold fails {_pct(self.at_threshold_fails)}")
        parts.append(f"a perfect model fails {_pct(self.perfect_fails)}")
        return "; ".join(parts)


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _rate(r: Rate) -> str:
    low, high = r.ci
    return f"{_pct(r.value)} [{_pct(low)}–{_pct(high)}] ({r.k}/{r.n})"


def check(op: str, threshold: float, k: int, n: int, error: JudgeError, confidence: float = 0.95,
          bound: str = "point") -> JudgedCheck:
    """The judge-error rule of one criterion on a judged count k of n (the module's docstring)."""
    b = boundary(op, threshold, n)
    limit = limit_of(op, threshold, n, error, confidence, bound)
    value, low, high = corrected_interval(k, n, error)
    at_threshold = 1.0 if b is None else fail_chance(op, n, b, limit, error)
    return JudgedCheck(k, n, op, threshold, confidence, error, rule_of(op, threshold, n, bound), limit,
                       passes(op, k, limit), value, low, high, at_threshold,
                       fail_chance(op, n, ideal(op, n), limit, error))


def parse_rate(raw: Any, source: str) -> Rate | None:
    """{"k": 4, "n": 222} (or {"value": 0.018, "n": 222}) from a card; anything else is not a measurement."""
    if not isinstance(raw, dict):
        return None
    n = raw.get("n")
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        return None
    k = raw.get("k")
    if k is None and isinstance(raw.get("value"), (int, float)) and not isinstance(raw.get("value"), bool):
        k = round(float(raw["value"]) * n)
    if isinstance(k, bool) or not isinstance(k, (int, float)) or not 0 <= k <= n or int(k) != k:
        return None
    return Rate(int(k), n, str(raw.get("source") or source))
