"""Is setting A better than setting B, or is the difference seed noise? Student t over seeds.

- A setting's runs (one per seed): mean, sample standard deviation and the 95 % confidence
  interval ``mean ± t_{0.975, n-1} · s / √n`` (Student t; none for a single seed, which has no
  spread).
- A setting against the study's reference: ``Δ = mean(A) − mean(ref)`` with its 95 % CI and the
  two-sided p-value of the t test, paired by seed when both ran the same seeds (the seed fixes the
  initialisation and the data order, so the per-seed differences cancel that noise) and Welch's
  unequal-variance t test otherwise (Welch, Biometrika 1947).
- Several settings against one reference: Holm's step-down correction of the p-values (Holm,
  Scand. J. Statist. 1979), which keeps the chance of any false "better"/"worse" at 5 %.

The quantiles and tail areas come from ``scipy.stats.t``; the rest is the textbook formulas, so
that a reader can check each step. Zero variance (equal values) is a valid input: the interval
shrinks to a point, and a zero difference is within noise.
"""
from __future__ import annotations

import math
import statistics
from typing import NamedTuple

from scipy.stats import t as student_t

LEVEL = 0.95  # confidence level of every interval
ALPHA = 0.05  # the test's level: a difference is beyond noise when its (adjusted) p < ALPHA


class Summary(NamedTuple):
    """One metric over one setting's seeds."""

    mean: float
    std: float  # sample standard deviation (n - 1); NaN for n = 1
    n: int
    ci: tuple[float, float] | None  # 95 % Student-t interval of the mean; None for n = 1


class Difference(NamedTuple):
    """``mean(A) − mean(reference)`` of one metric."""

    delta: float
    ci: tuple[float, float] | None  # 95 % interval of Δ; None when a side has one seed
    p: float | None  # two-sided p-value of the t test; None when there is no test
    test: str  # "paired" (same seeds), "welch", or "none" (a side has one seed)
    df: float | None  # degrees of freedom of the t distribution


def summarize(values: list[float]) -> Summary:
    """Mean, sample std and the Student-t 95 % CI of the mean of ``values`` (one per seed)."""
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return Summary(mean, math.nan, n, None)
    std = statistics.stdev(values)
    half = student_t.ppf(0.5 + LEVEL / 2, n - 1) * std / math.sqrt(n)
    return Summary(mean, std, n, (mean - half, mean + half))


def difference(values: list[float], reference: list[float], paired: bool) -> Difference:
    """Δ of ``values`` against ``reference`` (one number per seed each), its CI and p-value.

    ``paired`` (the i-th values of both lists come from the same seed, n >= 2 pairs): a
    one-sample t on the per-seed differences, df = n - 1. Otherwise Welch: se = √(s_a²/n_a +
    s_r²/n_r), df by Welch–Satterthwaite. A side with a single seed gives Δ alone.
    """
    a, r = values, reference
    delta = statistics.fmean(a) - statistics.fmean(r)
    if paired and len(a) == len(r) >= 2:
        diffs = [x - y for x, y in zip(a, r)]
        se, df, test = statistics.stdev(diffs) / math.sqrt(len(diffs)), len(diffs) - 1.0, "paired"
    elif len(a) >= 2 and len(r) >= 2:
        va, vr = statistics.variance(a) / len(a), statistics.variance(r) / len(r)
        se, test = math.sqrt(va + vr), "welch"
        df = (va + vr) ** 2 / (va ** 2 / (len(a) - 1) + vr ** 2 / (len(r) - 1)) if va + vr > 0 else \
            len(a) + len(r) - 2.0  # no spread on either side: any df gives the same point interval
    else:
        return Difference(delta, None, None, "none", None)
    if se == 0:  # every seed agrees: the interval is a point, and only a zero Δ is noise
        return Difference(delta, (delta, delta), 1.0 if delta == 0 else 0.0, test, df)
    half = student_t.ppf(0.5 + LEVEL / 2, df) * se
    p = 2 * student_t.sf(abs(delta) / se, df)
    return Difference(delta, (delta - half, delta + half), float(p), test, df)


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (None stays None): the i-th smallest of m p-values is
    multiplied by m - i + 1 (i from 1), then made non-decreasing in that order and capped at 1."""
    ranked = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    m = len(ranked)
    adjusted: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(ranked):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def verdict(diff: Difference, p: float | None, mode: str) -> str:
    """``better`` / ``worse`` than the reference when ``p`` (adjusted where several settings are
    compared) is below ``ALPHA``, else ``within noise``; ``mode`` says whether higher (``max``)
    or lower (``min``, e.g. ECE) is better. Without a test: ``n = 1: no test``."""
    if p is None:
        return "n = 1: no test"
    if p >= ALPHA:
        return "within noise"
    return "better" if (diff.delta > 0) == (mode == "max") else "worse"
