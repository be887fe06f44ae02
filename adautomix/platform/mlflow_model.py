"""The headline model in MLflow: exported at a run's end (``ExportModel``), logged in MLflow's ``pt2`` format
(``torch.export``, no pickle) with a signature and input example; a study's best registered as ``champion``."""
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
    """At a run's end, rank 0 exports the headline model (the one scoring ``top1``), two test images as its example."""

    def on_end(self, summary: dict, trainer) -> None:
        export_model(trainer.step.headline_model, next(iter(trainer.test_loader))[0][:2], trainer.out)


def log_run_files(uri: str, c, run_id: str, run_dir: Path) -> None:
    """A finished run's files into its MLflow run: config, metrics, ``eval.json``, ``pictures/``, the model."""
    run_dir = Path(run_dir)
    for name in ("config.yaml", "metrics.json", "metrics.jsonl", "eval.json"):
        if (run_dir / name).exists():
            c.log_artifact(run_id, str(run_dir / name))
    if (run_dir / "pictures").is_dir():
        c.log_artifacts(run_id, str(run_dir / "pictures"), "pictures")
    if (run_dir / MODEL_FILE).exists():
        log_model(uri, run_id, run_dir)


def log_model(uri: str, run_id: str, run_dir: Path) -> str:
    """Log ``run_dir``'s exported model into run ``run_id`` (``pt2``, signature from its example); its URI."""
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
        mlflow.set_tag(TAG_PREFIX + "model_head", head)  # the head whose logits model(x) gives
    return info.model_uri


@contextlib.contextmanager
def _fluent(uri: str):
    """MLflow's fluent API pointed at ``uri`` for the block, then ``$MLFLOW_TRACKING_URI`` put back: its
    ``set_tracking_uri`` sets it, and every later process would inherit it (a password too, if any)."""
    import mlflow

    saved = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        if saved is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved


def register(uri: str, c, run_id: str, model_uri: str, name: str, key: str) -> None:
    """Register ``model_uri`` (run ``run_id``, trial ``key``) as a new version of ``name``, aliased ``champion``:
    with MlflowClient, which prints nothing; the store finds a ``models:/`` source through ``_fluent``'s URI."""
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
