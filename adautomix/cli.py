"""``adautomix`` command line: ``train``, ``eval``, ``report`` and ``bench``.

Bad input (config, data, run directory, a run directory another process holds, no readable
checkpoint) ends with one line on stderr (one per bad config key) and exit code 2; Ctrl-C of
``train`` ends with one line naming the resume command and exit code 130, SIGTERM the same way
with exit code 143 after saving a checkpoint of the step it finished (``stopping.py``); a loss
that becomes non-finite ends ``train`` with one line naming the epoch, iteration and term, and
exit code 3.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

from .config import ConfigError, help_text, load_config, to_dict
from .presets import PRESETS
from .presets import notes as preset_notes

USAGE_ERROR = 2
NON_FINITE = 3  # the loss became NaN or infinite: not bad input, not a crash
INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C


def _train(args: argparse.Namespace) -> int:
    if args.list_presets:
        return _list_presets()
    overrides = list(args.overrides) + (["train.resume=true"] if args.resume else [])
    try:
        cfg = load_config(args.config, overrides, preset=args.preset)
    except ConfigError as err:
        return _fail(err)
    notes = preset_notes(PRESETS[args.preset], bool(cfg.model.init)) if args.preset else []
    if args.dry_run:  # the resolved config, usable as --config; no data read, nothing written, no torch
        print("".join(f"# {line}\n" for line in notes) + yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
        return 0
    from . import stopping
    from .data.datasets import DataError
    from .engine import CheckpointError, CheckpointWriteError, NonFiniteLossError, RunExistsError, train
    from .models.pretrained import InitError
    from .runlock import LockedError, RunLock

    errors: tuple = (ConfigError, DataError, RunExistsError, CheckpointError, CheckpointWriteError, InitError,
                     LockedError)
    for line in notes:
        print(line, flush=True)
    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if cfg.train.workers > 0:
        from .platform.ray_train import RayTrainError, check_store_reachable, train_with_ray

        errors += (RayTrainError,)
        if uri:
            try:
                check_store_reachable(uri, cfg, args.address)
            except errors as err:
                return _fail(err)

        def run(callbacks):
            return train_with_ray(cfg, address=args.address, callbacks=callbacks)
    else:
        def run(callbacks):
            return train(cfg, callbacks=callbacks)

    if cfg.train.workers > 0:  # Ray Train's driver stops its workers on SIGINT: SIGTERM goes that way
        stopping.forward_sigterm_as_sigint()
    else:  # the loop saves at the next step; past the grace period, the newest file on disk stands
        stopping.on_sigterm(cfg.train.stop_grace_s, lambda: _stopped_line(cfg, args.address, (
            f"SIGTERM; the step did not end within train.stop_grace_s={cfg.train.stop_grace_s:g} s")))
    try:
        with RunLock(cfg.out_dir):  # before MLflow: a refused second writer creates no MLflow run
            if uri:  # MLflow is imported only then, at the edge
                from .platform.run_logger import train_logged

                train_logged(cfg, uri, run)
            else:
                run([])
    except errors as err:
        return _fail(err)
    except NonFiniteLossError as err:
        print(f"adautomix: error: {err}", file=sys.stderr)
        return NON_FINITE
    except KeyboardInterrupt:
        sigterm = stopping.requested()
        print(f"\n{_stopped_line(cfg, args.address, 'SIGTERM' if sigterm else 'Ctrl-C')}", file=sys.stderr)
        return stopping.SIGTERM_EXIT if sigterm else INTERRUPTED
    return 0


def _stopped_line(cfg, address: str | None, signal_name: str) -> str:
    """What a stopped run says: the checkpoint it left and the command that continues it."""
    from .checkpoints import history
    from .engine import CHECKPOINT

    out = Path(cfg.out_dir)
    kept = history(out / CHECKPOINT)
    left = (f"the last checkpoint is {kept[0]}; continue with: adautomix train --config "
            f"{out / 'config.yaml'} --resume" + (f" --address {address}" if address else "")
            if kept else "no checkpoint was written, nothing to continue")
    return f"adautomix: stopped ({signal_name}); {left}"


def _list_presets() -> int:
    width = max(map(len, PRESETS))
    for preset in PRESETS.values():
        print(f"{preset.name:{width}}  {preset.what}")
    return 0


def _fail(err: Exception) -> int:
    lines = str(err).splitlines() if isinstance(err, ConfigError) else [str(err)]  # one per bad key
    for line in lines:
        print(f"adautomix: error: {line}", file=sys.stderr)
    return USAGE_ERROR


def _eval(args: argparse.Namespace) -> int:
    from .checkpoints import CheckpointError
    from .data.datasets import DataError
    from .evaluate import EvalError, evaluate, parse_suites

    try:
        evaluate(args.path, parse_suites(args.suite), args.overrides)
    except (EvalError, ConfigError, DataError, CheckpointError) as err:
        return _fail(err)
    return 0


def _report(args: argparse.Namespace) -> int:
    from .platform.mlflow_report import ReportError, report

    try:
        report(args.name, args.tracking_uri, args.out)
    except ReportError as err:
        return _fail(err)
    return 0


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
    for add in (_add_train, _add_eval, _add_report, _add_bench):
        add(sub)
    args, unknown = parser.parse_known_args(argv)
    if args.command == "eval":  # key=value after --suite (argparse takes positionals in one run)
        args.overrides += [u for u in unknown if "=" in u and not u.startswith("-")]
        unknown = [u for u in unknown if u not in args.overrides]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args.func(args)


def _add_train(sub) -> None:
    tp = sub.add_parser(
        "train", help="train one run", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train one run. Keys are set by --preset NAME, then --config FILE.yaml, then by key=value "
                    "overrides.",
        epilog="keys and defaults:\n" + help_text(),
    )
    tp.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. method.name=mixup train.epochs=5")
    tp.add_argument("--preset", help="start from the published settings of a benchmark (see --list-presets); "
                                     "--config and key=value go on top")
    tp.add_argument("--list-presets", action="store_true", help="list the presets and exit")
    tp.add_argument("--dry-run", action="store_true",
                    help="print the resolved config (YAML, usable as --config) and exit: checks the config "
                         "only, reads no data and writes nothing")
    tp.add_argument("--config", help="YAML file with a (partial) config tree")
    tp.add_argument("--resume", action="store_true",
                    help="continue from the newest readable checkpoint in out_dir/checkpoints/")
    tp.add_argument("--address", default=None,
                    help="Ray cluster to join when train.workers > 0 (default: $RAY_ADDRESS, else a local one)")
    tp.add_argument("--tracking-uri", default=None,
                    help="log the run to MLflow (default: $MLFLOW_TRACKING_URI; unset: no MLflow), "
                         "e.g. sqlite:///mlflow.db or http://host:5000")
    tp.set_defaults(func=_train)


def _add_eval(sub) -> None:
    ep = sub.add_parser(
        "eval", help="evaluation suites on a trained run: calibration, corruption, fgsm, occlusion",
        description="Evaluate a run's headline model (the EMA teacher's one-hot head for AdAutoMix and "
                    "AutoMix, the classifier for the others); writes eval.json and pictures/ into the run "
                    "directory. key=value overrides apply to the run's config (e.g. data.root=..., "
                    "train.device=cpu, eval.seed=1, eval.fgsm_epsilon=0.0157).")
    ep.add_argument("path", metavar="RUN_DIR_OR_CHECKPOINT")
    ep.add_argument("overrides", nargs="*", metavar="key=value")
    ep.add_argument("--suite", default="calibration,corruption,fgsm,occlusion",
                    help="comma-separated suites (default: all four)")
    ep.set_defaults(func=_eval)


def _add_report(sub) -> None:
    rp = sub.add_parser(
        "report", help="paper-style tables and plots of a study or experiment, from MLflow",
        description="Methods x metrics (mean ± std over seeds, best in bold, the paper's value and the "
                    "difference where the setting matches one of the paper's) as Markdown and CSV, the "
                    "occlusion curves and the reliability diagrams, from the runs in MLflow.")
    rp.add_argument("name", metavar="STUDY_OR_EXPERIMENT",
                    help="a study's name (experiment ablation-<name>) or an experiment's name")
    rp.add_argument("--tracking-uri", default=None,
                    help="default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db")
    rp.add_argument("--out", default=None, help="folder for report.md, report.csv and the plots "
                                                "(default: runs/reports/<name>)")
    rp.set_defaults(func=_report)


def _add_bench(sub) -> None:
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


if __name__ == "__main__":
    sys.exit(main())
