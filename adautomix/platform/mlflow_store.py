"""The MLflow tracking store: its URI, a client, the failure warning, metrics. ``mlflow`` is imported on use only."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"  # a local SQLite store in the working directory
UI_ADDRESS = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default
TAG_PREFIX = "adautomix."
TRIAL_KEY_TAG = "adautomix.trial_key"
STUDY_TAG = "adautomix.study"
MODEL_URI_TAG = "adautomix.model_uri"
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"  # MLflow 3's UI opens it on its runs (not on traces, as for GenAI)
# MLflow's HTTP settings where the user set none: its own 7 retries wait ~4 min a call on a dead server, and a failed
# call is sent again later (study) or back-filled (run); no URL (it may hold a password) printed
_CLIENT_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}


def resolve_tracking_uri(uri: str | None) -> str:
    """``uri`` (else ``$MLFLOW_TRACKING_URI``, else the local SQLite store), local paths made absolute."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri[len("sqlite:///"):]).resolve())
    if "://" not in uri:  # a plain folder (file store)
        return Path(uri).resolve().as_uri()
    return uri


def is_local_store(uri: str) -> bool:
    """Whether ``uri`` is a store on this machine's disk (SQLite, a folder): not for a cluster."""
    return resolve_tracking_uri(uri).split(":", 1)[0] in ("sqlite", "file")


def mask(uri: str) -> str:
    """``uri`` with its password as ``***`` (``http://user:***@host:5000``), the form printed and written."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{parts.netloc.rsplit('@', 1)[1]}"))


def ui_command(uri: str) -> str:
    """The command that opens the MLflow UI on ``uri`` (password masked)."""
    return f"mlflow ui --backend-store-uri {mask(uri)}"


def runs_url(uri: str, experiment_id: str) -> str:
    """The UI page of the experiment's training runs (``workflowType``: not the GenAI side), no credentials."""
    base = UI_ADDRESS
    if uri.startswith(("http://", "https://")):
        parts = urlsplit(uri)
        base = urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1])).rstrip("/")
    return f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def client(uri: str):
    """An ``MlflowClient`` for ``uri`` with short HTTP retries (see ``_CLIENT_DEFAULTS``)."""
    os.environ.update({k: v for k, v in _CLIENT_DEFAULTS.items() if k not in os.environ})
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)  # a line per retry; ``warn`` says it once
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def experiment(c, name: str) -> str:
    """The id of experiment ``name``, created if need be, tagged as model training."""
    exp = c.get_experiment_by_name(name)
    if exp is None:
        return c.create_experiment(name, tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING})
    c.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)
    return exp.experiment_id


def log_params(c, run_id: str, params: dict[str, Any]) -> None:
    """``params`` on the run (``log_batch`` splits them into calls of MLflow's batch limit)."""
    from mlflow.entities import Param

    c.log_batch(run_id, params=[Param(k, "None" if v is None else str(v)) for k, v in params.items()])


def epoch_metrics(record: dict[str, float]) -> list:
    """An epoch record (``engine.EpochRecord``) as MLflow metrics, each at step ``epoch``."""
    from mlflow.entities import Metric

    now, step = int(time.time() * 1000), int(record["epoch"])
    return [Metric(k, float(v), now, step) for k, v in record.items() if k != "epoch"]


def backfill(c, run_id: str, records: Iterable[dict], before: int | None = None) -> None:
    """Log the epoch records (a checkpoint's history, ``metrics.jsonl``) the run lacks (below ``before``, if
    given): the outage path, after a store was down or a process killed."""
    logged = {m.step for m in c.get_metric_history(run_id, "top1")}
    for record in records:
        epoch = int(record["epoch"])
        if epoch not in logged and (before is None or epoch < before):
            c.log_batch(run_id, metrics=epoch_metrics(record))


def warn(uri: str, err: BaseException, what: str, where: str | None = None, retry: bool = False) -> None:
    """The one clear message a tracking failure gets (training goes on); the URI is masked."""
    lines = [f"WARNING: MLflow tracking failed ({what}) at {mask(uri)}: {error_line(err, uri)}",
             "  training continues; " + ("what is not logged is kept and sent when the store answers again"
                                         if retry else "MLflow logging is off for this study")]
    if where:
        lines.append(f"  the metrics stay in {where} (metrics.jsonl per epoch, metrics.json)")
    print("\n".join(lines), file=sys.stderr, flush=True)


def error_line(err: BaseException, uri: str) -> str:
    """``Type: first line of the message``, the URI's password masked: how an error is shown."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {first.replace(uri, mask(uri))}"


def commit_tags() -> dict[str, str]:
    """The code's commit (``-dirty`` if changed; ``unknown`` outside git) as our tag and MLflow's (the UI's)."""
    try:
        out = subprocess.run(["git", "-C", str(Path(__file__).resolve().parent.parent), "describe", "--always",
                              "--dirty", "--abbrev=40"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        out = None
    commit = (out.stdout.strip() if out is not None and out.returncode == 0 else "") or "unknown"
    return {TAG_PREFIX + "git_commit": commit, "mlflow.source.git.commit": commit}
