"""The masks of the hand-crafted mixing methods: pure functions of a size, λ and a CPU generator.

Each function returns an H x W mask on the CPU; the mixing functions in ``mixing.py`` move it
to the batch and read λ off it, so the label weights always equal the mixed content.

- ``centred_box``: the CutMix box, side sqrt(1-λ) of the image's, centred on a given pixel and
  clipped to the image (CutMix, SaliencyMix).
- ``fmix_mask``: FMix (Harris et al., 2020, https://arxiv.org/abs/2002.12047) -- a grey image
  of Fourier noise with amplitude 1/f^d, binarised so that its top round(λ·HW) pixels are 1.
- ``grid_mask``: GridMix as OpenMixup carries it (after https://github.com/IlyaDobrynin/GridMixup):
  a regular grid of equal rectangular holes inside a random crop; hole side = cell side ·
  sqrt(1-λ).
- ``gaussian_mask``: SmoothMix (Lee et al., CVPR-W 2020): a Gaussian bump
  G_ij = exp(-((i-c_y)² + (j-c_x)²) / (2σ²)) with a uniform centre and σ = s·H, s ~ U(s_min, s_max).
"""
from __future__ import annotations

import math

import torch


def _uniform(low: float, high: float, rng: torch.Generator) -> float:
    return low + (high - low) * float(torch.rand((), generator=rng))


def box_half_sides(height: int, width: int, lam: float) -> tuple[int, int]:
    """Half the sides of the CutMix box for λ: ⌊H·sqrt(1-λ)⌋ // 2 and ⌊W·sqrt(1-λ)⌋ // 2.

    The box spans centre ± half, so its sides are even, as in the CutMix code, and a non-empty
    box always contains its centre.
    """
    cut = math.sqrt(1.0 - lam)
    return int(height * cut) // 2, int(width * cut) // 2


def centred_box(cy: int, cx: int, height: int, width: int, lam: float) -> tuple[int, int, int, int]:
    """The CutMix box of area about (1-λ)·H·W centred on pixel (cy, cx), clipped to the image.

    Returns ``(top, bottom, left, right)``, half-open.
    """
    half_h, half_w = box_half_sides(height, width, lam)
    return max(cy - half_h, 0), min(cy + half_h, height), max(cx - half_w, 0), min(cx + half_w, width)


def low_frequency_noise(height: int, width: int, decay_power: float, rng: torch.Generator) -> torch.Tensor:
    """H x W real noise whose Fourier amplitude falls as 1/f^decay_power (FMix, eq. 5).

    Each frequency's complex coefficient is N(0, 1) + i·N(0, 1), scaled by
    1 / max(f, 1/max(H, W))^d (the floor keeps the zero frequency finite); the inverse real FFT
    gives the grey image.
    """
    fy = torch.fft.fftfreq(height, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(width, dtype=torch.float64)[None, :]
    freq = torch.sqrt(fy ** 2 + fx ** 2).clamp_min(1.0 / max(height, width))
    coeffs = torch.randn(2, height, width // 2 + 1, generator=rng, dtype=torch.float64)
    spectrum = torch.complex(coeffs[0], coeffs[1]) / freq ** decay_power
    return torch.fft.irfft2(spectrum, s=(height, width))


def fmix_mask(lam: float, height: int, width: int, decay_power: float, rng: torch.Generator) -> torch.Tensor:
    """Binary H x W mask (bool) with exactly round(λ·H·W) ones: the top pixels of the noise.

    Args:
        lam: λ, the target mean.
        decay_power: d of the 1/f^d amplitude (the paper's default: 3).
        rng: CPU generator.
    """
    noise = low_frequency_noise(height, width, decay_power, rng).flatten()
    kept = math.floor(lam * height * width + 0.5)
    mask = torch.zeros(height * width, dtype=torch.bool)
    mask[noise.argsort(descending=True)[:kept]] = True
    return mask.view(height, width)


def grid_mask(lam: float, height: int, width: int, rng: torch.Generator, holes_min: int = 2,
              holes_max: int = 6, area_min: float = 0.5, area_max: float = 1.0,
              aspect_min: float = 0.5, aspect_max: float = 2.0) -> torch.Tensor:
    """Binary H x W mask (bool, True = the partner's pixel): a grid of holes in a random crop.

    The crop has area ratio ~ U(area_min, area_max) and aspect ratio (height / width)
    ~ U(aspect_min, aspect_max), lies inside the image at a uniform position, and is split into
    n columns of square cells (n uniform in holes_min..holes_max, at most half the crop width so
    a cell is at least 2 pixels). The top-left corner of every cell holds a hole of side
    cell · sqrt(1-λ), at least 1 pixel and at most cell - 1; holes are clipped at the crop.
    """
    n = int(torch.randint(holes_min, holes_max + 1, (), generator=rng))
    area, aspect = _uniform(area_min, area_max, rng), _uniform(aspect_min, aspect_max, rng)
    crop_w = min(int(math.sqrt(height * width * area / aspect)), width)
    crop_h = min(int(crop_w * aspect), height)
    top = int((height - crop_h) * float(torch.rand((), generator=rng)))
    left = int((width - crop_w) * float(torch.rand((), generator=rng)))
    cell = math.ceil(crop_w / max(min(n, crop_w // 2), 1))
    hole = min(max(int(cell * math.sqrt(1.0 - lam)), 1), cell - 1)
    rows, cols = torch.arange(height) - top, torch.arange(width) - left
    in_rows = (rows >= 0) & (rows < crop_h) & (rows % cell < hole)
    in_cols = (cols >= 0) & (cols < crop_w) & (cols % cell < hole)
    return in_rows[:, None] & in_cols[None, :]


def gaussian_mask(height: int, width: int, rng: torch.Generator, sigma_min: float = 0.25,
                  sigma_max: float = 0.5) -> torch.Tensor:
    """H x W float mask G_ij = exp(-((i-c_y)² + (j-c_x)²) / (2σ²)), the SmoothMix blend.

    The centre (c_y, c_x) is a uniformly drawn pixel; σ = s·H with s ~ U(sigma_min, sigma_max).
    """
    cy = int(torch.randint(0, height, (), generator=rng))
    cx = int(torch.randint(0, width, (), generator=rng))
    sigma = _uniform(sigma_min, sigma_max, rng) * height
    dist2 = (torch.arange(height)[:, None] - cy) ** 2 + (torch.arange(width)[None, :] - cx) ** 2
    return torch.exp(-dist2.float() / (2 * sigma ** 2))
