"""Hand-crafted mixing baselines and the one mixed cross-entropy that serves every method.

- Mixup: Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018,
  https://arxiv.org/abs/1710.09412
- CutMix: Yun et al., "CutMix: Regularization Strategy to Train Strong Classifiers with
  Localizable Features", ICCV 2019, https://arxiv.org/abs/1905.04899

A mixing method is a function ``(x, y, rng, **params) -> (x_mixed, targets)``. ``targets`` holds,
for each of the N sources of every mixed sample, its label and its weight, so one
``mixed_cross_entropy`` trains vanilla, Mixup, CutMix and the N-image mixes of AdAutoMix alike.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F


class Targets(NamedTuple):
    """Per-source targets of a mixed batch.

    labels: B x N long, the class of source i of sample b.
    weights: B x N float, the share of source i in sample b (each row sums to 1).
    """

    labels: torch.Tensor
    weights: torch.Tensor


def mixed_cross_entropy(logits: torch.Tensor, targets: Targets) -> torch.Tensor:
    """Σ_i w_i · CE(logits, y_i), averaged over the batch.

    Args:
        logits: B x K.
        targets: labels and weights, each B x N.
    """
    log_p = F.log_softmax(logits.float(), dim=-1)
    nll = -log_p.gather(1, targets.labels)  # B x N
    return (nll * targets.weights).sum(dim=1).mean()


def sample_beta(alpha: float, rng: torch.Generator) -> float:
    """One draw from Beta(α, α) with a torch generator (Gamma ratio)."""
    g = torch._standard_gamma(torch.full((2,), float(alpha)), generator=rng)
    return float(g[0] / g.sum())


def vanilla(x: torch.Tensor, y: torch.Tensor, rng: torch.Generator, **_) -> tuple[torch.Tensor, Targets]:
    """No mixing: one source per sample with weight 1."""
    return x, Targets(y[:, None], torch.ones(len(y), 1, device=x.device))


def mixup(x: torch.Tensor, y: torch.Tensor, rng: torch.Generator,
          mix_lambda: float = 1.0) -> tuple[torch.Tensor, Targets]:
    """x̃ = λ·x + (1-λ)·x[π], λ ~ Beta(mix_lambda, mix_lambda).

    Args:
        x: B x C x H x W images; y: B labels.
        rng: CPU generator for λ and the partner permutation π.
        mix_lambda: Beta parameter (the paper's table: 1.0).
    """
    lam = sample_beta(mix_lambda, rng)
    perm = torch.randperm(len(y), generator=rng).to(x.device)
    x_mixed = lam * x + (1 - lam) * x[perm]
    return x_mixed, _pair_targets(y, perm, lam)


def rand_bbox(height: int, width: int, lam: float, rng: torch.Generator) -> tuple[int, int, int, int]:
    """A box of area about (1-λ)·H·W with a uniformly drawn centre, clipped to the image.

    Returns ``(top, bottom, left, right)``, half-open.
    """
    cut = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * cut), int(width * cut)
    cy = int(torch.randint(0, height, (1,), generator=rng))
    cx = int(torch.randint(0, width, (1,), generator=rng))
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    return top, bottom, left, right


def cutmix(x: torch.Tensor, y: torch.Tensor, rng: torch.Generator,
           mix_lambda: float = 0.2) -> tuple[torch.Tensor, Targets]:
    """Paste a box of x[π] into x; λ is corrected to the area actually kept.

    Args:
        x: B x C x H x W images; y: B labels.
        rng: CPU generator for λ, the box and π.
        mix_lambda: Beta parameter (the paper's table: 0.2).
    """
    lam = sample_beta(mix_lambda, rng)
    perm = torch.randperm(len(y), generator=rng).to(x.device)
    h, w = x.shape[-2:]
    top, bottom, left, right = rand_bbox(h, w, lam, rng)
    x_mixed = x.clone()
    x_mixed[..., top:bottom, left:right] = x[perm][..., top:bottom, left:right]
    lam = 1.0 - (bottom - top) * (right - left) / (h * w)  # area-corrected
    return x_mixed, _pair_targets(y, perm, lam)


def _pair_targets(y: torch.Tensor, perm: torch.Tensor, lam: float) -> Targets:
    labels = torch.stack([y, y[perm]], dim=1)
    weights = torch.tensor([lam, 1.0 - lam], device=y.device).expand(len(y), 2)
    return Targets(labels, weights)


MIX_FUNCTIONS = {"vanilla": vanilla, "mixup": mixup, "cutmix": cutmix}


class MixStep(nn.Module):
    """One training step of a hand-crafted method: mix, classify, mixed cross-entropy.

    Args:
        classifier: the model trained (its ``one`` head).
        mix: a mixing function ``(x, y, rng, **params) -> (x_mixed, targets)``.
        params: its keyword arguments (``mix_lambda`` and the method's own ``method.*`` keys).

    ``forward(x, y)`` returns ``(loss, parts)``; the engine sets ``rng`` (a CPU generator) and
    ``iteration`` before each call.
    """

    headline = "one"  # the head whose top-1 is the run's `top1`

    def __init__(self, classifier: nn.Module, mix, params: dict):
        super().__init__()
        self.classifier = classifier
        self.mix, self.params = mix, params
        self.rng = torch.Generator()
        self.iteration = 0

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x_mixed, targets = self.mix(x, y, self.rng, **self.params)
        loss = mixed_cross_entropy(self.classifier(x_mixed), targets)
        return loss, {"loss_ce": loss.detach()}

    def after_step(self, iteration: int, total_iterations: int) -> dict[str, float]:
        """Nothing to update after the optimizer step; returns extra metrics (none)."""
        return {}

    def eval_heads(self) -> dict[str, tuple[nn.Module, str]]:
        """Heads evaluated each epoch: name -> (model, head)."""
        return {"one": (self.classifier, "one")}

    @property
    def headline_model(self) -> nn.Module:
        """The model that scores ``headline`` (what is exported)."""
        return self.classifier
