"""Preemption- and storage-safe runs: SIGTERM saves and stops, a damaged checkpoint falls back to
the one before it, a second writer of a run directory is refused.

SIGTERM is delivered by the test's own patch of the data loader (``sigterm_at``): the training
process sends it to itself while batch ``k`` of an epoch is being trained, so the stop always falls
at the same step and the resumed run can be compared with an uninterrupted one exactly.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import torch

TINY = ["data.name=digits", "model.width=0.125", "data.limit_train=128", "data.limit_test=32",
        "train.batch_size=16", "train.threads=1", "method.name=mixup"]
BATCHES = 128 // 16  # per epoch

def sigterm_at(epoch: int, batch: int, args: list[str], **kwargs) -> subprocess.CompletedProcess:
    """`adautomix train args` that sends itself SIGTERM as the step of ``batch`` of ``epoch`` (both
    counted from 0) begins: the loader sends it just before handing that batch out."""
    script = f"""
import os, signal, sys
from adautomix.data.loaders import TensorLoader
plain = TensorLoader.__iter__
def patched(self):
    first = self.start
    for k, batch in enumerate(plain(self), start=first):
        if self.train and self.epoch == {epoch} and k == {batch}:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives as the step of this batch begins
        yield batch
TensorLoader.__iter__ = patched
from adautomix.cli import main
sys.exit(main(["train", *sys.argv[1:]]))
"""
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                          timeout=600, **kwargs)


def cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "adautomix", *args], capture_output=True, text=True,
                          timeout=600, **kwargs)


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints/last.pt", weights_only=True)["step"]


def epochs(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_sigterm_mid_epoch_saves_and_resume_ends_with_the_weights_of_an_uninterrupted_run(tmp_path):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    done = cli("train", *TINY, "train.epochs=3", f"out_dir={straight}")
    assert done.returncode == 0, done.stderr[-3000:]

    cut = sigterm_at(1, 3, [*TINY, "train.epochs=3", f"out_dir={stopped}"])
    assert cut.returncode == 143, cut.stdout[-2000:] + cut.stderr[-3000:]
    assert "Traceback" not in cut.stderr
    assert cut.stderr.strip().splitlines()[-1] == (
        f"adautomix: stopped (SIGTERM); the last checkpoint is {stopped / 'checkpoints/last.pt'}; "
        f"continue with: adautomix train --config {stopped / 'config.yaml'} --resume")
    state = torch.load(stopped / "checkpoints/last.pt", weights_only=True)
    # the step of batch 3 of epoch 2 was finished and saved: 4 of its batches are done
    assert (state["epoch"], state["iteration"], state["within_epoch"]["batches"]) == (1, BATCHES + 4, 4)
    assert [r["epoch"] for r in epochs(stopped)] == [1]

    again = cli("train", "--config", str(stopped / "config.yaml"), "--resume")
    assert again.returncode == 0, again.stderr[-3000:]
    for name, expected in weights(straight).items():
        got = weights(stopped)[name]
        assert torch.allclose(got.double(), expected.double(), rtol=0, atol=1e-6), name
    # epoch 2 went on from batch 4: its record (running means over all 8 batches) is the same
    for a, b in zip(epochs(straight), epochs(stopped), strict=True):
        assert a["epoch"] == b["epoch"] and abs(a["loss"] - b["loss"]) < 1e-6 and a["top1"] == b["top1"]


def test_sigterm_during_a_step_longer_than_the_grace_period_exits_143_with_the_last_checkpoint(tmp_path):
    run = tmp_path / "run"
    script = """
import os, signal, sys, time
from adautomix.data.loaders import TensorLoader
plain = TensorLoader.__iter__
def patched(self):
    for k, batch in enumerate(plain(self)):
        if self.train and self.epoch == 1 and k == 2:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(600)  # a step that cannot end within the grace period
        yield batch
TensorLoader.__iter__ = patched
from adautomix.cli import main
sys.exit(main(["train", *sys.argv[1:]]))
"""
    done = subprocess.run([sys.executable, "-c", script, *TINY, "train.epochs=3", "train.stop_grace_s=2",
                           f"out_dir={run}"], capture_output=True, text=True, timeout=180)
    assert done.returncode == 143, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == (
        "adautomix: stopped (SIGTERM; the step did not end within train.stop_grace_s=2 s); the last "
        f"checkpoint is {run / 'checkpoints/last.pt'}; continue with: adautomix train --config "
        f"{run / 'config.yaml'} --resume")
    assert torch.load(run / "checkpoints/last.pt", weights_only=True)["epoch"] == 1
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.pt"]


def test_a_checkpoint_is_also_written_inside_an_epoch_every_few_minutes(tmp_path):
    from adautomix.config import load_config
    from adautomix.engine import Trainer

    # 0.0001 minutes: every step is past the interval, so each step but an epoch's last writes one
    cfg = load_config(overrides=[*TINY, "train.epochs=1", "train.ckpt_every_minutes=0.0001",
                                 f"out_dir={tmp_path / 'run'}"])
    trainer = Trainer(cfg, quiet=True)
    trainer.train_epoch()
    state = torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)
    assert state["within_epoch"]["batches"] == BATCHES - 1 and state["iteration"] == BATCHES - 1


def test_keeps_the_last_k_checkpoints(tmp_path):
    run = tmp_path / "run"
    done = cli("train", *TINY, "train.epochs=3", "train.keep_checkpoints=2", f"out_dir={run}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.1.pt", "last.pt"]
    assert [torch.load(run / "checkpoints" / f, weights_only=True)["epoch"]
            for f in ("last.pt", "last.1.pt")] == [3, 2]


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(tmp_path):
    run = tmp_path / "run"
    assert cli("train", *TINY, "train.epochs=2", f"out_dir={run}").returncode == 0
    newest = run / "checkpoints/last.pt"
    newest.write_bytes(newest.read_bytes()[:newest.stat().st_size // 2])  # a copy cut short

    done = cli("train", "--config", str(run / "config.yaml"), "--resume", "train.epochs=3")
    assert done.returncode == 0, done.stderr[-3000:]
    warnings = [line for line in done.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and f"skipped checkpoint {newest}: damaged" in warnings[0], done.stderr
    assert f"using {run / 'checkpoints/last.1.pt'}" in warnings[0]
    assert [r["epoch"] for r in epochs(run)] == [1, 2, 3]  # epoch 2 was trained again from epoch 1's file


def test_no_readable_checkpoint_is_one_line_and_exit_2(tmp_path):
    run = tmp_path / "run"
    assert cli("train", *TINY, "train.epochs=2", f"out_dir={run}").returncode == 0
    for f in (run / "checkpoints").iterdir():
        f.write_bytes(b"cut")
    for command in (["train", "--config", str(run / "config.yaml"), "--resume"],
                    ["eval", str(run), "--suite", "calibration"],
                    ["train", *TINY, "train.epochs=1", f"model.init={run}", f"out_dir={tmp_path / 'other'}"]):
        done = cli(*command)
        assert done.returncode == 2, (command, done.stderr[-3000:])
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in done.stderr, (command, done.stderr)
        assert "no readable checkpoint" in lines[0] and "last.pt" in lines[0] and "last.1.pt" in lines[0], lines


def test_a_second_writer_is_refused_and_the_first_keeps_its_history(tmp_path):
    run = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "adautomix", "train", *TINY, "train.epochs=4",
                              f"out_dir={run}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    holder = run / ".adautomix.lock.json"
    deadline = time.monotonic() + 120
    while not holder.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert holder.exists(), "the first run never took the lock"
    second = cli("train", *TINY, "train.epochs=4", f"out_dir={run}")
    assert second.returncode == 2, second.stderr[-3000:]
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"adautomix: error: out_dir {run} is in use by PID {first.pid} on ")
    assert "started " in lines[0]

    _, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stderr[-3000:]
    assert [r["epoch"] for r in epochs(run)] == [1, 2, 3, 4]
    assert not holder.exists()


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_warning(tmp_path):
    import socket

    run = tmp_path / "run"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    run.mkdir()
    (run / ".adautomix.lock").touch()
    (run / ".adautomix.lock.json").write_text(json.dumps(
        {"pid": int(dead.stdout), "host": socket.gethostname(), "started": "2026-01-01 00:00:00 UTC"}))
    done = cli("train", *TINY, "train.epochs=1", f"out_dir={run}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (f"adautomix: warning: out_dir {run}: taking over the lock of PID {int(dead.stdout)} on "
            f"{socket.gethostname()} (started 2026-01-01 00:00:00 UTC) (no longer running)") in done.stderr
