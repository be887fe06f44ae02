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
        import adautomix.engine as engine

        def full_disk(obj, path, *args, **kwargs):
            Path(path).write_bytes(b"\0" * 4096)
            raise OSError(errno.ENOSPC, "No space left on device", str(path))

        engine.torch = _TorchWith(save=full_disk)


class _TorchWith:
    """``torch`` with some attributes replaced (the engine module's view only)."""

    def __init__(self, **replaced):
        self.__dict__.update(replaced)

    def __getattr__(self, name):
        return getattr(torch, name)


@pytest.fixture()
def restore_engine_torch():
    import adautomix.engine as engine

    yield
    engine.torch = torch


def test_injected_enospc_stops_with_one_line_and_keeps_the_last_checkpoint(tmp_path, restore_engine_torch):
    run = tmp_path / "run"
    cfg = load_config(overrides=[*TINY, "train.epochs=3", f"out_dir={run}"])
    with pytest.raises(CheckpointWriteError) as err:
        train(cfg, callbacks=[DiskFullAtEpoch(2)], quiet=True)
    message = str(err.value)
    assert "\n" not in message and "epoch 2" in message and "No space left on device" in message
    assert "previous checkpoint there is intact" in message and "--resume" in message
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.pt"]  # no temp file
    assert torch.load(run / "checkpoints/last.pt", weights_only=False)["epoch"] == 1

    import adautomix.engine as engine

    engine.torch = torch  # space freed
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
