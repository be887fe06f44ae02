#!/usr/bin/env python
"""What Ray costs a study trial that trains nothing: Tune starts N trials one after the other on
a local Ray cluster; each reports one epoch-like record and ends, either from the trial process
(how a one-worker trial trains by default) or from a one-worker Ray Train run launched by the
trial (``resources.in_trial: false``). Prints the seconds per trial of each.

    python tune/trial_overhead.py            # 4 trials each
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def in_trial(config: dict) -> None:
    from ray import tune

    tune.report({"epoch": 1, "top1": 0.0})


def worker_loop(config: dict) -> None:
    import ray.train

    ray.train.report({"epoch": 1, "top1": 0.0})


def ray_train(config: dict) -> None:
    import ray.train
    from ray import tune
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    TorchTrainer(worker_loop, torch_config=TorchConfig(backend="gloo"),
                 scaling_config=ray.train.ScalingConfig(num_workers=1),
                 run_config=ray.train.RunConfig(
                     name="train", storage_path=os.path.join(config["folder"], tune.get_context().get_trial_id()),
                     callbacks=[TuneReportCallback()],
                     logging_config=ray.train.LoggingConfig(log_level="WARNING"))).fit()


def seconds_per_trial(trainable, resources: dict, trials: int, folder: str) -> float:
    from ray import tune

    start = time.perf_counter()
    tune.Tuner(tune.with_resources(trainable, resources),
               param_space={"i": tune.grid_search(list(range(trials))), "folder": folder},
               tune_config=tune.TuneConfig(max_concurrent_trials=1),
               run_config=tune.RunConfig(storage_path=folder, verbose=0)).fit()
    return (time.perf_counter() - start) / trials


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=4)
    args = p.parse_args()
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    import ray

    from adautomix.platform.ray_train import connect

    connect(None)
    with tempfile.TemporaryDirectory() as folder:
        own = seconds_per_trial(in_trial, {"CPU": 1}, args.trials, folder)
        train = seconds_per_trial(ray_train, {"CPU": 0, "memory": 256 * 2**20}, args.trials, folder)
    ray.shutdown()
    print(f"seconds per empty trial ({args.trials} trials each, one at a time):\n"
          f"  trains in the trial process:        {own:6.1f}\n"
          f"  launches a one-worker Ray Train run: {train:6.1f}  (+{train - own:.1f})")


if __name__ == "__main__":
    main()
