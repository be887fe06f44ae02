"""AdAutoMix's step against SPEC.md, formula by formula.

Every expected value here is computed from SPEC.md with plain loops over the sources i and the
samples b, on copies of the models taken before the step; the step under test supplies only its
random draws (λ, π) and its generator's masks, which are recorded as it runs (the masks
themselves are pinned by test_adautomix.py against a hand computation).
"""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from adautomix.methods.adautomix import AdAutoMixStep
from adautomix.methods.teacher import PUBLISHED_ITERATIONS, ema_momentum, scaled_schedule

from step_recorder import Recorder, tiny_adautomix_step

B, K, SIZE = 6, 5, 16


def make_step(seed: int = 0, **kwargs) -> AdAutoMixStep:
    return tiny_adautomix_step(K, seed, **kwargs)


def batch(seed: int = 3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, 3, SIZE, SIZE, generator=g), torch.randint(0, K, (B,), generator=g)


def ce(logits_row: torch.Tensor, label: int) -> torch.Tensor:
    return -torch.log_softmax(logits_row.double(), dim=0)[label]


def mix(x, masks_or_lams, perms):
    """x̃[b] = Σ_i M_i[b] ⊙ x[π_i(b)]; ``masks_or_lams[b][i]`` is a mask or a scalar λ_i."""
    out = torch.zeros_like(x)
    for b in range(len(x)):
        for i, p in enumerate(perms):
            out[b] += masks_or_lams[b][i] * x[p[b]]
    return out


def mixed_ce(logits, labels_of, lams) -> torch.Tensor:
    """(1/B) Σ_b Σ_i λ_i · CE(logits[b], labels_of[i][b])."""
    return sum(lam * ce(logits[b], int(labels_of[i][b])) for b in range(len(logits))
               for i, lam in enumerate(lams)) / len(logits)


def authors_rule(lam_1: float, n: int, margin: float) -> bool:
    """SPEC.md step 5: plain mixup in the classifier branch when λ_1 is within the margin of 0 or 1."""
    if n == 2:
        return lam_1 <= margin or lam_1 >= 1 - margin
    return lam_1 <= margin or lam_1 > 1 - margin


def expected_losses(step: AdAutoMixStep, q, k, x, y, rec: Recorder, cfg: dict) -> dict[str, float]:
    """L_cls, L_gen and every logged part, from SPEC.md steps 5-7, by plain loops."""
    lam_g, lam_c, perms_g, perms_c = rec.draws
    lam_g, lam_c = lam_g.tolist(), lam_c.tolist()
    n = len(perms_g)
    alpha, beta = cfg.get("alpha", 0.5), cfg.get("beta", 0.3)
    masks_g = rec.masks[0]
    plain = authors_rule(lam_c[0], n, cfg.get("lam_margin", 0.03))
    assert len(rec.masks) == (1 if plain else 2)  # the generator ran for the classifier only when used
    with torch.no_grad():
        # step 5: the mixed images of both branches
        x_g = mix(x, [[masks_g[b, i] for i in range(n)] for b in range(B)], perms_g)
        weights_c = [lam_c] * B if plain else [[rec.masks[1][b, i] for i in range(n)] for b in range(B)]
        x_c = mix(x, weights_c, perms_c)
        x_lin = mix(x, [lam_c] * B, perms_c)
        # step 6: classifier terms
        labels_c = [y[p] for p in perms_c]
        out = {"loss_amce": mixed_ce(q(x_c, head="mix"), labels_c, lam_c)}
        loss_cls = out["loss_amce"]
        mce_on = cfg.get("use_mce", True) and n > 2
        if cfg.get("use_ce", True):
            logits = q(x, head="one")
            out["loss_ce"] = sum(ce(logits[b], int(y[b])) for b in range(B)) / B
            loss_cls = loss_cls + ((1 - alpha) if mce_on else 1.0) * out["loss_ce"]
        if mce_on:
            out["loss_mce"] = mixed_ce(q(x_lin, head="mix"), labels_c, lam_c)
            loss_cls = loss_cls + alpha * out["loss_mce"]
        out["loss_cls"] = loss_cls
        # step 7: generator terms through the frozen model, its mix head on the generated mix
        p_mix = k(x_g, head="mix")
        out["loss_gen_ce"] = mixed_ce(p_mix, [y[p] for p in perms_g], lam_g)
        cos = 0.0
        if cfg.get("use_cos", True):
            sources = [k(x[p], head="mix") for p in perms_g]  # the published N teacher passes
            cos = sum(lam_g[i] * F.cosine_similarity(p_mix[b].double(), sources[i][b].double(), dim=0)
                      for b in range(B) for i in range(n)) / B
            out["cos"] = cos
        adversarial = cfg.get("adversarial", True) and cfg["iteration"] % 2 == 0
        out["loss_gen"] = -beta * out["loss_gen_ce"] + (1 - beta) * cos if adversarial else out["loss_gen_ce"]
    return {key: float(v) for key, v in out.items()}


CASES = [{}, {"use_ce": False}, {"use_mce": False}, {"use_cos": False}, {"use_ema": False},
         {"adversarial": False}, {"alpha": 0.2, "beta": 0.7}, {"lam_margin": 0.49}, {"lam_margin": 0.0}]


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("iteration", [0, 1], ids=["adversarial-iteration", "cooperative-iteration"])
@pytest.mark.parametrize("cfg", CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "defaults")
def test_every_loss_term_equals_its_formula(n, iteration, cfg):
    step = make_step(n_mix=n, **cfg)
    step.iteration = iteration
    rec = Recorder(step)
    q = copy.deepcopy(step.classifier)
    k = copy.deepcopy(step.teacher.model if step.teacher is not None else step.classifier)
    x, y = batch()
    loss_cls, loss_gen, parts = step.losses(x, y)
    expected = expected_losses(step, q, k, x, y, rec, {**cfg, "iteration": iteration})
    assert float(loss_cls) == pytest.approx(expected["loss_cls"], abs=1e-5)
    assert float(loss_gen) == pytest.approx(expected["loss_gen"], abs=1e-5)
    logged = {key: float(v) for key, v in parts.items() if key in expected}
    assert logged == pytest.approx(expected, abs=1e-5)
    assert set(expected) == set(logged)  # no term logged that should be off, none missing
    assert float(parts["adversarial"]) == float(cfg.get("adversarial", True) and iteration % 2 == 0)


# ------------------------------------------------------------------------ BatchNorm statistics
def published_passes(q, k, x, rec: Recorder, n: int, margin: float) -> None:
    """The train-mode passes of one published step, in the published order (SPEC.md 6-7)."""
    lam_g, lam_c, perms_g, perms_c = rec.draws
    plain = authors_rule(float(lam_c[0]), n, margin)
    with torch.no_grad():
        k(x)  # step 3: the clean batch, for the generator's features
        k(mix(x, [[rec.masks[0][b, i] for i in range(n)] for b in range(B)], perms_g))  # x̃_g
        for p in perms_g:  # the cosine term's N source batches
            k(x[p])
        q(x)
        if n > 2:
            q(mix(x, [lam_c.tolist()] * B, perms_c))
        weights = [lam_c.tolist()] * B if plain else [[rec.masks[1][b, i] for i in range(n)] for b in range(B)]
        q(mix(x, weights, perms_c))


def bn_buffers(model) -> dict[str, torch.Tensor]:
    return {name: t for name, t in model.named_buffers() if "running" in name or "num_batches" in name}


@pytest.mark.parametrize("n", [2, 3])
def test_batchnorm_statistics_follow_the_published_sequence_of_passes(n):
    step = make_step(n_mix=n, lam_margin=0.0)
    q_ref, k_ref = copy.deepcopy(step.classifier), copy.deepcopy(step.teacher.model)
    opt = torch.optim.SGD([p for p in step.parameters() if p.requires_grad], lr=0.05)
    for it in range(4):
        rec = Recorder(step)
        step.iteration = it
        x, y = batch(seed=10 + it)
        loss, _ = step(x, y)
        published_passes(q_ref, k_ref, x, rec, n, margin=0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step.after_step(it, 4)
        with torch.no_grad():  # parameters move by SGD and EMA; the references follow them
            for ref, real in ((q_ref, step.classifier), (k_ref, step.teacher.model)):
                for p_ref, p in zip(ref.parameters(), real.parameters()):
                    p_ref.copy_(p)
    for ref, real in ((q_ref, step.classifier), (k_ref, step.teacher.model)):
        expected, got = bn_buffers(ref), bn_buffers(real)
        assert expected.keys() == got.keys() and len(got) > 20
        for name in expected:
            torch.testing.assert_close(got[name], expected[name], rtol=1e-6, atol=1e-6, msg=name)


# ------------------------------------------------------------------------ the margin rules
def force_draw(step: AdAutoMixStep, lam_1: float, n: int) -> None:
    rest = [(1 - lam_1) / (n - 1)] * (n - 1)
    lam = torch.tensor([lam_1, *rest])
    perms = [torch.arange(B)] + [torch.randperm(B) for _ in range(n - 1)]
    step.draw = lambda *a: (lam, lam, perms, perms)


@pytest.mark.parametrize("rule,n,lam_1,plain", [
    ("authors", 2, 0.5, False), ("authors", 2, 0.02, True), ("authors", 2, 0.98, True),
    ("openmixup", 2, 0.5, False), ("openmixup", 2, 0.98, True),
    ("authors", 3, 0.5, False), ("authors", 3, 0.02, True), ("authors", 3, 0.98, True),
    # OpenMixup's N > 2 test (λ_1 <= m or m < 1-λ_1) holds for almost every λ_1, but not near 1
    ("openmixup", 3, 0.5, True), ("openmixup", 3, 0.02, True), ("openmixup", 3, 0.98, False),
])
def test_margin_rules_choose_plain_mixup_in_the_classifier_branch(rule, n, lam_1, plain):
    step = make_step(n_mix=n, lam_margin_rule=rule, lam_margin=0.03)
    force_draw(step, lam_1, n)
    calls = []
    step.generator.register_forward_hook(lambda *a: calls.append(1))
    step.losses(*batch())
    assert len(calls) == (1 if plain else 2)


@pytest.mark.parametrize("n,lam_1,plain", [(2, 0.25, True), (2, 0.75, True), (3, 0.25, True), (3, 0.75, False)])
def test_margin_bounds_as_the_authors_wrote_them(n, lam_1, plain):
    # N = 2: λ <= m or λ >= 1-m; N > 2: λ_1 <= m or λ_1 > 1-m (0.25 and 0.75 are exact floats)
    step = make_step(n_mix=n, lam_margin=0.25)
    force_draw(step, lam_1, n)
    calls = []
    step.generator.register_forward_hook(lambda *a: calls.append(1))
    step.losses(*batch())
    assert len(calls) == (1 if plain else 2)


# ------------------------------------------------------------------------ the momentum schedule
def test_momentum_is_flat_for_the_first_tenth_then_the_published_cosine():
    total, start, end = 1000, 0.999, 0.999999
    assert ema_momentum(0, total) == start and ema_momentum(99, total) == start
    for t in (100, 250, 500, 999):
        closed_form = end - (end - start) * (math.cos(math.pi * t / total) + 1) / 2
        assert ema_momentum(t, total) == pytest.approx(closed_form, abs=1e-15)
    assert ema_momentum(500, total) == pytest.approx((start + end) / 2, abs=1e-15)
    # the flat part ends at iteration ⌊0.1·T⌋, as the published hook counts it
    total = 1005
    assert ema_momentum(99, total) == start
    closed_form = end - (end - start) * (math.cos(math.pi * 100 / total) + 1) / 2
    assert ema_momentum(100, total) == pytest.approx(closed_form, abs=1e-15) and closed_form > start


def test_ema_schedule_is_published_for_long_runs_and_proportionally_faster_for_short_ones():
    assert scaled_schedule(PUBLISHED_ITERATIONS) == (0.999, 0.999999)
    assert scaled_schedule(400_000) == (0.999, 0.999999)
    assert scaled_schedule(90, "published") == (0.999, 0.999999)
    start, end = scaled_schedule(PUBLISHED_ITERATIONS // 10)  # 1-m ten times larger
    assert start == pytest.approx(0.99) and end == pytest.approx(0.99999)
    start, end = scaled_schedule(50)  # shorter than the published time constant: start at m = 0
    assert start == 0.0 and end == pytest.approx(1 - 1e-6 * PUBLISHED_ITERATIONS / 50)
