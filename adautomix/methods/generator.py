"""The mixed example generator G of AdAutoMix: a cross-attention block over N feature maps.

Qin et al., "Adversarial AutoMixup", ICLR 2024, https://arxiv.org/abs/2312.11954, Section 3
(SPEC.md step 4). For source i with feature map z_i (optionally with a constant λ_i channel):

    q_i = ReLU(Conv1x1(z_i)),  k_i = ReLU(Conv1x1(z_i))      (C/2 channels each)
    v_i = Conv1x1(z_i)                                         (1 channel)
    A_i = softmax_rows( Σ_{j≠i} q_i k_jᵀ / sqrt(C/2) )         (HW x HW)
    m_i = A_i v_i                                              (h x w)

The N maps are upsampled to the image size and normalised by a softmax across N, so every
pixel's N mask values are >= 0 and sum to 1. The convolutions are shared by all sources, so one
generator mixes any N >= 2. Parameter names follow the published ``AdaptiveMask`` of OpenMixup
(``conv_q.conv.*``, ``conv_k.conv.*``, ``conv_v.*``) so its trained weights load unchanged.

Numerics, as the published ``AdaptiveMask`` guards them (README, "Numerics"):

- fp32 under mixed precision: the authors cast q and k to float32 for q·kᵀ, the softmax and
  A·v. Here the whole block (its three 1x1 convs included) runs with autocast off on float32
  inputs, so a bf16 run (``train.bf16``) gets the fp32 masks.
- Infinities in the attention logits are clamped to ±1e25 before the scaling and the softmax
  (the authors clamp when any entry is infinite; clamping always differs only for finite
  logits beyond 1e25, which the softmax already saturates on).
- A NaN in the N maps m_i (before upsampling) falls back to a constant: 0.3 for N > 2, and for
  N = 2 1e-4 for the first map and 1e4 for the second (the authors' values, so a NaN pixel of a
  2-mix goes to the partner). ``torch.where`` rather than an ``if``, so one compiled graph
  serves every step.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

ATTENTION_CLAMP = 1e25  # the authors' bound for infinite attention logits
NAN_FALLBACK = 0.3  # a NaN map value for N > 2 (the authors' co-mix fallback)
NAN_FALLBACK_PAIR = (1e-4, 1e4)  # N = 2: the first and the second map's fallback


def _nan_fallback(masks: torch.Tensor) -> torch.Tensor:
    """``masks`` (B x N x h x w) with every NaN replaced by the authors' constant for N."""
    n = masks.shape[1]
    fill = (torch.tensor(NAN_FALLBACK_PAIR, dtype=masks.dtype, device=masks.device).view(1, 2, 1, 1)
            if n == 2 else masks.new_full((1, n, 1, 1), NAN_FALLBACK))
    return torch.where(torch.isnan(masks), fill, masks)


class _ConvReLU(nn.Module):
    """1x1 convolution + ReLU, named like mmcv's ``ConvModule`` (``.conv``)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x))


class MixGenerator(nn.Module):
    """Cross-attention mask generator.

    Args:
        in_channels: channels C of the feature maps (ResNet-18 stage 3: 256).
        reduction: q/k channels are C // reduction.
        lam_concat: append a constant channel equal to λ_i to source i's features.
        upsample: ``"bilinear"`` (published ResNet configs) or ``"nearest"``.
        scale_factor: image size / feature size, used when ``forward`` is given no ``size``
            (CIFAR-stem ResNet stage 3: 4).
    """

    def __init__(self, in_channels: int, reduction: int = 2, lam_concat: bool = False,
                 upsample: str = "bilinear", scale_factor: float = 4):
        super().__init__()
        self.inter_channels = max(in_channels // reduction, 1)
        self.lam_concat, self.upsample, self.scale_factor = lam_concat, upsample, scale_factor
        qk_in = in_channels + int(lam_concat)
        self.conv_q = _ConvReLU(qk_in, self.inter_channels)
        self.conv_k = _ConvReLU(qk_in, self.inter_channels)
        self.conv_v = nn.Conv2d(qk_in, 1, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, features: list[torch.Tensor], lam: torch.Tensor | list[float],
                size: tuple[int, int] | None = None) -> torch.Tensor:
        """Masks for mixing N sources.

        Args:
            features: N feature maps, each B x C x h x w (source i's features, already permuted).
            lam: the N mixing ratios λ_1..λ_N (used only with ``lam_concat``).
            size: (H, W) of the images: the masks are upsampled to it, so the factor is image
                size / feature size, read from the shapes (e.g. 4 for a CIFAR-stem ResNet's stage
                3, 16 with the ImageNet stem, 32 for Swin-T); None: ``scale_factor``.

        Returns:
            B x N x H x W masks, >= 0, summing to 1 over N at every pixel.
        """
        # fp32 even under bf16 autocast (the authors' rule for this block; module docstring)
        with torch.autocast(device_type=features[0].device.type, enabled=False):
            return self._masks(torch.stack(features, dim=1).float(), lam, size)

    def _masks(self, z: torch.Tensor, lam, size) -> torch.Tensor:
        """``forward`` on the stacked B x N x C x h x w float32 features, autocast off."""
        b, n, c, h, w = z.shape
        if self.lam_concat:
            lam_t = torch.as_tensor(lam, dtype=z.dtype, device=z.device).view(1, n, 1, 1, 1)
            z = torch.cat([z, lam_t.expand(b, n, 1, h, w)], dim=2)
        flat = z.flatten(0, 1)  # (B*N) x C' x h x w: one conv call for all sources
        q = self.conv_q(flat).view(b, n, self.inter_channels, h * w).transpose(2, 3)  # B x N x HW x C/2
        k = self.conv_k(flat).view(b, n, self.inter_channels, h * w)  # B x N x C/2 x HW
        v = self.conv_v(flat).view(b, n, h * w, 1)  # B x N x HW x 1
        k_others = k.sum(dim=1, keepdim=True) - k  # Σ_{j≠i} k_j, so q_i Σ k_jᵀ = Σ q_i k_jᵀ
        logits = (q @ k_others).clamp(-ATTENTION_CLAMP, ATTENTION_CLAMP)  # ±inf -> ±1e25; NaN stays
        attn = torch.softmax(logits / math.sqrt(self.inter_channels), dim=-1)  # B x N x HW x HW
        masks = _nan_fallback((attn @ v).view(b, n, h, w))
        masks = F.interpolate(masks, **({"size": tuple(size)} if size is not None else
                                        {"scale_factor": self.scale_factor}), mode=self.upsample)
        return masks.softmax(dim=1)


def load_openmixup_generator(generator: nn.Module, state_dict: dict) -> nn.Module:
    """Load the generator weights of a published OpenMixup AdAutoMix or AutoMix checkpoint.

    Args:
        generator: a ``MixGenerator`` (AdAutoMix) or ``mix_block.MixBlock`` (AutoMix) built with
            the checkpoint's channels and ``lam_concat``.
        state_dict: the checkpoint (``{"state_dict": ...}`` or the bare dict); the keys under
            ``mix_block.`` are used, everything else is ignored.
    """
    state_dict = state_dict.get("state_dict", state_dict)
    prefix = "mix_block."
    weights = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if not weights:
        raise KeyError("no 'mix_block.*' keys: not an OpenMixup AdAutoMix or AutoMix checkpoint")
    generator.load_state_dict(weights, strict=True)
    return generator
