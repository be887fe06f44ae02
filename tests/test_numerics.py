"""Numerics as the published AdAutoMix code guards them (README, "Numerics"): the generator's
attention block in fp32 under bf16 autocast, infinite attention logits clamped, NaN map values
replaced by the authors' constants; a loss that still becomes non-finite stops the run with one
line (epoch, iteration, term), keeps the last good checkpoint, and fails only its own study trial.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
import yaml

from adautomix.config import ConfigError, load_config
from adautomix.engine import CHECKPOINT, Callback, NonFiniteLossError, train
from adautomix.methods.generator import MixGenerator

from conftest import REPO

TINY = ["data.name=digits", "model.width=0.125", "data.limit_train=64", "data.limit_test=32",
        "train.batch_size=32", "train.threads=1", "train.device=cpu"]


def features(n: int, b: int = 4, c: int = 16, hw: int = 4, scale: float = 1.0, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [scale * torch.randn(b, c, hw, hw, generator=g) for _ in range(n)]


def contrasted_generator(c: int = 16, std: float = 1.0) -> MixGenerator:
    """A generator whose attention is far from uniform (the published init's std 0.01 gives
    near-flat masks, where bf16 and fp32 would agree anyway)."""
    torch.manual_seed(0)
    gen = MixGenerator(c, upsample="nearest")
    for conv in (gen.conv_q.conv, gen.conv_k.conv, gen.conv_v):
        torch.nn.init.normal_(conv.weight, 0.0, std)
    return gen


# ----------------------------------------------------------------------------- fp32 under bf16
@pytest.mark.parametrize("n", [2, 3])
def test_masks_under_bf16_autocast_match_fp32(n):
    # the features as a bf16 run's teacher hands them over: rounded to bf16
    gen, feats = contrasted_generator(), [f.to(torch.bfloat16) for f in features(n)]
    fp32 = gen([f.float() for f in feats], [1 / n] * n, (16, 16))
    assert fp32.flatten(2).std(dim=2).mean() > 0.05  # spatial masks: a real test of precision
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_bf16 = gen(feats, [1 / n] * n, (16, 16))
        from_fp32_features = gen([f.float() for f in feats], [1 / n] * n, (16, 16))
    for masks in (under_bf16, from_fp32_features):
        assert masks.dtype == torch.float32
        assert (masks - fp32).abs().max() < 1e-3


# ----------------------------------------------------------------------------- the authors' guards
def test_infinite_attention_logits_are_clamped_to_finite_masks():
    # features of 1e30 overflow q·kᵀ to +inf in fp32; unclamped, the softmax of such a row is NaN
    gen = contrasted_generator(std=0.01)
    feats = features(3, scale=1e30)
    c = gen.inter_channels
    flat = torch.stack(feats, 1).flatten(0, 1)
    q = torch.relu(gen.conv_q.conv(flat)).view(4, 3, c, 16).transpose(2, 3)
    k = torch.relu(gen.conv_k.conv(flat)).view(4, 3, c, 16)
    assert torch.isinf(q @ (k.sum(1, keepdim=True) - k)).any()  # the case is the one guarded
    masks = gen(feats, [0.3, 0.3, 0.4], (16, 16))
    # by hand, source by source: Σ_{j≠i} q_i k_jᵀ clamped to ±1e25, softmax rows, A_i v_i,
    # nearest upsampling (x4), softmax across the sources
    v = gen.conv_v(flat).view(4, 3, 16, 1)
    maps = []
    for i in range(3):
        logits = sum(q[:, i] @ k[:, j] for j in range(3) if j != i).clamp(-1e25, 1e25)
        maps.append((torch.softmax(logits / math.sqrt(c), dim=-1) @ v[:, i]).view(4, 1, 4, 4))
    want = torch.cat(maps, 1).repeat_interleave(4, 2).repeat_interleave(4, 3).softmax(dim=1)
    assert torch.isfinite(want).all()
    torch.testing.assert_close(masks, want)  # not the NaN fallback's flat 1/3


@pytest.mark.parametrize("n,expected", [
    (2, [0.0, 1.0]),  # the authors' (1e-4, 1e4) for a pair: the partner takes the NaN pixel
    (3, [1 / 3] * 3),  # the authors' 0.3 for every map: a plain 1/N mix
])
def test_nan_map_values_fall_back_to_the_authors_constants(n, expected):
    gen = contrasted_generator()
    with torch.no_grad():
        gen.conv_v.bias.fill_(float("nan"))  # every m_i = A_i v_i is NaN
    masks = gen(features(n), [1 / n] * n, (8, 8))
    # softmax over N of the fallback constants, computed by hand
    want = torch.tensor([math.exp(v) for v in ([1e-4 - 1e4, 0.0] if n == 2 else [0.3] * 3)])
    want = want / want.sum()
    torch.testing.assert_close(want, torch.tensor(expected), atol=1e-6, rtol=0)
    torch.testing.assert_close(masks, want.view(1, n, 1, 1).expand(4, n, 8, 8), atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------- the run stops
def test_nonfinite_loss_stops_the_run_with_one_line_and_keeps_the_last_good_checkpoint(tmp_path):
    run = tmp_path / "run"  # 2 iterations per epoch: iteration 4 of the run is epoch 3's first
    cfg = load_config(overrides=[*TINY, "method.name=adautomix", "train.epochs=4", f"out_dir={run}",
                                 "train.inject_nonfinite=loss_amce@4"])
    with pytest.raises(NonFiniteLossError) as err:
        train(cfg, quiet=True)
    message = str(err.value)
    assert "\n" not in message
    assert "epoch 3, iteration 1 of 2 (step 5 of the run)" in message
    assert "loss_amce = nan" in message and f"{run / CHECKPOINT} (epoch 2) is kept" in message
    state = torch.load(run / CHECKPOINT, weights_only=True)
    assert state["epoch"] == 2 and state["iteration"] == 4
    assert all(torch.isfinite(t).all() for t in state["step"].values() if t.is_floating_point())
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_a_real_nan_in_a_loss_term_is_named(tmp_path, monkeypatch):
    """No injection hook: the cosine term itself returns NaN; the first step is adversarial, so
    the generator's loss and the total follow, and the message names all three."""
    import adautomix.methods.adautomix as module

    class NanCosine:
        def __getattr__(self, name):
            return getattr(torch.nn.functional, name)

        @staticmethod
        def cosine_similarity(a, b, dim=-1):
            return torch.full(a.shape[:-1], float("nan"))

    monkeypatch.setattr(module, "F", NanCosine())
    cfg = load_config(overrides=[*TINY, "method.name=adautomix", "train.epochs=1", f"out_dir={tmp_path}"])
    with pytest.raises(NonFiniteLossError) as err:
        train(cfg, quiet=True)
    assert "epoch 1, iteration 1 of 2" in str(err.value)
    assert "cos = nan, loss_gen = nan, loss = nan" in str(err.value)
    assert "no checkpoint had been written" in str(err.value)
    assert not (tmp_path / CHECKPOINT).exists()


class PoisonWeights(Callback):
    """Makes one classifier weight NaN after epoch ``at``'s record (before its checkpoint)."""

    def __init__(self, at: int):
        self.at, self.trainer = at, None

    def setup(self, trainer):
        self.trainer = trainer

    def on_epoch(self, record):
        if record["epoch"] == self.at:
            with torch.no_grad():
                next(self.trainer.step.parameters()).view(-1)[0] = float("nan")


def test_a_checkpoint_is_never_written_from_nonfinite_weights(tmp_path):
    cfg = load_config(overrides=[*TINY, "method.name=vanilla", "train.epochs=3", f"out_dir={tmp_path}"])
    with pytest.raises(NonFiniteLossError) as err:
        train(cfg, callbacks=[PoisonWeights(2)], quiet=True)
    assert "non-finite weights after epoch 2" in str(err.value) and "holds the last good one" in str(err.value)
    assert torch.load(tmp_path / CHECKPOINT, weights_only=True)["epoch"] == 1


def test_the_cli_exits_3_with_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "adautomix", "train", *TINY, "method.name=vanilla",
                           "train.epochs=2", "train.inject_nonfinite=loss@3", f"out_dir={tmp_path}"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 3, done.stderr
    assert errors == [f"adautomix: error: non-finite loss in epoch 2, iteration 2 of 2 (step 4 of the run): "
                      f"loss = nan; the run stops before this step's update and "
                      f"{tmp_path / CHECKPOINT} (epoch 1) is kept"], done.stderr


@pytest.mark.parametrize("value", ["loss_amce", "loss@x", "@3", "loss@-1"])
def test_the_injection_hook_takes_term_at_iteration(value):
    with pytest.raises(ConfigError, match="train.inject_nonfinite"):
        load_config(overrides=[f"train.inject_nonfinite={value}"])


# ----------------------------------------------------------------------------- a study goes on
def test_a_study_trial_with_a_nonfinite_loss_errors_with_the_reason_and_the_study_goes_on(tmp_path):
    study = {"name": "nan", "searcher": "grid", "seeds": 1, "metric": "top1", "mode": "max",
             "base": {"data": {"name": "digits", "limit_train": 64, "limit_test": 32},
                      "model": {"width": 0.125}, "method": {"name": "vanilla"},
                      "train": {"epochs": 2, "batch_size": 32, "threads": 1}},
             "space": {"train.inject_nonfinite": ["", "loss@2"]},
             "resources": {"workers": 1, "cpus_per_worker": 1}, "max_concurrent": 1}
    path = tmp_path / "nan.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    done = subprocess.run([sys.executable, str(REPO / "tune" / "run_ablation.py"), str(path),
                           "--out", str(tmp_path / "study")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    out = f"rc={done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert done.returncode == 1, out  # a trial failed
    failed = done.stderr[done.stderr.index("1 trial(s) failed:"):].splitlines()[1]
    assert failed.startswith("  inject_nonfinite=loss@2 seed=0: NonFiniteLossError: non-finite loss in "
                             "epoch 2, iteration 1 of 2 (step 3 of the run): loss = nan;"), out
    summaries = [json.loads(p.read_text()) for p in (tmp_path / "study" / "trials").glob("*/metrics.json")]
    assert [s["epochs_done"] for s in summaries] == [2], out  # the other trial finished
