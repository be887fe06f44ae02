"""Where each of AdAutoMix's loss terms sends its gradient (SPEC.md steps 5-8).

On a tiny model (ResNet-18 x0.125, 16-pixel images) ``torch.autograd.grad(..., allow_unused=True)``
tells which parameters a term reaches: L_cls (L_amce, L_ce, L_mce) the classifier q only, with the
classifier branch's masks detached; L_gen (its adversarial −β·L_g part and its cosine part) the
generator G only, through the frozen teacher (or, ``use_ema=False``, the detached classifier);
the teacher k nothing. The last test recomputes the generator's gradient from the recorded draws
on copies of G and k taken before the step, with the teacher's logits on the sources as
constants, and checks the adversarial step's sign and weights.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from adautomix.methods.adautomix import AdAutoMixStep

from step_recorder import Recorder, tiny_adautomix_step

B, K, SIZE = 6, 5, 16


def make_step(seed: int = 0, **kwargs) -> AdAutoMixStep:
    """A tiny step; ``lam_margin=0`` so that the classifier branch always uses the generator's
    masks (never plain mixup), unless a test asks otherwise."""
    return tiny_adautomix_step(K, seed, **{"lam_margin": 0.0, **kwargs})


def batch(seed: int = 3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, 3, SIZE, SIZE, generator=g), torch.randint(0, K, (B,), generator=g)


def reached(loss: torch.Tensor, step: AdAutoMixStep) -> dict[str, set[str]]:
    """The parameters (by group: classifier, generator) whose gradient of ``loss`` is non-zero."""
    groups = {"classifier": step.classifier, "generator": step.generator}
    out = {}
    for group, module in groups.items():
        names, params = zip(*module.named_parameters())
        grads = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)
        out[group] = {n for n, g in zip(names, grads) if g is not None and bool(g.abs().sum() > 0)}
    return out


def head_and_backbone(names: set[str]) -> set[str]:
    """Which parts of the classifier the names cover: 'backbone', 'one', 'mix'."""
    return {"backbone" if n.startswith("backbone.") else n.split(".")[1] for n in names}


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("use_ema", [True, False])
def test_l_cls_reaches_the_classifier_only(n, use_ema):
    """L_cls = L_amce + (1−α)·L_ce + α·L_mce: backbone and both heads, never G (the classifier
    branch's masks are stopgrad), whether or not G plays against the EMA teacher."""
    step = make_step(n_mix=n, use_ema=use_ema)
    loss_cls, _, _ = step.losses(*batch())
    got = reached(loss_cls, step)
    assert got["generator"] == set(), "L_cls sends gradient into the generator (masks not detached)"
    assert head_and_backbone(got["classifier"]) == {"backbone", "one", "mix"}


def test_l_amce_alone_reaches_the_mix_head_and_backbone_not_the_generator():
    """Without L_ce and L_mce, L_cls is L_amce: the mix head and the backbone; its mixed images are
    built from detached masks, so G gets nothing even though the masks came from G."""
    step = make_step(n_mix=3, use_ce=False, use_mce=False)
    rec = Recorder(step)
    loss_cls, _, _ = step.losses(*batch())
    assert len(rec.masks) == 2  # G produced the classifier branch's masks (not plain mixup)
    got = reached(loss_cls, step)
    assert got["generator"] == set()
    assert head_and_backbone(got["classifier"]) == {"backbone", "mix"}


@pytest.mark.parametrize("use_ema", [True, False])
@pytest.mark.parametrize("case", [
    {"use_cos": False, "iteration": 0},  # adversarial part alone: −β·L_g
    {"use_cos": False, "iteration": 1},  # cooperative: L_g
    {"beta": 0.0, "iteration": 0},  # cosine part alone: (1−0)·cos
    {"iteration": 0},  # the whole adversarial L_gen
], ids=["adversarial-part", "cooperative", "cosine-part", "adversarial-whole"])
def test_l_gen_reaches_the_generator_only(case, use_ema):
    """L_gen goes through the frozen model (teacher, or the detached classifier) into G only:
    its q, k and v convolutions all receive gradient, the classifier none."""
    case = dict(case)
    iteration = case.pop("iteration")
    step = make_step(n_mix=3, use_ema=use_ema, **case)
    step.iteration = iteration
    _, loss_gen, _ = step.losses(*batch())
    got = reached(loss_gen, step)
    assert got["classifier"] == set(), "L_gen sends gradient into the classifier"
    assert {"conv_q.conv.weight", "conv_k.conv.weight", "conv_v.weight"} <= got["generator"]


def test_nothing_reaches_the_teacher():
    """One full step (forward, backward of L_cls + L_gen, optimiser step): the teacher's
    parameters take no gradient and move only by the EMA update."""
    step = make_step(n_mix=3)
    assert not any(p.requires_grad for p in step.teacher.parameters())
    before = [p.clone() for p in step.teacher.parameters()]
    opt = torch.optim.SGD([p for p in step.parameters() if p.requires_grad], lr=0.1)
    loss, _ = step(*batch())
    loss.backward()
    assert all(p.grad is None for p in step.teacher.parameters())
    opt.step()
    assert all(torch.equal(a, b) for a, b in zip(before, step.teacher.parameters()))


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("iteration", [0, 1], ids=["adversarial", "cooperative"])
def test_generator_gradient_is_minus_beta_l_g_plus_cosine_on_adversarial_steps(n, iteration):
    """SPEC.md step 7: ∇_G L_gen = −β·∇_G L_g + (1−β)·∇_G cos on even (adversarial) iterations,
    ∇_G L_g on odd ones. Both terms are recomputed here by plain loops on copies of G and of the
    teacher taken before the step, from the step's recorded draws, with the teacher's logits on
    the source images computed without gradient (constants of the cosine term)."""
    beta = 0.3
    step = make_step(n_mix=n, beta=beta)
    step.iteration = iteration
    generator, teacher = copy.deepcopy(step.generator), copy.deepcopy(step.teacher.model)
    rec = Recorder(step)
    x, y = batch()
    _, loss_gen, _ = step.losses(x, y)
    params = list(step.generator.parameters())
    got = torch.autograd.grad(loss_gen, params)

    lam_g, _, perms_g, _ = rec.draws
    with torch.no_grad():
        feat = teacher.backbone(x)[0]
        source_logits = [teacher(x[p], head="mix") for p in perms_g]  # constants
    masks = generator([feat[p] for p in perms_g], lam_g, (SIZE, SIZE))  # B x N x H x W, with graph
    torch.testing.assert_close(masks.detach(), rec.masks[0])  # the same masks as the step's
    x_mix = torch.stack([sum(masks[b, i] * x[p[b]] for i, p in enumerate(perms_g)) for b in range(B)])
    logits = teacher(x_mix, head="mix")
    loss_g = sum(lam_g[i] * F.cross_entropy(logits[b:b + 1], y[p[b]:p[b] + 1])
                 for b in range(B) for i, p in enumerate(perms_g)) / B
    cos = sum(lam_g[i] * F.cosine_similarity(logits[b], source_logits[i][b], dim=0)
              for b in range(B) for i in range(n)) / B
    g_loss = torch.autograd.grad(loss_g, list(generator.parameters()), retain_graph=True)
    g_cos = torch.autograd.grad(cos, list(generator.parameters()))
    expected = [-beta * a + (1 - beta) * c for a, c in zip(g_loss, g_cos)] if iteration % 2 == 0 else g_loss
    for name, e, g in zip([n for n, _ in step.generator.named_parameters()], expected, got):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-7, msg=name)
    # the two terms pull differently: a wrong sign or weight cannot pass the comparison above
    flat = lambda gs: torch.cat([t.flatten() for t in gs])  # noqa: E731
    assert (flat(g_loss) - flat(g_cos)).norm() > 0.1 * flat(g_loss).norm()
