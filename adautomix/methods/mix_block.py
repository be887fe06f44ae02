"""The Mix Block of AutoMix: a two-sample cross-attention mask generator, and its mask loss.

Liu et al., "AutoMix: Unveiling the Power of Mixup for Stronger Classifiers", ECCV 2022,
https://arxiv.org/abs/2103.13027. Every detail below was read from the published implementation,
OpenMixup's ``PixelMixBlock`` (openmixup/models/heads/pmix_block.py) with the settings of the
published CIFAR-100 ResNet-18 config (configs/classification/cifar100/automix/basic/
r18_l2_a2_near_L1_01_mlr5e_2.py: reduction 2, use_scale, nearest upsampling, no λ concat, no
norm or activation after the q/k conv, 1x1-conv value, L1 mask loss with margin 0.1).

For the sample x (ratio λ) and its partner x[π] (ratio 1−λ), with feature maps z and z_π
(optionally each with one constant channel, λ and 1−λ: ``lam_concat``):

    q = W_q z,  k = W_q z_π                  (the same 1x1 conv, C/2 channels, no activation)
    v = W_v z_π                              (1x1 conv, 1 channel)
    P = softmax_rows( q kᵀ / sqrt(C/2) )     (HW x HW)
    m = sigmoid( Upsample(P v) )             (the partner's mask, image size)
    M = (1 − m, m)                           (two channels: x's mask, x[π]'s mask)

so every pixel's two mask values are in (0, 1) and sum to 1. Parameter names follow
``PixelMixBlock`` (``query.conv.*``, ``value.*``) so that its trained weights load with
``generator.load_openmixup_generator``.

The mask loss (``PixelMixBlock.mask_loss``, mode "L1") keeps the mean of x's mask near λ:
L_mask = max(|1 − mean(m) − λ| − ε, 0), the mean over the batch and every pixel, ε the margin.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class _Conv(nn.Module):
    """1x1 convolution named like mmcv's ``ConvModule`` (``.conv``); the published config gives it
    no norm and no activation."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class MixBlock(nn.Module):
    """AutoMix's Mix Block.

    Args:
        in_channels: channels C of the feature maps (ResNet-18 stage 3: 256).
        reduction: q/k channels are C // reduction.
        lam_concat: append a constant channel (λ for the sample, 1−λ for its partner) to the
            features of q, k and v.
        upsample: ``"nearest"`` (published CIFAR configs) or ``"bilinear"``.
        scale_factor: image size / feature size, used when ``forward`` is given no ``size``
            (CIFAR-stem ResNet stage 3: 4).
    """

    def __init__(self, in_channels: int, reduction: int = 2, lam_concat: bool = False,
                 upsample: str = "nearest", scale_factor: float = 4):
        super().__init__()
        self.inter_channels = max(in_channels // reduction, 1)
        self.lam_concat, self.upsample, self.scale_factor = lam_concat, upsample, scale_factor
        c_in = in_channels + int(lam_concat)
        self.query = _Conv(c_in, self.inter_channels)  # W_q, used for q and k
        self.value = nn.Conv2d(c_in, 1, 1)  # W_v
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # published init: normal(0, 0.01), bias 0
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, features: list[torch.Tensor], lam: torch.Tensor | list[float],
                size: tuple[int, int] | None = None) -> torch.Tensor:
        """Masks for mixing a sample with its partner.

        Args:
            features: ``[z, z_π]``, each B x C x h x w (the partner's already permuted).
            lam: ``[λ, 1−λ]``, the two mixing ratios (used only with ``lam_concat``).
            size: (H, W) of the images, the size the masks are upsampled to (the factor is read
                from the shapes); None: ``scale_factor``.

        Returns:
            B x 2 x H x W masks in (0, 1), summing to 1 over the two channels.
        """
        if len(features) != 2:
            raise ValueError(f"the AutoMix Mix Block mixes 2 samples, got {len(features)}")
        z, z_p = (f.float() for f in features)
        b, _, h, w = z.shape
        if self.lam_concat:
            z = torch.cat([z, z.new_full((b, 1, h, w), float(lam[0]))], dim=1)
            z_p = torch.cat([z_p, z_p.new_full((b, 1, h, w), float(lam[1]))], dim=1)
        q = self.query(z).flatten(2).transpose(1, 2)  # B x HW x C/2
        k = self.query(z_p).flatten(2)  # B x C/2 x HW
        v = self.value(z_p).flatten(2).transpose(1, 2)  # B x HW x 1
        attn = torch.softmax(q @ k / math.sqrt(self.inter_channels), dim=-1)  # B x HW x HW
        m = (attn @ v).view(b, 1, h, w)
        m = torch.sigmoid(F.interpolate(m, **({"size": tuple(size)} if size is not None else
                                              {"scale_factor": self.scale_factor}), mode=self.upsample))
        return torch.cat([1 - m, m], dim=1)


def mask_loss(masks: torch.Tensor, lam: float | torch.Tensor, margin: float) -> torch.Tensor:
    """L1 mask loss with a margin: max(|1 − mean(M_2) − λ| − ε, 0).

    Args:
        masks: B x 2 x H x W Mix Block masks (channel 1: the partner's).
        lam: λ, the sample's ratio.
        margin: ε; the loss is 0 while the sample's mean mask is within ε of λ.
    """
    return ((1 - masks[:, 1].mean() - lam).abs() - margin).clamp(min=0)
