#!/usr/bin/env python
"""Run an AdAutoMix ablation study (Ray Tune grids or Optuna TPE searches, tracked in MLflow).

    python tune/run_ablation.py                                # ablations/default.yaml on digits
    python tune/run_ablation.py ablations/n_mix.yaml data.name=cifar100 data.root=/data \
        train.epochs=800 train.workers=4 train.use_gpu=true
    python tune/run_ablation.py ablations/modules.yaml --smoke  # the same study, tiny
    python tune/run_ablation.py ablations/n_mix.yaml --resume   # continue an interrupted study
    python tune/run_ablation.py ablations/hpo.yaml --dry-run    # list the trials and exit

Exit codes: 0 done, 1 some trials failed or the study is incomplete (continue it with
--resume), 2 bad study file / overrides / options or a study folder another process holds, 130
stopped by Ctrl-C, 143 stopped by SIGTERM (continue either with --resume; SIGTERM takes Ctrl-C's
path: Tune stops the trials and saves its state).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(ROOT))

from adautomix.study import StudyError, describe, load_study  # noqa: E402

DEFAULT_STUDY = ROOT / "ablations" / "default.yaml"
USAGE_ERROR = 2
INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="run_ablation.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n\n")[0],
        epilog="study files: " + ", ".join(sorted(f.name for f in (ROOT / "ablations").glob("*.yaml"))))
    p.add_argument("args", nargs="*", metavar="[STUDY.yaml] [key=value ...]",
                   help="a study file (default: ablations/default.yaml), then overrides of its "
                        "base config, e.g. data.name=cifar100 data.root=/data train.epochs=800")
    p.add_argument("--smoke", action="store_true",
                   help="the same study, tiny (2 epochs, 256 images, width 0.125, one seed)")
    p.add_argument("--resume", action="store_true",
                   help="continue the latest folder of this study (or --out) with Tune's restore: "
                        "unfinished trials go on from their last checkpoint, finished ones stay")
    p.add_argument("--dry-run", action="store_true", help="print the trials it would run and exit")
    p.add_argument("--address", default=None,
                   help="Ray cluster to join (default: $RAY_ADDRESS, else a new local one)")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else "
                        "sqlite:///mlflow.db in the working directory)")
    p.add_argument("--max-concurrent", type=int, default=None,
                   help="trials running at once (default: the study's max_concurrent)")
    p.add_argument("--out", default=None,
                   help="study folder (default: runs/studies/<study>-<time>; with --resume: "
                        "the newest runs/studies/<study>-*)")
    return p.parse_args(argv)


def load(args: argparse.Namespace):
    """The study the arguments name, validated; or an error line and ``USAGE_ERROR``."""
    study_file = DEFAULT_STUDY
    overrides = list(args.args)
    if overrides and "=" not in overrides[0]:
        study_file = Path(overrides.pop(0))
    if args.max_concurrent is not None and args.max_concurrent < 1:
        print("run_ablation.py: error: --max-concurrent must be >= 1", file=sys.stderr)
        return USAGE_ERROR
    if args.max_concurrent is not None and args.resume:
        print("run_ablation.py: error: --max-concurrent: a resumed study keeps the setting it was "
              "started with (Tune restores it)", file=sys.stderr)
        return USAGE_ERROR
    try:
        return load_study(study_file, overrides, smoke=args.smoke)
    except StudyError as err:
        print(f"run_ablation.py: error: {err}", file=sys.stderr)
        return USAGE_ERROR


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    study = load(args)
    if isinstance(study, int):
        return study
    if args.dry_run:
        print(describe(study))
        return 0

    from adautomix import stopping
    from adautomix.platform.ablation import run_study
    from adautomix.runlock import LockedError

    stopping.forward_sigterm_as_sigint()  # Slurm, Kubernetes, `timeout`: stop as on Ctrl-C

    def stopped() -> tuple[str, int]:
        return ("SIGTERM", stopping.SIGTERM_EXIT) if stopping.requested() else ("Ctrl-C", INTERRUPTED)

    start = time.perf_counter()
    study_dir = Path(args.out).resolve() if args.out else None
    if study_dir is None and not args.resume:
        from adautomix.study_folder import new_study_dir

        study_dir = new_study_dir(study)  # named here, so that a Ctrl-C line can name it

    def resume_command(folder: Path | None) -> str:
        return (f"python tune/run_ablation.py {study.path} "
                + "".join(f"{o} " for o in study.overrides) + ("--smoke " if study.smoke else "")
                + "--resume" + (f" --out {folder}" if folder else ""))

    try:
        outcome = run_study(study, study_dir=study_dir, resume=args.resume,
                            tracking_uri=args.tracking_uri, address=args.address,
                            max_concurrent=args.max_concurrent)
    except (StudyError, LockedError) as err:
        print(f"run_ablation.py: error: {err}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:  # a second Ctrl-C, while Tune saved its state
        name, code = stopped()
        print(f"\nstudy {study.name} stopped ({name}); continue it with: {resume_command(study_dir)}",
              file=sys.stderr)
        return code
    if outcome.interrupted:
        name, code = stopped()
        print(f"\nstudy {study.name} stopped ({name}) with {len(outcome.records)} of "
              f"{study.total_trials()} trials done; continue it with: {resume_command(outcome.study_dir)}",
              file=sys.stderr)
        return code
    return report(study, outcome, time.perf_counter() - start, resume_command(outcome.study_dir))


def report(study, outcome, seconds: float, resume_command: str) -> int:
    """Print what the study did (table, files, failures, MLflow); returns the exit code."""
    from adautomix.platform.mlflow_store import ui_command
    from adautomix.platform.mlflow_view import study_url

    minutes, seconds = divmod(int(seconds), 60)
    print(f"\nstudy {study.name}: {len(outcome.records)} of {study.total_trials()} trials done "
          f"({outcome.ran} run now) in {minutes}m{seconds:02d}s:\n")
    print(outcome.table)
    print(f"\nresults: {outcome.study_dir}/results.md, results.csv, results.png")
    if outcome.failed:
        print(f"\n{len(outcome.failed)} trial(s) failed:", *outcome.failed, sep="\n  ", file=sys.stderr)
    if outcome.incomplete:
        print(f"\nthe study is incomplete ({len(outcome.records)} of {study.total_trials()} trials); "
              f"continue it with: {resume_command}", file=sys.stderr)
    if outcome.tracking_uri:
        print(f"MLflow: {ui_command(outcome.tracking_uri)}\n"
              f"        then open {study_url(outcome.tracking_uri, outcome.experiment_id, outcome.parent_run_id)}")
    else:
        print("MLflow: tracking was unavailable (see the warning above); the metrics are in "
              f"{outcome.study_dir}/trials/*/metrics.jsonl")
    return 1 if outcome.failed or outcome.incomplete else 0


if __name__ == "__main__":
    sys.exit(main())
