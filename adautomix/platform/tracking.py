"""MLflow tracking, behind one thin module (https://mlflow.org/docs/latest/tracking.html).

- ``MlflowTracker``: an engine callback (``on_epoch``, ``on_artifact``, ``on_end``) that logs one
  run's per-epoch metrics, mixed-sample PNGs, ``config.yaml`` and (``mlflow.log_model=true``) the
  final classifier in MLflow's PyTorch format. It is picklable (it holds the tracking URI and the
  run id; the client opens lazily), so it travels to a Ray Train worker and logs from rank 0.
- Helpers for an ablation study: the parent run, one nested child run per trial (params = every
  resolved config value under its dotted key), finding finished children for ``--resume``.

Tracking trouble never stops training: the first failure prints one warning on stderr naming the
tracking URI and the error, tracking is off for the rest of that run, and the metrics stay in the
run directory (``metrics.jsonl``, ``metrics.json``).
"""
from __future__ import annotations

import copy
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"  # a local SQLite store in the working directory
TAG_PREFIX = "adautomix."
TRIAL_KEY_TAG = "adautomix.trial_key"
STUDY_TAG = "adautomix.study"
# A dead server should cost seconds, not the client's default minutes of retries per call.
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                  "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
_MAX_PARAMS_PER_CALL = 100  # MLflow's log_batch limit


def resolve_tracking_uri(uri: str | None) -> str:
    """``uri`` (or ``$MLFLOW_TRACKING_URI``, else the local SQLite store) with local paths made
    absolute, so Ray workers whose working directory differs write to the same store."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri[len("sqlite:///"):]).resolve())
    if "://" not in uri:  # a plain folder (file store)
        return Path(uri).resolve().as_uri()
    return uri


def ui_command(uri: str) -> str:
    """The command that opens the MLflow UI on ``uri``."""
    return f"mlflow ui --backend-store-uri {uri}"


def client(uri: str):
    """An ``MlflowClient`` for ``uri`` with short HTTP retries (see ``_HTTP_DEFAULTS``)."""
    for key, value in _HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def warn(uri: str, err: BaseException, what: str, where: str | None = None) -> None:
    """The one clear message a tracking failure gets (training goes on)."""
    lines = [f"WARNING: MLflow tracking failed ({what}) at {uri}: {type(err).__name__}: "
             f"{str(err).strip().splitlines()[0] if str(err).strip() else ''}",
             "  training continues; MLflow logging is off for this run"]
    if where:
        lines.append(f"  the metrics stay in {where} (metrics.jsonl per epoch, metrics.json)")
    print("\n".join(lines), file=sys.stderr, flush=True)


def git_commit() -> str:
    """The commit of the code (``-dirty`` when the checkout has changes), or ``unknown``."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=40"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def _numeric(record: dict) -> dict[str, float]:
    return {k: float(v) for k, v in record.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "epoch"}


def _param_value(value: Any) -> str:
    return "None" if value is None else str(value)


class MlflowTracker:
    """Engine callback logging one run to MLflow (see the module docstring).

    Args:
        tracking_uri: where the run lives (``resolve_tracking_uri`` output).
        run_id: an existing run (``start_child_run`` or ``start_run``).
        log_model: log the headline model (the one whose top-1 is ``top1``: AdAutoMix's EMA
            teacher) with ``mlflow.pytorch.log_model`` under ``model``.
        out_dir: the run directory, named in the warning when tracking fails.
    """

    def __init__(self, tracking_uri: str, run_id: str, log_model: bool = False,
                 out_dir: str | None = None):
        self.tracking_uri, self.run_id, self.log_model = tracking_uri, run_id, log_model
        self.failed = False
        self._client = None
        self._out_dir = str(Path(out_dir).resolve()) if out_dir else None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_client"] = None  # reopened on the worker
        return state

    # ---------------------------------------------------------------- engine callbacks
    def on_epoch(self, record: dict) -> None:
        step = int(record.get("epoch", 0))
        self._call("per-epoch metrics", lambda c: _log_metrics(c, self.run_id, _numeric(record), step))

    def on_artifact(self, path) -> None:
        self._call(f"artifact {Path(path).name}",
                   lambda c: c.log_artifact(self.run_id, str(path), artifact_path="pictures"))

    def on_end(self, summary: dict, trainer) -> None:
        self._out_dir = str(Path(trainer.out).resolve())
        # top1, top1_median_last10, loss and each top1_<head> are in the last epoch's record
        final = {"train_img_per_s_median": summary["train_img_per_s"]}
        step = int(summary["epochs_done"])
        self._call("final metrics", lambda c: _log_metrics(c, self.run_id, final, step))
        for name in ("config.yaml", "metrics.json", "metrics.jsonl"):
            path = trainer.out / name
            if path.exists():
                self._call(f"artifact {name}", lambda c, p=path: c.log_artifact(self.run_id, str(p)))
        if self.log_model:
            self._call("model", lambda c: self._log_model(trainer.step.headline_model, trainer.step.headline))

    # ---------------------------------------------------------------- internals
    def _call(self, what: str, fn) -> None:
        if self.failed:
            return
        try:
            if self._client is None:
                self._client = client(self.tracking_uri)
            fn(self._client)
        except Exception as err:  # noqa: BLE001 - any tracking error must leave training running
            self.failed = True
            warn(self.tracking_uri, err, what, self._out_dir)

    def _log_model(self, classifier, head: str) -> None:
        import mlflow
        import mlflow.pytorch
        import torch

        model = copy.deepcopy(classifier).cpu().eval()
        mlflow.set_tracking_uri(self.tracking_uri)
        # pickle: the classic format, loads back as the nn.Module (pt2 needs a traced graph);
        # MLflow warns about pickle on every save, which says nothing new here
        quiet = [logging.getLogger(n) for n in ("mlflow.pytorch", "mlflow.utils.requirements_utils")]
        levels = [lg.level for lg in quiet]
        for lg in quiet:
            lg.setLevel(logging.ERROR)
        try:
            with mlflow.start_run(run_id=self.run_id, log_system_metrics=False):
                info = mlflow.pytorch.log_model(
                    model, name="model", serialization_format="pickle",
                    pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
                mlflow.set_tag(TAG_PREFIX + "model_uri", info.model_uri)
                # which head's top-1 the logged model scores (model(x) gives that head's logits)
                mlflow.set_tag(TAG_PREFIX + "model_head", head)
        finally:
            for lg, level in zip(quiet, levels):
                lg.setLevel(level)


def _log_metrics(c, run_id: str, metrics: dict[str, float], step: int) -> None:
    from mlflow.entities import Metric

    now = _now_ms()
    c.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


# -------------------------------------------------------------------- study runs
def get_experiment(c, name: str) -> str:
    """Id of experiment ``name``, created on first use."""
    exp = c.get_experiment_by_name(name)
    return exp.experiment_id if exp is not None else c.create_experiment(name)


def start_parent_run(uri: str, experiment: str, run_name: str, tags: dict[str, str],
                     params: dict[str, Any]) -> tuple[str, str]:
    """Create the study's parent run; returns ``(experiment_id, run_id)``. Raises on failure."""
    c = client(uri)
    exp_id = get_experiment(c, experiment)
    run = c.create_run(exp_id, run_name=run_name, tags=tags)
    log_params(c, run.info.run_id, params)
    return exp_id, run.info.run_id


def start_child_run(uri: str, experiment_id: str, parent_run_id: str, run_name: str,
                    tags: dict[str, str], params: dict[str, Any]) -> str:
    """Create a trial's run nested under the parent (``mlflow.parentRunId``); returns its id."""
    c = client(uri)
    run = c.create_run(experiment_id, run_name=run_name,
                       tags={"mlflow.parentRunId": parent_run_id, **tags})
    log_params(c, run.info.run_id, params)
    return run.info.run_id


def log_params(c, run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(k, _param_value(v)) for k, v in params.items()]
    for i in range(0, len(items), _MAX_PARAMS_PER_CALL):
        c.log_batch(run_id, params=items[i:i + _MAX_PARAMS_PER_CALL])


def end_run(uri: str, run_id: str, status: str = "FINISHED", tags: dict[str, str] | None = None) -> None:
    """Mark a run FINISHED / FAILED / KILLED (raises on tracking failure)."""
    c = client(uri)
    for k, v in (tags or {}).items():
        c.set_tag(run_id, k, v)
    c.set_terminated(run_id, status=status)


def child_runs(uri: str, experiment_id: str, parent_run_id: str) -> list:
    """Active (not deleted) child runs of the parent."""
    c = client(uri)
    runs, token = [], None
    while True:
        page = c.search_runs([experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
                             max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def delete_run(uri: str, run_id: str) -> None:
    client(uri).delete_run(run_id)


def log_files(uri: str, run_id: str, paths: list[Path], artifact_path: str | None = None) -> None:
    c = client(uri)
    for path in paths:
        c.log_artifact(run_id, str(path), artifact_path=artifact_path)
