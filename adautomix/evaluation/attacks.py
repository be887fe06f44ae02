"""FGSM, the fast gradient sign method (Goodfellow, Shlens & Szegedy, "Explaining and Harnessing
Adversarial Examples", ICLR 2015, https://arxiv.org/abs/1412.6572), white-box, in pixel space:

    x_adv = clip(x + ε · sign(∇_x CE(f(normalise(x)), y)), 0, 1)

with x the image in [0, 1] pixels, ε = 8/255 as in the AdAutoMix paper's robustness table. The
model sees normalised images, so the attack un-normalises the batch, perturbs and clips the
pixels, and normalises again.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

EPSILON = 8 / 255


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
         epsilon: float = EPSILON) -> torch.Tensor:
    """The FGSM images of a normalised batch.

    Args:
        model: maps normalised images to logits (kept in its current train/eval mode).
        x: ``B x 3 x H x W`` normalised images; y: ``B`` labels.
        mean, std: the normalisation, broadcastable to ``x`` (``1 x 3 x 1 x 1``, [0, 1] units).
        epsilon: the L∞ budget in pixel units ([0, 1] scale).

    Returns:
        ``B x 3 x H x W`` normalised adversarial images (no gradient attached).
    """
    pixels = (x * std + mean).detach().requires_grad_(True)
    loss = F.cross_entropy(model((pixels - mean) / std), y)
    (grad,) = torch.autograd.grad(loss, pixels)
    adversarial = (pixels + epsilon * grad.sign()).clamp(0, 1)
    return ((adversarial - mean) / std).detach()
