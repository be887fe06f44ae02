"""The Ray Train checks of the methods with their own step modules: PuzzleMix trains on two real
Ray Train workers (the session's cluster, conftest.py). That two workers take the same steps as
one process, parameter for parameter, is test_ray_train_equivalence.py (AutoMix, Manifold Mixup,
PuzzleMix, AdAutoMix and vanilla).

The algorithm test files (test_automix.py, test_manifoldmix.py, test_puzzlemix.py) start no
cluster; what a method must do under DDP on Ray Train lives here, next to test_ray_train.py.
"""
from __future__ import annotations

import json
from pathlib import Path

from adautomix.config import load_config
from adautomix.platform.ray_train import train_with_ray

from test_puzzlemix import TINY as PUZZLEMIX_TINY


def test_puzzlemix_trains_on_two_ray_train_workers(tmp_path, ray_connected):
    cfg = load_config(overrides=[*PUZZLEMIX_TINY, "data.limit_train=128", "train.epochs=2", "train.workers=2",
                                 f"out_dir={tmp_path / 'ray'}"])
    summary = train_with_ray(cfg, quiet=True)
    assert summary["epochs_done"] == 2
    lines = (Path(cfg.out_dir) / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
