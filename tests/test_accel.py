"""Specifications of the GPU switches (adautomix/accel.py): bf16 autocast, channels-last and
torch.compile, each true, false or auto (on for CUDA), run correctly when forced on the CPU; a
compiled run keeps plain checkpoints."""
from __future__ import annotations

import json
import types

import pytest
import torch

from adautomix import accel
from adautomix.config import ConfigError, load_config
from adautomix.engine import CHECKPOINT, Trainer, build_step, resolve_schedules, train

from tiny_data import write_cifar100


def tiny(out, *overrides: str):
    return load_config(overrides=["data.limit_train=16", "data.limit_test=8", "train.batch_size=8",
                                  "model.width=0.125", "train.epochs=1", "train.device=cpu",
                                  f"out_dir={out}", *overrides])


def losses(out) -> dict[str, float]:
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    return {k: v for k, v in record.items() if k.startswith("loss")}


def test_auto_turns_each_switch_on_for_cuda_and_off_for_the_cpu():
    auto = types.SimpleNamespace(bf16="auto", channels_last="auto", compile="auto")
    assert accel.resolve(auto, torch.device("cuda")) == dict(bf16=True, channels_last=True, compile=True)
    assert accel.resolve(auto, torch.device("cpu")) == dict(bf16=False, channels_last=False, compile=False)
    forced = types.SimpleNamespace(bf16=True, channels_last=False, compile=True)
    assert accel.resolve(forced, torch.device("cpu")) == dict(bf16=True, channels_last=False, compile=True)


def test_a_switch_takes_only_true_false_or_auto():
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["train.compile=yes please", "train.channels_last=1", "train.bf16=auto"])
    assert "train.compile: expected true, false or auto, got 'yes please'" in str(err.value)
    assert "train.channels_last: expected true, false or auto, got 1" in str(err.value)


def test_compiled_adautomix_step_trains_as_the_eager_one_and_saves_plain_checkpoints(tmp_path, monkeypatch):
    # the "eager" backend: Dynamo captures the step (fullgraph: one graph, no break) and runs it
    # without code generation, which on a CPU takes minutes (the cuda test compiles with Inductor)
    monkeypatch.setattr(accel, "COMPILE_OPTIONS", {"backend": "eager", "fullgraph": True})
    common = ("method.name=adautomix", "method.n_mix=2", "train.channels_last=true", "data.limit_train=8")
    train(tiny(tmp_path / "eager", *common, "train.compile=false"), quiet=True)
    train(tiny(tmp_path / "compiled", *common, "train.compile=true"), quiet=True)
    eager, compiled = losses(tmp_path / "eager"), losses(tmp_path / "compiled")
    assert eager.keys() == compiled.keys() and "loss_amce" in eager
    for key in eager:
        assert compiled[key] == pytest.approx(eager[key], rel=1e-5, abs=1e-6), key
    state = torch.load(tmp_path / "compiled" / CHECKPOINT, weights_only=True)["step"]
    assert not [k for k in state if "_orig_mod" in k]
    # every weight, EMA weight and BatchNorm statistic (the teacher's replayed ones too)
    expected = torch.load(tmp_path / "eager" / CHECKPOINT, weights_only=True)["step"]
    assert state.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(state[key], expected[key], rtol=1e-5, atol=1e-6, msg=key)
    plain = Trainer(tiny(tmp_path / "plain", *common, "train.compile=false"), quiet=True)
    plain.load_checkpoint(tmp_path / "compiled" / CHECKPOINT)  # loads into an uncompiled step


def test_bf16_forced_on_the_cpu_trains_with_a_finite_loss(tmp_path, capsys):
    train(tiny(tmp_path, "method.name=mixup", "train.bf16=true"))
    assert "GPU path: data through the CPU pipeline, bf16 autocast on, channels-last off, " \
           "torch.compile off" in capsys.readouterr().out
    assert all(torch.isfinite(torch.tensor(v)) for v in losses(tmp_path).values())


@pytest.mark.cuda
@pytest.mark.parametrize("method,compiled", [("adautomix", "the whole step"), ("mixup", "the networks")])
def test_on_cuda_auto_compiles_the_step_and_it_trains_as_the_eager_one(tmp_path, method, compiled, capsys):
    """At the benchmark's shapes (CIFAR-100, ResNet-18, batch 256), which benchmarks/gpu_check.sh
    compiles just before, so that Inductor's caches serve most of this test's compilation."""
    write_cifar100(tmp_path / "data", n_train=512, n_test=256)

    def run(name: str, compile_: str) -> None:
        train(load_config(overrides=[
            "data.name=cifar100", f"data.root={tmp_path / 'data'}", "train.batch_size=256", "train.epochs=1",
            f"method.name={method}", f"train.compile={compile_}", "train.device=cuda",
            f"out_dir={tmp_path / name}"]))

    run("eager", "false")
    capsys.readouterr()
    run("compiled", "auto")
    assert ("GPU path: data on the device, bf16 autocast on, channels-last on, "
            f"torch.compile on ({compiled})") in capsys.readouterr().out
    eager, fast = losses(tmp_path / "eager"), losses(tmp_path / "compiled")
    for key in eager:  # bf16: the compiled kernels round differently
        assert fast[key] == pytest.approx(eager[key], rel=5e-2, abs=1e-3), key
    state = torch.load(tmp_path / "compiled" / CHECKPOINT, weights_only=True)["step"]
    expected = torch.load(tmp_path / "eager" / CHECKPOINT, weights_only=True)["step"]
    assert state.keys() == expected.keys() and not [k for k in state if "_orig_mod" in k]
    for key in (k for k in expected if "running" in k):  # the teacher's replayed statistics too
        torch.testing.assert_close(state[key].float(), expected[key].float(), rtol=5e-2, atol=1e-3, msg=key)


def test_the_teachers_batchnorm_recorder_follows_a_syncbatchnorm_conversion():
    # its hooks stay on the layers (so that a compiled step traces them once); layers replaced
    # after the step was built (train.sync_bn) are hooked when the next recording starts
    cfg = tiny("unused", "method.name=adautomix")
    cfg, _ = resolve_schedules(cfg, 10)
    step = torch.nn.SyncBatchNorm.convert_sync_batchnorm(build_step(cfg, 10)).train()
    recorder = step.teacher_bn
    recorder.start()
    with torch.no_grad():
        step.teacher.model(torch.randn(4, 3, 32, 32))
    recorder.stop()
    sync_layers = [m for m in step.teacher.model.modules() if isinstance(m, torch.nn.SyncBatchNorm)]
    assert len(sync_layers) > 10 and list(recorder.stats) == sync_layers
