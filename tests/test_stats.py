"""Confidence intervals, differences and Holm's correction (evaluation/stats.py) against
scipy.stats on hand-made numbers: ``ttest_1samp``, ``ttest_rel``, ``ttest_ind(equal_var=False)``
and ``t.ppf`` compute every expected value here, Holm's correction is checked against its
step-down definition, and nothing calls the module under test to make an expected value."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sp

from adautomix.evaluation import stats

A = [82.1, 83.4, 81.9, 84.0]  # four seeds of one setting
R = [80.0, 82.2, 81.5, 81.1]  # the reference, the same four seeds


def test_a_rows_interval_is_student_t_over_its_seeds():
    s = stats.summarize(A)
    mean, sd, n = np.mean(A), np.std(A, ddof=1), len(A)
    half = sp.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    assert (s.n, s.mean) == (4, pytest.approx(mean)) and s.std == pytest.approx(sd)
    assert s.ci == pytest.approx((mean - half, mean + half))
    assert s.ci == pytest.approx(tuple(sp.ttest_1samp(A, 0).confidence_interval(0.95)))


def test_one_seed_has_no_std_and_no_interval():
    s = stats.summarize([71.5])
    assert s.mean == 71.5 and s.n == 1 and math.isnan(s.std) and s.ci is None


def test_same_seeds_are_paired_as_scipys_ttest_rel():
    d = stats.difference(A, R, paired=True)
    ref = sp.ttest_rel(A, R)
    assert d.test == "paired" and d.delta == pytest.approx(np.mean(A) - np.mean(R))
    assert d.p == pytest.approx(ref.pvalue) and d.df == ref.df == 3
    assert d.ci == pytest.approx(tuple(ref.confidence_interval(0.95)))


@pytest.mark.parametrize("a, r", [(A, R), (A[:3], R), ([90.0, 91.0], [80.0, 85.0, 82.0, 88.0, 79.0])])
def test_other_seeds_are_compared_by_welchs_t_test_as_scipys(a, r):
    d = stats.difference(a, r, paired=False)
    ref = sp.ttest_ind(a, r, equal_var=False)
    assert d.test == "welch" and d.delta == pytest.approx(np.mean(a) - np.mean(r))
    assert d.p == pytest.approx(ref.pvalue) and d.df == pytest.approx(ref.df)
    assert d.ci == pytest.approx(tuple(ref.confidence_interval(0.95)))


def test_pairing_changes_the_answer_when_seeds_share_noise():
    # the same seed moves both settings together: paired sees a steady +1, Welch sees noise
    r = [70.0, 80.0, 75.0, 85.0]
    a = [x + 1.0 + 0.1 * i for i, x in enumerate(r)]
    paired, welch = stats.difference(a, r, paired=True), stats.difference(a, r, paired=False)
    assert paired.p == pytest.approx(sp.ttest_rel(a, r).pvalue) and paired.p < 0.001
    assert welch.p == pytest.approx(sp.ttest_ind(a, r, equal_var=False).pvalue) and welch.p > 0.5


def test_a_side_with_one_seed_gives_the_difference_without_a_test():
    d = stats.difference([88.0], [80.0, 82.0], paired=False)
    assert d.delta == 7.0 and d.ci is None and d.p is None and d.test == "none"
    assert stats.verdict(d, d.p, "max") == "n = 1: no test"


@pytest.mark.parametrize("paired", [True, False])
def test_equal_values_are_within_noise_without_a_crash(paired):
    d = stats.difference([80.0, 80.0, 80.0], [80.0, 80.0, 80.0], paired=paired)
    assert d.delta == 0 and d.ci == (0.0, 0.0) and d.p == 1.0
    assert stats.verdict(d, d.p, "max") == "within noise"
    assert stats.summarize([80.0, 80.0, 80.0]).ci == (80.0, 80.0)


def test_a_steady_shift_over_every_seed_is_beyond_noise():
    d = stats.difference([81.0, 83.0, 85.0], [80.0, 82.0, 84.0], paired=True)  # +1 on each seed
    assert d.delta == pytest.approx(1.0) and d.ci == pytest.approx((1.0, 1.0)) and d.p == 0.0
    assert stats.verdict(d, d.p, "max") == "better" and stats.verdict(d, d.p, "min") == "worse"


def test_the_verdict_follows_the_metrics_direction():
    lower = stats.difference([2.0, 2.2, 2.1], [4.0, 4.3, 3.9], paired=True)  # e.g. ECE
    assert lower.p < 0.05
    assert stats.verdict(lower, lower.p, "min") == "better" and stats.verdict(lower, lower.p, "max") == "worse"
    assert stats.verdict(lower, 0.2, "min") == "within noise"


def holm_rejects(pvalues: list[float], alpha: float) -> set[int]:
    """Holm's step-down procedure as defined: walk the p-values from the smallest, reject while
    the i-th smallest (i from 0) is <= alpha / (m - i), stop at the first that is not."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    rejected = set()
    for rank, i in enumerate(order):
        if pvalues[i] > alpha / (len(pvalues) - rank):
            break
        rejected.add(i)
    return rejected


@pytest.mark.parametrize("pvalues", [[0.01, 0.04, 0.03, 0.5], [0.04, 0.001, 0.02], [0.2, 0.01, 0.011, 0.6, 0.013]])
def test_holm_adjusted_p_values_reject_what_the_step_down_procedure_rejects(pvalues):
    adjusted = stats.holm(pvalues)
    for alpha in np.linspace(0.001, 0.6, 600):
        assert {i for i, p in enumerate(adjusted) if p <= alpha} == holm_rejects(pvalues, alpha), alpha


def test_holm_by_hand_keeps_untested_rows_untested():
    # sorted: 0.01 x 4 = 0.04; 0.03 x 3 = 0.09; 0.04 x 2 = 0.08 -> 0.09 (never below the one before); 0.5 x 1
    assert stats.holm([0.01, 0.04, None, 0.03, 0.5]) == pytest.approx([0.04, 0.09, None, 0.09, 0.5])
    assert stats.holm([0.9, 0.8]) == [1.0, 1.0]
