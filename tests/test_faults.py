"""A full disk for the run directory: the run stops with one clear line and the last checkpoint
is intact, so `--resume` loses nothing but the epoch in progress.

Checkpoints are written to a temporary file and renamed over `checkpoints/last.pt` (atomic), so a
write that fails half-way never touches the previous checkpoint. Two ways to fill the disk: a
real 2.3 MiB tmpfs mounted by the test in its own user and mount namespace (`unshare -rm`, where
the machine allows it), and an `ENOSPC` injected into the checkpoint write itself.
"""
from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from adautomix.config import load_config
from adautomix.engine import Callback, CheckpointWriteError, train

TINY = ["data.name=digits", "model.width=0.125", "data.limit_train=64", "data.limit_test=64",
        "train.batch_size=32", "train.threads=1", "method.name=vanilla"]


class DiskFullAtEpoch(Callback):
    """From epoch ``at`` on, ``torch.save`` writes part of the file, then fails as a full disk does."""

    def __init__(self, at: int):
        self.at = at

    def on_epoch(self, record):  # rank 0, just before that epoch's checkpoint is written
        if record["epoch"] != self.at:
            return
        import adautomix.checkpoints as checkpoints

        def full_disk(obj, fh, *args, **kwargs):
            fh.write(b"\0" * 4096)
            raise OSError(errno.ENOSPC, "No space left on device", fh.name)

        checkpoints.torch = _TorchWith(save=full_disk)


class _TorchWith:
    """``torch`` with some attributes replaced (the checkpoints module's view only)."""

    def __init__(self, **replaced):
        self.__dict__.update(replaced)

    def __getattr__(self, name):
        return getattr(torch, name)


@pytest.fixture()
def restore_checkpoints_torch():
    import adautomix.checkpoints as checkpoints

    yield
    checkpoints.torch = torch


def test_injected_enospc_stops_with_one_line_and_keeps_the_last_checkpoint(tmp_path, restore_checkpoints_torch):
    run = tmp_path / "run"
    cfg = load_config(overrides=[*TINY, "train.epochs=3", f"out_dir={run}"])
    with pytest.raises(CheckpointWriteError) as err:
        train(cfg, callbacks=[DiskFullAtEpoch(2)], quiet=True)
    message = str(err.value)
    assert "\n" not in message and "epoch 2" in message and "No space left on device" in message
    assert "previous checkpoint there is intact" in message and "--resume" in message
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.pt"]  # no temp file
    assert torch.load(run / "checkpoints/last.pt", weights_only=False)["epoch"] == 1

    import adautomix.checkpoints as checkpoints

    checkpoints.torch = torch  # space freed
    summary = train(load_config(overrides=[*TINY, "train.epochs=3", f"out_dir={run}", "train.resume=true"]),
                    quiet=True)
    assert summary["epochs_done"] == 3
    assert [json.loads(l)["epoch"] for l in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


def _can_mount_tmpfs(folder: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {folder}"],
                           capture_output=True)
    return probe.returncode == 0


def test_a_full_tmpfs_stops_the_cli_with_one_line_and_keeps_the_last_checkpoint(tmp_path):
    # ResNet-18 at 1/8 width: a checkpoint is about 1.45 MB once the optimizer has momentum. On a
    # 2.3 MiB file system epoch 1's checkpoint fits, epoch 2's temporary file next to it does not.
    disk = tmp_path / "disk"
    disk.mkdir()
    if not _can_mount_tmpfs(disk):
        pytest.skip("this machine allows no unprivileged mount namespace; "
                    "test_injected_enospc_... covers the same fault")
    run = disk / "run"
    check = (f"import torch, os; print('epoch', torch.load('{run}/checkpoints/last.pt', weights_only=False)['epoch']);"
             f" print('files', sorted(os.listdir('{run}/checkpoints')))")
    script = (f"mount -t tmpfs -o size=2300k tmpfs {disk} || exit 99; "
              f"{sys.executable} -m adautomix train {' '.join(TINY)} train.epochs=3 out_dir={run}; "
              f"echo rc=$?; {sys.executable} -c \"{check}\"")
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True,
                          timeout=300)
    out = f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
    assert "rc=2" in done.stdout, out
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("adautomix: error: cannot write the checkpoint of epoch 2"), out
    assert " MiB free on that file system" in errors[0] and "--resume" in errors[0], out
    assert "epoch 1" in done.stdout and "files ['last.pt']" in done.stdout, out


def test_ctrl_c_of_train_stops_cleanly_and_resume_continues_the_same_mlflow_run(tmp_path):
    """In-process training with a tracking store: SIGINT after the first checkpoint ends the
    command with exit 130 and the resume command, the run KILLED; `--resume` continues that run
    (found by its run-directory tag) to the end. What is lost: the epoch in progress."""
    import signal
    import time

    from mlflow import MlflowClient

    run, uri = tmp_path / "run", f"sqlite:///{tmp_path / 'mlflow.db'}"
    command = [sys.executable, "-m", "adautomix", "train", *TINY, "train.epochs=30", f"out_dir={run}",
               "--tracking-uri", uri]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run / "checkpoints/last.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stdout[-2000:] + stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == (
        f"adautomix: stopped (Ctrl-C); the last checkpoint is {run / 'checkpoints/last.pt'}; "
        f"continue with: adautomix train --config {run / 'config.yaml'} --resume")
    client = MlflowClient(uri)
    exp_id = client.get_experiment_by_name("train-digits").experiment_id
    (killed,) = client.search_runs([exp_id])
    assert killed.info.status == "KILLED"
    kept = torch.load(run / "checkpoints/last.pt", weights_only=True)["epoch"]
    assert 1 <= kept < 30

    done = subprocess.run([sys.executable, "-m", "adautomix", "train", "--config", str(run / "config.yaml"),
                           "--resume", "--tracking-uri", uri], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"MLflow: continuing run {killed.info.run_id}" in done.stdout
    (finished,) = client.search_runs([exp_id])
    assert finished.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(finished.info.run_id, "top1")]
    assert sorted(set(steps)) == list(range(1, 31)) and len(steps) <= 31, steps
    epochs = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == list(range(1, 31))
