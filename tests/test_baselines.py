"""Specifications of the hand-crafted baselines FMix, ResizeMix, SaliencyMix, GridMix, SmoothMix
(adautomix.methods.mixing, .masks, .saliency): each method's defining property, checked on the
images it returns, plus its config keys and one run of each from the command line."""
from __future__ import annotations

import inspect
import json
import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from adautomix.config import ConfigError, MethodConfig, load_config
from adautomix.engine import build_step
from adautomix.methods.masks import fmix_mask, gaussian_mask, grid_mask, low_frequency_noise
from adautomix.methods.mixing import MIX_FUNCTIONS, fmix, gridmix, resizemix, saliencymix, smoothmix
from adautomix.methods.registry import METHODS
from adautomix.methods.saliency import spectral_residual

BASELINES = ["fmix", "resizemix", "saliencymix", "gridmix", "smoothmix"]
B, C, H, W = 16, 3, 32, 32


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The masks are tiny tensors: one thread, so a busy 2-core machine does not spin on them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def batch(seed: int = 0):
    """Image b holds values in [b, b + 0.5): two images never share a pixel value, so every pixel
    of a mix says which image it came from. Labels 0..B-1, so a label names its image."""
    g = torch.Generator().manual_seed(seed)
    return torch.arange(B).float()[:, None, None, None] + 0.5 * torch.rand(B, C, H, W, generator=g), torch.arange(B)


def mix(method: str, x, y, seed: int, **params):
    return MIX_FUNCTIONS[method](x, y, torch.Generator().manual_seed(seed), **params)


def changed(x, x_mixed):
    """B x H x W: the pixels the mix replaced (any channel)."""
    return (x_mixed != x).any(dim=1)


def box_of(region: torch.Tensor) -> tuple[int, int, int, int]:
    """(top, bottom, left, right), half-open, of a region that must be one filled rectangle."""
    rows, cols = region.any(dim=1).nonzero().flatten(), region.any(dim=0).nonzero().flatten()
    top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    assert int(region.sum()) == (bottom - top) * (right - left), "not a filled rectangle"
    return top, bottom, left, right


# ------------------------------------------------------------------------ every baseline

@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("method", BASELINES)
def test_weights_sum_to_one_and_equal_each_images_share_of_the_mixed_pixels(method, seed):
    x, y = batch(seed)
    x_mixed, targets = mix(method, x, y, seed)
    assert torch.equal(targets.labels[:, 0], y)
    perm = targets.labels[:, 1]
    assert sorted(perm.tolist()) == list(range(B))
    assert torch.allclose(targets.weights.sum(dim=1), torch.ones(B), atol=1e-6)
    assert bool((targets.weights >= 0).all())
    for b in (perm != y).nonzero().flatten().tolist():
        if method == "smoothmix":  # a soft blend: recover the partner's share pixel by pixel
            share = ((x_mixed[b] - x[b]) / (x[perm[b]] - x[b])).mean()
        else:  # a hard mask: the share is the fraction of pixels that changed
            share = changed(x[b:b + 1], x_mixed[b:b + 1]).float().mean()
            if method != "resizemix":  # pasted in place: each changed pixel is the partner's own
                kept = ~changed(x[b:b + 1], x_mixed[b:b + 1])[0]
                assert torch.equal(torch.where(kept, x[b], x[perm[b]]), x_mixed[b])
        assert float(targets.weights[b, 1]) == pytest.approx(float(share), abs=1e-5)


@pytest.mark.parametrize("method", BASELINES)
def test_a_seed_gives_the_same_mix_and_other_seeds_other_mixes(method):
    x, y = batch()
    first, again = mix(method, x, y, 7), mix(method, x, y, 7)
    assert torch.equal(first[0], again[0])
    assert torch.equal(first[1].labels, again[1].labels) and torch.equal(first[1].weights, again[1].weights)
    others = [mix(method, x, y, seed)[0] for seed in range(3)]
    assert any(not torch.equal(first[0], other) for other in others)


@pytest.mark.parametrize("method", BASELINES)
def test_registered_with_a_builder_that_trains_and_keys_that_reach_the_mixing_function(method):
    entry = METHODS[method]
    config_keys = {f.name for f in MethodConfig.__dataclass_fields__.values()}
    arguments = set(inspect.signature(MIX_FUNCTIONS[method]).parameters)
    for key in entry.params:
        assert key in config_keys, key
        assert key.startswith(f"{method}_") and key.removeprefix(f"{method}_") in arguments, key
    assert ("mix_lambda" in arguments) == (entry.mix_lambda > 0)
    cfg = load_config(overrides={"method.name": method, "model.width": 0.125, "out_dir": "unused"})
    step = build_step(cfg, num_classes=10)
    loss, parts = step(torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,)))
    loss.backward()
    assert torch.isfinite(loss) and "loss_ce" in parts
    assert all(p.grad is not None for p in step.classifier.parameters())


def test_default_beta_parameters_follow_openmixups_cifar100_table():
    defaults = {m: load_config(overrides={"method.name": m, "out_dir": "x"}).method.mix_lambda for m in BASELINES}
    assert defaults == {"fmix": 0.2, "resizemix": 1.0, "saliencymix": 0.2, "gridmix": 0.2, "smoothmix": 0.0}


@pytest.mark.parametrize("key, value, allowed", [
    ("fmix_decay_power", 0, "> 0"),
    ("resizemix_scale_min", 0, "0 < scale <= 1"),
    ("resizemix_scale_max", 0.05, "method.resizemix_scale_min (0.1) <= scale <= 1"),
    ("resizemix_interpolation", "bicubic", "one of nearest, bilinear"),
    ("saliencymix_box", "pixel", "one of batch, sample"),
    ("gridmix_holes_min", 0, ">= 1"),
    ("gridmix_holes_max", 1, ">= method.gridmix_holes_min (2)"),
    ("gridmix_area_min", 0, "0 < area <= 1"),
    ("gridmix_area_max", 1.5, "method.gridmix_area_min (0.5) <= area <= 1"),
    ("smoothmix_sigma_min", 0, "> 0"),
    ("smoothmix_sigma_max", 0.1, ">= method.smoothmix_sigma_min (0.25)"),
    ("mix_lambda", 0.5, "smoothmix draws no λ"),
])
def test_bad_values_are_config_errors_naming_the_key(key, value, allowed):
    with pytest.raises(ConfigError) as err:
        load_config(overrides={"method.name": "smoothmix", f"method.{key}": value, "out_dir": "x"})
    assert f"method.{key}=" in str(err.value) and allowed in str(err.value)


# ------------------------------------------------------------------------ FMix

@pytest.mark.parametrize("lam", [0.0, 0.013, 0.3, 0.5, 0.77, 0.999, 1.0])
def test_fmix_mask_is_binary_with_exactly_round_lambda_hw_ones(lam):
    mask = fmix_mask(lam, H, W, 3.0, torch.Generator().manual_seed(0))
    assert mask.dtype == torch.bool and mask.shape == (H, W)
    assert int(mask.sum()) == math.floor(lam * H * W + 0.5)


@pytest.mark.parametrize("seed", range(4))
def test_fmix_mask_keeps_the_brightest_pixels_of_its_fourier_noise(seed):
    lam = 0.37
    noise = low_frequency_noise(H, W, 3.0, torch.Generator().manual_seed(seed))
    mask = fmix_mask(lam, H, W, 3.0, torch.Generator().manual_seed(seed))  # the same draws
    threshold = sorted(noise.flatten().tolist(), reverse=True)[round(lam * H * W) - 1]
    assert torch.equal(mask, noise >= threshold)


@pytest.mark.parametrize("decay", [1.0, 3.0])
def test_fmix_noise_amplitude_falls_as_one_over_frequency_to_the_decay_power(decay):
    g = torch.Generator().manual_seed(0)
    amplitude = torch.stack([torch.fft.rfft2(low_frequency_noise(H, W, decay, g)).abs() for _ in range(200)]).mean(0)
    k = torch.arange(H, dtype=torch.float64)
    fy = torch.minimum(k, H - k) / H  # row k holds frequency k/H, or (k-H)/H past the middle
    fx = torch.arange(W // 2 + 1, dtype=torch.float64) / W
    freq = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    inner = slice(1, W // 2)  # columns 0 and W/2 are their own mirror images: left out
    log_f, log_a = freq[:, inner].log().flatten(), amplitude[:, inner].log().flatten()
    slope = float(((log_f - log_f.mean()) * (log_a - log_a.mean())).sum() / ((log_f - log_f.mean()) ** 2).sum())
    assert slope == pytest.approx(-decay, abs=0.05)


def test_fmix_masks_are_smooth_blobs_not_scattered_pixels():
    g = torch.Generator().manual_seed(0)
    fractions = []
    for _ in range(50):
        mask = fmix_mask(0.5, H, W, 3.0, g)
        fractions.append(float((mask[:, 1:] != mask[:, :-1]).float().mean()))
    # a random mask with mean 1/2 changes between neighbours half the time
    assert sum(fractions) / len(fractions) < 0.1


@pytest.mark.parametrize("seed", range(6))
def test_fmix_keeps_exactly_lambda_of_the_pixels_of_each_image_with_one_mask_per_batch(seed):
    x, y = batch(seed)
    x_mixed, targets = fmix(x, y, torch.Generator().manual_seed(seed))
    moved = (targets.labels[:, 1] != y).nonzero().flatten()
    replaced = changed(x, x_mixed)[moved]
    assert bool((replaced == replaced[0]).all())
    kept = int((~replaced[0]).sum())
    assert float(targets.weights[0, 0]) * H * W == pytest.approx(kept, abs=1e-6)


# ------------------------------------------------------------------------ ResizeMix

@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
@pytest.mark.parametrize("seed", range(8))
def test_resizemix_pastes_the_whole_resized_partner_and_keeps_the_rest(seed, interpolation):
    x, y = batch(seed)
    x_mixed, targets = resizemix(x, y, torch.Generator().manual_seed(seed), interpolation=interpolation)
    perm = targets.labels[:, 1]
    b = int((perm != y).nonzero()[0])
    top, bottom, left, right = box_of(changed(x[b:b + 1], x_mixed[b:b + 1])[0])
    ph, pw = bottom - top, right - left
    align = False if interpolation == "bilinear" else None
    expected = F.interpolate(x[perm], size=(ph, pw), mode=interpolation, align_corners=align)
    assert torch.equal(x_mixed[..., top:bottom, left:right], expected)
    outside = torch.ones(H, W, dtype=torch.bool)
    outside[top:bottom, left:right] = False
    assert torch.equal(x_mixed[..., outside], x[..., outside])
    # the whole partner, corners included: nearest-neighbour copies its top-left pixel
    if interpolation == "nearest":
        assert torch.equal(x_mixed[:, :, top, left], x[perm][:, :, 0, 0])
    assert float(targets.weights[0, 0]) == pytest.approx(1 - ph * pw / (H * W), abs=1e-7)


def test_resizemix_patch_side_ranges_over_the_scale_range():
    x, y = batch()
    sides = []
    for seed in range(120):
        x_mixed, targets = resizemix(x, y, torch.Generator().manual_seed(seed))
        b = int((targets.labels[:, 1] != y).nonzero()[0])
        top, bottom, left, right = box_of(changed(x[b:b + 1], x_mixed[b:b + 1])[0])
        assert bottom - top == right - left  # a square image gives a square patch
        sides.append((bottom - top) / H)
    assert min(sides) >= int(0.1 * H) / H and max(sides) <= 0.8
    assert min(sides) < 0.2 and max(sides) > 0.7
    # τ ~ U(0.1, 0.8) at the default Beta(1, 1): the floored side averages about 0.45 - 1/64
    assert sum(sides) / len(sides) == pytest.approx(0.45 - 0.5 / H, abs=0.05)


# ------------------------------------------------------------------------ SaliencyMix

def spotted(seed: int, n: int, size: int = 2):
    """n flat, noisy images, each with a size x size spot at a random place, bright in even
    images and dark in odd ones (saliency is not brightness); returns the images and the spots."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, 1, 1, generator=g) * 0.5 + 0.05 * torch.randn(n, 3, H, W, generator=g)
    spots = []
    for i in range(n):
        r, c = (int(torch.randint(0, H - size + 1, (), generator=g)) for _ in range(2))
        images[i, :, r:r + size, c:c + size] += 1.0 if i % 2 == 0 else -1.0
        spots.append((r, c))
    return images, spots


def test_spectral_residual_saliency_peaks_on_a_small_spot_bright_or_dark():
    images, spots = spotted(0, 100)
    saliency = spectral_residual(images)
    assert saliency.shape == (100, H, W) and bool((saliency >= 0).all())
    for (r, c), s in zip(spots, saliency):
        peak = int(s.argmax())
        assert (r, c) <= (peak // W, peak % W) and peak // W < r + 2 and c <= peak % W < c + 2


@pytest.mark.parametrize("box", ["batch", "sample"])
@pytest.mark.parametrize("seed", range(10))
def test_saliencymix_box_holds_the_partners_spot_and_lambda_is_the_kept_area(seed, box):
    images, spots = spotted(seed, B)
    y = torch.arange(B)
    x_mixed, targets = saliencymix(images, y, torch.Generator().manual_seed(seed), mix_lambda=1.0, box=box)
    perm = targets.labels[:, 1]
    boxes = set()
    for b in range(B):
        if perm[b] == b:
            continue
        region = changed(images[b:b + 1], x_mixed[b:b + 1])[0]
        assert float(targets.weights[b, 0]) == pytest.approx(1 - float(region.float().mean()), abs=1e-6)
        if not region.any():
            continue
        top, bottom, left, right = box_of(region)
        boxes.add((top, bottom, left, right))
        assert torch.equal(x_mixed[b, :, top:bottom, left:right], images[perm[b], :, top:bottom, left:right])
        r, c = spots[int(perm[0] if box == "batch" else perm[b])]
        assert top < r + 2 and r < bottom and left < c + 2 and c < right, "the box misses the spot"
    if box == "batch":
        assert len(boxes) <= 1


# ------------------------------------------------------------------------ GridMix

def runs(line: torch.Tensor) -> list[tuple[int, int]]:
    """(start, length) of each run of True in a 1-D bool tensor."""
    out, start = [], None
    for i, v in enumerate(line.tolist() + [False]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            out.append((start, i - start))
            start = None
    return out


@pytest.mark.parametrize("lam", [0.05, 0.3, 0.5, 0.8, 0.97])
@pytest.mark.parametrize("seed", range(8))
def test_gridmix_mask_is_a_regular_grid_of_equal_square_holes(lam, seed):
    mask = grid_mask(lam, H, W, torch.Generator().manual_seed(seed))
    rows, cols = mask.any(dim=1), mask.any(dim=0)
    assert torch.equal(mask, rows[:, None] & cols[None, :])  # holes line up in rows and columns
    row_runs, col_runs = runs(rows), runs(cols)
    assert 1 <= len(col_runs) <= 6
    (first_r, hole), (first_c, hole_c) = row_runs[0], col_runs[0]
    assert hole == hole_c  # square holes
    starts_r, starts_c = [s for s, _ in row_runs], [s for s, _ in col_runs]
    if len(col_runs) > 1:
        cell = starts_c[1] - starts_c[0]
        assert starts_c == [first_c + i * cell for i in range(len(col_runs))]  # evenly spaced
        assert starts_r == [first_r + i * cell for i in range(len(row_runs))]  # square cells
        assert hole == min(max(int(cell * math.sqrt(1 - lam)), 1), cell - 1)  # side cell·sqrt(1-λ)
    # every hole but the last in a row or column (clipped by the crop) is whole
    assert all(length == hole for _, length in row_runs[:-1] + col_runs[:-1])


def test_gridmix_pastes_the_partner_through_the_grid_with_one_mask_per_batch():
    x, y = batch(3)
    x_mixed, targets = gridmix(x, y, torch.Generator().manual_seed(3), mix_lambda=1.0)
    perm = targets.labels[:, 1]
    holes = changed(x, x_mixed)[perm != y]
    assert bool((holes == holes[0]).all()) and bool(holes[0].any())
    assert torch.equal(holes[0], holes[0].any(dim=1)[:, None] & holes[0].any(dim=0)[None, :])


# ------------------------------------------------------------------------ SmoothMix

@pytest.mark.parametrize("seed", range(8))
def test_smoothmix_blends_through_a_gaussian_bump_with_sigma_in_range(seed):
    x, y = batch(seed)
    x_mixed, targets = smoothmix(x, y, torch.Generator().manual_seed(seed))
    perm = targets.labels[:, 1]
    b = int((perm != y).nonzero()[0])
    blend = ((x_mixed[b] - x[b]) / (x[perm[b]] - x[b])).mean(dim=0).double()  # H x W, the partner's share
    peak = int(blend.argmax())
    cy, cx = peak // W, peak % W
    assert float(blend[cy, cx]) == pytest.approx(1.0, abs=1e-4)
    dist2 = ((torch.arange(H)[:, None] - cy) ** 2 + (torch.arange(W)[None, :] - cx) ** 2).double()
    far = dist2 > 0
    inv_two_sigma2 = -torch.log(blend[far]) / dist2[far]  # G = exp(-d² / 2σ²): constant
    assert float(inv_two_sigma2.std() / inv_two_sigma2.mean()) < 1e-3
    sigma = math.sqrt(1 / (2 * float(inv_two_sigma2.mean())))
    assert 0.25 * H - 0.01 <= sigma <= 0.5 * H + 0.01
    assert float(targets.weights[b, 1]) == pytest.approx(float(blend.mean()), abs=1e-5)


def test_gaussian_mask_centres_cover_the_image():
    g = torch.Generator().manual_seed(0)
    centres = set()
    for _ in range(400):
        peak = int(gaussian_mask(H, W, g).argmax())
        centres.add((peak // W, peak % W))
    rows, cols = {r for r, _ in centres}, {c for _, c in centres}
    assert min(rows) <= 1 and max(rows) >= H - 2 and min(cols) <= 1 and max(cols) >= W - 2


# ------------------------------------------------------------------------ from the command line

@pytest.mark.parametrize("method", BASELINES)
def test_each_baseline_trains_on_digits_from_the_command_line(tmp_path, method):
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "adautomix", "train", f"method.name={method}", "data.name=digits",
         "model.width=0.125", "train.epochs=1", "data.limit_train=256", "data.limit_test=128",
         "train.batch_size=64", "train.threads=1", f"out_dir={out}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["epochs_done"] == 1 and 0 <= summary["top1"] <= 100
    assert math.isfinite(summary["final_loss"])
    config = (out / "config.yaml").read_text()
    assert f"name: {method}" in config
    assert all(f"{key}:" in config for key in METHODS[method].params)
