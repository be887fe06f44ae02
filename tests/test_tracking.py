"""`adautomix train` and MLflow: one run when a tracking URI is given, no MLflow at all without.

A real local SQLite store; a tiny run (ResNet-18 at 1/8 width, 256 digits, 2 epochs).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from adautomix.config import Config, flatten, to_dict

TINY = ["data.name=digits", "data.limit_train=256", "data.limit_test=128", "model.width=0.125",
        "train.epochs=2", "train.batch_size=32", "train.threads=1"]


def train(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "adautomix", "train", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
                          env={**os.environ, **(env or {})})


def test_train_with_a_tracking_uri_logs_one_run_with_its_config_epochs_and_model(tmp_path):
    import mlflow
    import torch
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = train([*TINY, "method.name=mixup", "mlflow.log_model=true", f"out_dir={tmp_path / 'run'}"],
                 tmp_path, env={"MLFLOW_TRACKING_URI": uri})
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"mlflow ui --backend-store-uri {uri}" in done.stdout
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("train-digits")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    run = runs[0]
    assert set(run.data.params) == set(flatten(to_dict(Config())))
    assert (run.data.params["method.name"], run.data.params["train.epochs"]) == ("mixup", "2")
    assert run.data.tags["adautomix.out_dir"] == str(tmp_path / "run")
    for metric in ("loss", "lr", "top1"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, metric)] == [1, 2]
    assert {"config.yaml", "metrics.json", "metrics.jsonl"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    mlflow.set_tracking_uri(uri)
    model = mlflow.pytorch.load_model(run.data.tags["adautomix.model_uri"])
    assert model(torch.zeros(3, 3, 32, 32)).shape == (3, 10)


def test_train_without_a_tracking_uri_never_imports_mlflow(tmp_path):
    code = ("import sys, os; os.environ.pop('MLFLOW_TRACKING_URI', None); from adautomix.cli import main; "
            f"rc = main(['train', *{TINY!r}, 'out_dir={tmp_path / 'run'}']); "
            "assert rc == 0; assert 'mlflow' not in sys.modules, 'mlflow imported'")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "run" / "metrics.json").exists()


def test_a_single_run_logger_facing_a_dead_store_warns_once_and_never_prints_the_password(tmp_path, capfd):
    """Epochs go through MLflow's asynchronous logging; MLflow reports each batch it could not
    send with its own error line, which holds the URI: the logger turns the first into its one
    warning (password masked) and prints none of them; the run's end back-fills what is missing."""
    import socket
    from types import SimpleNamespace

    from adautomix.platform.run_logger import RunLogger

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there
    uri = f"http://alice:s3cret@127.0.0.1:{port}"
    logger = RunLogger(uri, "0" * 32)
    trainer = SimpleNamespace(out=tmp_path, rank=0, history=[])  # what setup reads of a Trainer
    logger.setup(trainer)
    for epoch in (1, 2, 3):
        logger.on_epoch({"epoch": epoch, "top1": 10.0 * epoch, "loss": 1.0})
    logger.on_end({}, trainer)
    err = capfd.readouterr().err
    assert err.count("WARNING: MLflow tracking failed") == 1, err
    assert f"http://alice:***@127.0.0.1:{port}" in err and "s3cret" not in err, err
    assert "Failed to log run data" not in err, err  # MLflow's own line, one per batch
    assert logger.failed
