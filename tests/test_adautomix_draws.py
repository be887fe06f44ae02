"""The distributions AdAutoMix's step draws from (SPEC.md steps 1-2), tested statistically.

Each test calls the step's own drawing code (``LearnedMixStep.draw``, which ``losses`` calls once
per step: ``step_recorder.Recorder`` sees it there) 20,000 times with a seeded generator and
compares the draws with the distribution SPEC.md states, computed here independently (scipy's
Beta distribution; a reference sample drawn by numpy where the distribution has no closed form).

The seeds are fixed, so each test is deterministic. Its threshold (p > 1e-3) is far from what a
wrong distribution reaches on 20,000 draws: Dirichlet(1, 1, 1) in place of three normalised
Beta(1, 1) draws gives p ≈ 1e-228, Beta(2, 2) in place of Beta(1, 1) p ≈ 1e-140, and a draw
shared by the two N = 2 branches a correlation of 1 (measured when these tests were written).
"""
from __future__ import annotations

import functools
import math
from itertools import permutations

import numpy as np
import pytest
import torch
from scipy import stats

from adautomix.methods.adautomix import AdAutoMixStep
from adautomix.methods.generator import MixGenerator
from adautomix.models.cifar_resnet import build_classifier

from step_recorder import Recorder

DRAWS = 20_000
P_MIN = 1e-3  # a right distribution passes at this level; the wrong ones above are < 1e-100
B = 4  # batch size of the permutation tests: 4! = 24 permutations, ~830 draws each


def make_step(n_mix: int, mix_lambda: float, seed: int = 0, **kwargs) -> AdAutoMixStep:
    classifier = build_classifier("resnet18", 0.125, 3, heads=("one", "mix"))
    step = AdAutoMixStep(classifier, MixGenerator(classifier.backbone.stage3_channels), n_mix=n_mix,
                         mix_lambda=mix_lambda, **kwargs)
    step.rng = torch.Generator().manual_seed(seed)
    return step


@functools.cache
def draw_many(n: int, mix_lambda: float):
    """20,000 draws of a step with ``n_mix=n``, ``mix_lambda``: (λ_g, λ_c) as two DRAWS x N
    arrays and the permutations of each branch as DRAWS x N x B arrays (cached: several tests
    read the same draws)."""
    step = make_step(n, mix_lambda)
    draws = [step.draw(B, torch.device("cpu")) for _ in range(DRAWS)]
    lam_g = np.array([d[0].tolist() for d in draws])
    lam_c = np.array([d[1].tolist() for d in draws])
    perms_g = np.array([[p.tolist() for p in d[2]] for d in draws])
    perms_c = np.array([[p.tolist() for p in d[3]] for d in draws])
    return lam_g, lam_c, perms_g, perms_c


def normalised_beta_reference(mix_lambda: float, n: int, size: int = 200_000) -> np.ndarray:
    """SPEC.md step 1 for N > 2, drawn by numpy: N independent Beta(l, l) values divided by
    their sum; size x N."""
    betas = np.random.default_rng(12345).beta(mix_lambda, mix_lambda, size=(size, n))
    return betas / betas.sum(axis=1, keepdims=True)


def permutation_index(perms: np.ndarray) -> np.ndarray:
    """The rank of each permutation (rows of length B) among the B! permutations."""
    index = {p: i for i, p in enumerate(permutations(range(perms.shape[-1])))}
    return np.array([index[tuple(row)] for row in perms.reshape(-1, perms.shape[-1])]).reshape(perms.shape[:-1])


def assert_uniform(ranks: np.ndarray, cells: int, what: str) -> None:
    counts = np.bincount(ranks, minlength=cells)
    assert len(counts) == cells, f"{what}: ranks outside 0..{cells - 1}"
    p = stats.chisquare(counts).pvalue
    assert p > P_MIN, f"{what}: not uniform over {cells} values (chi-square p = {p:.2e})"


def assert_independent(a: np.ndarray, b: np.ndarray, cells: int, what: str) -> None:
    table = np.zeros((cells, cells))
    np.add.at(table, (a, b), 1)
    p = stats.chi2_contingency(table).pvalue
    assert p > P_MIN, f"{what}: not independent (chi-square p = {p:.2e})"


def test_the_step_takes_its_lambdas_and_partners_from_draw():
    """The tests below sample ``draw``; this pins that the step's λ and partners come from it."""
    step = make_step(3, 1.0).train()
    rec = Recorder(step)
    x, y = torch.randn(B, 3, 16, 16), torch.arange(B) % 3
    step(x, y)
    lam_g, lam_c, perms_g, perms_c = rec.draws
    assert len(perms_g) == len(perms_c) == 3 and lam_g.shape == (3,)


@pytest.mark.parametrize("mix_lambda", [0.5, 2.0])
def test_n2_each_branch_draws_its_own_beta_used_as_lam_and_one_minus_lam(mix_lambda):
    """SPEC.md step 1, N = 2: two independent Beta(l, l) values, one per branch, each used as
    (λ, 1−λ). l ≠ 1 so that Beta(l, 1) or Uniform(0, 1) cannot pass for Beta(l, l)."""
    lam_g, lam_c, _, _ = draw_many(2, mix_lambda)
    np.testing.assert_allclose(lam_g.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(lam_c.sum(axis=1), 1.0, atol=1e-6)
    beta = stats.beta(mix_lambda, mix_lambda)
    for name, lam in (("generator branch", lam_g[:, 0]), ("classifier branch", lam_c[:, 0])):
        p = stats.kstest(lam, beta.cdf).pvalue
        assert p > P_MIN, f"{name} λ is not Beta({mix_lambda}, {mix_lambda}) (KS p = {p:.2e})"
    # independent branches: a shared draw has correlation 1; independence, |r| ~ 1/sqrt(20000)
    r = np.corrcoef(lam_g[:, 0], lam_c[:, 0])[0, 1]
    assert abs(r) < 0.03, f"the two branches' λ are correlated (r = {r:.3f})"
    # successive steps are independent too (no reuse of a draw across steps)
    r_next = np.corrcoef(lam_g[:-1, 0], lam_g[1:, 0])[0, 1]
    assert abs(r_next) < 0.03, f"successive steps' λ are correlated (r = {r_next:.3f})"


@pytest.mark.parametrize("mix_lambda,n", [(1.0, 3), (0.5, 4)])
def test_n_above_2_draws_n_betas_normalised_to_sum_1(mix_lambda, n):
    """SPEC.md step 1, N > 2: N Beta(l, l) values divided by their sum, one vector for both
    branches. Each λ_i's marginal and the largest λ are compared with a numpy sample of that
    distribution (two-sample KS); Dirichlet(l, .., l) or Beta(2l, 2l) fail it."""
    lam_g, lam_c, _, _ = draw_many(n, mix_lambda)
    np.testing.assert_array_equal(lam_g, lam_c)  # the published code draws λ once for N > 2
    np.testing.assert_allclose(lam_g.sum(axis=1), 1.0, atol=1e-6)
    reference = normalised_beta_reference(mix_lambda, n)
    for i in range(n):
        p = stats.ks_2samp(lam_g[:, i], reference[:, i]).pvalue
        assert p > P_MIN, f"λ_{i + 1} is not a normalised Beta({mix_lambda}, {mix_lambda}) (KS p = {p:.2e})"
    p = stats.ks_2samp(lam_g.max(axis=1), reference.max(axis=1)).pvalue
    assert p > P_MIN, f"max_i λ_i does not match normalised Betas (KS p = {p:.2e})"


def test_n2_partners_are_identity_and_one_uniform_permutation_per_branch():
    """SPEC.md step 2, N = 2: (identity, π) in each branch, π uniform over the B! permutations,
    and the two branches' π independent of each other."""
    _, _, perms_g, perms_c = draw_many(2, 0.5)
    identity = np.arange(B)
    assert (perms_g[:, 0] == identity).all() and (perms_c[:, 0] == identity).all()
    cells = math.factorial(B)
    g, c = permutation_index(perms_g[:, 1]), permutation_index(perms_c[:, 1])
    assert_uniform(g, cells, "π^g")
    assert_uniform(c, cells, "π^c")
    assert_independent(g, c, cells, "π^g and π^c")


def test_n3_partners_are_uniform_and_independent_within_and_across_branches():
    """SPEC.md step 2, N > 2: two independent sets of N uniform random permutations."""
    n = 3
    _, _, perms_g, perms_c = draw_many(n, 1.0)
    cells = math.factorial(B)
    g, c = permutation_index(perms_g), permutation_index(perms_c)  # DRAWS x N ranks
    for i in range(n):
        assert_uniform(g[:, i], cells, f"π^g_{i + 1}")
        assert_uniform(c[:, i], cells, f"π^c_{i + 1}")
        assert_independent(g[:, i], c[:, i], cells, f"π^g_{i + 1} and π^c_{i + 1}")
    assert_independent(g[:, 0], g[:, 1], cells, "π^g_1 and π^g_2")
    assert_independent(c[:, 1], c[:, 2], cells, "π^c_2 and π^c_3")


def test_random_n_draws_n_uniformly_from_2_to_n_mix():
    """SPEC.md step 1: ``random_n`` draws N uniformly from 2..N each step."""
    step = make_step(4, 1.0, random_n=True)
    ns = np.array([len(step.draw(B, torch.device("cpu"))[2]) for _ in range(6_000)])
    assert set(ns) == {2, 3, 4}
    assert_uniform(ns - 2, 3, "N")
