"""Fractional GPUs for studies: ``resources.gpus_per_worker: 0.25`` lets four one-worker trials
share one GPU (Ray's fractional resources). Real Ray Tune on the session's cluster, with a node
that declares one GPU (Ray schedules logical GPUs: the node needs no device for that; the
trials then train on the CPU)."""
from __future__ import annotations

import json

import pytest
import yaml

from adautomix.platform.ablation import trainable
from adautomix.study import load_study

from conftest import _start_node

BASE = {"data": {"name": "digits", "limit_train": 128, "limit_test": 64},
        "model": {"width": 0.125}, "train": {"epochs": 1, "batch_size": 32, "threads": 1}}


def study_file(tmp_path, gpus: float):
    path = tmp_path / "share.yaml"
    path.write_text(yaml.safe_dump({
        "name": "share", "base": BASE, "space": {"method.name": ["vanilla", "mixup"]}, "seeds": 2,
        "metric": "top1", "resources": {"workers": 1, "cpus_per_worker": 1, "gpus_per_worker": gpus},
        "max_concurrent": 4}))
    return path


@pytest.fixture()
def gpu_node(ray_connected):
    """A node joined to the session's cluster with one (logical) GPU and 4 CPUs, for one test."""
    def ready() -> bool:
        return any(n["resources"].get("GPU") for n in ray_connected.node_resources())

    node = _start_node(["--address", ray_connected.address, "--num-cpus", "4", "--num-gpus", "1"],
                       "gpu_node", ready)
    yield
    node.stop()


def test_a_trial_asks_tune_for_its_fraction_of_a_gpu(tmp_path):
    # what tune.with_resources attaches to a function trainable (read by Tune when it wraps it)
    request = trainable(load_study(study_file(tmp_path, 0.25)), tmp_path)._resources
    assert request.required_resources == {"CPU": 1.0, "GPU": 0.25}


# in the default suite: the node declares a GPU, none is needed (the trials train on the CPU)
def test_four_trials_with_a_quarter_gpu_each_run_at_once_on_one_gpu(tmp_path, gpu_node):
    from ray import tune

    study = load_study(study_file(tmp_path, 0.25))
    assert study.total_trials() == 4

    class Running(tune.Callback):
        """The most trials running at once, as Tune sees them."""

        def __init__(self):
            self.now = self.peak = 0

        def on_trial_start(self, iteration, trials, trial, **info):
            self.now += 1
            self.peak = max(self.peak, self.now)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.now -= 1

    running = Running()
    tuner = tune.Tuner(
        trainable(study, tmp_path),
        param_space={"method.name": tune.grid_search(study.space["method.name"]),
                     "seed": tune.grid_search(study.seeds)},
        tune_config=tune.TuneConfig(max_concurrent_trials=study.max_concurrent),
        run_config=tune.RunConfig(name="trials", storage_path=str(tmp_path), verbose=0, callbacks=[running]))
    grid = tuner.fit()
    assert grid.num_errors == 0 and grid.num_terminated == 4
    assert running.peak == 4  # one GPU, four trials at once
    summaries = [json.loads(p.read_text()) for p in (tmp_path / "trials").glob("*/metrics.json")]
    assert [s["epochs_done"] for s in summaries] == [1] * 4  # each trial trained its epoch
