"""``adautomix`` command line: ``train`` and ``bench``.

Bad input (config, data, run directory) ends with one line on stderr (one per bad config key) and
exit code 2.
"""
from __future__ import annotations

import argparse
import os
import sys

from .config import ConfigError, help_text, load_config

USAGE_ERROR = 2


def _train(args: argparse.Namespace) -> int:
    from .data.datasets import DataError
    from .engine import CheckpointError, CheckpointWriteError, RunExistsError, train

    overrides = list(args.overrides) + (["train.resume=true"] if args.resume else [])
    errors: tuple = (ConfigError, DataError, RunExistsError, CheckpointError, CheckpointWriteError)
    try:
        cfg = load_config(args.config, overrides)
    except errors as err:
        return _fail(err)
    if cfg.train.workers > 0:
        from .platform.ray_train import RayTrainError, train_with_ray

        errors += (RayTrainError,)

        def run(callbacks):
            return train_with_ray(cfg, address=args.address, callbacks=callbacks)
    else:
        def run(callbacks):
            return train(cfg, callbacks=callbacks)
    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    try:
        if uri:  # MLflow is imported only then, at the edge
            from .platform.tracking import train_logged

            train_logged(cfg, uri, run)
        else:
            run([])
    except errors as err:
        return _fail(err)
    return 0


def _fail(err: Exception) -> int:
    lines = str(err).splitlines() if isinstance(err, ConfigError) else [str(err)]  # one per bad key
    for line in lines:
        print(f"adautomix: error: {line}", file=sys.stderr)
    return USAGE_ERROR


def _bench(args: argparse.Namespace) -> int:
    from .bench import run_bench

    try:
        run_bench(args.methods, batch_size=args.batch_size, arch=args.arch, width=args.width,
                  steps=args.steps, device=args.device, image_size=args.image_size, threads=args.threads,
                  switches=args.switches, profile=args.profile, json_path=args.json)
    except ConfigError as err:
        return _fail(err)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="adautomix", description="AdAutoMix and mixup baselines")
    sub = parser.add_subparsers(dest="command", required=True)

    tp = sub.add_parser(
        "train", help="train one run", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train one run. Keys are set by --config FILE.yaml, then by key=value overrides.",
        epilog="keys and defaults:\n" + help_text(),
    )
    tp.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. method.name=mixup train.epochs=5")
    tp.add_argument("--config", help="YAML file with a (partial) config tree")
    tp.add_argument("--resume", action="store_true", help="continue from out_dir/checkpoints/last.pt")
    tp.add_argument("--address", default=None,
                    help="Ray cluster to join when train.workers > 0 (default: $RAY_ADDRESS, else a local one)")
    tp.add_argument("--tracking-uri", default=None,
                    help="log the run to MLflow (default: $MLFLOW_TRACKING_URI; unset: no MLflow), "
                         "e.g. sqlite:///mlflow.db or http://host:5000")
    tp.set_defaults(func=_train)

    bp = sub.add_parser("bench", help="per-step time and peak memory of each method")
    bp.add_argument("--methods", nargs="+", default=None,
                    help="methods (default: every registered one); adautomix:N sets N "
                         "(default list: N = 2 and 3)")
    bp.add_argument("--batch-size", type=int, nargs="+", default=[64], help="one or more batch sizes")
    bp.add_argument("--arch", default="resnet18")
    bp.add_argument("--width", type=float, default=1.0)
    bp.add_argument("--image-size", type=int, default=32)
    bp.add_argument("--steps", type=int, default=20, help="timed steps per method (after 3 warm-up steps)")
    bp.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    bp.add_argument("--threads", type=int, default=0, help="torch CPU threads per method (0: torch's default)")
    bp.add_argument("--switches", nargs="+", default=["none"], metavar="SET",
                    help="GPU switch sets to measure: none, or bf16, cl (channels-last), compile joined "
                         "by + (e.g. none bf16 bf16+cl bf16+cl+compile)")
    bp.add_argument("--profile", action="store_true",
                    help="also break AdAutoMix's step (measured without compile) into teacher, generator, "
                         "classifier and the rest with the PyTorch profiler")
    bp.add_argument("--json", default=None, metavar="FILE", help="append each measurement to FILE as a JSON line")
    bp.set_defaults(func=_bench)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
