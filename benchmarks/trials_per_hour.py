#!/usr/bin/env python
"""Trials per hour on one GPU when k trials share it (k = 1, 2, 4, 8): CIFAR ResNet-18 AdAutoMix.

Each level runs k trials at once, each given 1/k of the GPU, and times them from launch to the
last one's end: trials per hour = k / wall time. A trial is ``adautomix train`` of AdAutoMix
(N = 3) on CIFAR-100-shaped data: the real release under ``--data-root``, or (default) a
synthetic copy in its on-disk format (random images and labels: the speed is the same). Trials
train with the run's GPU defaults (bf16, channels-last, the device loader) but without
``torch.compile`` (``--compile`` turns it on): a short trial would spend most of its time
compiling, which a long one pays once.

Launchers (``--launcher``):
- ``ray``: a real study (``adautomix.platform.ablation.run_study``) on a local Ray cluster with
  ``resources.gpus_per_worker: 1/k`` and ``max_concurrent: k``: Ray's fractional GPUs, trial
  processes and MLflow tracking included.
- ``processes``: k ``adautomix train`` processes on the same GPU (what Ray's fractional GPUs
  amount to: several processes on one device), without Ray's own costs.
- ``auto`` (default): ``ray`` when Ray is installed, else ``processes``, saying so.

Prints a table; ``--json FILE`` also writes the rows.

    python benchmarks/trials_per_hour.py                       # 1, 2, 4, 8 trials per GPU
    python benchmarks/trials_per_hour.py --levels 1 4 --limit-train 20000 --epochs 2
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def write_synthetic_cifar100(root: Path, train: int, test: int, seed: int = 0) -> Path:
    """A CIFAR-100 python-pickle release of random images at ``root/cifar-100-python``."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name, n in (("train", train), ("test", test)):
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"fine_labels": rng.integers(0, 100, n).tolist()}
        with (folder / name).open("wb") as fh:
            pickle.dump(batch, fh)
    return root


def trial_overrides(args, data_root: Path, k: int) -> dict:
    threads = max(1, (os.cpu_count() or 1) // k)
    return {"data.name": "cifar100", "data.root": str(data_root), "data.limit_train": args.limit_train,
            "data.limit_test": args.limit_test, "model.arch": "resnet18", "model.width": args.width,
            "method.name": "adautomix", "method.n_mix": 3, "train.epochs": args.epochs,
            "train.batch_size": args.batch_size, "train.threads": threads,
            "train.compile": {"false": False, "true": True, "auto": "auto"}[args.compile],
            "train.ckpt_every": args.epochs}


def run_processes(args, data_root: Path, k: int, folder: Path) -> tuple[float, list[dict]]:
    """k ``adautomix train`` processes at once on the same device; (wall s, their summaries)."""
    procs, outs = [], []
    start = time.perf_counter()
    for i in range(k):
        out = folder / f"trial{i}"
        overrides = {**trial_overrides(args, data_root, k), "seed": i, "out_dir": str(out)}
        cmd = [sys.executable, "-m", "adautomix", "train", *[f"{key}={v}" for key, v in overrides.items()]]
        log = (folder / f"trial{i}.log").open("w")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=folder, env=env))
        outs.append(out)
    codes = [p.wait() for p in procs]
    wall = time.perf_counter() - start
    failed = [i for i, c in enumerate(codes) if c != 0]
    if failed:
        tail = (folder / f"trial{failed[0]}.log").read_text()[-2000:]
        raise RuntimeError(f"{len(failed)} of {k} trials failed; trial{failed[0]}.log ends:\n{tail}")
    return wall, [json.loads((o / "metrics.json").read_text()) for o in outs]


def run_ray(args, data_root: Path, k: int, folder: Path) -> tuple[float, list[dict]]:
    """A study of k trials with 1/k GPU each, all at once, on the running Ray cluster."""
    import yaml

    from adautomix.platform.ablation import run_study
    from adautomix.study import load_study

    overrides = trial_overrides(args, data_root, k)
    base: dict = {}
    for key, value in overrides.items():
        if key == "method.name":
            continue
        section, name = key.split(".")
        base.setdefault(section, {})[name] = value
    study_file = folder / f"trials_per_hour_{k}.yaml"
    study_file.write_text(yaml.safe_dump({
        "name": f"trials-per-hour-{k}", "base": base, "space": {"method.name": ["adautomix"]},
        "seeds": k, "metric": "top1", "max_concurrent": k,
        "resources": {"workers": 1, "cpus_per_worker": max(1, (os.cpu_count() or 1) // k),
                      "gpus_per_worker": 1 / k, "in_trial": True}}))
    study = load_study(study_file)
    start = time.perf_counter()
    outcome = run_study(study, study_dir=folder / "study", tracking_uri=f"sqlite:///{folder / 'mlflow.db'}",
                        out=open(os.devnull, "w"))
    wall = time.perf_counter() - start
    if outcome.failed:
        raise RuntimeError(f"{len(outcome.failed)} of {k} trials failed: {outcome.failed[0]}")
    return wall, [json.loads(p.read_text()) for p in (folder / "study").glob("trials/*/metrics.json")]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--levels", type=int, nargs="+", default=[1, 2, 4, 8], help="trials per GPU")
    p.add_argument("--launcher", choices=["auto", "ray", "processes"], default="auto")
    p.add_argument("--data-root", default=None, help="folder holding cifar-100-python/ (default: synthetic)")
    p.add_argument("--limit-train", type=int, default=10_000, help="training images per epoch of a trial")
    p.add_argument("--limit-test", type=int, default=1_000)
    p.add_argument("--epochs", type=int, default=1, help="epochs per trial")
    p.add_argument("--batch-size", type=int, default=100, help="the published CIFAR batch")
    p.add_argument("--width", type=float, default=1.0, help="ResNet-18 width (below 1: quick checks on a CPU)")
    p.add_argument("--compile", default="false", choices=["false", "true", "auto"], help="train.compile of the trials")
    p.add_argument("--fake-gpus", type=int, default=0,
                   help="ray launcher on a machine without a GPU: declare this many logical GPUs "
                        "(the trials train on the CPU)")
    p.add_argument("--json", default=None, help="write the rows to this file")
    args = p.parse_args(argv)

    launcher = args.launcher
    if launcher == "auto":
        launcher = "ray" if importlib.util.find_spec("ray") else "processes"
        if launcher == "processes":
            print("Ray is not installed here: measuring with k plain `adautomix train` processes per GPU "
                  "instead of a Ray study (what Ray's fractional GPUs amount to, without Ray's own costs)",
                  flush=True)
    elif launcher == "ray" and not importlib.util.find_spec("ray"):
        print("trials_per_hour.py: error: --launcher ray: Ray is not installed", file=sys.stderr)
        return 2
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU (CPU)"
    if launcher == "ray" and not torch.cuda.is_available() and not args.fake_gpus:
        print("trials_per_hour.py: error: --launcher ray: torch sees no GPU here (--fake-gpus N declares "
              "logical ones; the trials then train on the CPU)", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory(prefix="trials-per-hour-") as tmp:
        tmp = Path(tmp)
        data_root = Path(args.data_root) if args.data_root else write_synthetic_cifar100(
            tmp / "data", args.limit_train, args.limit_test)
        if launcher == "ray":
            from adautomix.platform.ray_train import connect, secure_token_file, use_token_auth

            if args.fake_gpus:  # a local cluster as connect() starts one, with logical GPUs
                use_token_auth()
                secure_token_file(create=True)
                import ray

                ray.init(num_gpus=args.fake_gpus, include_dashboard=False, logging_level="WARNING")
            else:
                connect(None)
            import ray
        for k in args.levels:
            folder = tmp / f"level{k}"
            folder.mkdir()
            run = run_ray if launcher == "ray" else run_processes
            wall, summaries = run(args, data_root, k, folder)
            rows.append({"trials_per_gpu": k, "trials": len(summaries), "wall_s": wall,
                         "trials_per_hour": 3600 * len(summaries) / wall,
                         "img_per_s_per_trial": sum(s["train_img_per_s"] for s in summaries) / len(summaries),
                         "img_per_s_all": sum(s["train_img_per_s"] for s in summaries)})
            print(f"  {k} trial(s) per GPU: {wall:.1f} s", flush=True)
        if launcher == "ray":
            ray.shutdown()
    data = "real CIFAR-100" if args.data_root else "synthetic CIFAR-100-shaped data"
    print(f"\nAdAutoMix N=3, CIFAR ResNet-18 (width {args.width}), batch {args.batch_size}, {args.epochs} epoch(s) of "
          f"{args.limit_train} images per trial ({data}), compile {args.compile}; {device}, torch "
          f"{torch.__version__}, launcher {launcher}")
    print("| trials per GPU | trials | wall s | trials per hour | train img/s per trial "
          "| train img/s, all trials | x 1 per GPU |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    first = rows[0]["trials_per_hour"] if rows else 1
    for r in rows:
        print(f"| {r['trials_per_gpu']} | {r['trials']} | {r['wall_s']:.1f} | {r['trials_per_hour']:.0f} | "
              f"{r['img_per_s_per_trial']:.0f} | {r['img_per_s_all']:.0f} | {r['trials_per_hour'] / first:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": device, "launcher": launcher, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
