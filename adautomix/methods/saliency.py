"""Spectral-residual saliency (Hou & Zhang, "Saliency Detection: A Spectral Residual Approach",
CVPR 2007), batched in torch, for SaliencyMix.

For a grey image I, resized to 64 x 64 as in the paper (and in OpenCV's
``StaticSaliencySpectralResidual``):

    A(f) = |F[I]|,  P(f) = angle(F[I]),  L(f) = log A(f)
    R(f) = L(f) - h_3 * L(f)                      (the spectral residual; h_3 = 3 x 3 mean filter)
    S    = g * |F^-1[exp(R(f) + i·P(f))]|²        (g = Gaussian blur)

then S is scaled to a maximum of 1 and resized back to H x W. The paper squares, then blurs
(its eq. 5); OpenCV blurs, then squares. The blur follows OpenCV: a 5 x 5 kernel with σ = 8
(the paper's σ), borders reflected as in OpenCV's default.

Note: the SaliencyMix authors' code calls OpenCV's fine-grained detector (Montabone & Soto,
2010) instead; spectral residual is this package's choice (a saliency that needs no OpenCV).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

SIZE = 64  # the paper's working resolution
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights of R, G, B (OpenCV's RGB -> grey)


def _reflect_filter(maps: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Correlate B x h x w maps with a k x k kernel, borders reflected (OpenCV's BORDER_DEFAULT)."""
    pad = kernel.shape[-1] // 2
    padded = F.pad(maps[:, None], (pad, pad, pad, pad), mode="reflect")
    return F.conv2d(padded, kernel[None, None].to(maps))[:, 0]


def gaussian_kernel(size: int = 5, sigma: float = 8.0) -> torch.Tensor:
    """size x size Gaussian weights with standard deviation σ, summing to 1."""
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-t ** 2 / (2 * sigma ** 2))
    return torch.outer(g, g) / g.sum() ** 2


def spectral_residual(x: torch.Tensor) -> torch.Tensor:
    """Saliency maps of a batch of images.

    Args:
        x: B x C x H x W images (C = 3: RGB turned grey with BT.601 weights; otherwise the
            channel mean). Normalised or not: the residual ignores brightness and contrast.

    Returns:
        B x H x W saliency, >= 0, each map scaled to a maximum of 1 at 64 x 64 before the
        resize back to H x W.
    """
    height, width = x.shape[-2:]
    x = x.detach().double()
    if x.shape[1] == 3:
        grey = torch.einsum("bchw,c->bhw", x, torch.tensor(LUMA, dtype=x.dtype, device=x.device))
    else:
        grey = x.mean(dim=1)
    grey = F.interpolate(grey[:, None], size=(SIZE, SIZE), mode="bilinear", align_corners=False)[:, 0]
    spectrum = torch.fft.fft2(grey)
    log_amplitude = torch.log(spectrum.abs().clamp_min(1e-12))
    residual = log_amplitude - _reflect_filter(log_amplitude, torch.full((3, 3), 1 / 9, dtype=x.dtype))
    saliency = torch.fft.ifft2(torch.polar(torch.exp(residual), spectrum.angle())).abs() ** 2
    saliency = _reflect_filter(saliency, gaussian_kernel())
    saliency = saliency / saliency.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-30)
    return F.interpolate(saliency[:, None], size=(height, width), mode="bilinear", align_corners=False)[:, 0].float()
