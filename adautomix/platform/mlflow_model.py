"""The headline model in MLflow: exported at the end of a run (``ExportModel``, with
``models/export.py``), logged in MLflow's ``pt2`` format (``torch.export``: a traced graph, no
pickle) with a signature and an input example, and a study's best one registered under the
study's name with the alias ``champion``.
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from ..engine import Callback
from ..models.export import MODEL_FILE, export_model, load_exported
from .mlflow_store import MODEL_URI_TAG, TAG_PREFIX, TRIAL_KEY_TAG

CHAMPION = "champion"  # the registry alias of a study's best model


class ExportModel(Callback):
    """Rank 0 exports the headline model (the ``nn.Module`` whose top-1 is ``top1``: AdAutoMix's
    EMA teacher) into the run directory at the end of a run, with two test images as its input
    example (``models/export.py``). ``StudyTracker`` and ``RunLogger`` log it
    (``mlflow.log_model=true``)."""

    def on_end(self, summary: dict, trainer) -> None:
        x = next(iter(trainer.test_loader))[0][:2]
        export_model(trainer.step.headline_model, x, trainer.out)


def log_run_files(uri: str, c, run_id: str, run_dir: Path) -> None:
    """A finished run's files into its MLflow run: ``config.yaml``, ``metrics.json``,
    ``metrics.jsonl``, ``eval.json`` (with ``train.final_eval``), ``pictures/`` and the model."""
    run_dir = Path(run_dir)
    for name in ("config.yaml", "metrics.json", "metrics.jsonl", "eval.json"):
        if (run_dir / name).exists():
            c.log_artifact(run_id, str(run_dir / name))
    if (run_dir / "pictures").is_dir():
        c.log_artifacts(run_id, str(run_dir / "pictures"), "pictures")
    if (run_dir / MODEL_FILE).exists():
        log_model(uri, run_id, run_dir)


def log_model(uri: str, run_id: str, run_dir: Path) -> str:
    """Log ``run_dir``'s exported model into run ``run_id`` in MLflow's ``pt2`` format, with a
    signature inferred from its input example and its output; returns the model's URI."""
    import mlflow.pytorch
    import torch
    from mlflow.models import infer_signature

    module, example = load_exported(run_dir)
    with torch.no_grad():
        signature = infer_signature(example, module(torch.from_numpy(example)).numpy())
    head = json.loads((Path(run_dir) / "metrics.json").read_text())["headline_head"]
    with _fluent(uri), mlflow.start_run(run_id=run_id, log_system_metrics=False):
        info = mlflow.pytorch.log_model(
            module, name="model", serialization_format="pt2", input_example=example,
            signature=signature, pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
        mlflow.set_tag(MODEL_URI_TAG, info.model_uri)
        # which head's top-1 the logged model scores (model(x) gives that head's logits)
        mlflow.set_tag(TAG_PREFIX + "model_head", head)
    return info.model_uri


@contextlib.contextmanager
def _fluent(uri: str):
    """MLflow's fluent API (``mlflow.start_run``, which ``log_model`` logs into) pointed at ``uri``
    for the block. ``mlflow.set_tracking_uri`` also sets ``$MLFLOW_TRACKING_URI``, which every
    process started later would inherit (with a password, if the URI has one): it is put back."""
    import mlflow

    saved = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved


def register(uri: str, c, run_id: str, model_uri: str, name: str, key: str) -> None:
    """Register ``model_uri`` (logged by run ``run_id``, the trial ``key``) as a new version of
    ``name`` and point the alias ``champion`` at it. MlflowClient's calls, which print nothing
    (``mlflow.register_model`` prints a line for each model and version it creates); the store
    finds a ``models:/`` source through the fluent API's URI."""
    from mlflow.exceptions import MlflowException

    try:
        c.create_registered_model(name)
    except MlflowException as err:
        if err.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
    with _fluent(uri):
        version = c.create_model_version(name, model_uri, run_id=run_id, tags={TRIAL_KEY_TAG: key},
                                         model_id=model_uri.removeprefix("models:/"))
    c.set_registered_model_alias(name, CHAMPION, version.version)
