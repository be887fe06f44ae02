"""The 19 common corruptions of CIFAR-10-C / CIFAR-100-C, generated on the fly.

Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations", ICLR 2019, https://arxiv.org/abs/1903.12261. Every severity parameter below is
the CIFAR one, read from the authors' ``ImageNet-C/create_c/make_cifar_c.py``
(github.com/hendrycks/robustness); the ImageNet parameters (and the ``imagecorruptions``
package, which carries those) are much stronger and are not used.

The authors' script needs OpenCV, ImageMagick (Wand) and scikit-image; here every operation is
written with numpy, scipy.ndimage and PIL from its description (the building blocks in
``image_ops.py``):

- Gaussian blurs are ``scipy.ndimage.gaussian_filter`` with scikit-image's defaults (mode
  ``nearest``, truncate 4); OpenCV's filters use its default border (reflect-101 = scipy's
  ``mirror``); ImageMagick's motion blur is its one-sided Gaussian kernel (width 2·radius + 1)
  along the angle, edge pixels repeated; OpenCV's Canny edges (spatter) are Sobel (border
  pixels repeated, as ``cv::Canny`` does), non-maximum suppression with its tie rule and
  hysteresis at 50 / 150; the spatter's distance to the edges is exact (OpenCV's 5 x 5 mask
  approximates it).
- **Frost** (deviation): the authors blend crops of six photographs of frost that ship with
  their repository; nothing is downloaded here, so ``frost_texture`` synthesises an icy texture
  (fixed seed) and the CIFAR blend weights are applied to crops of it. Its accuracies are not
  comparable with published CIFAR-C frost numbers (``SYNTHETIC`` names it).

A corruption takes a batch of uint8 images ``B x H x W x 3`` (as CIFAR's files hold them) and a
``numpy.random.Generator`` and returns uint8 images of the same shape; the float result in
[0, 255] is truncated to uint8 as the authors' ``np.uint8(...)`` does. The parameters are the
CIFAR ones, made for 32 x 32 images (elastic's scale with the image side, as the authors' code
writes them in units of the side).
"""
from __future__ import annotations

import io

import numpy as np
from scipy import ndimage

from .image_ops import (  # noqa: F401
    canny,
    clipped_zoom,
    disk_kernel,
    equalize_hist,
    frost_texture,
    motion_blur_image,
    motion_blur_kernel,
    plasma_fractal,
)

SYNTHETIC = ("frost",)  # corruptions that differ from CIFAR-C's by construction (see above)


# ------------------------------------------------------------------------------ helpers
def _gaussian(x: np.ndarray, sigma: float, spatial: tuple[int, int] = (1, 2), mode: str = "nearest",
              truncate: float = 4.0) -> np.ndarray:
    """scikit-image's ``gaussian`` over the two spatial axes only (colour channels kept apart)."""
    sigmas = [0.0] * x.ndim
    for axis in spatial:
        sigmas[axis] = sigma
    return ndimage.gaussian_filter(x, sigmas, mode=mode, truncate=truncate)


def _mean3(x: np.ndarray) -> np.ndarray:
    """OpenCV's ``blur(x, (3, 3))``: the 3 x 3 mean, reflect-101 border. The sum, then one
    division, so that a mean that is a whole number stays one (``uniform_filter``'s two divisions
    leave 10.999... there, which the spatter's 8-bit cast truncates to 10)."""
    return ndimage.correlate(x, np.ones((3, 3)), mode="mirror") / 9


def _rgb_to_hsv(x: np.ndarray) -> np.ndarray:
    from matplotlib.colors import rgb_to_hsv

    return rgb_to_hsv(x)


def _hsv_to_rgb(x: np.ndarray) -> np.ndarray:
    from matplotlib.colors import hsv_to_rgb

    return hsv_to_rgb(x)


def _gray(x: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma, OpenCV's RGB2GRAY: ``B x H x W x 3`` -> ``B x H x W x 1``."""
    return (x @ np.array([0.299, 0.587, 0.114]))[..., None]


# ------------------------------------------------------------------------------ corruptions
# Each: (x float B x H x W x 3 in [0, 1], severity 1..5, rng) -> float in [0, 1] (clipped later).
def gaussian_noise(x, severity, rng):
    c = [0.04, 0.06, .08, .09, .10][severity - 1]
    return x + rng.normal(size=x.shape, scale=c)


def shot_noise(x, severity, rng):
    c = [500, 250, 100, 75, 50][severity - 1]
    return rng.poisson(x * c) / c


def impulse_noise(x, severity, rng):
    """Salt and pepper (scikit-image's ``random_noise(mode="s&p")``): each value replaced with
    probability c, by 1 or 0 with equal chance."""
    c = [.01, .02, .03, .05, .07][severity - 1]
    flipped = rng.random(x.shape) < c
    salt = rng.random(x.shape) < 0.5
    return np.where(flipped, salt.astype(x.dtype), x)


def speckle_noise(x, severity, rng):
    c = [.06, .1, .12, .16, .2][severity - 1]
    return x + x * rng.normal(size=x.shape, scale=c)


def gaussian_blur(x, severity, rng):
    c = [.4, .6, 0.7, .8, 1][severity - 1]
    return _gaussian(x, c)


def glass_blur(x, severity, rng):
    """Blur, then swap each pixel (scanned from the bottom right) with a random neighbour at
    offset in [-δ, δ) on each axis (the authors' ``randint(-δ, δ)``), ``iterations`` times, blur."""
    sigma, delta, iterations = [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)][severity - 1]
    x = np.uint8(_gaussian(x, sigma) * 255)
    b, h, w = x.shape[:3]
    batch = np.arange(b)
    for _ in range(iterations):
        for row in range(h - delta, delta, -1):
            for col in range(w - delta, delta, -1):
                dx, dy = rng.integers(-delta, delta, size=(2, b))
                r2, c2 = row + dy, col + dx
                here = x[batch, row, col].copy()
                x[batch, row, col] = x[batch, r2, c2]
                x[batch, r2, c2] = here
    return _gaussian(x / 255.0, sigma)


def defocus_blur(x, severity, rng):
    radius, alias = [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)][severity - 1]
    kernel = disk_kernel(radius, alias)
    return ndimage.correlate(x, kernel[None, :, :, None], mode="mirror")


def motion_blur(x, severity, rng):
    radius, sigma = [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)][severity - 1]
    q = np.uint8(np.round(x * 255))  # ImageMagick blurs the 8-bit PNG and returns 8 bits
    return np.stack([np.round(motion_blur_image(img, radius, sigma, rng.uniform(-45, 45)))
                     for img in q]) / 255.0


def zoom_blur(x, severity, rng):
    top = [1.06, 1.11, 1.16, 1.21, 1.26][severity - 1]
    zooms = np.arange(1, top, 0.01)
    out = np.zeros_like(x)
    for z in zooms:
        out += clipped_zoom(x, z)
    return (x + out) / (len(zooms) + 1)


def snow(x, severity, rng):
    loc, scale, zoom, threshold, radius, sigma, keep = [
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)][severity - 1]
    b, h, w = x.shape[:3]
    layer = rng.normal(size=(b, h, w, 1), loc=loc, scale=scale)
    layer = clipped_zoom(layer, zoom)
    layer[layer < threshold] = 0
    layer = np.uint8(np.clip(layer[..., 0], 0, 1) * 255)
    flakes = np.stack([np.round(motion_blur_image(img, radius, sigma, rng.uniform(-135, -45)))
                       for img in layer])[..., None] / 255.0
    x = keep * x + (1 - keep) * np.maximum(x, _gray(x) * 1.5 + 0.5)
    return x + flakes + np.rot90(flakes, k=2, axes=(1, 2))


def frost(x, severity, rng):
    """The CIFAR blend c_0 · x + c_1 · frost with a random crop of the synthetic texture."""
    c0, c1 = [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)][severity - 1]
    b, h, w = x.shape[:3]
    texture = frost_texture(max(256, 2 * max(h, w)))
    ys = rng.integers(0, texture.shape[0] - h, size=b)
    xs = rng.integers(0, texture.shape[1] - w, size=b)
    crops = np.stack([texture[y:y + h, x0:x0 + w] for y, x0 in zip(ys, xs)])
    return (c0 * x * 255 + c1 * crops) / 255


def fog(x, severity, rng):
    strength, decay = [(.2, 3), (.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)][severity - 1]
    b, h, w = x.shape[:3]
    size = 1 << (max(h, w) - 1).bit_length()  # the smallest power of two >= the side
    peak = x.max(axis=(1, 2, 3), keepdims=True)
    haze = np.stack([plasma_fractal(size, decay, rng)[:h, :w] for _ in range(b)])[..., None]
    return (x + strength * haze) * peak / (peak + strength)


def brightness(x, severity, rng):
    c = [.05, .1, .15, .2, .3][severity - 1]
    hsv = _rgb_to_hsv(x)
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return _hsv_to_rgb(hsv)


def contrast(x, severity, rng):
    c = [.75, .5, .4, .3, 0.15][severity - 1]
    means = x.mean(axis=(1, 2), keepdims=True)
    return (x - means) * c + means


def saturate(x, severity, rng):
    scale, shift = [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)][severity - 1]
    hsv = _rgb_to_hsv(x)
    hsv[..., 1] = np.clip(hsv[..., 1] * scale + shift, 0, 1)
    return _hsv_to_rgb(hsv)


def elastic_fields(h: int, w: int, severity: int, rng: np.random.Generator):
    """The random parts of ``elastic_transform`` for one ``h x w`` image: the affine warp as
    scipy's ``(matrix, offset)`` (output (row, col) -> input), and the smooth displacement field
    ``(dy, dx)`` (``h x w`` each, in pixels). The CIFAR parameters, in units of the side:
    (α, σ, affine shift) = (0, 0, .08), (.05, .2, .07), (.08, .06, .06), (.1, .04, .05), (.1, .03, .03):
    the local displacement α grows with severity while the affine shift shrinks."""
    alpha, sigma, shift = [(0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05),
                           (0.1, 0.03, 0.03)][severity - 1]
    alpha, sigma, shift = alpha * h, sigma * h, shift * h
    centre = np.array([h, w], dtype=np.float32) // 2
    arm = min(h, w) // 3
    src = np.float32([centre + arm, [centre[0] + arm, centre[1] - arm], centre - arm])  # (x, y) points
    dst = src + rng.uniform(-shift, shift, size=src.shape).astype(np.float32)
    # the affine map (x, y, 1) -> (x', y') taking src to dst; the warp reads out(p) = in(map^-1 p)
    forward = np.linalg.solve(np.c_[src, np.ones(3)], dst).T  # 2 x 3
    inverse = np.linalg.inv(np.r_[forward, [[0, 0, 1]]])
    swap = np.array([[0, 1], [1, 0]])  # (x, y) <-> (row, col)
    matrix, offset = swap @ inverse[:2, :2] @ swap, swap @ inverse[:2, 2]
    dx = ndimage.gaussian_filter(rng.uniform(-1, 1, size=(h, w)), sigma, mode="reflect", truncate=3) * alpha
    dy = ndimage.gaussian_filter(rng.uniform(-1, 1, size=(h, w)), sigma, mode="reflect", truncate=3) * alpha
    return matrix, offset, dy, dx


def elastic_transform(x, severity, rng):
    """A random affine warp of three points around the centre (reflect-101 border), then a
    smooth random displacement field, bilinear (``elastic_fields``)."""
    b, h, w = x.shape[:3]
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    out = np.empty_like(x)
    for i in range(b):
        matrix, offset, dy, dx = elastic_fields(h, w, severity, rng)
        for ch in range(3):
            warped = ndimage.affine_transform(x[i, ..., ch], matrix, offset, order=1, mode="mirror")
            out[i, ..., ch] = ndimage.map_coordinates(warped, [rows + dy, cols + dx], order=1, mode="reflect")
    return out


def pixelate(x, severity, rng):
    from PIL import Image

    c = [0.95, 0.9, 0.85, 0.75, 0.65][severity - 1]
    h, w = x.shape[1:3]
    small = (int(w * c), int(h * c))
    return np.stack([np.asarray(Image.fromarray(np.uint8(np.round(img * 255))).resize(small, Image.BOX)
                                .resize((w, h), Image.BOX)) for img in x]) / 255.0


def jpeg_compression(x, severity, rng):
    from PIL import Image

    quality = [80, 65, 58, 50, 40][severity - 1]
    out = []
    for img in x:
        buffer = io.BytesIO()
        Image.fromarray(np.uint8(np.round(img * 255))).save(buffer, "JPEG", quality=quality)
        out.append(np.asarray(Image.open(buffer).convert("RGB")))
    return np.stack(out) / 255.0


def spatter(x, severity, rng):
    """Water drops (severities 1-3: pale turquoise, shaded along their Canny edges) or mud
    (4-5: brown blobs)."""
    loc, scale, sigma, threshold, intensity, mud = [
        (0.62, 0.1, 0.7, 0.7, 0.5, 0), (0.65, 0.1, 0.8, 0.7, 0.5, 0), (0.65, 0.3, 1, 0.69, 0.5, 0),
        (0.65, 0.1, 0.7, 0.69, 0.6, 1), (0.65, 0.1, 0.5, 0.68, 0.6, 1)][severity - 1]
    b, h, w = x.shape[:3]
    out = np.empty_like(x)
    shade_kernel = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.float64)
    for i in range(b):
        liquid = _gaussian(rng.normal(size=(h, w), loc=loc, scale=scale), sigma, spatial=(0, 1))
        liquid[liquid < threshold] = 0
        if not mud:
            layer = np.uint8(np.clip(liquid, 0, 1) * 255)
            edges = canny(layer)
            if edges.any():
                dist = ndimage.distance_transform_edt(~edges)
            else:
                dist = np.full((h, w), 20.0)
            dist = np.minimum(dist, 20)
            dist = _mean3(dist).astype(np.uint8)
            dist = equalize_hist(dist)
            dist = np.clip(np.round(ndimage.correlate(dist.astype(np.float64), shade_kernel, mode="mirror")), 0, 255)
            dist = _mean3(dist)
            m = liquid * dist
            peak = m.max()
            m = m / peak * intensity if peak > 0 else m
            colour = np.array([175, 238, 238]) / 255.0
            out[i] = x[i] + m[..., None] * colour
        else:
            m = _gaussian((liquid > threshold).astype(np.float64), intensity, spatial=(0, 1))
            m[m < 0.8] = 0
            colour = np.array([63, 42, 20]) / 255.0
            out[i] = x[i] * (1 - m[..., None]) + m[..., None] * colour
    return out


CORRUPTIONS = {f.__name__: f for f in (
    gaussian_noise, shot_noise, impulse_noise, speckle_noise, defocus_blur, glass_blur, motion_blur,
    zoom_blur, gaussian_blur, snow, frost, fog, brightness, contrast, elastic_transform, pixelate,
    jpeg_compression, spatter, saturate)}
SEVERITIES = (1, 2, 3, 4, 5)


def corrupt(images: np.ndarray, name: str, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Apply corruption ``name`` at ``severity`` (1-5) to a batch.

    Args:
        images: ``B x H x W x 3`` uint8.
        name: one of ``CORRUPTIONS``.
        severity: 1 (mildest) to 5.
        rng: the random draws (noise, angles, crops); the same generator state gives the same
            images.

    Returns:
        ``B x H x W x 3`` uint8, ``np.uint8(clip(result, 0, 1) * 255)`` (truncated, as the authors
        save them).
    """
    if name not in CORRUPTIONS:
        raise KeyError(f"unknown corruption {name!r}; known: {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity {severity!r}: expected 1..5")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 images B x H x W x 3, got {images.dtype} {images.shape}")
    out = CORRUPTIONS[name](images.astype(np.float64) / 255.0, severity, rng)
    return np.uint8(np.clip(out, 0, 1) * 255)
