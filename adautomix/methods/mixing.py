"""Hand-crafted mixing baselines and the one mixed cross-entropy that serves every method.

- Mixup: Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018,
  https://arxiv.org/abs/1710.09412
- CutMix: Yun et al., "CutMix: Regularization Strategy to Train Strong Classifiers with
  Localizable Features", ICCV 2019, https://arxiv.org/abs/1905.04899
- FMix: Harris et al., "FMix: Enhancing Mixed Sample Data Augmentation", 2020,
  https://arxiv.org/abs/2002.12047
- ResizeMix: Qin et al., "ResizeMix: Mixing Data with Preserved Object Information and True
  Labels", 2020, https://arxiv.org/abs/2012.11101
- SaliencyMix: Uddin et al., "SaliencyMix: A Saliency Guided Data Augmentation Strategy for
  Better Regularization", ICLR 2021, https://arxiv.org/abs/2006.01791
- GridMix: Baek et al., "GridMix: Strong regularization through local context mapping",
  Pattern Recognition 2021, in the form OpenMixup carries (a grid of holes, see ``masks.py``)
- SmoothMix: Lee et al., "SmoothMix: a Simple Yet Effective Data Augmentation to Train Robust
  Classifiers", CVPR Workshops 2020

A mixing method is a function ``(x, y, rng, **params) -> (x_mixed, targets)``. ``targets`` holds,
for each of the N sources of every mixed sample, its label and its weight, so one
``mixed_cross_entropy`` trains vanilla, Mixup, CutMix and the N-image mixes of AdAutoMix alike.
Every two-image method here mixes x with its partner x[π] (π a random permutation of the batch)
and weights the labels by the share of each image in the mixed pixels, measured on the mask it
actually used (after clipping and rounding). Random draws come from ``rng`` (a CPU generator).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .masks import box_half_sides, centred_box, fmix_mask, gaussian_mask, grid_mask
from .saliency import spectral_residual


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
    perm = torch.randperm(len(y), generator=rng).to(x.device, non_blocking=True)
    x_mixed = lam * x + (1 - lam) * x[perm]
    return x_mixed, _pair_targets(y, perm, lam)


def rand_bbox(height: int, width: int, lam: float, rng: torch.Generator) -> tuple[int, int, int, int]:
    """A box of area about (1-λ)·H·W with a uniformly drawn centre, clipped to the image.

    Returns ``(top, bottom, left, right)``, half-open.
    """
    cy = int(torch.randint(0, height, (1,), generator=rng))
    cx = int(torch.randint(0, width, (1,), generator=rng))
    return centred_box(cy, cx, height, width, lam)


def cutmix(x: torch.Tensor, y: torch.Tensor, rng: torch.Generator,
           mix_lambda: float = 0.2) -> tuple[torch.Tensor, Targets]:
    """Paste a box of x[π] into x; λ is corrected to the area actually kept.

    Args:
        x: B x C x H x W images; y: B labels.
        rng: CPU generator for λ, the box and π.
        mix_lambda: Beta parameter (the paper's table: 0.2).
    """
    lam = sample_beta(mix_lambda, rng)
    perm = torch.randperm(len(y), generator=rng).to(x.device, non_blocking=True)
    h, w = x.shape[-2:]
    top, bottom, left, right = rand_bbox(h, w, lam, rng)
    x_mixed = x.clone()
    x_mixed[..., top:bottom, left:right] = x[perm][..., top:bottom, left:right]
    lam = 1.0 - (bottom - top) * (right - left) / (h * w)  # area-corrected
    return x_mixed, _pair_targets(y, perm, lam)


def fmix(x: torch.Tensor, y: torch.Tensor, rng: torch.Generator, mix_lambda: float = 0.2,
         decay_power: float = 3.0) -> tuple[torch.Tensor, Targets]:
    """x where a binary low-frequency mask is 1, x[π] elsewhere; one mask for the batch.

    The mask keeps exactly round(λ·H·W) pixels of x (``masks.fmix_mask``), so x's weight is
    that count / (H·W): λ to the pixel.

    Args:
        x: B x C x H x W images; y: B labels.
        rng: CPU generator for λ, π and the Fourier noise.
        mix_lambda: Beta parameter of λ (OpenMixup's CIFAR-100 table: 0.2).
        decay_power: d of the noise's 1/f^d amplitude (the paper's default: 3).
    """
    lam = sample_beta(mix_lambda, rng)
    perm = torch.randperm(len(y), generator=rng).to(x.device, non_blocking=True)
    h, w = x.shape[-2:]
    keep = fmix_mask(lam, h, w, decay_power, rng)
    x_mixed = torch.where(keep.to(x.device), x, x[perm])
    return x_mixed, _pair_targets(y, perm, float(keep.float().mean()))


def resizemix(x: torch.Tensor, y: torch.Tensor, rng: torch.Generator, mix_lambda: float = 1.0,
              scale_min: float = 0.1, scale_max: float = 0.8,
              interpolation: str = "nearest") -> tuple[torch.Tensor, Targets]:
    """Paste x[π], shrunk to τ·H x τ·W, at a uniform position inside x; one box for the batch.

    τ ~ Beta(λ, λ), drawn again from U(scale_min, scale_max) when it falls outside that range
    (OpenMixup's rule); with λ = 1 that is exactly the paper's τ ~ U(0.1, 0.8). The patch lies
    wholly inside the image (the paper keeps the whole partner), and x's weight is 1 - patch
    area / (H·W).

    Args:
        x: B x C x H x W images; y: B labels.
        rng: CPU generator for τ, π and the position.
        mix_lambda: Beta parameter of τ (OpenMixup's table: 1).
        scale_min, scale_max: range of τ, the patch side over the image side.
        interpolation: ``F.interpolate`` mode of the resize (``nearest``, as OpenMixup, or
            ``bilinear``).
    """
    tau = sample_beta(mix_lambda, rng)
    if not scale_min <= tau <= scale_max:
        tau = scale_min + (scale_max - scale_min) * float(torch.rand((), generator=rng))
    perm = torch.randperm(len(y), generator=rng).to(x.device, non_blocking=True)
    h, w = x.shape[-2:]
    ph, pw = max(int(h * tau), 1), max(int(w * tau), 1)
    top = int(torch.randint(0, h - ph + 1, (), generator=rng))
    left = int(torch.randint(0, w - pw + 1, (), generator=rng))
    align = False if interpolation == "bilinear" else None
    x_mixed = x.clone()
    x_mixed[..., top:top + ph, left:left + pw] = F.interpolate(
        x[perm], size=(ph, pw), mode=interpolation, align_corners=align)
    return x_mixed, _pair_targets(y, perm, 1.0 - ph * pw / (h * w))


def saliencymix(x: torch.Tensor, y: torch.Tensor, rng: torch.Generator, mix_lambda: float = 0.2,
                box: str = "batch") -> tuple[torch.Tensor, Targets]:
    """CutMix with the box centred on the saliency peak of the pasted image x[π].

    The saliency is the spectral residual (``saliency.py``); the box has CutMix's size for λ,
    is clipped to the image, and x's weight is 1 - its area / (H·W).

    Args:
        x: B x C x H x W images; y: B labels.
        rng: CPU generator for λ and π.
        mix_lambda: Beta parameter of λ (OpenMixup's CIFAR-100 table: 0.2).
        box: ``batch``: one box for the whole batch, around the peak of the first partner
            x[π(0)] (the SaliencyMix authors' code and OpenMixup); ``sample``: each sample's box
            around the peak of its own partner (the paper's description).
    """
    lam = sample_beta(mix_lambda, rng)
    perm = torch.randperm(len(y), generator=rng).to(x.device, non_blocking=True)
    h, w = x.shape[-2:]
    partners = x[perm[:1]] if box == "batch" else x[perm]
    peak = spectral_residual(partners).flatten(1).argmax(dim=1)  # b
    cy, cx = (peak // w)[:, None], (peak % w)[:, None]
    half_h, half_w = box_half_sides(h, w, lam)
    rows, cols = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    in_rows = (rows >= cy - half_h) & (rows < cy + half_h)  # b x H; the box, clipped
    in_cols = (cols >= cx - half_w) & (cols < cx + half_w)  # b x W
    pasted = in_rows[:, :, None] & in_cols[:, None, :]  # b x H x W
    x_mixed = torch.where(pasted[:, None], x[perm], x)
    share = pasted.flatten(1).float().mean(dim=1).expand(len(y))
    return x_mixed, Targets(torch.stack([y, y[perm]], dim=1), torch.stack([1.0 - share, share], dim=1))


def gridmix(x: torch.Tensor, y: torch.Tensor, rng: torch.Generator, mix_lambda: float = 0.2,
            holes_min: int = 2, holes_max: int = 6, area_min: float = 0.5,
            area_max: float = 1.0) -> tuple[torch.Tensor, Targets]:
    """x[π] inside a grid of holes (``masks.grid_mask``), x elsewhere; one mask for the batch.

    Args:
        x: B x C x H x W images; y: B labels.
        rng: CPU generator for λ, π and the grid.
        mix_lambda: Beta parameter of λ (OpenMixup's CIFAR-100 table: 0.2).
        holes_min, holes_max: range of the number of grid cells across the crop.
        area_min, area_max: range of the crop's area over the image's.
    """
    lam = sample_beta(mix_lambda, rng)
    perm = torch.randperm(len(y), generator=rng).to(x.device, non_blocking=True)
    h, w = x.shape[-2:]
    holes = grid_mask(lam, h, w, rng, holes_min, holes_max, area_min, area_max)
    x_mixed = torch.where(holes.to(x.device), x[perm], x)
    return x_mixed, _pair_targets(y, perm, 1.0 - float(holes.float().mean()))


def smoothmix(x: torch.Tensor, y: torch.Tensor, rng: torch.Generator, sigma_min: float = 0.25,
              sigma_max: float = 0.5) -> tuple[torch.Tensor, Targets]:
    """x̃ = (1 - G) ⊙ x + G ⊙ x[π] with a Gaussian bump G (``masks.gaussian_mask``).

    λ is not drawn: x[π]'s weight is mean(G), the paper's λ = Σ G_ij / (H·W), and x's is
    1 - mean(G). One mask for the batch.

    Args:
        x: B x C x H x W images; y: B labels.
        rng: CPU generator for π and the mask.
        sigma_min, sigma_max: range of σ / H (OpenMixup: 0.25 to 0.5).
    """
    perm = torch.randperm(len(y), generator=rng).to(x.device, non_blocking=True)
    h, w = x.shape[-2:]
    blend = gaussian_mask(h, w, rng, sigma_min, sigma_max)
    on_device = blend.to(x.device, x.dtype)
    x_mixed = (1 - on_device) * x + on_device * x[perm]
    return x_mixed, _pair_targets(y, perm, 1.0 - float(blend.mean()))


def _pair_targets(y: torch.Tensor, perm: torch.Tensor, lam: float) -> Targets:
    labels = torch.stack([y, y[perm]], dim=1)
    weights = torch.tensor([lam, 1.0 - lam], device=y.device).expand(len(y), 2)
    return Targets(labels, weights)


MIX_FUNCTIONS = {"vanilla": vanilla, "mixup": mixup, "cutmix": cutmix, "fmix": fmix,
                 "resizemix": resizemix, "saliencymix": saliencymix, "gridmix": gridmix,
                 "smoothmix": smoothmix}


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
