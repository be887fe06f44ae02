"""Is the generator doing anything? The three measures of how far the learned masks are from
plain mixup (``learned_mix.mask_stats``), logged per epoch from the masks the step already
makes, and shown in the mixed-sample picture, which takes one image per class."""
from __future__ import annotations

import json
import statistics

import pytest
import torch

from adautomix.config import load_config
from adautomix.engine import train
from adautomix.methods.learned_mix import mask_stats
from adautomix.visualize import measures_line, one_per_class

TINY = ["data.name=digits", "model.width=0.125", "data.limit_train=64", "data.limit_test=32",
        "train.batch_size=32", "train.threads=1", "train.device=cpu"]


def by_hand(masks: torch.Tensor, lam: list[float]) -> dict[str, float]:
    """The three measures with plain loops over samples, sources and pixels."""
    b, n, h, w = masks.shape
    stds, major, gap = [], 0, 0.0
    for i in range(b):
        for j in range(n):
            values = [float(masks[i, j, r, c]) for r in range(h) for c in range(w)]
            stds.append(statistics.stdev(values))  # the unbiased std, as torch.std
            gap += sum(abs(v - lam[j]) for v in values)
        for r in range(h):
            for c in range(w):
                major += any(float(masks[i, j, r, c]) > 0.5 for j in range(n))
    return {"mask_std": sum(stds) / len(stds), "mask_major": major / (b * h * w),
            "mask_lam_gap": gap / (b * n * h * w)}


def test_measures_match_a_hand_computation():
    g = torch.Generator().manual_seed(0)
    masks = torch.randn(3, 3, 5, 4, generator=g).mul(2).softmax(dim=1)
    lam = [0.5, 0.3, 0.2]
    got = {k: float(v) for k, v in mask_stats(masks, torch.tensor(lam)).items()}
    assert got == pytest.approx(by_hand(masks, lam), rel=1e-5)


def test_plain_mixup_masks_measure_zero_std_and_gap():
    lam = torch.tensor([0.6, 0.3, 0.1])
    got = mask_stats(lam.view(1, 3, 1, 1).expand(2, 3, 4, 4), lam)
    assert float(got["mask_std"]) == 0 and float(got["mask_lam_gap"]) == 0
    assert float(got["mask_major"]) == 1  # λ_1 = 0.6 holds every pixel


@pytest.mark.parametrize("method", ["adautomix", "automix"])
def test_each_epoch_record_carries_the_epochs_mean_of_the_measures(tmp_path, method, monkeypatch):
    """The record's values are the mean over the epoch's steps of the measures of the generator
    branch's masks (recorded here from inside the step, by wrapping ``mask_stats``)."""
    import adautomix.methods.adautomix as ada
    import adautomix.methods.automix as auto

    seen = []

    def recording(masks, lam):
        assert masks.requires_grad  # the generator branch's masks (the classifier branch's are detached)
        seen.append(by_hand(masks.detach(), [float(v) for v in lam]))
        return mask_stats(masks, lam)

    monkeypatch.setattr(ada if method == "adautomix" else auto, "mask_stats", recording)
    cfg = load_config(overrides=[*TINY, f"method.name={method}", "train.epochs=1", f"out_dir={tmp_path}",
                                 "method.vis_every=0"])
    train(cfg, quiet=True)
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert len(seen) == 2  # one call per step: no extra pass
    for key in ("mask_std", "mask_major", "mask_lam_gap"):
        assert record[key] == pytest.approx(sum(s[key] for s in seen) / 2, rel=1e-4, abs=1e-9), key


def test_picture_takes_one_image_per_class_across_batches():
    # the first batch holds one class only; the second brings three more
    batches = [(torch.arange(4.0).view(4, 1, 1, 1), torch.tensor([7, 7, 7, 7])),
               (torch.arange(4.0, 8.0).view(4, 1, 1, 1), torch.tensor([1, 7, 2, 3]))]
    x, y = one_per_class(batches, k=4)
    assert y.tolist() == [7, 1, 2, 3] and x.flatten().tolist() == [0, 4, 6, 7]
    x, y = one_per_class(batches, k=6)  # fewer classes than columns: topped up in order
    assert y.tolist() == [7, 1, 2, 3, 7, 7] and x.flatten().tolist() == [0, 4, 6, 7, 1, 2]


def test_picture_title_states_the_epochs_measures(tmp_path, monkeypatch):
    line = measures_line({"mask_std": 0.0081, "mask_major": 0.125, "mask_lam_gap": 0.14, "loss": 1.0})
    assert line == "masks: spatial std 0.0081, one source > 0.5 on 12.5% of pixels, |M - λ| 0.14"
    from matplotlib.figure import Figure

    titles = []
    original = Figure.suptitle
    monkeypatch.setattr(Figure, "suptitle", lambda fig, t, **kw: (titles.append(t), original(fig, t, **kw))[1])
    cfg = load_config(overrides=[*TINY, "method.name=adautomix", "train.epochs=1", f"out_dir={tmp_path}"])
    train(cfg, quiet=True)
    assert (tmp_path / "pictures" / "mixed_epoch0001.png").exists()
    record = json.loads((tmp_path / "metrics.jsonl").read_text())
    assert titles == [f"AdAutoMix mixed samples, epoch 1, N = 3\n{measures_line(record)} (epoch mean)"]
