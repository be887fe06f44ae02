"""The Ray Train checks of the methods with their own step modules (AutoMix, Manifold Mixup,
PuzzleMix): each trains on two real Ray Train workers (the session's cluster, conftest.py).

The algorithm test files (test_automix.py, test_manifoldmix.py, test_puzzlemix.py) start no
cluster; what a method must do under DDP on Ray Train lives here, next to test_ray_train.py.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import ray.cloudpickle
import torch

from adautomix.config import load_config
from adautomix.engine import Callback
from adautomix.platform.ray_train import train_with_ray

from test_puzzlemix import TINY as PUZZLEMIX_TINY
from test_ray_train import two_workers_match_one_process

# The callbacks below are defined in this module, which Ray's workers cannot import: ship by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


class SaveWeights(Callback):
    """Each rank writes its classifier's, Mix Block's and teacher's parameters after every epoch."""

    def __init__(self, folder: Path):
        self.folder = folder

    def on_epoch_end(self, trainer, checkpoint):
        params = {k: v.detach().cpu().clone() for k, v in trainer.step.named_parameters()}
        torch.save(params, self.folder / f"rank{trainer.rank}_epoch{trainer.epoch}.pt")


class SaveClassifier(Callback):
    """Each rank writes its classifier's parameters after every epoch (one step per epoch)."""

    def __init__(self, folder: Path):
        self.folder = folder

    def on_epoch_end(self, trainer, checkpoint):
        params = {k: v.detach().cpu().clone() for k, v in trainer.step.classifier.named_parameters()}
        torch.save(params, self.folder / f"rank{trainer.rank}_epoch{trainer.epoch}.pt")


def test_automix_two_ray_train_workers_match_one_process_and_stay_in_step(tmp_path, ray_connected):
    """DDP over the step module (one forward per backward): each step's loss matches the
    one-process run within the Ray Train tests' tolerance, and both ranks hold the same
    classifier, Mix Block and teacher after every step although each draws its own λ and π."""
    folder = two_workers_match_one_process(
        tmp_path, ["method.name=automix", "data.limit_train=32", "train.epochs=4"], SaveWeights)
    rank0 = torch.load(folder / "rank0_epoch4.pt")
    assert all(any(k.startswith(part) for k in rank0) for part in ("classifier.", "generator.", "teacher."))
    first, last = torch.load(folder / "rank0_epoch1.pt"), torch.load(folder / "rank0_epoch4.pt")
    for prefix in ("classifier.", "generator.", "teacher."):  # every part moved
        assert any(not torch.equal(first[k], last[k]) for k in first if k.startswith(prefix)), prefix


def test_manifoldmix_two_ray_train_workers_match_one_process_and_stay_in_step(tmp_path, ray_connected):
    """DDP over the step module (one mixed forward per backward): each step's loss matches the
    one-process run within the Ray Train tests' tolerance, and both ranks hold the same weights
    after every step although each draws its own λ, π and k on its own shard."""
    folder = two_workers_match_one_process(
        tmp_path, ["method.name=manifoldmix", "data.limit_train=32", "train.epochs=4"], SaveClassifier)
    first, last = torch.load(folder / "rank0_epoch1.pt"), torch.load(folder / "rank0_epoch4.pt")
    assert any(not torch.equal(first[k], last[k]) for k in first)


def test_puzzlemix_trains_on_two_ray_train_workers(tmp_path, ray_connected):
    cfg = load_config(overrides=[*PUZZLEMIX_TINY, "data.limit_train=128", "train.epochs=2", "train.workers=2",
                                 f"out_dir={tmp_path / 'ray'}"])
    summary = train_with_ray(cfg, quiet=True)
    assert summary["epochs_done"] == 2
    lines = (Path(cfg.out_dir) / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
