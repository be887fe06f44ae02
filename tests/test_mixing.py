"""Specifications of the hand-crafted mixing methods and the mixed cross-entropy (adautomix.methods.mixing)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adautomix.config import load_config
from adautomix.methods.mixing import (
    MIX_FUNCTIONS,
    MixStep,
    Targets,
    cutmix,
    mixed_cross_entropy,
    mixup,
    sample_beta,
    vanilla,
)
from adautomix.models.cifar_resnet import build_classifier

B, C, H, W = 16, 3, 32, 32


def batch(seed: int = 0):
    """Images with distinct values everywhere and labels 0..B-1 (so a label names its image)."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, C, H, W, generator=g), torch.arange(B)


@pytest.mark.parametrize("method", sorted(MIX_FUNCTIONS))
def test_every_method_returns_images_of_the_input_shape_and_weights_summing_to_one(method):
    x, y = batch()
    x_mixed, targets = MIX_FUNCTIONS[method](x, y, torch.Generator().manual_seed(0))
    assert x_mixed.shape == x.shape
    assert targets.labels.shape == targets.weights.shape and targets.labels.shape[0] == B
    assert targets.labels.dtype == torch.long
    assert torch.allclose(targets.weights.sum(dim=1), torch.ones(B))
    assert bool((targets.weights >= 0).all())


def test_vanilla_leaves_images_alone_with_one_source_of_weight_one():
    x, y = batch()
    x_out, targets = vanilla(x, y, torch.Generator().manual_seed(0))
    assert torch.equal(x_out, x)
    assert torch.equal(targets.labels[:, 0], y) and bool((targets.weights == 1).all())


@pytest.mark.parametrize("seed", range(5))
def test_mixup_targets_sum_to_one_and_image_is_lambda_x_plus_one_minus_lambda_partner(seed):
    x, y = batch(seed)
    x_mixed, targets = mixup(x, y, torch.Generator().manual_seed(seed), mix_lambda=1.0)
    assert torch.allclose(targets.weights.sum(dim=1), torch.ones(B))
    assert torch.equal(targets.labels[:, 0], y)
    perm = targets.labels[:, 1]  # labels are 0..B-1, so the partner label is π
    assert sorted(perm.tolist()) == list(range(B))  # a permutation of the batch
    lam = targets.weights[:, :1, None, None]
    assert bool((targets.weights[:, 0] == targets.weights[0, 0]).all())  # one λ per batch
    assert torch.allclose(x_mixed, lam * x + (1 - lam) * x[perm], atol=1e-6)


def test_mixup_lambda_changes_with_the_generator_and_repeats_with_its_seed():
    x, y = batch()
    lams = [float(mixup(x, y, torch.Generator().manual_seed(s))[1].weights[0, 0]) for s in (0, 0, 1)]
    assert lams[0] == lams[1] != lams[2]


@pytest.mark.parametrize("seed", range(12))
def test_cutmix_lambda_equals_pasted_area_ratio(seed):
    x, y = batch(seed)
    x_mixed, targets = cutmix(x, y, torch.Generator().manual_seed(seed), mix_lambda=1.0)
    perm = targets.labels[:, 1]
    lam = float(targets.weights[0, 0])
    assert bool((targets.weights[:, 0] == lam).all())
    moved = perm != y
    assert bool(moved.any())
    # the pixels that changed, as one H x W map (CutMix pastes one box per batch)
    changed = (x_mixed != x).any(dim=1)[moved]  # b x H x W
    assert bool((changed == changed[0]).all())
    box = changed[0]
    if box.any():
        rows, cols = box.any(dim=1).nonzero().flatten(), box.any(dim=0).nonzero().flatten()
        assert int(box.sum()) == len(rows) * len(cols)  # a rectangle
    pasted = float(box.float().mean())
    assert lam == pytest.approx(1.0 - pasted, abs=1e-9)
    # inside the box the partner's pixels, outside the image's own
    expected = torch.where(box, x[perm], x)
    assert torch.equal(x_mixed, expected)


def test_cutmix_boxes_vary_and_are_clipped_at_the_border():
    x, y = batch()
    lams, clipped = set(), 0
    for seed in range(40):
        x_mixed, targets = cutmix(x, y, torch.Generator().manual_seed(seed), mix_lambda=1.0)
        lams.add(round(float(targets.weights[0, 0]), 6))
        box = (x_mixed != x).any(dim=1)[targets.labels[:, 1] != y][0]
        if box.any() and bool(box[0].any() | box[-1].any() | box[:, 0].any() | box[:, -1].any()):
            clipped += 1
    assert len(lams) > 10
    assert clipped > 0


@pytest.mark.parametrize("alpha, variance", [(1.0, 1 / 12), (0.2, 1 / (4 * 1.4))])
def test_sample_beta_draws_from_beta_alpha_alpha(alpha, variance):
    g = torch.Generator().manual_seed(0)
    draws = torch.tensor([sample_beta(alpha, g) for _ in range(4000)])
    assert bool(((draws >= 0) & (draws <= 1)).all())
    assert float(draws.mean()) == pytest.approx(0.5, abs=0.03)
    assert float(draws.var()) == pytest.approx(variance, rel=0.1)  # Var Beta(a, a) = 1 / (4 (2a + 1))


def test_mixed_cross_entropy_equals_the_weighted_sum_of_plain_cross_entropies():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(B, 10, generator=g)
    labels = torch.randint(0, 10, (B, 3), generator=g)
    weights = torch.softmax(torch.randn(B, 3, generator=g), dim=1)
    expected = sum((weights[:, i] * F.cross_entropy(logits, labels[:, i], reduction="none")).mean()
                   for i in range(3))
    assert mixed_cross_entropy(logits, Targets(labels, weights)) == pytest.approx(float(expected), rel=1e-6)


def test_mixed_cross_entropy_with_one_source_is_plain_cross_entropy():
    logits, y = torch.randn(B, 10), torch.randint(0, 10, (B,))
    loss = mixed_cross_entropy(logits, Targets(y[:, None], torch.ones(B, 1)))
    assert float(loss) == pytest.approx(float(F.cross_entropy(logits, y)), rel=1e-6)


def test_default_beta_parameters_follow_the_paper_mixup_1_cutmix_0_2():
    assert load_config(overrides={"method.name": "mixup", "out_dir": "x"}).method.mix_lambda == 1.0
    assert load_config(overrides={"method.name": "cutmix", "out_dir": "x"}).method.mix_lambda == 0.2
    assert load_config(overrides={"method.name": "cutmix", "method.mix_lambda": 1.0,
                                  "out_dir": "x"}).method.mix_lambda == 1.0


@pytest.mark.parametrize("method", ["vanilla", "mixup", "cutmix"])
def test_mix_step_gives_a_differentiable_loss_and_one_evaluated_head(method):
    step = MixStep(build_classifier("resnet18", 0.125, 10), MIX_FUNCTIONS[method], {"mix_lambda": 1.0})
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    loss, parts = step(x, y)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss) and "loss_ce" in parts
    assert all(p.grad is not None for p in step.classifier.parameters())
    assert list(step.eval_heads()) == [step.headline] == ["one"]
