"""The evaluation suite's formulas (evaluation/calibration.py, attacks.py, occlusion.py,
corruptions.py), each checked against a computation written here with plain loops from the
papers' definitions, not by calling the code under test.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy import ndimage

from adautomix.evaluation import attacks, calibration, corruptions, occlusion


# ------------------------------------------------------------------------------ calibration
def hand_ece(logits: list[list[float]], labels: list[int], n_bins: int) -> float:
    """Guo et al. (2017): Σ_m |B_m|/n · |acc(B_m) − conf(B_m)|, bins ((m−1)/M, m/M]."""
    conf, correct = [], []
    for row, label in zip(logits, labels):
        exps = [math.exp(v) for v in row]
        probs = [e / sum(exps) for e in exps]
        top = max(range(len(probs)), key=lambda k: probs[k])
        conf.append(probs[top])
        correct.append(1.0 if top == label else 0.0)
    ece = 0.0
    for m in range(1, n_bins + 1):
        members = [i for i, c in enumerate(conf) if (m - 1) / n_bins < c <= m / n_bins]
        if members:
            acc = sum(correct[i] for i in members) / len(members)
            avg = sum(conf[i] for i in members) / len(members)
            ece += len(members) / len(conf) * abs(acc - avg)
    return ece


def test_ece_equals_the_hand_computation_with_15_bins():
    logits = [[2.0, 0.1, -1.0], [0.3, 0.2, 0.1], [-1.0, 3.0, 0.5], [0.0, 0.0, 4.0], [1.5, 1.4, -2.0],
              [0.2, 2.2, 2.1], [5.0, -1.0, 0.0], [0.1, 0.0, 0.05], [-0.5, 0.7, 0.2], [3.0, 3.1, 0.0]]
    labels = [0, 2, 1, 2, 1, 1, 0, 1, 2, 0]
    expected = hand_ece(logits, labels, 15)
    got = calibration.expected_calibration_error(torch.tensor(logits, dtype=torch.float64), torch.tensor(labels), 15)
    assert got == pytest.approx(expected, abs=1e-7) and expected > 0.05
    bins = calibration.reliability_bins(torch.tensor(logits, dtype=torch.float64), torch.tensor(labels), 15)
    from_bins = sum(n / len(labels) * abs(a - c)
                    for n, a, c in zip(bins["count"], bins["accuracy"], bins["confidence"]))
    assert from_bins == pytest.approx(expected, abs=1e-9) and sum(bins["count"]) == len(labels)
    edges = bins["edges"]
    assert len(edges) == 16 and edges[0] == 0 and edges[-1] == 1
    for m, (n, conf) in enumerate(zip(bins["count"], bins["confidence"])):
        assert n == 0 or edges[m] < conf <= edges[m + 1]  # each bin's mean confidence lies in it


def test_ece_is_zero_for_a_perfectly_calibrated_model():
    # every sample 80 % confident in its top class, right 8 times out of 10: acc = conf = 0.8
    logits = torch.tensor([[math.log(0.8), math.log(0.2)]] * 10, dtype=torch.float64)
    labels = torch.tensor([0] * 8 + [1] * 2)
    assert calibration.expected_calibration_error(logits, labels) == pytest.approx(0.0, abs=1e-6)  # float32
    assert hand_ece(logits.tolist(), labels.tolist(), 15) == pytest.approx(0.0, abs=1e-12)


def test_reliability_diagram_is_a_png(tmp_path):
    bins = calibration.reliability_bins(torch.randn(50, 4), torch.randint(0, 4, (50,)))
    path = calibration.save_reliability_diagram(tmp_path / "r.png", bins, "model", 0.1)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------ FGSM
MEAN = torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)
STD = torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)


def linear_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5))


def test_fgsm_moves_each_pixel_by_epsilon_against_the_hand_gradient():
    model = linear_model()
    torch.manual_seed(1)
    pixels = torch.rand(6, 3, 4, 4) * 0.8 + 0.1  # away from 0 and 1: nothing is clipped at ε = 8/255
    x, y = (pixels - MEAN) / STD, torch.randint(0, 5, (6,))
    adversarial = attacks.fgsm(model, x, y, MEAN, STD, 8 / 255) * STD + MEAN
    # hand gradient of the mean CE w.r.t. the pixels: W^T (softmax − onehot) / (B · std)
    w = model[1].weight.detach()
    logits = model(x).detach()
    for b in range(6):
        p = torch.softmax(logits[b], 0)
        p[y[b]] -= 1
        grad = (w.t() @ p).view(3, 4, 4) / STD[0] / 6
        step = adversarial[b] - pixels[b]
        for c, i, j in [(0, 0, 0), (1, 2, 3), (2, 3, 1), (0, 1, 2)]:
            assert step[c, i, j].item() == pytest.approx(8 / 255 * math.copysign(1, grad[c, i, j].item()), abs=1e-6)
    assert (adversarial - pixels).abs().max().item() == pytest.approx(8 / 255, abs=1e-6)


def test_fgsm_clips_to_the_pixel_range_and_epsilon_zero_changes_nothing():
    model = linear_model(2)
    pixels = torch.rand(16, 3, 4, 4)
    pixels[:, :, 0, 0] = 0.0  # on the border: the step is clipped there
    pixels[:, :, 1, 1] = 1.0
    x, y = (pixels - MEAN) / STD, torch.randint(0, 5, (16,))
    adversarial = attacks.fgsm(model, x, y, MEAN, STD, 8 / 255) * STD + MEAN
    assert adversarial.min() >= -1e-6 and adversarial.max() <= 1 + 1e-6
    assert (adversarial - pixels).abs().max() <= 8 / 255 + 1e-6
    same = attacks.fgsm(model, x, y, MEAN, STD, 0.0)
    assert torch.equal(model(same).argmax(1), model(x).argmax(1))
    assert torch.allclose(same, x, atol=1e-6)


# ------------------------------------------------------------------------------ occlusion
def test_occlusion_at_zero_masks_nothing_and_at_one_hundred_percent_leaves_no_pixel():
    g = torch.Generator().manual_seed(0)
    pixels = torch.rand(8, 3, 32, 32) * 0.9 + 0.05
    none = occlusion.occlusion_mask(8, 32, 32, 0.0, 16, g)
    assert none.sum() == 0 and torch.equal(occlusion.occlude(pixels, none), pixels)
    full = occlusion.occlusion_mask(8, 32, 32, 1.0, 16, g)
    assert torch.equal(occlusion.occlude(pixels, full), torch.zeros_like(pixels))


def test_occlusion_masks_whole_16_pixel_cells_and_the_expected_fraction_is_the_ratio():
    g = torch.Generator().manual_seed(1)
    half = occlusion.occlusion_mask(64, 32, 32, 0.5, 16, g)
    for b in range(64):  # 4 cells: exactly 2 masked, each a whole 16 x 16 cell
        cells = [half[b, 0, 16 * i:16 * i + 16, 16 * j:16 * j + 16] for i in range(2) for j in range(2)]
        assert sorted(float(c.mean()) for c in cells) == [0.0, 0.0, 1.0, 1.0]
    tenth = occlusion.occlusion_mask(4000, 32, 32, 0.1, 16, g)  # 0.4 cells: 0 or 1 cell per image
    per_image = tenth.mean(dim=(1, 2, 3))
    assert set(per_image.tolist()) <= {0.0, 0.25} and float(per_image.mean()) == pytest.approx(0.1, abs=0.01)
    fine = occlusion.occlusion_mask(2, 32, 32, 0.3, 4, g)  # 64 cells of 4 x 4: 19 or 20 of them
    assert all(round(float(m.mean()) * 64) in (19, 20) for m in fine)


# ------------------------------------------------------------------------------ corruptions
def colour_batch(n: int = 3, size: int = 32) -> np.ndarray:
    """Smooth, moderately coloured images with a sharp square (like natural photographs, neither
    grey nor fully saturated): every corruption has something to change."""
    rng = np.random.default_rng(7)
    x = ndimage.gaussian_filter(rng.random((n, size, size, 3)), (0, 3, 3, 0))
    x = np.clip((x - x.mean()) * 6 + 0.5, 0.05, 0.95)
    x = 0.6 * x + 0.4 * x.mean(axis=-1, keepdims=True)
    x[:, 8:20, 10:22] = [0.75, 0.45, 0.35]
    return np.uint8(x * 255)


def change(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(float) - b.astype(float)).mean())


@pytest.mark.parametrize("name", list(corruptions.CORRUPTIONS))
def test_each_corruption_is_deterministic_keeps_shape_and_dtype_and_grows_with_severity(name):
    images = colour_batch()
    out = {s: corruptions.corrupt(images, name, s, np.random.default_rng([3, s])) for s in (1, 5)}
    again = corruptions.corrupt(images, name, 5, np.random.default_rng([3, 5]))
    assert np.array_equal(out[5], again)
    assert out[5].shape == images.shape and out[5].dtype == np.uint8
    if name == "elastic_transform":
        # the authors' CIFAR parameters shrink the affine part with severity while the local
        # displacement α grows: compare that part
        fields = {s: corruptions.elastic_fields(32, 32, s, np.random.default_rng(0)) for s in (1, 5)}
        assert np.abs(fields[1][2]).max() == 0 < np.abs(fields[5][2]).max()
    else:
        assert change(out[5], images) > change(out[1], images) > 0, name


def test_corruption_formulas_match_hand_computations():
    images = colour_batch(1, 4)
    x = images[0].astype(float) / 255
    # contrast, severity 1: (x − mean_c) · 0.75 + mean_c per channel, truncated to uint8
    got = corruptions.corrupt(images, "contrast", 1, np.random.default_rng(0))[0]
    for c in range(3):
        mean = sum(x[i, j, c] for i in range(4) for j in range(4)) / 16
        for i in range(4):
            for j in range(4):
                assert got[i, j, c] == int(min(max((x[i, j, c] - mean) * 0.75 + mean, 0), 1) * 255)
    # gaussian noise, severity 3: x + N(0, 0.08) with the generator's draws
    noise = np.random.default_rng(5).normal(size=images.shape, scale=0.08)
    got = corruptions.corrupt(images, "gaussian_noise", 3, np.random.default_rng(5))
    assert np.array_equal(got, np.uint8(np.clip(images / 255 + noise, 0, 1) * 255))
    # ImageMagick's motion-blur kernel at 0°: 2r + 1 taps along the row, weights exp(−i²/2σ²)
    taps = corruptions.motion_blur_kernel(6, 2, 0.0)
    weights = [math.exp(-i * i / 8) for i in range(13)]
    assert [(dy, dx) for dy, dx, _ in taps] == [(0, i) for i in range(13)]
    assert [w for _, _, w in taps] == pytest.approx([w / sum(weights) for w in weights])
    assert [(dy, dx) for dy, dx, _ in corruptions.motion_blur_kernel(2, 1, 90.0)] == [(i, 0) for i in range(5)]


def test_zoom_is_scipys_bilinear_zoom_and_the_defocus_disk_sums_to_one():
    x = np.random.default_rng(0).random((2, 32, 32, 3))
    for z in (1.0, 1.07, 1.75, 2.25):
        ch = math.ceil(32 / z)
        top = (32 - ch) // 2
        ref = ndimage.zoom(x[:, top:top + ch, top:top + ch], (1, z, z, 1), order=1)
        trim = (ref.shape[1] - 32) // 2
        assert np.allclose(corruptions.clipped_zoom(x, z), ref[:, trim:trim + 32, trim:trim + 32])
    for radius, blur in [(0.3, 0.4), (1.5, 0.1)]:
        assert corruptions.disk_kernel(radius, blur).sum() == pytest.approx(1.0)


def test_frost_uses_the_synthetic_texture_and_says_so():
    texture = corruptions.frost_texture()
    assert texture.shape == (256, 256, 3) and 0 <= texture.min() and texture.max() <= 255
    assert np.array_equal(texture, corruptions.frost_texture())  # deterministic
    assert corruptions.SYNTHETIC == ("frost",)


def test_bad_corruption_arguments_are_refused():
    images = colour_batch(1)
    with pytest.raises(KeyError, match="unknown corruption"):
        corruptions.corrupt(images, "rain", 1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="severity"):
        corruptions.corrupt(images, "fog", 6, np.random.default_rng(0))
    with pytest.raises(ValueError, match="uint8"):
        corruptions.corrupt(images.astype(np.float32), "fog", 1, np.random.default_rng(0))
