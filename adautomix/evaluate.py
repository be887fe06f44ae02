"""``adautomix eval RUN_DIR_OR_CHECKPOINT --suite ...``: the evaluation suites on a trained run.

The run's config is rebuilt from its ``config.yaml`` (or, for a checkpoint file outside a run
directory, from the config the checkpoint carries), with ``key=value`` overrides on top (e.g.
``data.root=...`` when the data moved, ``train.device=cpu``, ``eval.seed=1``); the checkpoint is
read with ``torch.load(weights_only=True)`` as the engine reads it; the headline model (the one
that scored the run's ``top1``: AdAutoMix's and AutoMix's EMA teacher, the classifier of the
others) is evaluated; ``eval.json`` and the pictures go into the run directory.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import yaml

from .checkpoints import history, newest_readable
from .config import EVAL_SUITES, Config, load_config
from .engine import CHECKPOINT, CheckpointError, Trainer, read_checkpoint


class EvalError(ValueError):
    """A bad path or suite name; the message names it and what is allowed."""


def parse_suites(text: str) -> list[str]:
    """``"calibration,fgsm"`` -> ``["calibration", "fgsm"]``, checked against ``EVAL_SUITES``."""
    suites = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in suites if s not in EVAL_SUITES]
    if bad or not suites:
        raise EvalError(f"--suite {text!r}: {'unknown suite ' + ', '.join(map(repr, bad)) if bad else 'empty'}; "
                        f"allowed: a comma-separated list of {', '.join(EVAL_SUITES)}")
    return list(dict.fromkeys(suites))


def locate(path: str | Path) -> tuple[Path, Path]:
    """``(run_dir, checkpoint)`` of a run directory (its newest readable checkpoint; a damaged
    newer one is named in a warning) or a checkpoint file."""
    path = Path(path)
    if path.is_dir():
        checkpoint = path / CHECKPOINT
        if not history(checkpoint):
            raise EvalError(f"{path}: no checkpoint at {checkpoint} (expected a run directory written by "
                            "adautomix train, or a checkpoint file)")
        return path, newest_readable(checkpoint)[0]
    if path.is_file():
        run_dir = path.parent.parent if path.parent.name == Path(CHECKPOINT).parent.name else path.parent
        return run_dir, path
    raise EvalError(f"{path}: no such run directory or checkpoint file")


def load_run_config(run_dir: Path, checkpoint: Path, overrides: list[str]) -> Config:
    """The run's config: ``run_dir/config.yaml``, else the checkpoint's own, then ``overrides``."""
    # evaluated in this process, into the run directory
    overrides = [*overrides, f"out_dir={run_dir}", "train.workers=0", "train.resume=false"]
    if (run_dir / "config.yaml").is_file():
        return load_config(run_dir / "config.yaml", overrides)
    tree = _read(checkpoint).get("config")
    if not isinstance(tree, dict):
        raise EvalError(f"{checkpoint}: holds no config and {run_dir} has no config.yaml")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as fh:
        fh.write(yaml.safe_dump(tree))
        fh.flush()
        return load_config(fh.name, overrides)


def _read(checkpoint: Path) -> dict:
    try:
        state = read_checkpoint(checkpoint)
    except CheckpointError:
        raise
    except Exception as err:  # noqa: BLE001 - not a torch file, truncated, ...
        raise EvalError(f"{checkpoint}: not a readable checkpoint ({type(err).__name__}: "
                        f"{str(err).strip().splitlines()[0] if str(err).strip() else ''})") from None
    if not isinstance(state, dict) or "step" not in state:
        raise EvalError(f"{checkpoint}: not an adautomix checkpoint (no 'step' state)")
    return state


def evaluate(path: str | Path, suites: list[str], overrides: list[str] | None = None) -> dict[str, float]:
    """Run ``suites`` on the run at ``path``; returns the flat ``eval_*`` metrics (also in
    ``eval.json``)."""
    start = time.perf_counter()
    run_dir, checkpoint = locate(path)
    cfg = load_run_config(run_dir, checkpoint, list(overrides or []))
    trainer = Trainer(cfg)  # data and model as the run built them
    state = _read(checkpoint)
    try:
        trainer.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError) as err:
        raise EvalError(f"{checkpoint}: does not fit the run's config ({type(err).__name__}: "
                        f"{str(err).strip().splitlines()[0]})") from None
    print(f"eval: {run_dir} (epoch {trainer.epoch}, {cfg.method.name}, model.arch {cfg.model.arch} "
          f"width {cfg.model.width:g}), data {cfg.data.name}, device {trainer.device}", flush=True)
    metrics = trainer.run_eval(suites, run_dir, checkpoint)
    print(f"wrote {run_dir / 'eval.json'} and pictures/ in {time.perf_counter() - start:.1f} s", flush=True)
    return metrics
