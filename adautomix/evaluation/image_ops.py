"""The image operations the CIFAR-C corruptions (``corruptions.py``) are built from, written
with numpy and scipy.ndimage from the definitions of the libraries the authors' script calls:
scipy's bilinear ``zoom``, OpenCV's ``GaussianBlur``/``Canny``/``equalizeHist``, ImageMagick's
motion blur, the diamond-square plasma fractal of their fog; and the synthetic frost texture that
stands in for their frost photographs.
"""
from __future__ import annotations

import functools
import math

import numpy as np
from scipy import ndimage


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


# OpenCV's Canny sectors: tan 22.5° in 15-bit fixed point (its TG22)
_TG22 = int(0.4142135623730950488 * (1 << 15) + 0.5)


def canny(gray: np.ndarray, low: float = 50, high: float = 150) -> np.ndarray:
    """OpenCV's ``Canny`` edges of a uint8 image ``H x W``: 3 x 3 Sobel with the border pixels
    repeated (its ``BORDER_REPLICATE``), L1 gradient magnitude (0 outside the image), non-maximum
    suppression along the gradient direction in 3 sectors with OpenCV's tie rule (horizontal:
    above the left neighbour, at least the right one; vertical: above the upper, at least the
    lower; diagonal: above both), hysteresis (edges above ``high``, and pixels above ``low``
    8-connected to them). Returns a bool map."""
    g = gray.astype(np.int64)
    gx = ndimage.sobel(g, axis=1, mode="nearest")
    gy = ndimage.sobel(g, axis=0, mode="nearest")
    ax, ay = np.abs(gx), np.abs(gy)
    mag = ax + ay
    horizontal = (ay << 15) < ax * _TG22  # |gy|/|gx| < tan 22.5°
    vertical = ~horizontal & ((ay << 15) > ax * _TG22 + (ax << 16))  # > tan 67.5°
    diagonal = ~horizontal & ~vertical
    s = np.where(gx * gy < 0, -1, 1)  # the diagonal the gradient runs along
    pad = np.pad(mag, 1)
    h, w = mag.shape
    rows, cols = np.arange(h)[:, None] + 1, np.arange(w)[None, :] + 1

    def at(dy, dx):
        return pad[rows + dy, cols + dx]

    keep = horizontal & (mag > at(0, -1)) & (mag >= at(0, 1))
    keep |= vertical & (mag > at(-1, 0)) & (mag >= at(1, 0))
    keep |= diagonal & (mag > at(-1, -s)) & (mag > at(1, s))
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
