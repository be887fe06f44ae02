"""Spectral-residual saliency (Hou & Zhang, "Saliency Detection: A Spectral Residual Approach",
CVPR 2007), batched in torch, for SaliencyMix.

For a grey image I, resized to 64 x 64 as in the paper (and in OpenCV's
``StaticSaliencySpectralResidual``):

    A(f) = |F[I]|,  P(f) = angle(F[I]),  L(f) = log A(f)
    R(f) = L(f) - h_3 * L(f)                      (the spectral residual; h_3 = 3 x 3 mean filter)
    S    = g * |F^-1[exp(R(f) + i·P(f))]|²        (g = Gaussian blur)

then S is scaled to a maximum of 1 and resized back to H x W. Since A·e^{iP} = F[I],
exp(R + iP) = F[I] · exp(-h_3 * L): the code multiplies the spectrum by that real factor
instead of going through the phase. The paper squares, then blurs (its eq. 5); OpenCV blurs,
then squares. The blur follows OpenCV: a 5 x 5 kernel with σ = 8 (the paper's σ), borders
reflected as in OpenCV's default.

Note: the SaliencyMix authors' code calls OpenCV's fine-grained detector (Montabone & Soto,
2010) instead; spectral residual is this package's choice (a saliency that needs no OpenCV).
Checked against OpenCV 5.0's ``StaticSaliencySpectralResidual``: with its order (blur, then
square) and its log(1 + A) in place of log A, the maps agree to 1e-4.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

SIZE = 64  # the paper's working resolution
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights of R, G, B (OpenCV's RGB -> grey)


def _separable_filter(maps: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Filter B x h x w maps with the k x k kernel outer(taps, taps), borders reflected
    (OpenCV's BORDER_DEFAULT): a pass along the rows, then one along the columns."""
    pad, (height, width) = len(taps) // 2, maps.shape[-2:]
    padded = F.pad(maps[:, None], (pad, pad, pad, pad), mode="reflect")[:, 0]
    rows = sum(float(t) * padded[..., :, i:i + width] for i, t in enumerate(taps))
    return sum(float(t) * rows[..., i:i + height, :] for i, t in enumerate(taps))


def gaussian_taps(size: int = 5, sigma: float = 8.0) -> torch.Tensor:
    """The 1-D Gaussian of ``size`` taps and standard deviation σ, summing to 1."""
    t = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-t ** 2 / (2 * sigma ** 2))
    return g / g.sum()


def spectral_residual(x: torch.Tensor) -> torch.Tensor:
    """Saliency maps of a batch of images.

    Args:
        x: B x C x H x W images (C = 3: RGB turned grey with BT.601 weights; otherwise the
            channel mean). Normalised or not: scaling an image leaves its map unchanged.

    Returns:
        B x H x W saliency, >= 0, each map scaled to a maximum of 1 at 64 x 64 before the
        resize back to H x W.
    """
    height, width = x.shape[-2:]
    x = x.detach().float()
    if x.shape[1] == 3:
        grey = torch.einsum("bchw,c->bhw", x, torch.tensor(LUMA, device=x.device))
    else:
        grey = x.mean(dim=1)
    grey = F.interpolate(grey[:, None], size=(SIZE, SIZE), mode="bilinear", align_corners=False)[:, 0]
    spectrum = torch.fft.fft2(grey)  # A·e^{iP}
    log_amplitude = torch.log(spectrum.abs().clamp_min(1e-20))  # L
    local_mean = _separable_filter(log_amplitude, torch.full((3,), 1 / 3))  # h_3 * L
    saliency = torch.fft.ifft2(spectrum * torch.exp(-local_mean)).abs() ** 2  # |F^-1[e^{R + iP}]|²
    saliency = _separable_filter(saliency, gaussian_taps())
    saliency = saliency / saliency.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-30)
    return F.interpolate(saliency[:, None], size=(height, width), mode="bilinear", align_corners=False)[:, 0]
