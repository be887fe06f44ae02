"""Specifications of AdAutoMix (SPEC.md): generator, EMA teacher, the adversarial step."""
import json
import math
import subprocess
import sys

import pytest
import torch
import yaml

from adautomix.config import ConfigError, load_config
from adautomix.methods.adautomix import AdAutoMixStep
from adautomix.methods.generator import MixGenerator, load_openmixup_generator
from adautomix.methods.teacher import EMATeacher, scaled_schedule
from adautomix.models.cifar_resnet import build_classifier


def make_step(**kwargs) -> AdAutoMixStep:
    torch.manual_seed(0)
    classifier = build_classifier("resnet18", 0.125, 10, heads=("one", "mix"))
    generator = MixGenerator(classifier.backbone.stage3_channels, lam_concat=kwargs.pop("lam_concat", False))
    step = AdAutoMixStep(classifier, generator, **kwargs)
    step.rng = torch.Generator().manual_seed(1)
    return step


def batch(b: int = 8):
    g = torch.Generator().manual_seed(2)
    return torch.randn(b, 3, 32, 32, generator=g), torch.randint(0, 10, (b,), generator=g)


def grads_present(module) -> bool:
    return any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


# --------------------------------------------------------------------------------- generator
@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_masks_are_nonnegative_and_sum_to_one_per_pixel(n):
    gen = MixGenerator(32)
    feats = [torch.randn(4, 32, 8, 8) * 5 for _ in range(n)]
    masks = gen(feats, [1.0 / n] * n)
    assert masks.shape == (4, n, 32, 32)
    assert (masks >= 0).all()
    torch.testing.assert_close(masks.sum(dim=1), torch.ones(4, 32, 32))


def test_generator_parameter_count_does_not_depend_on_n():
    gen = MixGenerator(64)
    count = sum(p.numel() for p in gen.parameters())
    # q, k: 64 -> 32 (+bias), v: 64 -> 1 (+bias)
    assert count == 2 * (64 * 32 + 32) + (64 + 1)
    for n in range(2, 6):
        gen([torch.randn(2, 64, 8, 8) for _ in range(n)], [1.0 / n] * n)
        assert sum(p.numel() for p in gen.parameters()) == count


def test_lam_concat_makes_masks_depend_on_lambda_and_its_absence_does_not():
    torch.manual_seed(0)
    feats = [torch.randn(2, 16, 8, 8) for _ in range(3)]
    with_lam = MixGenerator(16, lam_concat=True)
    for conv in (with_lam.conv_q.conv, with_lam.conv_k.conv, with_lam.conv_v):
        torch.nn.init.normal_(conv.weight, 0, 0.5)  # large enough for λ to show
    a = with_lam(feats, [0.2, 0.3, 0.5])
    b = with_lam(feats, [0.6, 0.3, 0.1])
    assert not torch.allclose(a, b)
    without = MixGenerator(16, lam_concat=False)
    torch.testing.assert_close(without(feats, [0.2, 0.3, 0.5]), without(feats, [0.6, 0.3, 0.1]))


def test_openmixup_mix_block_weights_reproduce_masks_computed_by_hand():
    torch.manual_seed(3)
    c, inter = 8, 4
    w = {
        "mix_block.conv_q.conv.weight": torch.randn(inter, c, 1, 1),
        "mix_block.conv_q.conv.bias": torch.randn(inter),
        "mix_block.conv_k.conv.weight": torch.randn(inter, c, 1, 1),
        "mix_block.conv_k.conv.bias": torch.randn(inter),
        "mix_block.conv_v.weight": torch.randn(1, c, 1, 1),
        "mix_block.conv_v.bias": torch.randn(1),
        "backbone_q.stem.weight": torch.randn(3),  # other keys of a checkpoint are ignored
    }
    gen = load_openmixup_generator(MixGenerator(c, upsample="nearest"), {"state_dict": w})
    feats = [torch.randn(2, c, 4, 4) for _ in range(3)]

    def conv(z, name, relu):  # 1x1 conv by hand: B x C x HW -> B x C' x HW
        out = torch.einsum("oc,bcp->bop", w[f"mix_block.{name}.weight"][:, :, 0, 0], z.flatten(2))
        out = out + w[f"mix_block.{name}.bias"][None, :, None]
        return out.clamp(min=0) if relu else out

    q = [conv(f, "conv_q.conv", True) for f in feats]
    k = [conv(f, "conv_k.conv", True) for f in feats]
    v = [conv(f, "conv_v", False) for f in feats]
    maps = []
    for i in range(3):
        logits = sum(q[i].transpose(1, 2) @ k[j] for j in range(3) if j != i) / math.sqrt(inter)
        maps.append((logits.softmax(-1) @ v[i].transpose(1, 2)).view(2, 4, 4))
    expected = torch.stack(maps, 1).repeat_interleave(4, 2).repeat_interleave(4, 3).softmax(1)
    torch.testing.assert_close(gen(feats, [0.3, 0.3, 0.4]), expected)


def test_loading_a_checkpoint_without_mix_block_fails_clearly():
    with pytest.raises(KeyError, match="mix_block"):
        load_openmixup_generator(MixGenerator(8), {"backbone.x": torch.zeros(1)})


# --------------------------------------------------------------------------------- teacher
def test_teacher_starts_as_an_exact_copy_without_gradients_and_follows_the_ema_formula():
    student = torch.nn.Linear(4, 3)
    teacher = EMATeacher(student)
    for pt, ps in zip(teacher.parameters(), student.parameters()):
        assert torch.equal(pt, ps) and not pt.requires_grad
    before = [p.clone() for p in teacher.parameters()]
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    m = teacher.update(student, t=0, total=100)
    assert m == 0.999
    for pt, p0, ps in zip(teacher.parameters(), before, student.parameters()):
        torch.testing.assert_close(pt, m * p0 + (1 - m) * ps)


# --------------------------------------------------------------------------------- the step
def test_generator_loss_puts_gradient_on_the_generator_only():
    step = make_step()
    x, y = batch()
    _, loss_gen, _ = step.losses(x, y)
    loss_gen.backward()
    assert grads_present(step.generator)
    assert not grads_present(step.classifier)
    assert all(p.grad is None for p in step.teacher.parameters())


def test_classifier_branch_masks_carry_no_gradient():
    step = make_step(lam_margin=0.0)  # generated (not constant) masks in the classifier branch
    x, y = batch()
    loss_cls, _, _ = step.losses(x, y)
    loss_cls.backward()
    assert grads_present(step.classifier)
    assert not grads_present(step.generator)


def _generator_grad(step, iteration):
    step.zero_grad()
    step.rng = torch.Generator().manual_seed(5)
    step.iteration = iteration
    x, y = batch()
    _, loss_gen, parts = step.losses(x, y)
    loss_gen.backward()
    return torch.cat([p.grad.flatten() for p in step.generator.parameters()]), parts


def test_adversarial_step_pushes_the_generator_cross_entropy_the_other_way():
    step = make_step(use_cos=False, beta=0.3)
    g_adv, parts_adv = _generator_grad(step, iteration=0)
    g_coop, parts_coop = _generator_grad(step, iteration=1)
    assert parts_adv["adversarial"] == 1 and parts_coop["adversarial"] == 0
    torch.testing.assert_close(g_adv, -0.3 * g_coop)


def test_first_step_is_adversarial_and_steps_alternate():
    step = make_step()
    x, y = batch()
    flags = []
    for it in range(4):
        step.iteration = it
        flags.append(float(step(x, y)[1]["adversarial"]))
    assert flags == [1.0, 0.0, 1.0, 0.0]
    step = make_step(adversarial=False)
    step.iteration = 0
    assert float(step(x, y)[1]["adversarial"]) == 0.0


def test_teacher_runs_once_on_the_clean_batch_per_step():
    step = make_step()
    x, y = batch()
    clean_calls, all_calls = [], []

    def hook(module, inputs, output):
        all_calls.append(1)
        if inputs[0].data_ptr() == x.data_ptr():
            clean_calls.append(1)

    step.teacher.model.backbone.register_forward_hook(hook)
    step(x, y)
    assert len(clean_calls) == 1
    assert len(all_calls) == 2  # clean batch + the generator's mixed batch


def test_ema_update_after_each_step_moves_the_teacher_toward_the_classifier():
    step = make_step()
    x, y = batch()
    opt = torch.optim.SGD([p for p in step.parameters() if p.requires_grad], lr=0.1)
    loss, _ = step(x, y)
    loss.backward()
    opt.step()
    before = [p.clone() for p in step.teacher.parameters()]
    m = step.after_step(0, 10)["momentum"]
    for pt, p0, pq in zip(step.teacher.parameters(), before, step.classifier.parameters()):
        torch.testing.assert_close(pt, m * p0 + (1 - m) * pq)


def test_classifier_loss_combines_its_terms_with_alpha():
    step = make_step(alpha=0.3)
    x, y = batch()
    loss_cls, _, parts = step.losses(x, y)
    expected = parts["loss_amce"] + 0.7 * parts["loss_ce"] + 0.3 * parts["loss_mce"]
    torch.testing.assert_close(loss_cls.detach(), expected)


def test_two_image_mixing_uses_amce_plus_ce_without_mce():
    step = make_step(n_mix=2)
    x, y = batch()
    loss_cls, _, parts = step.losses(x, y)
    assert "loss_mce" not in parts
    torch.testing.assert_close(loss_cls.detach(), parts["loss_amce"] + parts["loss_ce"])


@pytest.mark.parametrize("toggle,absent", [("use_ce", "loss_ce"), ("use_mce", "loss_mce"), ("use_cos", "cos")])
def test_each_loss_toggle_removes_exactly_its_term(toggle, absent):
    x, y = batch()
    full = set(make_step()(x, y)[1])
    without = set(make_step(**{toggle: False})(x, y)[1])
    assert full - without == {absent}


def test_without_ema_the_generator_plays_against_the_frozen_classifier():
    step = make_step(use_ema=False)
    assert step.teacher is None and step.headline == "one_q"
    assert set(step.eval_heads()) == {"one_q", "mix_q"}
    x, y = batch()
    _, loss_gen, _ = step.losses(x, y)
    loss_gen.backward()
    assert grads_present(step.generator)
    assert not grads_present(step.classifier)
    assert step.after_step(0, 10) == {}


def test_frozen_classifier_passes_do_not_touch_its_batchnorm_statistics():
    step = make_step(use_ema=False, use_ce=False, use_mce=False)
    x, y = batch()
    before = [b.clone() for b in step.classifier.buffers()]
    with torch.no_grad():
        step._frozen_backbone(x)
    assert all(torch.equal(a, b) for a, b in zip(before, step.classifier.buffers()))


def test_lam_margin_switches_the_classifier_branch_to_plain_mixup():
    x, y = batch()
    calls = []
    for margin, expected_calls in [(0.49, 1), (0.0, 2)]:
        step = make_step(n_mix=2, lam_margin=margin)
        calls.clear()
        step.generator.register_forward_hook(lambda *a: calls.append(1))
        for it in range(3):
            step.iteration = it
            step(x, y)
        # margin 0.49: λ_1 is almost surely outside [0.49, 0.51] -> only the generator branch
        assert len(calls) == 3 * expected_calls


def test_random_n_draws_n_between_two_and_n_mix():
    step = make_step(n_mix=4, random_n=True)
    x, y = batch()
    seen = {int(step(x, y)[1]["n_mix"]) for _ in range(12)}
    assert seen <= {2, 3, 4} and len(seen) > 1


def test_mixing_ratios_sum_to_one_and_n2_branches_draw_their_own():
    step = make_step(n_mix=3)
    lam_g, lam_c, perms_g, perms_c = step.draw(8, torch.device("cpu"))
    torch.testing.assert_close(lam_g.sum(), torch.tensor(1.0))
    assert lam_g is lam_c and len(perms_g) == 3
    step = make_step(n_mix=2)
    lam_g, lam_c, perms_g, perms_c = step.draw(8, torch.device("cpu"))
    assert not torch.equal(lam_g, lam_c)
    assert torch.equal(perms_g[0], torch.arange(8)) and torch.equal(perms_c[0], torch.arange(8))


# --------------------------------------------------------------------------------- config + CLI
@pytest.mark.parametrize("override", ["method.n_mix=1", "method.beta=1.5", "method.alpha=-0.1",
                                      "method.upsample=bicubic", "method.lam_margin=0.6"])
def test_invalid_adautomix_settings_are_config_errors(override):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=key):
        load_config(overrides=["method.name=adautomix", override])


def test_adautomix_trains_on_digits_from_the_cli_with_a_teacher_that_follows(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "adautomix", "train", "method.name=adautomix", "data.name=digits",
           "model.width=0.125", "train.epochs=6", "train.batch_size=32", "train.threads=2",
           f"out_dir={out}"]
    run = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=900)
    summary = json.loads((out / "metrics.json").read_text())
    assert set(summary["heads"]) == {"one_k", "mix_k", "one_q", "mix_q"}
    assert summary["top1"] == summary["heads"]["one_k"]
    # 6 epochs x 44 iterations: the EMA schedule is scaled to the run, resolved into config.yaml
    # and printed; the teacher (the headline head) then learns as the classifier does
    start, end = scaled_schedule(6 * 44)
    method = yaml.safe_load((out / "config.yaml").read_text())["method"]
    assert (method["momentum"], method["momentum_end"]) == pytest.approx((start, end))
    assert "EMA teacher momentum" in run.stdout
    # measured (this command, 2-core CPU): top1 59.4 with one_q 61.9; chance is 10, and with the
    # published fixed momentum the teacher stayed near chance while one_q rose
    assert summary["top1"] > 50
    assert summary["top1"] > summary["heads"]["one_q"] - 10, "the teacher lags the classifier"
    assert (out / "pictures" / "mixed_epoch0006.png").is_file()
