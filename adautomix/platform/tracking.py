"""MLflow tracking of ablation studies, behind one thin module (https://mlflow.org/docs/latest/ml/tracking/).

One experiment per study, tagged as a model-training experiment (``mlflow.experimentKind``), so
that MLflow 3's UI opens it on its runs rather than on the GenAI overview; one parent run per
study and one nested child run per trial. ``StudyTracker`` does all the logging, in the study's
driver, from what Ray Tune hands it: each epoch's metrics as a trial reports them, then the
trial's files, its model and its status when it ends. A trial continued by ``--resume`` finds its
run again by its trial-key tag and goes on logging into it.

Tracking trouble never stops training: the first failure prints one warning on stderr naming the
tracking URI and the error, and MLflow logging is off for the rest of the study; the metrics stay
in each trial's run directory (``metrics.jsonl``, ``metrics.json``).
Nothing in this module imports Ray.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from ..config import flatten
from ..engine import Callback

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"  # a local SQLite store in the working directory
UI_ADDRESS = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default
TAG_PREFIX = "adautomix."
TRIAL_KEY_TAG = "adautomix.trial_key"
STUDY_TAG = "adautomix.study"
# MLflow 3's UI shows an experiment by its kind: GenAI experiments land on traces, model-training
# ones on their runs (the values of the UI's experiment-type switch)
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
MODEL_FILE = "model.pt"  # the headline model, written by ExportModel for the tracker to log
# A dead server should cost seconds, not the client's default minutes of retries per call.
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                  "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
_MAX_PARAMS_PER_CALL = 100  # MLflow's log_batch limit
_queue = None  # the thread that does the logging (StudyTracker._call)


def resolve_tracking_uri(uri: str | None) -> str:
    """``uri`` (or ``$MLFLOW_TRACKING_URI``, else the local SQLite store) with local paths made
    absolute, so that the URI means the same store from any working directory."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri[len("sqlite:///"):]).resolve())
    if "://" not in uri:  # a plain folder (file store)
        return Path(uri).resolve().as_uri()
    return uri


def ui_command(uri: str) -> str:
    """The command that opens the MLflow UI on ``uri``."""
    return f"mlflow ui --backend-store-uri {uri}"


def runs_url(uri: str, experiment_id: str) -> str:
    """The UI page of the experiment's training runs: on the server itself for an HTTP URI,
    else where ``mlflow ui`` serves. ``workflowType=machine_learning`` switches the UI (which
    remembers GenAI as its mode otherwise) to its model-training side."""
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else UI_ADDRESS
    return f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def client(uri: str):
    """An ``MlflowClient`` for ``uri`` with short HTTP retries (see ``_HTTP_DEFAULTS``)."""
    for key, value in _HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def warn(uri: str, err: BaseException, what: str, where: str | None = None) -> None:
    """The one clear message a tracking failure gets (training goes on)."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    lines = [f"WARNING: MLflow tracking failed ({what}) at {uri}: {type(err).__name__}: {first}",
             "  training continues; MLflow logging is off for this study"]
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


class ExportModel(Callback):
    """Rank 0 writes the headline model (the ``nn.Module`` whose top-1 is ``top1``: AdAutoMix's
    EMA teacher) to ``out_dir/model.pt`` at the end of a run, for ``StudyTracker`` to log in
    MLflow's PyTorch format (``mlflow.log_model=true``)."""

    def on_end(self, summary: dict, trainer) -> None:
        import copy

        import torch

        model = copy.deepcopy(trainer.step.headline_model).cpu().eval()
        torch.save(model, trainer.out / MODEL_FILE)


class StudyTracker:
    """Logs one study to MLflow (see the module docstring). Picklable: holds ids, not a client.

    Args:
        uri: the tracking URI (``resolve_tracking_uri`` output).
        experiment_id, parent_run_id: the study's experiment and parent run (``start``).
        where: named in the warning when tracking fails (the study folder).
    """

    def __init__(self, uri: str, experiment_id: str, parent_run_id: str, where: str = ""):
        self.uri, self.experiment_id, self.parent_run_id, self.where = uri, experiment_id, parent_run_id, where
        self.failed = False
        self._client = None
        self._runs: dict[str, str] = {}  # trial key -> run id
        self._need_params: set[str] = set()  # runs that have no params yet
        self._done: set[str] = set()  # runs that were FINISHED when their trial started again

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_client": None}

    @classmethod
    def start(cls, uri: str, experiment: str, run_name: str, tags: dict[str, str],
              params: dict[str, Any], where: str = "") -> "StudyTracker":
        """Create the study's parent run (and its experiment, tagged as model training)."""
        c = client(uri)
        exp = c.get_experiment_by_name(experiment)
        if exp is None:
            exp_id = c.create_experiment(experiment, tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING})
        else:
            exp_id = exp.experiment_id
            c.set_experiment_tag(exp_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)
        run = c.create_run(exp_id, run_name=run_name, tags=tags)
        _log_params(c, run.info.run_id, params)
        return cls(uri, exp_id, run.info.run_id, where)

    # ---------------------------------------------------------------- the study's trials
    def trial_started(self, key: str, run_name: str, tags: dict[str, str]) -> None:
        """The trial's run: the one tagged with ``key`` (a continued trial), else a new child."""
        def find_or_create(c) -> None:
            found = c.search_runs([self.experiment_id], max_results=1, filter_string=(
                f"tags.`mlflow.parentRunId` = '{self.parent_run_id}' and tags.`{TRIAL_KEY_TAG}` = '{key}'"))
            if found:
                run = found[0]
                if run.info.status == "FINISHED":  # Tune had not recorded its end: log nothing twice
                    self._done.add(key)
                else:
                    c.update_run(run.info.run_id, status="RUNNING")
                if not run.data.params:
                    self._need_params.add(key)
                self._runs[key] = run.info.run_id
            else:
                self._runs[key] = c.create_run(self.experiment_id, run_name=run_name, tags={
                    "mlflow.parentRunId": self.parent_run_id, TRIAL_KEY_TAG: key, **tags}).info.run_id
                self._need_params.add(key)

        self._call(f"the run of trial {run_name}", find_or_create)

    def trial_epoch(self, key: str, metrics: dict[str, float], run_dir: Path) -> None:
        """One epoch's metrics at step ``epoch``; with the first, every value of the trial's
        resolved ``config.yaml`` as a param (dotted keys) and its method, seed and data as tags."""
        def log(c) -> None:
            from mlflow.entities import Metric

            run_id = self._runs.get(key)
            if run_id is None or key in self._done:
                return
            if key in self._need_params and (run_dir / "config.yaml").exists():
                cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
                _log_params(c, run_id, flatten(cfg))
                for name, value in (("method", cfg["method"]["name"]), ("seed", cfg["seed"]),
                                    ("dataset", cfg["data"]["name"]), ("out_dir", run_dir)):
                    c.set_tag(run_id, TAG_PREFIX + name, str(value))
                self._need_params.discard(key)
            step, now = int(metrics["epoch"]), _now_ms()
            c.log_batch(run_id, metrics=[Metric(k, float(v), now, step)
                                         for k, v in metrics.items() if k != "epoch"])

        self._call("per-epoch metrics", log)

    def trial_ended(self, key: str, status: str, run_dir: Path, tags: dict[str, str] | None = None) -> None:
        """Close the trial's run (FINISHED, KILLED, FAILED); a finished one gets its files
        (``config.yaml``, ``metrics.json``, ``metrics.jsonl``, pictures) and its model."""
        def end(c) -> None:
            run_id = self._runs.pop(key, None)
            if run_id is None or key in self._done:
                return
            if status == "FINISHED":
                for name in ("config.yaml", "metrics.json", "metrics.jsonl"):
                    if (run_dir / name).exists():
                        c.log_artifact(run_id, str(run_dir / name))
                for picture in sorted((run_dir / "pictures").glob("*.png")):
                    c.log_artifact(run_id, str(picture), artifact_path="pictures")
                if (run_dir / MODEL_FILE).exists():
                    self._log_model(run_id, run_dir)
            for k, v in (tags or {}).items():
                c.set_tag(run_id, k, v)
            c.set_terminated(run_id, status=status)

        self._call(f"closing the run of trial {key}", end)

    def study_ended(self, files: list[Path], status: str, tags: dict[str, str]) -> None:
        """The study's results on the parent run, which is closed with ``status``; the runs of
        trials cut off by an interruption are closed KILLED (``--resume`` opens them again)."""
        def end(c) -> None:
            cut = c.search_runs([self.experiment_id], max_results=1000, filter_string=(
                f"tags.`mlflow.parentRunId` = '{self.parent_run_id}' and attributes.status = 'RUNNING'"))
            for run in cut:
                c.set_terminated(run.info.run_id, status="KILLED")
            for path in files:
                c.log_artifact(self.parent_run_id, str(path))
            for k, v in tags.items():
                c.set_tag(self.parent_run_id, k, v)
            c.set_terminated(self.parent_run_id, status=status)

        self._call("the study's results on the parent run", end)
        self.flush()

    def reopen(self) -> None:
        """``--resume``: the parent run is RUNNING again."""
        self._call("reopening the parent run",
                   lambda c: c.update_run(self.parent_run_id, status="RUNNING"))

    def flush(self) -> None:
        """Wait until everything handed over so far is logged."""
        if _queue is not None:
            _queue.submit(lambda: None).result()

    # ---------------------------------------------------------------- internals
    def _call(self, what: str, fn) -> None:
        """Run ``fn(client)`` on the tracker's own thread, in the order of the calls: Ray Tune
        calls the tracker from its event loop, which must not wait for the store (a model upload
        takes seconds). One thread per process, shared by every tracker: the copy of the tracker
        that a restored Tune experiment unpickles logs through it too, so ``flush`` waits for all."""
        global _queue
        if _queue is None:
            from concurrent.futures import ThreadPoolExecutor

            import mlflow.entities  # noqa: F401 - imported here once, not by two threads at a time

            _queue = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow")

        def run() -> None:
            if self.failed:
                return
            try:
                if self._client is None:
                    self._client = client(self.uri)
                fn(self._client)
            except Exception as err:  # noqa: BLE001 - any tracking error must leave training running
                self.failed = True
                warn(self.uri, err, what, self.where)

        _queue.submit(run)

    def _log_model(self, run_id: str, run_dir: Path) -> None:
        import json

        import mlflow
        import mlflow.pytorch
        import torch

        model = torch.load(run_dir / MODEL_FILE, weights_only=False)
        head = json.loads((run_dir / "metrics.json").read_text())["headline_head"]
        mlflow.set_tracking_uri(self.uri)
        # pickle: the classic format, loads back as the nn.Module (pt2 needs a traced graph);
        # MLflow warns about pickle on every save, which says nothing new here
        quiet = [logging.getLogger(n) for n in ("mlflow.pytorch", "mlflow.utils.requirements_utils")]
        levels = [lg.level for lg in quiet]
        for lg in quiet:
            lg.setLevel(logging.ERROR)
        try:
            with mlflow.start_run(run_id=run_id, log_system_metrics=False):
                info = mlflow.pytorch.log_model(
                    model, name="model", serialization_format="pickle",
                    pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
                mlflow.set_tag(TAG_PREFIX + "model_uri", info.model_uri)
                # which head's top-1 the logged model scores (model(x) gives that head's logits)
                mlflow.set_tag(TAG_PREFIX + "model_head", head)
        finally:
            for lg, level in zip(quiet, levels):
                lg.setLevel(level)


def _log_params(c, run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(k, "None" if v is None else str(v)) for k, v in params.items()]
    for i in range(0, len(items), _MAX_PARAMS_PER_CALL):
        c.log_batch(run_id, params=items[i:i + _MAX_PARAMS_PER_CALL])


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)
