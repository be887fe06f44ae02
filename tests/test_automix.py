"""AutoMix (Liu et al., ECCV 2022) against its published implementation, formula by formula.

The published facts (OpenMixup's ``AutoMixup`` and ``PixelMixBlock`` with the CIFAR-100 ResNet-18
config) are listed, with where each was read, in the docstrings of adautomix/methods/automix.py
and mix_block.py. Every expected value here is computed from them with plain loops over samples,
sources and pixels, in double precision, on copies of the models taken before the step; the step
under test supplies only its random draws (λ, π), recorded as it runs.
"""
from __future__ import annotations

import copy
import json
import math
import subprocess
import sys

import pytest
import torch
import yaml

from adautomix.config import ConfigError, load_config
from adautomix.engine import build_step, resolve_schedules
from adautomix.methods.automix import AutoMixStep
from adautomix.methods.generator import load_openmixup_generator
from adautomix.methods.mix_block import MixBlock, mask_loss
from adautomix.methods.teacher import scaled_schedule
from adautomix.models.cifar_resnet import build_classifier

from step_recorder import Recorder

B, K, SIZE = 6, 5, 16


def make_step(seed: int = 0, lam_concat: bool = False, **kwargs) -> AutoMixStep:
    torch.manual_seed(seed)
    classifier = build_classifier("resnet18", 0.125, K, heads=("one", "mix"))
    with torch.no_grad():  # zero_init_residual leaves γ = 0: give every block a non-trivial path
        for p in classifier.parameters():
            p.add_(0.05 * torch.randn_like(p))
    block = MixBlock(classifier.backbone.stage3_channels, lam_concat=lam_concat)
    for conv in (block.query.conv, block.value):
        torch.nn.init.normal_(conv.weight, 0, 0.2)  # masks far from uniform
    step = AutoMixStep(classifier, block, **kwargs)
    if step.teacher is not None:  # a teacher some steps behind the classifier, as in training
        with torch.no_grad():
            for p in step.teacher.parameters():
                p.add_(0.02 * torch.randn_like(p))
    step.rng = torch.Generator().manual_seed(seed + 1)
    return step.train()


def batch(seed: int = 3, b: int = B):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, SIZE, SIZE, generator=g), torch.randint(0, K, (b,), generator=g)


# ------------------------------------------------------------------------ formulas by hand
def mix_block_by_hand(block: MixBlock, z: torch.Tensor, z_p: torch.Tensor, lam: float) -> torch.Tensor:
    """PixelMixBlock, pixel by pixel: q = W_q z, k = W_q z_π, v = W_v z_π (λ, 1−λ channels with
    lam_concat), P = softmax(q kᵀ/√d), m = σ(nearest-upsampled P v), masks (1 − m, m)."""
    w_q, b_q = block.query.conv.weight.detach()[:, :, 0, 0].double(), block.query.conv.bias.detach().double()
    w_v, b_v = block.value.weight.detach()[0, :, 0, 0].double(), float(block.value.bias[0].detach())
    n, c, h, w = z.shape
    d, s = w_q.shape[0], int(block.scale_factor)
    out = torch.zeros(n, 2, h * s, w * s, dtype=torch.float64)
    for b in range(n):
        zs, zp = z[b].double().reshape(c, h * w), z_p[b].double().reshape(c, h * w)
        if block.lam_concat:
            zs = torch.cat([zs, torch.full((1, h * w), lam, dtype=torch.float64)])
            zp = torch.cat([zp, torch.full((1, h * w), 1 - lam, dtype=torch.float64)])
        q = [w_q @ zs[:, p] + b_q for p in range(h * w)]
        k = [w_q @ zp[:, p] + b_q for p in range(h * w)]
        v = [float(w_v @ zp[:, p]) + b_v for p in range(h * w)]
        m = []
        for p in range(h * w):
            logits = [float(q[p] @ k[r]) / math.sqrt(d) for r in range(h * w)]
            top = max(logits)
            weights = [math.exp(a - top) for a in logits]
            m.append(sum(wr * vr for wr, vr in zip(weights, v)) / sum(weights))
        for i in range(h * s):
            for j in range(w * s):
                partner = 1 / (1 + math.exp(-m[(i // s) * w + j // s]))
                out[b, 0, i, j], out[b, 1, i, j] = 1 - partner, partner
    return out


def ce(logits_row: torch.Tensor, label: int) -> float:
    row = logits_row.double()
    return float(torch.logsumexp(row, 0) - row[label])


def mixed_ce(logits, y, perm, lam: float) -> float:
    """(1/B) Σ_b [λ·CE(logits[b], y[b]) + (1−λ)·CE(logits[b], y[π(b)])] (ClsMixupHead)."""
    return sum(lam * ce(logits[b], int(y[b])) + (1 - lam) * ce(logits[b], int(y[perm[b]]))
               for b in range(len(y))) / len(y)


def mix_pair(x, masks, perm) -> torch.Tensor:
    """x̃[b] = M[b, 0] ⊙ x[b] + M[b, 1] ⊙ x[π(b)]; ``masks[b][i]`` a mask or a scalar."""
    out = torch.zeros_like(x, dtype=torch.float64)
    for b in range(len(x)):
        out[b] = masks[b][0] * x[b].double() + masks[b][1] * x[perm[b]].double()
    return out.float()


def mask_loss_by_hand(masks: torch.Tensor, lam: float, margin: float) -> float:
    """max(|1 − Σ_{b,pixels} M[b, 1] / (B·H·W) − λ| − ε, 0) (PixelMixBlock.mask_loss, "L1")."""
    n, _, h, w = masks.shape
    total = sum(float(masks[b, 1, i, j]) for b in range(n) for i in range(h) for j in range(w))
    return max(abs(1 - total / (n * h * w) - lam) - margin, 0.0)


def published_plain_mix(lam: float, margin: float) -> bool:
    """``if self.lam_margin >= lam_bb or self.lam_margin >= 1-lam_bb``: plain mixup."""
    return margin >= lam or margin >= 1 - lam


# ------------------------------------------------------------------------ the Mix Block
@pytest.mark.parametrize("lam_concat", [False, True])
def test_mix_block_with_openmixup_weights_equals_the_published_cross_attention(lam_concat):
    torch.manual_seed(3)
    c, d = 8, 4
    c_in = c + int(lam_concat)
    w = {"mix_block.query.conv.weight": torch.randn(d, c_in, 1, 1) * 0.5,
         "mix_block.query.conv.bias": torch.randn(d),
         "mix_block.value.weight": torch.randn(1, c_in, 1, 1),
         "mix_block.value.bias": torch.randn(1),
         "backbone_k.conv1.weight": torch.randn(3)}  # other checkpoint keys are ignored
    block = load_openmixup_generator(MixBlock(c, lam_concat=lam_concat), {"state_dict": w})
    z, z_p = torch.randn(3, c, 2, 2), torch.randn(3, c, 2, 2)
    masks = block([z, z_p], [0.3, 0.7])
    torch.testing.assert_close(masks.double(), mix_block_by_hand(block, z, z_p, 0.3), rtol=0, atol=1e-6)


def test_masks_are_two_channels_in_0_1_summing_to_one_at_the_image_size():
    block = MixBlock(32)
    torch.nn.init.normal_(block.value.weight, 0, 1.0)
    masks = block([torch.randn(4, 32, 8, 8) * 5, torch.randn(4, 32, 8, 8) * 5], [0.4, 0.6])
    assert masks.shape == (4, 2, 32, 32)
    assert ((masks > 0) & (masks < 1)).all()
    torch.testing.assert_close(masks.sum(dim=1), torch.ones(4, 32, 32))
    # nearest upsampling (published): constant on each 4 x 4 block of pixels
    torch.testing.assert_close(masks, masks[..., ::4, ::4].repeat_interleave(4, 2).repeat_interleave(4, 3))
    assert masks[:, 1].std() > 0.01  # and not uniform
    with pytest.raises(ValueError, match="2 samples"):
        block([torch.randn(1, 32, 8, 8)] * 3, [0.3, 0.3, 0.4])


def test_lam_concat_conditions_the_masks_on_lambda_and_its_absence_does_not():
    torch.manual_seed(0)
    feats = [torch.randn(2, 16, 8, 8), torch.randn(2, 16, 8, 8)]
    with_lam = MixBlock(16, lam_concat=True)
    for conv in (with_lam.query.conv, with_lam.value):
        torch.nn.init.normal_(conv.weight, 0, 0.5)
    assert not torch.allclose(with_lam(feats, [0.2, 0.8]), with_lam(feats, [0.7, 0.3]))
    without = MixBlock(16)
    torch.testing.assert_close(without(feats, [0.2, 0.8]), without(feats, [0.7, 0.3]))


# ------------------------------------------------------------------------ the mask loss
@pytest.mark.parametrize("partner_mean,lam,inside", [
    (0.5, 0.5, True), (0.5, 0.45, True), (0.5, 0.55, True), (0.3, 0.75, True), (0.7, 0.21, True),
    (0.5, 0.3, False), (0.5, 0.7, False), (0.2, 0.5, False), (0.9, 0.5, False), (0.1, 0.05, False),
])
def test_mask_loss_is_zero_inside_the_margin_and_positive_outside(partner_mean, lam, inside):
    torch.manual_seed(1)
    # a mask whose mean is partner_mean, varying over samples and pixels
    m = (partner_mean + 0.1 * torch.randn(4, 1, 8, 8)).clamp(0, 1)
    m = m - m.mean() + partner_mean
    masks = torch.cat([1 - m, m], dim=1)
    loss = float(mask_loss(masks, lam, margin=0.1))
    assert loss == pytest.approx(mask_loss_by_hand(masks, lam, 0.1), abs=1e-6)
    if inside:  # |mean of x's mask − λ| <= ε
        assert loss == 0.0
    else:
        assert loss > 0.05 and loss == pytest.approx(abs(1 - partner_mean - lam) - 0.1, abs=1e-5)


def test_mask_loss_averages_over_the_whole_batch_not_per_sample():
    # sample 0's partner mask is all 0.1, sample 1's all 0.9: each alone is 0.4 away from λ = 0.5,
    # their batch mean is exactly 0.5 -> no loss (the published mean is over B·H·W)
    m = torch.cat([torch.full((1, 1, 4, 4), 0.1), torch.full((1, 1, 4, 4), 0.9)])
    assert float(mask_loss(torch.cat([1 - m, m], 1), 0.5, margin=0.1)) == pytest.approx(0.0, abs=1e-6)


# ------------------------------------------------------------------------ the step
def expected_losses(step: AutoMixStep, q, k, block, x, y, rec: Recorder) -> dict[str, float]:
    lam_g, lam_c, perms_g, perms_c = rec.draws
    lam_mb, lam_bb = float(lam_g[0]), float(lam_c[0])
    assert float(lam_g[1]) == pytest.approx(1 - lam_mb) and float(lam_c[1]) == pytest.approx(1 - lam_bb)
    assert torch.equal(perms_g[0], torch.arange(B)) and torch.equal(perms_c[0], torch.arange(B))
    pi_mb, pi_bb = perms_g[1], perms_c[1]
    plain = published_plain_mix(lam_bb, step.lam_margin)
    assert len(rec.masks) == (1 if plain else 2)  # the Mix Block ran for the classifier only when used
    with torch.no_grad():
        feat = k.backbone(x)[0]  # the momentum encoder's stage 3 on the clean batch
        masks_mb = mix_block_by_hand(block, feat, feat[pi_mb], lam_mb)
        x_mb = mix_pair(x, masks_mb, pi_mb)
        masks_bb = [[lam_bb, 1 - lam_bb]] * B if plain else mix_block_by_hand(block, feat, feat[pi_bb], lam_bb)
        x_bb = mix_pair(x, masks_bb, pi_bb)
        logits_one = q(x, head="one")
        out = {"loss_one_q": sum(ce(logits_one[b], int(y[b])) for b in range(B)) / B,
               "loss_mix_q": mixed_ce(q(x_bb, head="mix"), y, pi_bb, lam_bb),
               "loss_mix_k": mixed_ce(k(x_mb, head="mix"), y, pi_mb, lam_mb),
               "loss_mask": mask_loss_by_hand(masks_mb, lam_mb, step.mask_loss_margin)}
    out["loss_cls"] = out["loss_one_q"] + out["loss_mix_q"]
    out["loss_gen"] = out["loss_mix_k"] + step.mask_loss_weight * out["loss_mask"]
    return out


CASES = [{}, {"lam_margin": 0.0}, {"lam_margin": 0.49}, {"use_ema": False},
         {"mask_loss_weight": 0.5, "mask_loss_margin": 0.0}, {"lam_concat": True, "lam_margin": 0.0}]


@pytest.mark.parametrize("cfg", CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "defaults")
def test_every_loss_term_equals_its_formula(cfg):
    step = make_step(**cfg)
    rec = Recorder(step)
    q = copy.deepcopy(step.classifier)
    k = copy.deepcopy(step.teacher.model if step.teacher is not None else step.classifier)
    block = copy.deepcopy(step.generator)
    x, y = batch()
    loss_cls, loss_gen, parts = step.losses(x, y)
    expected = expected_losses(step, q, k, block, x, y, rec)
    assert float(loss_cls.detach()) == pytest.approx(expected["loss_cls"], abs=1e-5)
    assert float(loss_gen.detach()) == pytest.approx(expected["loss_gen"], abs=1e-5)
    # the loss terms (the parts also carry the mask measures: tests/test_mask_measures.py)
    losses = {key: float(v) for key, v in parts.items() if not key.startswith("mask_")}
    assert losses == pytest.approx(expected, abs=1e-5)
    if cfg.get("mask_loss_margin") == 0.0:
        assert expected["loss_mask"] > 0  # the mask term is really exercised


def test_published_defaults_of_the_step():
    step = AutoMixStep(build_classifier("resnet18", 0.125, K, heads=("one", "mix")), MixBlock(32))
    assert (step.mix_lambda, step.mask_loss_weight, step.mask_loss_margin, step.lam_margin) == (2.0, 0.1, 0.1, 0.08)
    assert step.generator.upsample == "nearest" and not step.generator.lam_concat
    assert (step.teacher.start, step.teacher.end, step.teacher.warmup) == (0.999, 0.999999, 0.1)
    assert step.headline == "one_k" and set(step.eval_heads()) == {"one_k", "mix_k", "one_q", "mix_q"}


def test_each_branch_draws_its_own_lambda_from_beta_2_2_and_its_own_partners():
    step = make_step()
    lams_g, lams_c = [], []
    for _ in range(4000):
        lam_g, lam_c, perms_g, perms_c = step.draw(B, torch.device("cpu"))
        lams_g.append(float(lam_g[0]))
        lams_c.append(float(lam_c[0]))
    for lams in (torch.tensor(lams_g), torch.tensor(lams_c)):
        # Beta(2, 2): mean 1/2, variance αβ/((α+β)²(α+β+1)) = 1/20
        assert float(lams.mean()) == pytest.approx(0.5, abs=0.015)
        assert float(lams.var()) == pytest.approx(0.05, abs=0.004)
    assert torch.corrcoef(torch.tensor([lams_g, lams_c]))[0, 1].abs() < 0.05
    partners = [step.draw(B, torch.device("cpu"))[2:] for _ in range(20)]
    assert any(not torch.equal(perms_g[1], perms_c[1]) for perms_g, perms_c in partners)


@pytest.mark.parametrize("lam,plain", [(0.1, True), (0.25, True), (0.5, False), (0.75, True), (0.9, True)])
def test_lam_margin_degenerates_the_classifier_branch_to_plain_mixup_near_0_and_1(lam, plain):
    step = make_step(lam_margin=0.25)  # 0.25 and 0.75 are exact floats: the bounds are inclusive
    perm = torch.tensor([3, 0, 5, 1, 2, 4])
    lam_t = torch.tensor([lam, 1 - lam])
    step.draw = lambda *a: (torch.tensor([0.5, 0.5]), lam_t, [torch.arange(B), perm], [torch.arange(B), perm])
    inputs = []
    step.classifier.register_forward_pre_hook(lambda m, args: inputs.append(args[0].detach().clone()))
    block_calls = []
    step.generator.register_forward_hook(lambda *a: block_calls.append(1))
    x, y = batch()
    step.losses(x, y)
    x_bb = inputs[1]  # the classifier's passes: clean, then its mixes
    linear = torch.stack([lam * x[b] + (1 - lam) * x[perm[b]] for b in range(B)])
    assert len(block_calls) == (1 if plain else 2)
    if plain:
        torch.testing.assert_close(x_bb, linear)
    else:
        assert (x_bb - linear).abs().max() > 1e-3


def test_the_mix_block_learns_only_from_its_losses_and_the_classifier_only_from_its_own():
    step = make_step(lam_margin=0.0)  # generated (not constant) masks in the classifier branch
    x, y = batch()
    loss_cls, loss_gen, _ = step.losses(x, y)
    loss_cls.backward(retain_graph=True)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in step.classifier.parameters()
               if p.requires_grad and p.dim() > 1)  # every conv and head weight
    assert all(p.grad is None for p in step.generator.parameters())
    step.classifier.zero_grad(set_to_none=True)
    loss_gen.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in step.generator.parameters())
    assert all(p.grad is None for p in step.classifier.parameters())
    assert all(p.grad is None and not p.requires_grad for p in step.teacher.parameters())


def test_mix_k_reaches_the_mix_block_through_the_frozen_momentum_encoder():
    step = make_step(mask_loss_weight=0.0)  # L_gen = L_mix_k alone
    _, loss_gen, parts = step.losses(*batch())
    loss_gen.backward()
    assert float(loss_gen) == float(parts["loss_mix_k"])
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in step.generator.parameters())


def test_mask_loss_gradient_reaches_the_mix_block_outside_the_margin_only():
    torch.manual_seed(0)
    feats = [torch.randn(2, 16, 8, 8), torch.randn(2, 16, 8, 8)]
    for lam, moves in [(0.5, False), (0.9, True)]:  # masks start near 0.5 everywhere
        block = MixBlock(16)
        mask_loss(block(feats, [lam, 1 - lam]), lam, margin=0.1).backward()
        grads = [p.grad.abs().sum() for p in block.parameters()]
        assert all(g > 0 for g in grads) if moves else all(g == 0 for g in grads)


def test_teacher_batchnorm_statistics_follow_the_published_passes():
    """Published passes per step: k on the clean batch (the Mix Block's features), k on x̃_mb;
    q on the clean batch, q on x̃_bb. Nothing else runs in train mode, so nothing is replayed."""
    step = make_step(lam_margin=0.0)
    q_ref, k_ref = copy.deepcopy(step.classifier), copy.deepcopy(step.teacher.model)
    opt = torch.optim.SGD([p for p in step.parameters() if p.requires_grad], lr=0.05)
    for it in range(3):
        rec = Recorder(step)
        x, y = batch(seed=10 + it)
        loss, _ = step(x, y)
        _, _, perms_g, perms_c = rec.draws
        with torch.no_grad():
            k_ref(x)
            k_ref(mix_pair(x, rec.masks[0], perms_g[1]))
            q_ref(x)
            q_ref(mix_pair(x, rec.masks[1], perms_c[1]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        step.after_step(it, 3)
        with torch.no_grad():  # parameters move by SGD and EMA; the references follow them
            for ref, real in ((q_ref, step.classifier), (k_ref, step.teacher.model)):
                for p_ref, p in zip(ref.parameters(), real.parameters()):
                    p_ref.copy_(p)
    for ref, real in ((q_ref, step.classifier), (k_ref, step.teacher.model)):
        expected = {n: t for n, t in ref.named_buffers() if "running" in n or "num_batches" in n}
        got = {n: t for n, t in real.named_buffers() if "running" in n or "num_batches" in n}
        assert expected.keys() == got.keys() and len(got) > 20
        for name in expected:
            torch.testing.assert_close(got[name], expected[name], rtol=1e-6, atol=1e-6, msg=name)
    assert int(step.teacher.model.backbone.stem[1].num_batches_tracked) == 2 * 3  # two passes a step


def test_ema_update_moves_the_teacher_by_the_published_formula():
    step = make_step()
    x, y = batch()
    opt = torch.optim.SGD([p for p in step.parameters() if p.requires_grad], lr=0.1)
    step(x, y)[0].backward()
    opt.step()
    before = [p.clone() for p in step.teacher.parameters()]
    m = step.after_step(0, 10)["momentum"]
    assert m == 0.999
    for pt, p0, pq in zip(step.teacher.parameters(), before, step.classifier.parameters()):
        torch.testing.assert_close(pt, m * p0 + (1 - m) * pq)


# ------------------------------------------------------------------------ config, CLI, Ray Train
def test_method_defaults_come_from_the_registry_and_explicit_values_win():
    m = load_config(overrides=["method.name=automix"]).method
    assert (m.mix_lambda, m.lam_margin, m.upsample, m.mask_loss_weight, m.mask_loss_margin) == \
        (2.0, 0.08, "nearest", 0.1, 0.1)
    m = load_config(overrides=["method.name=adautomix"]).method
    assert (m.mix_lambda, m.lam_margin, m.upsample) == (1.0, 0.03, "bilinear")
    m = load_config(overrides=["method.name=automix", "method.lam_margin=0.2", "method.upsample=bilinear"]).method
    assert (m.lam_margin, m.upsample) == (0.2, "bilinear")
    cfg = load_config(overrides=["method.name=automix", "model.width=0.125"])
    step = build_step(cfg, 10)
    assert step.lam_margin == 0.08 and step.generator.upsample == "nearest" and step.mix_lambda == 2.0


@pytest.mark.parametrize("override", ["method.mask_loss_weight=-0.1", "method.mask_loss_margin=1.5",
                                      "method.lam_margin=0.5", "method.upsample=bicubic"])
def test_invalid_automix_settings_are_config_errors(override):
    with pytest.raises(ConfigError, match=override.split("=")[0]):
        load_config(overrides=["method.name=automix", override])


def test_the_ema_schedule_is_resolved_for_automix_as_for_adautomix():
    for name in ("automix", "adautomix"):
        cfg = load_config(overrides=[f"method.name={name}"])
        resolved, notes = resolve_schedules(cfg, 500)
        assert notes and (resolved.method.momentum, resolved.method.momentum_end) == scaled_schedule(500)


def test_resolving_the_schedule_returns_a_new_config_and_leaves_the_validated_one_as_it_was():
    cfg = load_config(overrides=["method.name=adautomix", "method.momentum=0.99"])
    resolved, _ = resolve_schedules(cfg, 500)
    assert (cfg.method.momentum, cfg.method.momentum_end) == (0.99, None)
    assert (resolved.method.momentum, resolved.method.momentum_end) == (0.99, max(0.99, scaled_schedule(500)[1]))
    assert resolved.train == cfg.train and resolved is not cfg


def test_automix_trains_on_digits_from_the_cli(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "adautomix", "train", "method.name=automix", "data.name=digits",
           "model.width=0.125", "train.epochs=2", "data.limit_train=256", "data.limit_test=128",
           "train.batch_size=32", "train.threads=1", f"out_dir={out}"]
    run = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=900)
    summary = json.loads((out / "metrics.json").read_text())
    assert set(summary["heads"]) == {"one_k", "mix_k", "one_q", "mix_q"}
    assert summary["top1"] == summary["heads"]["one_k"] and summary["epochs_done"] == 2
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for key in ("loss_one_q", "loss_mix_q", "loss_mix_k", "loss_mask", "momentum"):
        assert all(math.isfinite(r[key]) for r in records), key
    method = yaml.safe_load((out / "config.yaml").read_text())["method"]
    assert (method["mix_lambda"], method["lam_margin"], method["upsample"]) == (2.0, 0.08, "nearest")
    assert (method["momentum"], method["momentum_end"]) == pytest.approx(scaled_schedule(2 * 8))
    assert "EMA teacher momentum" in run.stdout
    assert (out / "pictures" / "mixed_epoch0002.png").is_file()
