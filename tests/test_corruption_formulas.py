"""Each of the 19 CIFAR-C corruptions against its defining operation, at one severity.

The expected images are computed here from the definitions in Hendrycks & Dietterich (ICLR 2019)
with the CIFAR parameters of the authors' ``make_cifar_c.py`` (github.com/hendrycks/robustness,
``ImageNet-C/create_c/``), written independently of ``corruptions.py`` / ``image_ops.py``:
hand-made Gaussian, disk and motion kernels applied by shifted sums over padded images, bilinear
sampling by hand, HSV edits through their closed form, the diamond-square fractal by plain loops,
PIL's box filter from its definition. The random draws (noise, angles, offsets, crops) are drawn
here from a generator with the same seed, in the order the corruption documents.

``corrupt`` returns ``np.uint8(clip(result, 0, 1) * 255)`` (truncation): the expected float image
goes through the same quantisation, and a pixel may differ by one level where float rounding
lands on the other side of a level (``assert_image``: at most 1 level, on at most 1 % of the
values; measured: 0 everywhere but brightness, 0.07 %, and saturate, 0.7 %, whose HSV round trip
rounds differently). A wrong parameter moves many values by several levels.
"""
from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from adautomix.evaluation import corruptions

B, H = 2, 32
SEED = 7


def images() -> np.ndarray:
    """B x 32 x 32 x 3 uint8 with no grey pixel (every pixel has a hue and a saturation > 0)."""
    rng = np.random.default_rng(123)
    base = rng.integers(30, 226, size=(B, H, H, 3))
    smooth = ndimage.uniform_filter(base.astype(float), size=(1, 5, 5, 1), mode="wrap")
    x = np.clip(smooth + rng.integers(-25, 26, size=base.shape), 0, 255).astype(np.uint8)
    x[..., 0] = np.where(x[..., 0] == x[..., 1], x[..., 0] ^ 1, x[..., 0])  # R != G: never grey
    return x


def run(name: str, severity: int) -> np.ndarray:
    return corruptions.corrupt(images(), name, severity, np.random.default_rng(SEED))


def quantise(e: np.ndarray) -> np.ndarray:
    return np.uint8(np.clip(e, 0, 1) * 255)


def assert_image(got: np.ndarray, expected: np.ndarray) -> None:
    diff = np.abs(got.astype(int) - quantise(expected).astype(int))
    assert got.shape == expected.shape
    assert diff.max() <= 1 and (diff > 0).mean() <= 0.01, (
        f"max {diff.max()} levels, {100 * (diff > 0).mean():.2f} % of values differ")


def x01() -> np.ndarray:
    return images().astype(np.float64) / 255.0


# ------------------------------------------------------------------------------ hand-made operations
def gauss_taps(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """The 1-D Gaussian of scipy / scikit-image: radius int(truncate·σ + 0.5), normalised."""
    r = int(truncate * sigma + 0.5)
    k = np.exp(-np.arange(-r, r + 1) ** 2 / (2 * sigma ** 2))
    return k / k.sum()


def correlate(img: np.ndarray, kernel: np.ndarray, pad_mode: str) -> np.ndarray:
    """out(p) = Σ_o kernel(o) · img(p + o) over the two leading axes, by shifted sums; numpy's
    pad modes: "edge" (nearest), "reflect" (reflect-101, OpenCV's default border)."""
    ry, rx = kernel.shape[0] // 2, kernel.shape[1] // 2
    pad = [(ry, ry), (rx, rx)] + [(0, 0)] * (img.ndim - 2)
    p = np.pad(img, pad, mode=pad_mode)
    h, w = img.shape[:2]
    out = np.zeros(img.shape)
    for dy in range(kernel.shape[0]):
        for dx in range(kernel.shape[1]):
            out += kernel[dy, dx] * p[dy:dy + h, dx:dx + w]
    return out


def gaussian_blur_image(img: np.ndarray, sigma: float, pad_mode: str = "edge", truncate: float = 4.0):
    k = gauss_taps(sigma, truncate)
    return correlate(img, np.outer(k, k), pad_mode)


def bilinear(img: np.ndarray, rows: np.ndarray, cols: np.ndarray, pad_mode: str) -> np.ndarray:
    """img (H x W) sampled at real (rows, cols), bilinear, the border extended by ``pad_mode``."""
    pad = 16
    p = np.pad(img, pad, mode=pad_mode)
    r, c = rows + pad, cols + pad
    r0, c0 = np.floor(r).astype(int), np.floor(c).astype(int)
    fr, fc = r - r0, c - c0
    return ((1 - fr) * (1 - fc) * p[r0, c0] + (1 - fr) * fc * p[r0, c0 + 1]
            + fr * (1 - fc) * p[r0 + 1, c0] + fr * fc * p[r0 + 1, c0 + 1])


def motion_blur_8bit(img: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    """ImageMagick's motion blur of an 8-bit image: 2·ceil(radius)+1 taps exp(−i²/2σ²)
    (normalised) at offsets i·(cos θ, sin θ) rounded half down, edges repeated; 8-bit result."""
    taps = 2 * math.ceil(radius) + 1
    w = np.exp(-np.arange(taps) ** 2 / (2 * sigma ** 2))
    w /= w.sum()
    t = math.radians(angle)
    h, wd = img.shape[:2]
    out = np.zeros(img.shape)
    for i in range(taps):
        dy, dx = math.ceil(i * math.sin(t) - 0.5), math.ceil(i * math.cos(t) - 0.5)
        for r in range(h):
            for c in range(wd):
                out[r, c] += w[i] * img[min(max(r + dy, 0), h - 1), min(max(c + dx, 0), wd - 1)]
    return np.round(out)


def clipped_zoom_scipy(img: np.ndarray, z: float) -> np.ndarray:
    """make_cifar_c.py's clipped zoom of one H x W x C image with scipy's own ``zoom(order=1)``."""
    ch = int(np.ceil(H / z))
    top = (H - ch) // 2
    zoomed = ndimage.zoom(img[top:top + ch, top:top + ch], (z, z, 1), order=1)
    trim = (zoomed.shape[0] - H) // 2
    return zoomed[trim:trim + H, trim:trim + H]


def hsv_value_saturation(x: np.ndarray):
    v = x.max(axis=-1, keepdims=True)
    s = np.where(v > 0, (v - x.min(axis=-1, keepdims=True)) / np.where(v > 0, v, 1), 0)
    return v, s


# ------------------------------------------------------------------------------ noise
def test_gaussian_noise_adds_normal_noise_of_std_0_08_at_severity_3():
    rng = np.random.default_rng(SEED)
    assert_image(run("gaussian_noise", 3), x01() + 0.08 * rng.standard_normal(x01().shape))


def test_shot_noise_is_poisson_with_100_photons_at_severity_3():
    rng = np.random.default_rng(SEED)
    assert_image(run("shot_noise", 3), rng.poisson(x01() * 100) / 100)


def test_impulse_noise_replaces_3_percent_of_values_with_salt_or_pepper_at_severity_3():
    rng = np.random.default_rng(SEED)
    x = x01()
    hit, salt = rng.random(x.shape) < 0.03, rng.random(x.shape) < 0.5
    got = run("impulse_noise", 3)
    assert_image(got, np.where(hit, salt.astype(float), x))
    changed = got != images()
    assert 0.02 < changed.mean() < 0.04  # ~3 % replaced (a few by their own value)


def test_speckle_noise_multiplies_by_one_plus_normal_of_std_0_12_at_severity_3():
    rng = np.random.default_rng(SEED)
    x = x01()
    assert_image(run("speckle_noise", 3), x * (1 + 0.12 * rng.standard_normal(x.shape)))


# ------------------------------------------------------------------------------ blurs
def test_gaussian_blur_is_a_sigma_0_7_gaussian_with_nearest_border_at_severity_3():
    x = x01()
    assert_image(run("gaussian_blur", 3), np.stack([gaussian_blur_image(img, 0.7) for img in x]))


def test_defocus_blur_is_a_radius_1_disk_antialiased_by_a_sigma_0_2_gaussian_at_severity_4():
    coords = np.arange(-8, 9)
    xx, yy = np.meshgrid(coords, coords)
    disk = ((xx ** 2 + yy ** 2) <= 1).astype(float)  # radius 1: the centre and its 4 neighbours
    assert disk.sum() == 5
    disk /= disk.sum()
    g = np.exp(-np.arange(-1, 2) ** 2 / (2 * 0.2 ** 2))
    g /= g.sum()
    kernel = correlate(disk, np.outer(g, g), "reflect")  # OpenCV GaussianBlur, 3 x 3
    x = x01()
    assert_image(run("defocus_blur", 4), np.stack([correlate(img, kernel, "reflect") for img in x]))


def test_glass_blur_blurs_swaps_each_pixel_with_a_random_neighbour_and_blurs_at_severity_3():
    sigma = 0.4  # severity 3: (σ, δ, iterations) = (0.4, 1, 1)
    rng = np.random.default_rng(SEED)
    x = np.stack([np.uint8(gaussian_blur_image(img, sigma) * 255) for img in x01()])
    for row in range(H - 1, 1, -1):  # from the bottom right, rows and columns 31 .. 2
        for col in range(H - 1, 1, -1):
            dx, dy = rng.integers(-1, 1, size=(2, B))  # offsets in [-δ, δ): -1 or 0
            for b in range(B):
                r2, c2 = row + dy[b], col + dx[b]
                x[b, row, col], x[b, r2, c2] = x[b, r2, c2].copy(), x[b, row, col].copy()
    expected = np.stack([gaussian_blur_image(img / 255.0, sigma) for img in x])
    assert_image(run("glass_blur", 3), expected)


def test_motion_blur_is_imagemagicks_13_tap_kernel_along_a_random_angle_at_severity_3():
    rng = np.random.default_rng(SEED)  # severity 3: radius 6, σ 2; angle ~ U(-45, 45) per image
    expected = np.stack([motion_blur_8bit(img.astype(float), 6, 2, rng.uniform(-45, 45)) for img in images()])
    assert_image(run("motion_blur", 3), expected / 255.0)


def test_zoom_blur_averages_the_image_and_its_zooms_1_00_to_1_11_at_severity_2():
    zooms = np.arange(1, 1.11, 0.01)  # the authors' range: in floating point it ends at 1.11
    assert len(zooms) == 12
    expected = []
    for img in x01():
        total = img + sum(clipped_zoom_scipy(img, z) for z in zooms)
        expected.append(total / (len(zooms) + 1))
    assert_image(run("zoom_blur", 2), np.stack(expected))


# ------------------------------------------------------------------------------ weather
def test_snow_blends_towards_bright_grey_and_adds_motion_blurred_flakes_at_severity_2():
    loc, scale, zoom, threshold, radius, sigma, keep = 0.1, 0.2, 1, 0.5, 10, 4, 0.9
    rng = np.random.default_rng(SEED)
    layer = rng.normal(loc, scale, size=(B, H, H, 1))  # all flakes first, then one angle per image
    flakes = []
    for b in range(B):
        zoomed = clipped_zoom_scipy(layer[b], zoom)[..., 0]
        zoomed[zoomed < threshold] = 0
        layer8 = np.uint8(np.clip(zoomed, 0, 1) * 255).astype(float)
        flakes.append(motion_blur_8bit(layer8, radius, sigma, rng.uniform(-135, -45)) / 255.0)
    flakes = np.stack(flakes)[..., None]
    x = x01()
    grey = (0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2])[..., None]
    x = keep * x + (1 - keep) * np.maximum(x, grey * 1.5 + 0.5)
    assert_image(run("snow", 2), x + flakes + flakes[:, ::-1, ::-1])


def test_frost_blends_0_9_image_with_0_4_texture_crop_at_severity_3():
    """The texture is the synthetic stand-in (module docstring of corruptions.py); the blend and
    the crop positions are the CIFAR rule."""
    texture = corruptions.frost_texture(256)
    rng = np.random.default_rng(SEED)
    ys, xs = rng.integers(0, 256 - H, size=B), rng.integers(0, 256 - H, size=B)
    crops = np.stack([texture[y:y + H, c:c + H] for y, c in zip(ys, xs)])
    assert_image(run("frost", 3), (0.9 * images() + 0.4 * crops) / 255.0)


def plasma(size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """Diamond-square, point by point: a square's centre is the mean of its 4 corners, a diamond's
    point the mean of its 4 neighbours (wrapping), each plus w·U(−w, w); w = 100, divided by
    ``decay`` at each finer step; the map is scaled to [0, 1]."""
    m = np.zeros((size, size))
    step, w = size, 100.0
    while step >= 2:
        half, n = step // 2, size // step
        u = rng.uniform(-w, w, (n, n))
        for i in range(n):
            for j in range(n):
                r, c = i * step, j * step
                down, right = (r + step) % size, (c + step) % size
                corners = m[r, c] + m[down, c] + m[r, right] + m[down, right]
                m[r + half, c + half] = corners / 4 + w * u[i, j]
        u_top, u_left = rng.uniform(-w, w, (n, n)), rng.uniform(-w, w, (n, n))
        for i in range(n):
            for j in range(n):
                r, c = i * step, j * step + half  # between two corners of a row
                total = m[r + half, c] + m[(r - half) % size, c] + m[r, c - half] + m[r, (c + half) % size]
                m[r, c] = total / 4 + w * u_top[i, j]
        for i in range(n):
            for j in range(n):
                r, c = i * step + half, j * step  # between two corners of a column
                total = m[r, c + half] + m[r, (c - half) % size] + m[r - half, c] + m[(r + half) % size, c]
                m[r, c] = total / 4 + w * u_left[i, j]
        step //= 2
        w /= decay
    m -= m.min()
    return m / m.max()


def test_fog_adds_a_0_75_plasma_fractal_and_rescales_by_the_peak_at_severity_3():
    strength, decay = 0.75, 2.5
    rng = np.random.default_rng(SEED)
    x = x01()
    expected = []
    for img in x:
        haze = plasma(32, decay, rng)[:H, :H, None]
        peak = img.max()
        expected.append((img + strength * haze) * peak / (peak + strength))
    assert_image(run("fog", 3), np.stack(expected))


# ------------------------------------------------------------------------------ digital
def test_brightness_raises_the_hsv_value_by_0_15_at_severity_3():
    """Hue and saturation fixed, every channel is proportional to V: RGB · V'/V."""
    x = x01()
    v, _ = hsv_value_saturation(x)
    v_new = np.clip(v + 0.15, 0, 1)
    assert_image(run("brightness", 3), x * v_new / v)


def test_contrast_scales_each_channel_around_its_image_mean_by_0_4_at_severity_3():
    x = x01()
    expected = np.empty_like(x)
    for b in range(B):
        for ch in range(3):
            mean = x[b, ..., ch].mean()
            expected[b, ..., ch] = (x[b, ..., ch] - mean) * 0.4 + mean
    assert_image(run("contrast", 3), expected)


def test_saturate_sets_saturation_to_2s_plus_0_1_at_severity_4():
    """Hue and value fixed, each channel is V − (V − channel)·S'/S."""
    x = x01()
    v, s = hsv_value_saturation(x)
    assert (s > 0).all()
    s_new = np.clip(s * 2 + 0.1, 0, 1)
    assert_image(run("saturate", 4), v - (v - x) * s_new / s)


def test_elastic_transform_is_an_affine_warp_then_a_smooth_displacement_at_severity_2():
    alpha, sigma, shift = 0.05 * H, 0.2 * H, 0.07 * H  # severity 2, in units of the side
    rng = np.random.default_rng(SEED)
    rows, cols = np.meshgrid(np.arange(H), np.arange(H), indexing="ij")
    expected = np.empty(x01().shape)
    for b, img in enumerate(x01()):
        centre, arm = H // 2, H // 3
        src = np.array([[centre + arm, centre + arm], [centre + arm, centre - arm],
                        [centre - arm, centre - arm]], dtype=float)  # (x, y) points
        dst = src + rng.uniform(-shift, shift, size=src.shape).astype(np.float32)
        affine = np.linalg.solve(np.c_[src, np.ones(3)], dst).T  # (x, y, 1) -> (x', y'), src -> dst
        inverse = np.linalg.inv(np.r_[affine, [[0, 0, 1]]])
        # warpAffine: out(x, y) = in(M⁻¹(x, y)), bilinear, reflect-101 border
        sx = inverse[0, 0] * cols + inverse[0, 1] * rows + inverse[0, 2]
        sy = inverse[1, 0] * cols + inverse[1, 1] * rows + inverse[1, 2]
        dx = ndimage.gaussian_filter(rng.uniform(-1, 1, size=(H, H)), sigma, mode="reflect", truncate=3) * alpha
        dy = ndimage.gaussian_filter(rng.uniform(-1, 1, size=(H, H)), sigma, mode="reflect", truncate=3) * alpha
        for ch in range(3):
            warped = bilinear(img[..., ch], sy, sx, "reflect")
            # map_coordinates(mode="reflect"): half-sample symmetric border (numpy's "symmetric")
            expected[b, ..., ch] = bilinear(warped, rows + dy, cols + dx, "symmetric")
    assert_image(run("elastic_transform", 2), expected)


def box_resize_axis(img: np.ndarray, size: int, axis: int) -> np.ndarray:
    """PIL's BOX resampling along one axis, then rounded to 8 bits (half up): output i averages the inputs
    whose centres fall in the box of width max(scale, 1) around (i + 0.5)·scale."""
    n = img.shape[axis]
    scale = n / size
    support = 0.5 * max(scale, 1.0)
    weights = np.zeros((size, n))
    for i in range(size):
        centre = (i + 0.5) * scale
        lo, hi = max(int(centre - support + 0.5), 0), min(int(centre + support + 0.5), n)
        for j in range(lo, hi):
            t = (j - centre + 0.5) / max(scale, 1.0)
            weights[i, j] = 1.0 if -0.5 <= t < 0.5 else 0.0
        weights[i] /= weights[i].sum()
    out = np.tensordot(weights, np.moveaxis(img, axis, 0), axes=1)
    return np.clip(np.floor(np.moveaxis(out, 0, axis) + 0.5), 0, 255)  # PIL rounds half up


def test_pixelate_box_shrinks_to_27_pixels_and_box_enlarges_back_at_severity_3():
    small = int(32 * 0.85)
    assert small == 27
    expected = []
    for img in images().astype(float):
        s = box_resize_axis(box_resize_axis(img, small, 1), small, 0)  # PIL: horizontal, then vertical
        expected.append(box_resize_axis(box_resize_axis(s, H, 1), H, 0))
    assert_image(run("pixelate", 3), np.stack(expected) / 255.0)


def test_jpeg_compression_is_a_quality_58_jpeg_round_trip_at_severity_3():
    expected = []
    for img in images():
        buffer = io.BytesIO()
        Image.fromarray(img).save(buffer, format="JPEG", quality=58)
        expected.append(np.asarray(Image.open(buffer).convert("RGB")))
    got = run("jpeg_compression", 3)
    assert np.array_equal(got, np.stack(expected))
    assert not np.array_equal(got, images())


def test_spatter_mud_at_severity_4():
    """Mud: a blurred N(0.65, 0.1) layer thresholded at 0.69, its mask blurred with σ 0.6, kept
    where ≥ 0.8, blends the image towards brown (63, 42, 20)."""
    rng = np.random.default_rng(SEED)
    x = x01()
    expected = np.empty_like(x)
    brown = np.array([63, 42, 20]) / 255.0
    for b in range(B):
        liquid = gaussian_blur_image(rng.normal(0.65, 0.1, size=(H, H)), 0.7)
        liquid[liquid < 0.69] = 0
        m = gaussian_blur_image((liquid > 0.69).astype(float), 0.6)
        m[m < 0.8] = 0
        expected[b] = x[b] * (1 - m[..., None]) + m[..., None] * brown
    assert (expected != x).any()  # some mud at this seed
    assert_image(run("spatter", 4), expected)


def canny_opencv(img: np.ndarray, low: int = 50, high: int = 150) -> np.ndarray:
    """OpenCV's ``Canny`` (modules/imgproc/src/canny.cpp), pixel by pixel: 3 x 3 Sobel on the
    image with its border pixels repeated; magnitude |gx| + |gy| (0 outside the image); a pixel
    above ``low`` survives if it beats its two neighbours across the gradient: horizontal sector
    (|gy| < tan 22.5°·|gx|, OpenCV's 15-bit TG22): m > left and m ≥ right; vertical (> tan 67.5°):
    m > above and m ≥ below; diagonal: m > both neighbours on the diagonal the gradient runs
    along; edges are the survivors 8-connected to a survivor above ``high``."""
    h, w = img.shape
    p = np.pad(img.astype(int), 1, mode="edge")
    gx, gy = np.zeros((h, w), int), np.zeros((h, w), int)
    for r in range(h):
        for c in range(w):
            gx[r, c] = (p[r, c + 2] + 2 * p[r + 1, c + 2] + p[r + 2, c + 2]) - (p[r, c] + 2 * p[r + 1, c] + p[r + 2, c])
            gy[r, c] = (p[r + 2, c] + 2 * p[r + 2, c + 1] + p[r + 2, c + 2]) - (p[r, c] + 2 * p[r, c + 1] + p[r, c + 2])
    mag = np.abs(gx) + np.abs(gy)

    def m_at(r, c):
        return mag[r, c] if 0 <= r < h and 0 <= c < w else 0

    tg22 = int(0.4142135623730950488 * (1 << 15) + 0.5)
    survivor = np.zeros((h, w), bool)
    for r in range(h):
        for c in range(w):
            m, x, y = mag[r, c], abs(gx[r, c]), abs(gy[r, c])
            if m <= low:
                continue
            if y * (1 << 15) < x * tg22:
                survivor[r, c] = m > m_at(r, c - 1) and m >= m_at(r, c + 1)
            elif y * (1 << 15) > x * tg22 + x * (1 << 16):
                survivor[r, c] = m > m_at(r - 1, c) and m >= m_at(r + 1, c)
            else:
                s = -1 if gx[r, c] * gy[r, c] < 0 else 1
                survivor[r, c] = m > m_at(r - 1, c - s) and m > m_at(r + 1, c + s)
    edges = np.zeros((h, w), bool)
    stack = [(r, c) for r in range(h) for c in range(w) if survivor[r, c] and mag[r, c] > high]
    while stack:
        r, c = stack.pop()
        if edges[r, c]:
            continue
        edges[r, c] = True
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                if 0 <= r + dr < h and 0 <= c + dc < w and survivor[r + dr, c + dc] and not edges[r + dr, c + dc]:
                    stack.append((r + dr, c + dc))
    return edges


@pytest.mark.parametrize("seed", range(4))
def test_canny_is_opencvs_with_its_border_and_tie_rules(seed):
    """Blocky images (plateaus: equal magnitudes side by side, where the tie rule decides) with
    content up to the border (where the border rule decides)."""
    rng = np.random.default_rng(seed)
    img = np.kron(rng.integers(0, 4, size=(8, 8)) * 80, np.ones((4, 4), dtype=int)).astype(np.uint8)
    img = np.clip(img.astype(int) + rng.integers(-3, 4, size=img.shape) * (seed % 2), 0, 255).astype(np.uint8)
    expected = canny_opencv(img)
    assert expected.any()
    np.testing.assert_array_equal(corruptions.canny(img), expected)


def equalize_opencv(x: np.ndarray) -> np.ndarray:
    """OpenCV's ``equalizeHist``: the lowest occupied level goes to 0, level i to
    round(255 · (cdf(i) − hist(lowest)) / (total − hist(lowest)))."""
    hist = np.bincount(x.ravel(), minlength=256)
    first = int(np.nonzero(hist)[0][0])
    if hist[first] == x.size:
        return x.copy()
    lut = np.zeros(256, dtype=np.uint8)
    total = 0
    for level in range(first + 1, 256):
        total += hist[level]
        lut[level] = round(255 * total / (x.size - hist[first]))
    return lut[x]


def box3(img: np.ndarray) -> np.ndarray:
    """OpenCV's ``blur(·, (3, 3))``: the 3 x 3 mean, reflect-101 border."""
    return correlate(img.astype(float), np.ones((3, 3)), "reflect") / 9  # the sum, then one division


def test_spatter_water_at_severity_1():
    """Water: the blurred N(0.62, 0.1) layer thresholded at 0.7; the distance to its Canny edges
    (exact Euclidean; OpenCV's 5 x 5 mask approximates it), truncated at 20, 3 x 3 mean, 8 bits,
    equalised, shaded by the kernel [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]] (8 bits, rounded), 3 x 3
    mean; m = layer · shade scaled to a maximum of 0.5, added in pale turquoise (175, 238, 238)."""
    rng = np.random.default_rng(SEED)
    x = x01()
    expected = np.empty_like(x)
    rows, cols = np.meshgrid(np.arange(H), np.arange(H), indexing="ij")
    for b in range(B):
        liquid = gaussian_blur_image(rng.normal(0.62, 0.1, size=(H, H)), 0.7)
        liquid[liquid < 0.7] = 0
        edges = canny_opencv(np.uint8(np.clip(liquid, 0, 1) * 255))
        er, ec = np.nonzero(edges)
        if len(er):
            dist = np.sqrt((rows[..., None] - er) ** 2 + (cols[..., None] - ec) ** 2).min(axis=-1)
        else:
            dist = np.full((H, H), 20.0)
        dist = box3(np.minimum(dist, 20)).astype(np.uint8)
        dist = equalize_opencv(dist)
        shade = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=float)
        dist = box3(np.clip(np.round(correlate(dist.astype(float), shade, "reflect")), 0, 255))
        m = liquid * dist
        m = m / m.max() * 0.5 if m.max() > 0 else m
        expected[b] = x[b] + m[..., None] * np.array([175, 238, 238]) / 255.0
    assert (expected != x).any()  # some water at this seed
    assert_image(run("spatter", 1), expected)


def test_every_corruption_has_a_formula_test_here():
    tested = {"gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "gaussian_blur",
              "defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "snow", "frost", "fog",
              "brightness", "contrast", "saturate", "elastic_transform", "pixelate",
              "jpeg_compression", "spatter"}
    assert tested == set(corruptions.CORRUPTIONS)
