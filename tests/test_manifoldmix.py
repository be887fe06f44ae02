"""Specifications of Manifold Mixup (adautomix.methods.manifoldmix, Verma et al., ICML 2019).

The expected hidden states are computed here by running the backbone's modules by hand (stem,
layer1, ..., layer4): h_0 = x, h_k = the output of residual stage k, and the mix of the paper,
λ·h_k + (1-λ)·h_k[π], written out. Labels are 0..B-1 so that a target's label names its image:
the partner label of sample b is π(b).
"""
from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
import torch
import yaml
from scipy import stats

from adautomix.config import ConfigError, load_config
from adautomix.engine import build_step
from adautomix.methods.manifoldmix import manifold_mixup
from adautomix.methods.mixing import mixed_cross_entropy, mixup
from adautomix.models.cifar_resnet import build_classifier

B = 8


def classifier(seed: int = 0):
    """A 1/8-width ResNet-18 whose residual branches are not zero (so every stage acts)."""
    torch.manual_seed(seed)
    return build_classifier("resnet18", 0.125, num_classes=B, zero_init_residual=False).train()


def batch(seed: int = 0, size: int = 16):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, 3, size, size, generator=g), torch.arange(B)


def hidden_states_by_hand(model, x) -> list[torch.Tensor]:
    """[h_0, h_1, h_2, h_3, h_4]: the input of stage 1..4 and the output of stage 4."""
    bb = model.backbone
    h = [x, bb.layer1(bb.stem(x))]
    for layer in (bb.layer2, bb.layer3, bb.layer4):
        h.append(layer(h[-1]))
    return h


def stage_inputs(model):
    """Forward pre-hooks recording what enters stage 1 (the stem) .. stage 4 (layer4)."""
    bb, seen, handles = model.backbone, {}, []
    for k, module in enumerate((bb.stem, bb.layer2, bb.layer3, bb.layer4)):
        handles.append(module.register_forward_pre_hook(
            lambda mod, args, k=k: seen.__setitem__(k, args[0].detach().clone())))
    return seen, handles


def lam_and_perm(targets) -> tuple[float, torch.Tensor]:
    return float(targets.weights[0, 0]), targets.labels[:, 1]


# ------------------------------------------------------------------------------ the backbone


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_the_unmixed_backbone_is_the_plain_stage_chain_bit_for_bit(mode):
    """``backbone(x)`` (what AdAutoMix calls) is stem -> layer1..4 -> mean, unchanged, and it
    moves the BatchNorm running statistics exactly as the chain does."""
    model, (x, _) = classifier(), batch()
    by_hand = copy.deepcopy(model)
    getattr(model, mode)(), getattr(by_hand, mode)()
    stage3, pooled = model.backbone(x)
    h = hidden_states_by_hand(by_hand, x)
    assert torch.equal(stage3, h[3])
    assert torch.equal(pooled, h[4].mean(dim=(2, 3)))
    h = hidden_states_by_hand(by_hand, x)  # a second pass on each: the classifier's forward
    assert torch.equal(model(x), by_hand.heads["one"](h[4].mean(dim=(2, 3))))
    for (name, a), (_, b) in zip(model.state_dict().items(), by_hand.state_dict().items()):
        assert torch.equal(a, b), name


# ------------------------------------------------------------------------------ the mix


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_the_hidden_state_entering_stage_k_plus_1_is_lambda_h_k_plus_one_minus_lambda_h_k_of_pi(k):
    model, (x, y) = classifier(), batch(k)
    h = hidden_states_by_hand(copy.deepcopy(model), x)  # train mode: batch statistics, as the step
    seen, handles = stage_inputs(model)
    logits, targets, layer = manifold_mixup(model, x, y, torch.Generator().manual_seed(k), layers=(k,))
    for handle in handles:
        handle.remove()
    lam, perm = lam_and_perm(targets)
    assert layer == k and 0 < lam < 1
    assert sorted(perm.tolist()) == list(range(B)) and perm.tolist() != list(range(B))
    mixed = lam * h[k] + (1 - lam) * h[k][perm]
    assert torch.allclose(seen[k], mixed, rtol=1e-5, atol=1e-6)
    for j in range(k):  # the stages before k ran on the clean batch
        assert torch.equal(seen[j], h[j]), j
    # the rest of the network runs on the mixed state
    bb, rest = model.backbone, mixed
    for stage in [lambda h: bb.layer1(bb.stem(h)), bb.layer2, bb.layer3, bb.layer4][k:]:
        rest = stage(rest)
    assert torch.allclose(logits, model.heads["one"](rest.mean(dim=(2, 3))), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_a_hidden_stage_leaves_the_input_untouched(k):
    model, (x, y) = classifier(), batch()
    x_before = x.clone()
    seen, handles = stage_inputs(model)
    manifold_mixup(model, x, y, torch.Generator().manual_seed(0), layers=(k,))
    for handle in handles:
        handle.remove()
    assert torch.equal(seen[0], x_before)  # stage 1 saw the clean batch
    assert torch.equal(x, x_before)  # and the batch was not changed in place


@pytest.mark.parametrize("seed", range(3))
def test_the_input_stage_is_plain_mixup_draw_for_draw(seed):
    model, (x, y) = classifier(), batch(seed)
    reference = copy.deepcopy(model)
    logits, targets, _ = manifold_mixup(model, x, y, torch.Generator().manual_seed(seed), layers=(0,),
                                        mix_lambda=2.0)
    x_mixed, mixup_targets = mixup(x, y, torch.Generator().manual_seed(seed), mix_lambda=2.0)
    assert torch.equal(targets.labels, mixup_targets.labels)
    assert torch.equal(targets.weights, mixup_targets.weights)
    assert torch.equal(logits, reference(x_mixed))


@pytest.mark.parametrize("seed", range(5))
def test_targets_are_y_and_y_of_pi_weighted_by_the_share_lambda_of_the_mix_summing_to_one(seed):
    model, (x, y) = classifier(), batch(seed)
    seen, handles = stage_inputs(model)
    _, targets, _ = manifold_mixup(model, x, y, torch.Generator().manual_seed(seed), layers=(0,))
    for handle in handles:
        handle.remove()
    perm = targets.labels[:, 1]
    # λ of the mix itself: least squares of x̃ - x[π] = λ·(x - x[π])
    d, e = x - x[perm], seen[0] - x[perm]
    lam = float((d * e).sum() / (d * d).sum())
    assert torch.equal(targets.labels[:, 0], y) and torch.equal(targets.labels[:, 1], y[perm])
    assert torch.allclose(targets.weights, torch.tensor([[lam, 1 - lam]]).expand(B, 2), atol=1e-5)
    assert torch.allclose(targets.weights.sum(dim=1), torch.ones(B))


def test_k_is_drawn_uniformly_from_the_eligible_layers_and_lambda_from_beta_2_2():
    def network(x, mix_at, mix_fn):  # the draws do not depend on the network: this one is free
        return torch.zeros(len(x), B)

    (x, y), rng, n = batch(size=4), torch.Generator().manual_seed(0), 600
    draws = [manifold_mixup(network, x, y, rng) for _ in range(n)]  # defaults: S = {0, 1, 2}, α = 2
    layers = [k for _, _, k in draws]
    counts = [layers.count(k) for k in range(4)]
    assert counts[3] == 0 and all(n / 3 - 60 < c < n / 3 + 60 for c in counts[:3]), counts  # ±5 sd
    lams = [float(targets.weights[0, 0]) for _, targets, _ in draws]
    assert stats.kstest(lams, stats.beta(2, 2).cdf).pvalue > 1e-3
    rng = torch.Generator().manual_seed(1)
    assert {manifold_mixup(network, x, y, rng, layers=(1, 3))[2] for _ in range(50)} == {1, 3}


def test_the_step_depends_on_its_seed_only():
    """The engine seeds ``step.rng``; the global torch RNG (data order, init) plays no part."""
    cfg = load_config(overrides={"method.name": "manifoldmix", "model.width": 0.125, "out_dir": "x"})
    x, y = batch(size=16)
    y = y % 4

    def one_step(seed: int, global_seed: int):
        torch.manual_seed(0)
        step = build_step(cfg, num_classes=4)
        torch.manual_seed(global_seed)
        step.rng = torch.Generator().manual_seed(seed)
        loss, _ = step(x, y)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in step.parameters()]

    (loss_a, grads_a), (loss_b, grads_b) = one_step(0, global_seed=1), one_step(0, global_seed=2)
    assert torch.equal(loss_a, loss_b) and all(torch.equal(a, b) for a, b in zip(grads_a, grads_b))
    assert not torch.equal(one_step(1, global_seed=1)[0], loss_a)


def test_the_step_loss_is_the_mixed_cross_entropy_of_the_mixed_forward():
    cfg = load_config(overrides={"method.name": "manifoldmix", "model.width": 0.125, "out_dir": "x"})
    torch.manual_seed(0)
    step = build_step(cfg, num_classes=B)
    reference = copy.deepcopy(step.classifier)
    x, y = batch()
    step.rng = torch.Generator().manual_seed(3)
    loss, parts = step(x, y)
    logits, targets, _ = manifold_mixup(reference, x, y, torch.Generator().manual_seed(3), layers=(0, 1, 2))
    assert torch.equal(loss, mixed_cross_entropy(logits, targets)) and set(parts) == {"loss_ce"}


# ------------------------------------------------------------------------------ the config


def test_registry_defaults_are_beta_2_2_and_the_input_and_first_two_stages():
    m = load_config(overrides={"method.name": "manifoldmix", "out_dir": "x"}).method
    assert m.mix_lambda == 2.0 and m.manifold_layers == [0, 1, 2]
    m = load_config(overrides=["method.name=manifoldmix", "method.manifold_layers=[3, 1]", "out_dir=x"]).method
    assert m.manifold_layers == [3, 1]


@pytest.mark.parametrize("value, allowed", [
    ("[0, 4]", "distinct layers from [0, 1, 2, 3]"),
    ("[]", "non-empty"),
    ("[1, 1]", "distinct"),
    ("2", "a list of int"),
    ("[one]", "expected int"),
])
def test_bad_manifold_layers_are_refused_naming_the_key(value, allowed):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["method.name=manifoldmix", f"method.manifold_layers={value}", "out_dir=x"])
    assert str(err.value).startswith("method.manifold_layers") and allowed in str(err.value), str(err.value)


# ------------------------------------------------------------------------------ end to end


def test_cli_trains_manifoldmix_on_digits_and_records_its_settings(tmp_path):
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "adautomix", "train", "method.name=manifoldmix", "data.name=digits",
         "model.width=0.125", "train.epochs=1", "data.limit_train=256", "data.limit_test=128",
         "train.batch_size=32", "train.threads=1", f"out_dir={out}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["epochs_done"] == 1 and summary["headline_head"] == "one"
    method = yaml.safe_load((out / "config.yaml").read_text())["method"]
    assert method["name"] == "manifoldmix" and method["mix_lambda"] == 2.0
    assert method["manifold_layers"] == [0, 1, 2]


def test_cli_refuses_a_bad_layer_with_exit_code_2_and_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "adautomix", "train", "method.name=manifoldmix",
         "method.manifold_layers=[5]", f"out_dir={tmp_path / 'run'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "method.manifold_layers=[5]" in lines[0], done.stderr
    assert list(tmp_path.iterdir()) == []
