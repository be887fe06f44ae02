"""Occlusion robustness: accuracy as more of the image is hidden by random patches.

The AdAutoMix paper (§4, "Occlusion Robustness") follows Naseer et al., "Intriguing Properties of
Vision Transformers" (NeurIPS 2021, https://arxiv.org/abs/2105.10497): the image is cut into a
grid of 16 x 16 patches and a random subset of them is masked, the masked fraction swept from 0
to 100 % in 10 % steps. A masked patch is set to black (0 in pixel space).

On a 32 x 32 image the grid has only 4 cells, so a ratio r rarely names a whole number of
cells: each image masks ⌊r·n⌋ cells, plus one more with probability r·n − ⌊r·n⌋, so the
expected masked fraction is exactly r (the measured one is returned too).
"""
from __future__ import annotations

import math

import torch

PATCH = 16
RATIOS = tuple(round(0.1 * i, 1) for i in range(11))


def occlusion_mask(batch: int, height: int, width: int, ratio: float, patch: int,
                   generator: torch.Generator) -> torch.Tensor:
    """``B x 1 x H x W`` float mask, 1 where the image is hidden: random ``patch x patch`` cells
    of the grid (edge cells cropped to the image), ⌊r·n⌋ or ⌈r·n⌉ of the n cells per image so
    that the expected fraction of cells is ``ratio``."""
    rows, cols = math.ceil(height / patch), math.ceil(width / patch)
    n = rows * cols
    whole = math.floor(ratio * n + 1e-9)
    extra = torch.rand(batch, generator=generator) < (ratio * n - whole)
    k = (whole + extra.long()).clamp(max=n)  # cells masked per image
    order = torch.rand(batch, n, generator=generator).argsort(dim=1)
    ranks = order.argsort(dim=1)  # each cell's position in a random order
    cells = (ranks < k[:, None]).float().view(batch, 1, rows, cols)
    mask = cells.repeat_interleave(patch, dim=2).repeat_interleave(patch, dim=3)
    return mask[:, :, :height, :width]


def occlude(pixels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] (``B x 3 x H x W``) with the masked pixels set to 0 (black)."""
    return pixels * (1 - mask.to(pixels))
