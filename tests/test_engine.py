"""Specifications of the training engine (adautomix.engine) and of ``adautomix train``."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from adautomix.cli import main as cli_main
from adautomix.config import SEED_MAX, Config, ConfigError, from_dict, load_config
from adautomix.engine import (
    CHECKPOINT,
    ZERO_INIT_MIN_ITERATIONS,
    Callback,
    CheckpointError,
    RunExistsError,
    WarmupCosine,
    build_step,
    resolve_schedules,
    select_device,
    train,
)

from tiny_data import write_cifar100, write_imagefolder

# Small enough for a 2-core CPU: a 1/8-width ResNet-18 on 256 digits, one thread.
TINY = {"model.width": 0.125, "data.limit_train": 256, "data.limit_test": 128,
        "train.batch_size": 32, "train.threads": 1}
SUMMARY_KEYS = {"top1", "top1_median_last10", "heads", "epochs_done", "train_img_per_s"}


def tiny_config(out_dir: Path, **overrides) -> Config:
    return load_config(overrides={**TINY, "out_dir": str(out_dir), **overrides})


def adautomix(*args: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run the command line as a user would: a fresh ``python -m adautomix`` process."""
    return subprocess.run([sys.executable, "-m", "adautomix", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def weights(out_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(out_dir / CHECKPOINT, map_location="cpu", weights_only=True)["step"]


class Interrupted(Exception):
    pass


class StopAfterCheckpoint(Callback):
    """Callback that kills the run right after the checkpoint of ``epoch`` is written."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, trainer, checkpoint: Path | None) -> None:
        if checkpoint is not None and trainer.epoch == self.epoch:
            raise Interrupted


# -------------------------------------------------------------------------------- engine


def test_resume_after_epoch_2_of_4_gives_the_same_weights_as_a_straight_run(tmp_path):
    straight = train(tiny_config(tmp_path / "straight", **{"train.epochs": 4, "method.name": "mixup"}), quiet=True)

    cut = tiny_config(tmp_path / "cut", **{"train.epochs": 4, "method.name": "mixup"})
    with pytest.raises(Interrupted):
        train(cut, callbacks=[StopAfterCheckpoint(2)], quiet=True)
    assert torch.load(tmp_path / "cut" / CHECKPOINT, weights_only=True)["epoch"] == 2
    assert not (tmp_path / "cut" / "metrics.json").exists()
    resumed = train(tiny_config(tmp_path / "cut", **{"train.epochs": 4, "method.name": "mixup",
                                                     "train.resume": True}), quiet=True)

    a, b = weights(tmp_path / "straight"), weights(tmp_path / "cut")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert resumed["top1"] == straight["top1"] and resumed["epochs_done"] == 4
    lines = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]


class Planted:
    """What a tampered checkpoint holds: unpickling it would create ``marker`` (run code)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_resume_refuses_a_checkpoint_holding_a_pickled_object_naming_the_file(tmp_path):
    args = {**TINY, "data.limit_train": 64, "data.limit_test": 32, "train.epochs": 2}
    out = tmp_path / "run"
    with pytest.raises(Interrupted):
        train(tiny_config(out, **args), callbacks=[StopAfterCheckpoint(1)], quiet=True)
    state = torch.load(out / CHECKPOINT, weights_only=True)  # what adautomix writes loads safely
    marker = tmp_path / "code-ran"
    torch.save({**state, "extra": Planted(marker)}, out / CHECKPOINT)

    with pytest.raises(CheckpointError, match=str(out / CHECKPOINT)):
        train(tiny_config(out, **args, **{"train.resume": True}), quiet=True)
    result = adautomix("train", *[f"{k}={v}" for k, v in args.items()], f"out_dir={out}", "--resume",
                       cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert str(out / CHECKPOINT) in lines[0] and "refused" in lines[0], lines[0]
    assert not marker.exists()


def test_the_largest_seed_allowed_trains(tmp_path):
    summary = train(tiny_config(tmp_path / "run", **{"seed": SEED_MAX, "data.limit_train": 64,
                                                     "data.limit_test": 32, "train.epochs": 1}), quiet=True)
    assert summary["epochs_done"] == 1


def test_training_changes_the_weights_and_two_runs_with_one_seed_agree(tmp_path):
    runs = [train(tiny_config(tmp_path / name, **{"train.epochs": 1, "method.name": "cutmix"}), quiet=True)
            for name in ("a", "b")]
    assert runs[0]["top1"] == runs[1]["top1"]
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = train(tiny_config(tmp_path / "c", **{"train.epochs": 1, "method.name": "cutmix", "seed": 1}), quiet=True)
    c = weights(tmp_path / "c")
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert set(other) >= SUMMARY_KEYS


def test_a_run_refuses_an_out_dir_that_holds_a_run_unless_resuming(tmp_path):
    train(tiny_config(tmp_path / "run", **{"train.epochs": 1}), quiet=True)
    before = (tmp_path / "run" / "metrics.json").read_text()
    with pytest.raises(RunExistsError, match="--resume"):
        train(tiny_config(tmp_path / "run", **{"train.epochs": 1}), quiet=True)
    assert (tmp_path / "run" / "metrics.json").read_text() == before


def test_resume_without_a_checkpoint_is_refused(tmp_path):
    with pytest.raises(RunExistsError, match="no checkpoint"):
        train(tiny_config(tmp_path / "empty", **{"train.resume": True}), quiet=True)
    assert not (tmp_path / "empty").exists()


def test_trains_on_a_cifar100_folder_in_the_release_format(tmp_path):
    write_cifar100(tmp_path / "data", n_train=64, n_test=16)
    summary = train(tiny_config(tmp_path / "run", **{"data.name": "cifar100", "data.root": str(tmp_path / "data"),
                                                     "train.epochs": 1}), quiet=True)
    assert summary["epochs_done"] == 1
    assert weights(tmp_path / "run")["classifier.heads.one.weight"].shape[0] == 100


def test_trains_on_an_imagefolder(tmp_path):
    write_imagefolder(tmp_path / "data", classes=("cat", "dog"), per_class=4, size=20)
    summary = train(tiny_config(tmp_path / "run", **{"data.name": "imagefolder", "data.root": str(tmp_path / "data"),
                                                     "data.image_size": 16, "data.loader_workers": 0,
                                                     "train.batch_size": 4, "train.epochs": 1}), quiet=True)
    assert summary["epochs_done"] == 1 and 0 <= summary["top1"] <= 100


def test_cosine_schedule_warms_up_linearly_then_decays_to_min_lr():
    schedule = WarmupCosine(total=100, warmup=10, floor=0.1)
    assert [schedule(i) for i in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    assert schedule(10) == pytest.approx(1.0)
    assert schedule(55) == pytest.approx(0.55)  # half-way down: (1 + floor) / 2
    assert schedule(100) == pytest.approx(0.1)
    values = [schedule(i) for i in range(10, 101)]
    assert values == sorted(values, reverse=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_asking_for_cuda_without_a_cuda_device_is_a_config_error():
    with pytest.raises(ConfigError, match="train.device"):
        select_device(load_config(overrides={"train.device": "cuda", "out_dir": "x"}))


# -------------------------------------------------------------------------------- command line


@pytest.mark.parametrize("args, names", [
    (["train.lr=0"], ["train.lr", "> 0"]),
    (["trian.epochs=3"], ["trian.epochs", "unknown key"]),
    (["data.name=cifar100", "data.root=NOWHERE"], ["NOWHERE/cifar-100-python", "never downloaded"]),
    (["model.init=NOWHERE"], ["model.init=NOWHERE", "no such file"]),
], ids=["bad-value", "unknown-key", "missing-cifar-folder", "missing-init-file"])
def test_train_with_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, args, names):
    args = [a.replace("NOWHERE", str(tmp_path / "nowhere")) for a in args]
    names = [n.replace("NOWHERE", str(tmp_path / "nowhere")) for n in names]
    result = adautomix("train", *args, f"out_dir={tmp_path / 'run'}", "train.epochs=1", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("adautomix: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for name in names:
        assert name in lines[0]
    assert list(tmp_path.iterdir()) == []  # neither out_dir nor runs/ was created


def test_train_help_lists_the_keys_with_their_defaults(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_main(["train", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for key, default in [("data.name", "'digits'"), ("data.root", "None"), ("model.arch", "'resnet18'"),
                         ("model.width", "1.0"), ("method.name", "'vanilla'"), ("train.epochs", "10"),
                         ("train.batch_size", "100"), ("seed", "0"), ("out_dir", "''")]:
        assert any(line.split() == [key, default] for line in text.splitlines()), key


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """``adautomix train`` on all of digits: 1/8-width ResNet-18, 5 epochs, batch 32."""
    cwd = tmp_path_factory.mktemp("digits")
    out = cwd / "run"
    result = adautomix("train", "data.name=digits", "model.arch=resnet18", "model.width=0.125",
                       "method.name=vanilla", "train.epochs=5", "train.batch_size=32", "train.threads=1",
                       "seed=0", f"out_dir={out}", cwd=cwd)
    return result, out


def test_train_on_digits_reaches_a_top1_far_above_chance(digits_run):
    result, out = digits_run
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "metrics.json").read_text())
    # measured: 97-98 % (zero_init_residual=auto is off for these 220 iterations; with zeroed
    # residual branches the same run reached 90.0 %, and 49 % at 3 epochs); chance is 10 %
    assert summary["top1"] > 90
    assert summary["heads"] == {"one": summary["top1"]}


def test_train_writes_config_metrics_per_epoch_lines_and_a_checkpoint(digits_run):
    result, out = digits_run
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "metrics.json").read_text())
    assert set(summary) >= SUMMARY_KEYS
    assert summary["epochs_done"] == 5 and summary["train_img_per_s"] > 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3, 4, 5]
    assert summary["top1"] == records[-1]["top1"]
    assert summary["top1_median_last10"] == sorted(r["top1"] for r in records)[2]
    config = from_dict(yaml.safe_load((out / "config.yaml").read_text()))
    assert (config.method.name, config.train.epochs, config.model.width) == ("vanilla", 5, 0.125)
    assert config.model.zero_init_residual is False  # resolved from "auto": 220 iterations
    assert "zero-initialised residual branches: off (220 iterations" in result.stdout
    assert torch.load(out / CHECKPOINT, weights_only=True)["epoch"] == 5
    progress = [line for line in result.stdout.splitlines() if line.startswith("epoch")]
    assert len(progress) == 5
    assert all(word in progress[-1] for word in ("loss", "lr", "top1", "img/s", "eta"))


def test_train_refuses_to_overwrite_a_run_without_resume(digits_run):
    result, out = digits_run
    before = (out / "metrics.json").read_text()
    again = adautomix("train", "model.width=0.125", "train.epochs=3", f"out_dir={out}", cwd=out.parent)
    assert again.returncode == 2
    assert "--resume" in again.stderr and "Traceback" not in again.stderr
    assert (out / "metrics.json").read_text() == before


def test_train_resume_continues_a_killed_run_to_the_same_result(tmp_path):
    args = [f"{k}={v}" for k, v in TINY.items()] + ["data.limit_train=128", "data.limit_test=64",
                                                     "method.name=mixup", "train.epochs=4", "seed=0"]
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "adautomix", "train", *args, f"out_dir={out}"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in proc.stdout:
            if line.startswith("epoch   2/4"):
                break
        proc.kill()  # a crash after epoch 2's line: the checkpoint holds epoch 1 or 2
    finally:
        proc.wait(timeout=120)
        proc.stdout.close()
    assert not (out / "metrics.json").exists(), "the run finished before it could be killed"
    assert torch.load(out / CHECKPOINT, weights_only=True)["epoch"] in (1, 2)

    resumed = adautomix("train", *args, f"out_dir={out}", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]

    straight = train(load_config(overrides=[*args, f"out_dir={tmp_path / 'straight'}"]), quiet=True)
    reference = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["loss"], r["top1"]) for r in records] == [(r["loss"], r["top1"]) for r in reference]
    assert json.loads((out / "metrics.json").read_text())["top1"] == straight["top1"]


# -------------------------------------------------------------------------------- slow


@pytest.mark.slow
@pytest.mark.parametrize("method", ["vanilla", "mixup", "cutmix"])
def test_each_method_learns_digits_in_15_epochs_at_quarter_width(tmp_path, method):
    """The closing-note setting: ResNet-18 at width 0.25, 15 epochs, batch 64, seed 0."""
    summary = train(load_config(overrides={
        "data.name": "digits", "model.arch": "resnet18", "model.width": 0.25, "method.name": method,
        "train.epochs": 15, "train.batch_size": 64, "seed": 0, "out_dir": str(tmp_path / method)}), quiet=True)
    # measured (2-core CPU, seed 0): median of the last 10 epochs 99.2 vanilla, 98.3 mixup, 98.8 cutmix
    assert summary["top1_median_last10"] > 90


def last_bn_gammas(step: torch.nn.Module) -> list[torch.Tensor]:
    """γ of the last BatchNorm (bn2) of every basic residual block of a step's classifier."""
    return [m.bn2.weight for m in step.modules() if type(m).__name__ == "BasicBlock"]


@pytest.mark.parametrize("iterations, zeroed", [(ZERO_INIT_MIN_ITERATIONS - 1, False),
                                                (ZERO_INIT_MIN_ITERATIONS, True)])
def test_zero_init_residual_auto_zeroes_residual_branches_only_from_the_length_threshold(iterations, zeroed):
    cfg = load_config(overrides={"model.width": 0.125})
    assert cfg.model.zero_init_residual == "auto"
    resolved, notes = resolve_schedules(cfg, iterations)
    assert resolved.model.zero_init_residual is zeroed
    assert notes[0].startswith(f"zero-initialised residual branches: {'on' if zeroed else 'off'} ({iterations} ")
    gammas = last_bn_gammas(build_step(resolved, 10))
    assert len(gammas) == 8  # ResNet-18: 4 stages x 2 blocks
    assert all(bool((g == 0).all()) is zeroed for g in gammas)


@pytest.mark.parametrize("value", [True, False])
def test_an_explicit_zero_init_residual_is_kept_at_any_length(value):
    cfg = load_config(overrides={"model.zero_init_residual": value})
    resolved, notes = resolve_schedules(cfg, 10)
    assert resolved.model.zero_init_residual is value and not any("residual" in n for n in notes)
