"""The 19 common corruptions of CIFAR-10-C / CIFAR-100-C, generated on the fly.

Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations", ICLR 2019, https://arxiv.org/abs/1903.12261. Every severity parameter below is
the CIFAR one, read from the authors' ``ImageNet-C/create_c/make_cifar_c.py``
(github.com/hendrycks/robustness); the ImageNet parameters (and the ``imagecorruptions``
package, which carries those) are much stronger and are not used.

The authors' script needs OpenCV, ImageMagick (Wand) and scikit-image; here every operation is
written with numpy, scipy.ndimage and PIL from its description:

- Gaussian blurs are ``scipy.ndimage.gaussian_filter`` with scikit-image's defaults (mode
  ``nearest``, truncate 4); OpenCV's filters use its default border (reflect-101 = scipy's
  ``mirror``); ImageMagick's motion blur is its one-sided Gaussian kernel (width 2·radius + 1)
  along the angle, edge pixels repeated; OpenCV's Canny edges (spatter) are Sobel, non-maximum
  suppression and hysteresis at 50 / 150.
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

import functools
import io
import math

import numpy as np
from scipy import ndimage

SYNTHETIC = ("frost",)  # corruptions that differ from CIFAR-C's by construction (see above)


# ------------------------------------------------------------------------------ helpers
def _gaussian(x: np.ndarray, sigma: float, spatial: tuple[int, int] = (1, 2), mode: str = "nearest",
              truncate: float = 4.0) -> np.ndarray:
    """scikit-image's ``gaussian`` over the two spatial axes only (colour channels kept apart)."""
    sigmas = [0.0] * x.ndim
    for axis in spatial:
        sigmas[axis] = sigma
    return ndimage.gaussian_filter(x, sigmas, mode=mode, truncate=truncate)


def _rgb_to_hsv(x: np.ndarray) -> np.ndarray:
    from matplotlib.colors import rgb_to_hsv

    return rgb_to_hsv(x)


def _hsv_to_rgb(x: np.ndarray) -> np.ndarray:
    from matplotlib.colors import hsv_to_rgb

    return hsv_to_rgb(x)


def _gray(x: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma, OpenCV's RGB2GRAY: ``B x H x W x 3`` -> ``B x H x W x 1``."""
    return (x @ np.array([0.299, 0.587, 0.114]))[..., None]


def _linear_resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``n_out x n_in`` linear interpolation with the end points aligned: output i samples the
    input at i·(n_in − 1)/(n_out − 1), as ``scipy.ndimage.zoom(order=1)`` does."""
    pos = np.arange(n_out) * (n_in - 1) / max(n_out - 1, 1)
    lo = np.minimum(np.floor(pos).astype(int), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = pos - lo
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.arange(n_out), lo), 1 - frac)
    np.add.at(m, (np.arange(n_out), hi), frac)
    return m


def clipped_zoom(x: np.ndarray, zoom: float) -> np.ndarray:
    """Zoom the centre of ``x`` (``B x H x W x C``, square) by ``zoom`` >= 1, bilinear, keeping
    its size: crop the central ceil(H / zoom) square, scale it up by ``zoom`` (scipy's
    ``zoom(order=1)``: round(ch·zoom) pixels, end points aligned), trim the excess evenly."""
    h = x.shape[1]
    ch = int(np.ceil(h / zoom))
    top = (h - ch) // 2
    size = int(round(ch * zoom))
    r = _linear_resize_matrix(ch, size)
    out = np.einsum("ij,bjkc,lk->bilc", r, x[:, top:top + ch, top:top + ch], r, optimize=True)
    trim = (size - h) // 2
    return out[:, trim:trim + h, trim:trim + h]


def disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """The defocus kernel: a disk of ``radius`` on a 17 x 17 grid (larger radii: 2r+1), summing
    to 1, anti-aliased by a 3 x 3 (5 x 5) Gaussian of σ = ``alias_blur`` (OpenCV GaussianBlur)."""
    half, k = (8, 3) if radius <= 8 else (int(radius), 5)
    coords = np.arange(-half, half + 1)
    xx, yy = np.meshgrid(coords, coords)
    disk = ((xx ** 2 + yy ** 2) <= radius ** 2).astype(np.float64)
    disk /= disk.sum()
    g = np.exp(-(np.arange(k) - k // 2) ** 2 / (2 * alias_blur ** 2))
    g /= g.sum()
    return ndimage.correlate(disk, np.outer(g, g), mode="mirror")


def motion_blur_kernel(radius: float, sigma: float, angle: float) -> list[tuple[int, int, float]]:
    """ImageMagick's ``MotionBlurImage``: weights exp(-i²/2σ²), i = 0..2·radius (normalised),
    each at the pixel offset round(i·(cos θ, sin θ)) (rows down, θ in degrees). Returns
    ``[(dy, dx, weight), ...]``."""
    width = int(2 * math.ceil(radius) + 1)
    weights = np.exp(-np.arange(width) ** 2 / (2 * sigma ** 2))
    weights /= weights.sum()
    t = math.radians(angle)
    return [(math.ceil(i * math.sin(t) - 0.5), math.ceil(i * math.cos(t) - 0.5), float(w))
            for i, w in enumerate(weights)]


def motion_blur_image(x: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    """Motion-blur one image ``H x W (x C)``: out(p) = Σ_i w_i · x(p + offset_i), edges repeated."""
    h, w = x.shape[:2]
    rows, cols = np.arange(h)[:, None], np.arange(w)[None, :]
    out = np.zeros(x.shape, dtype=np.float64)
    for dy, dx, weight in motion_blur_kernel(radius, sigma, angle):
        out += weight * x[np.clip(rows + dy, 0, h - 1), np.clip(cols + dx, 0, w - 1)]
    return out


def plasma_fractal(size: int, wibble_decay: float, rng: np.random.Generator) -> np.ndarray:
    """A ``size x size`` diamond-square height map in [0, 1] (``size`` a power of two), with the
    authors' noise: each new point is the mean of its neighbours plus w·U(-w, w), w = 100 at the
    coarsest step, divided by ``wibble_decay`` at each finer one."""
    assert size & (size - 1) == 0, "size must be a power of two"
    m = np.zeros((size, size))
    step, wibble = size, 100.0

    def noisy_mean(total: np.ndarray) -> np.ndarray:
        return total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)

    while step >= 2:
        half = step // 2
        corners = m[0:size:step, 0:size:step]  # squares: centres from their four corners
        total = corners + np.roll(corners, -1, axis=0)
        total += np.roll(total, -1, axis=1)
        m[half:size:step, half:size:step] = noisy_mean(total)
        centres = m[half:size:step, half:size:step]  # diamonds: edge midpoints from their four neighbours
        corners = m[0:size:step, 0:size:step]
        m[0:size:step, half:size:step] = noisy_mean(centres + np.roll(centres, 1, axis=0)
                                                    + corners + np.roll(corners, -1, axis=1))
        m[half:size:step, 0:size:step] = noisy_mean(centres + np.roll(centres, 1, axis=1)
                                                    + corners + np.roll(corners, -1, axis=0))
        step //= 2
        wibble /= wibble_decay
    m -= m.min()
    return m / m.max()


def canny(gray: np.ndarray, low: float = 50, high: float = 150) -> np.ndarray:
    """OpenCV's ``Canny`` edges of a uint8 image ``H x W``: 3 x 3 Sobel, L1 gradient magnitude,
    non-maximum suppression along the gradient direction (4 sectors), hysteresis (edges above
    ``high``, and pixels above ``low`` 8-connected to them). Returns a bool map."""
    g = gray.astype(np.float64)
    gx = ndimage.sobel(g, axis=1, mode="mirror")
    gy = ndimage.sobel(g, axis=0, mode="mirror")
    mag = np.abs(gx) + np.abs(gy)
    angle = (np.rad2deg(np.arctan2(gy, gx)) + 180) % 180
    sector = (((angle + 22.5) // 45) % 4).astype(int)  # 0: horizontal gradient, 1: 45°, 2: vertical, 3: 135°
    pad = np.pad(mag, 1)
    h, w = mag.shape
    neighbours = {0: ((0, 1), (0, -1)), 1: ((1, 1), (-1, -1)), 2: ((1, 0), (-1, 0)), 3: ((1, -1), (-1, 1))}
    keep = np.zeros_like(mag, dtype=bool)
    for s, ((ay, ax), (by, bx)) in neighbours.items():
        a = pad[1 + ay:1 + ay + h, 1 + ax:1 + ax + w]
        b = pad[1 + by:1 + by + h, 1 + bx:1 + bx + w]
        keep |= (sector == s) & (mag > a) & (mag >= b)
    weak = keep & (mag > low)
    labels, n = ndimage.label(weak, structure=np.ones((3, 3)))
    strong = np.unique(labels[keep & (mag > high)])
    return np.isin(labels, strong[strong > 0])


def equalize_hist(x: np.ndarray) -> np.ndarray:
    """OpenCV's ``equalizeHist`` of a uint8 image: levels mapped through the normalised
    cumulative histogram (the lowest occupied level to 0)."""
    hist = np.bincount(x.ravel(), minlength=256)
    cdf = np.cumsum(hist)
    first = cdf[np.nonzero(hist)[0][0]]
    if cdf[-1] == first:  # one level only
        return x.copy()
    lut = np.clip(np.round((cdf - first) * 255.0 / (cdf[-1] - first)), 0, 255).astype(np.uint8)
    return lut[x]


@functools.lru_cache(maxsize=2)
def frost_texture(size: int = 256, seed: int = 20190101) -> np.ndarray:
    """A synthetic frost texture ``size x size x 3`` in [0, 255] (stand-in for the authors' frost
    photographs; see the module docstring): ridged multi-scale noise (thin bright crystal
    veins) over a soft cloudy layer, tinted pale blue. Deterministic (fixed ``seed``)."""
    rng = np.random.default_rng(seed)

    def octaves(n: int, persistence: float) -> np.ndarray:
        total, amp = np.zeros((size, size)), 1.0
        for k in range(n):
            cells = 4 * 2 ** k
            noise = rng.standard_normal((cells, cells))
            total += amp * ndimage.zoom(noise, size / cells, order=3, mode="grid-wrap", grid_mode=True)
            amp *= persistence
        return (total - total.min()) / (total.max() - total.min())

    veins = (1 - np.abs(2 * octaves(6, 0.6) - 1)) ** 6  # bright where the noise crosses its midline
    cloud = octaves(4, 0.5)
    ice = np.clip(0.75 * veins / veins.max() + 0.35 * cloud, 0, 1)
    tint = np.array([0.82, 0.9, 1.0])  # pale blue-white, as ice on a window
    return ice[..., None] * tint * 255


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
            dist = ndimage.uniform_filter(dist, 3, mode="mirror").astype(np.uint8)
            dist = equalize_hist(dist)
            dist = np.clip(np.round(ndimage.correlate(dist.astype(np.float64), shade_kernel, mode="mirror")), 0, 255)
            dist = ndimage.uniform_filter(dist, 3, mode="mirror")
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
