"""Every default the docs or SPEC.md state, one row each with its source, so that a changed
default fails a test named after it.

A row is ``(key, value, source)``; the source is a line of SPEC.md (/work/shared/SPEC.md at the
time of writing), a docs section, a paper or the published config the value comes from. The
config rows are checked on the resolved config of a bare ``adautomix train`` (``load_config``),
the method rows on the config resolved for that method (the registry fills them), the EMA rows
on ``teacher.scaled_schedule`` / ``ema_momentum`` / ``engine.resolve_schedules``, the preset
rows on ``load_config(preset=...)``. The values are written here by hand from the sources, never
read from the code under test.
"""
from __future__ import annotations

import math

import pytest
import torch

from adautomix.config import Config, load_config
from adautomix.engine import resolve_schedules
from adautomix.methods.generator import MixGenerator
from adautomix.methods.registry import METHODS
from adautomix.methods.teacher import ema_momentum, scaled_schedule
from adautomix.models.cifar_resnet import build_classifier

DOCS_KEYS = "docs/training.md, the main keys of `adautomix train`"
DOCS_ADA = "docs/adautomix.md, key table"
DOCS_AUTO = "docs/automix.md, key table"
DOCS_PUZZLE = "docs/methods.md, PuzzleMix key table"
DOCS_METHODS = "docs/methods.md, the methods table"
DOCS_EVAL = "docs/evaluation.md, key table"
DOCS_GPU = "docs/gpu.md"
DOCS_RAY = "docs/ray-train.md"
OPENMIXUP_BETA = "OpenMixup CIFAR-100 ResNet-18 benchmark (docs/en/mixup_benchmarks/Mixup_cifar.md); docs/methods.md"

CONFIG_DEFAULTS = [
    ("data.name", "digits", DOCS_KEYS),
    ("data.image_size", None, DOCS_KEYS + " (the data set's)"),
    ("model.arch", "resnet18", DOCS_KEYS),
    ("model.stem", "auto", DOCS_KEYS),
    ("model.width", 1.0, DOCS_KEYS),
    ("model.init", None, DOCS_KEYS),
    # SPEC.md:16-21: OpenMixup's value for published-length runs; off for short ones (issue 17 §1)
    ("model.zero_init_residual", "auto", DOCS_ADA + ", Zero-initialised residual branches; SPEC.md:16-21"),
    ("method.name", "vanilla", DOCS_KEYS),
    ("method.n_mix", 3, "SPEC.md:33 (default N=3)"),
    ("method.random_n", False, "SPEC.md:33; " + DOCS_ADA),
    ("method.alpha", 0.5, "SPEC.md:64 (α default 0.5)"),
    ("method.beta", 0.3, "SPEC.md:82 (β default 0.3)"),
    ("method.use_ce", True, "SPEC.md:61-64 (the full L_cls); " + DOCS_ADA),
    ("method.use_mce", True, "SPEC.md:61-64; " + DOCS_ADA),
    ("method.use_cos", True, "SPEC.md:71-73; " + DOCS_ADA),
    ("method.use_ema", True, "SPEC.md:22-23; " + DOCS_ADA),
    ("method.adversarial", True, "SPEC.md:80-82; " + DOCS_ADA),
    ("method.lam_concat", False, "SPEC.md:43 (published CIFAR configs switch it off)"),
    ("method.lam_margin_rule", "authors", "SPEC.md:54-58 (the authors' repository's rule)"),
    ("method.ema_schedule", "scaled", DOCS_ADA + ", EMA schedule"),
    ("method.momentum", None, DOCS_ADA + " (from ema_schedule)"),
    ("method.momentum_end", None, DOCS_ADA + " (from ema_schedule)"),
    ("method.momentum_warmup", 0.1, "SPEC.md:87 (the first 10% of iterations)"),
    ("method.vis_every", 0, DOCS_ADA),
    ("method.block_num_min", 2, DOCS_PUZZLE),
    ("method.block_num_max", 16, DOCS_PUZZLE),
    ("method.mix_levels", 3, DOCS_PUZZLE),
    ("method.label_smoothness", 1.2, DOCS_PUZZLE),
    ("method.data_smoothness", 0.5, DOCS_PUZZLE),
    ("method.prior_weight", 0.2, DOCS_PUZZLE),
    ("method.neigh_size", 4, DOCS_PUZZLE),
    ("method.transport", True, DOCS_PUZZLE),
    ("method.transport_weight", 0.8, DOCS_PUZZLE),
    ("method.transport_size", 4, DOCS_PUZZLE),
    ("method.transport_solver", "paper", DOCS_PUZZLE),
    ("method.manifold_layers", [0, 1, 2], DOCS_METHODS + " (Verma et al.'s CIFAR setting)"),
    ("method.fmix_decay_power", 3.0, DOCS_METHODS),
    ("method.resizemix_scale_min", 0.1, DOCS_METHODS),
    ("method.resizemix_scale_max", 0.8, DOCS_METHODS),
    ("method.resizemix_interpolation", "nearest", DOCS_METHODS),
    ("method.saliencymix_box", "batch", DOCS_METHODS),
    ("method.gridmix_holes_min", 2, DOCS_METHODS),
    ("method.gridmix_holes_max", 6, DOCS_METHODS),
    ("method.gridmix_area_min", 0.5, DOCS_METHODS),
    ("method.gridmix_area_max", 1.0, DOCS_METHODS),
    ("method.smoothmix_sigma_min", 0.25, DOCS_METHODS),
    ("method.smoothmix_sigma_max", 0.5, DOCS_METHODS),
    ("method.mask_loss_weight", 0.1, DOCS_AUTO + " (config mask_loss=0.1)"),
    ("method.mask_loss_margin", 0.1, DOCS_AUTO + " (config mask_loss_margin=0.1)"),
    ("train.epochs", 10, DOCS_KEYS),
    ("train.batch_size", 100, DOCS_KEYS + "; SPEC.md:115 (batch 100)"),
    ("train.optimizer", "sgd", "SPEC.md:114-115 (SGD)"),
    ("train.lr", 0.1, "SPEC.md:115 (lr 0.1)"),
    ("train.momentum", 0.9, "SPEC.md:115-116 (momentum 0.9)"),
    ("train.weight_decay", 1e-4, "SPEC.md:116 (wd 1e-4)"),
    ("train.nesterov", False, "SPEC.md:115 (plain SGD momentum)"),
    ("train.warmup_epochs", 0, "SPEC.md:114-117 (no warm-up in the CIFAR configs)"),
    ("train.grad_clip", 0.0, "docs/presets.md (clipping only in the Swin-T preset)"),
    ("train.generator_lr", None, "SPEC.md:92-93 (same learning rate in the published CIFAR configs)"),
    ("train.bf16", "auto", DOCS_GPU),
    ("train.channels_last", "auto", DOCS_GPU),
    ("train.compile", "auto", DOCS_GPU),
    ("data.gpu_loader", "auto", DOCS_GPU),
    ("train.workers", 0, DOCS_RAY),
    ("train.sync_bn", False, DOCS_RAY),
    ("train.final_eval", [], DOCS_EVAL),
    ("eval.seed", 0, DOCS_EVAL),
    ("eval.fgsm_epsilon", 8 / 255, "SPEC.md:130 (FGSM ε = 8/255); " + DOCS_EVAL),
    ("eval.occlusion_patch", 16, "SPEC.md:130 (random 16×16 patches); " + DOCS_EVAL),
    ("eval.calibration_bins", 15, DOCS_EVAL),
    ("seed", 0, DOCS_KEYS),
]

# (method, key, value, source): what the registry fills into a config of that method
METHOD_DEFAULTS = [
    ("mixup", "mix_lambda", 1.0, OPENMIXUP_BETA),
    ("cutmix", "mix_lambda", 0.2, OPENMIXUP_BETA),
    ("manifoldmix", "mix_lambda", 2.0, OPENMIXUP_BETA),
    ("fmix", "mix_lambda", 0.2, OPENMIXUP_BETA),
    ("resizemix", "mix_lambda", 1.0, OPENMIXUP_BETA),
    ("saliencymix", "mix_lambda", 0.2, OPENMIXUP_BETA),
    ("gridmix", "mix_lambda", 0.2, OPENMIXUP_BETA),
    ("puzzlemix", "mix_lambda", 1.0, DOCS_PUZZLE + " (the authors' CIFAR-100 command)"),
    ("automix", "mix_lambda", 2.0, DOCS_AUTO + " (OpenMixup CIFAR config alpha=2.0)"),
    ("adautomix", "mix_lambda", 1.0, "SPEC.md:34 (l default 1.0)"),
    ("vanilla", "mix_lambda", 0.0, DOCS_METHODS + " (draws no λ)"),
    ("smoothmix", "mix_lambda", 0.0, DOCS_METHODS + " (draws no λ)"),
    ("adautomix", "lam_margin", 0.03, "SPEC.md:54 (0.03 in the published configs)"),
    ("automix", "lam_margin", 0.08, DOCS_AUTO + " (config lam_margin=0.08)"),
    ("adautomix", "upsample", "bilinear", "SPEC.md:48 (bilinear for ResNets in the published configs)"),
    ("automix", "upsample", "nearest", DOCS_AUTO + " (config unsampling_mode=['nearest'])"),
    ("adautomix", "momentum_warmup", 0.1, "SPEC.md:87"),
    ("automix", "momentum_warmup", 0.1, DOCS_AUTO + " (CosineScheduleHook, flat for the first 10 %)"),
    ("adautomix", "n_mix", 3, "SPEC.md:33"),
]

# (total iterations T, expected (start, end)): the scaled EMA rule of docs/adautomix.md "EMA schedule"
# (1−m multiplied by 75,000 / T below 75,000 iterations, floored at 0; published 0.999 -> 0.999999)
EMA = "docs/adautomix.md, EMA schedule: "
EMA_SCHEDULES = [
    (75_000, (0.999, 0.999999), EMA + "T >= 75,000 keeps the published values (SPEC.md:87-89)"),
    (400_000, (0.999, 0.999999), "SPEC.md:87-89 (the 800-epoch CIFAR-100 run)"),
    (7_500, (1 - 0.001 * 10, 1 - 0.000001 * 10), EMA + "1−m times 75,000 / T"),
    (88, (1 - 0.001 * 75_000 / 88, 1 - 1e-6 * 75_000 / 88), EMA + "digits, 4 epochs: 0.148 -> 0.99915"),
    (440, (1 - 0.001 * 75_000 / 440, 1 - 1e-6 * 75_000 / 440), EMA + "20 epochs: 0.830 -> 0.99983"),
    (50_000, (0.9985, 0.9999985), EMA + "CIFAR-100, 100 epochs"),
    (50, (0.0, 1 - 0.000001 * 1500), EMA + "m is floored at 0"),
]

# (preset, key, value, source): the AdAutoMix settings of each published config (test_presets.py
# checks the optimiser and schedule rows of SPEC.md's "Published settings")
REPO = "JinXins/Adversarial-AutoMixup configs/classification/"
PRESET_DEFAULTS = [
    ("cifar100-r18", "method.n_mix", 3, REPO + "cifar100/basic/r18_adautomix_bilinear.py mix_samples=3"),
    ("cifar100-r18", "method.beta", 0.3, REPO + "cifar100/basic/r18_adautomix_bilinear.py beta_radio=0.3"),
    ("cifar100-r18", "method.alpha", 0.5, REPO + "cifar100/basic/r18_adautomix_bilinear.py mixup_radio=0.5"),
    ("cifar100-r18", "method.lam_margin", 0.03, "SPEC.md:54"),
    ("cifar100-r18", "method.lam_concat", False, "SPEC.md:43"),
    ("cifar100-r18", "method.upsample", "bilinear", "SPEC.md:48"),
    ("cifar100-r18", "method.momentum", 0.999, "SPEC.md:87"),
    ("cifar100-r18", "method.momentum_end", 0.999999, "SPEC.md:89"),
    ("cifar100-r18", "method.momentum_warmup", 0.1, "SPEC.md:87"),
    ("cifar100-r18", "method.ema_schedule", "published", "README, Presets"),
    ("cifar100-r18", "train.min_lr", 0.05, "SPEC.md:116 (cosine lr down to 0.05)"),
    ("cifar100-r18", "model.zero_init_residual", True, "SPEC.md:16-21 (published value for published-length runs)"),
    ("cifar100-rx50", "model.zero_init_residual", True, "SPEC.md:16-21"),
    ("tinyimagenet-r18", "method.beta", 0.4, REPO + "tiny_imagenet/adautomix/basic/r18_adautomix_blinear.py"),
    ("imagenet-r50", "method.n_mix", 2, REPO + "imagenet/adautomix/basic/r50_adautomix_bilinear.py"),
    ("imagenet-r50", "method.lam_concat", True, REPO + "imagenet/adautomix/basic/r50_adautomix_bilinear.py"),
    ("imagenet-r50", "method.momentum_end", 0.99999, REPO + "imagenet/adautomix/basic/r50_adautomix_bilinear.py"),
    ("imagenet-r50", "model.zero_init_residual", True, "SPEC.md:16-21"),
    ("tinyimagenet-r18", "model.zero_init_residual", True, "SPEC.md:16-21"),
    ("cub-r18", "model.zero_init_residual", True, "SPEC.md:16-21"),
    ("cub-r50", "method.beta", 0.1,
     "SPEC.md:82 (fine-grained 0.1); " + REPO + "cub200/adautomix/basic/r50_adautomix_bilinear.py"),
    ("cifar100-swin-t", "method.upsample", "nearest", REPO + "cifar100/vit/swin_t_adautomix_nearest.py"),
    ("cifar100-swin-t", "method.momentum_warmup", 0.25, REPO + "cifar100/vit/swin_t_adautomix_nearest.py"),
]


# keys whose default is resolved by ``load_config`` (to the data set's or the image size's)
RESOLVED = {"data.image_size": (32, "README, Data sets (digits: 32)"),
            "model.stem": ("cifar", DOCS_KEYS + " (auto: cifar for images of at most 64 pixels)")}


def value(cfg, dotted: str):
    node = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def row_id(row) -> str:
    return "-".join(str(part) for part in row[:-2]) if len(row) > 3 else str(row[0])


def same(got, expected) -> bool:
    if isinstance(expected, float) and not isinstance(got, bool):
        return isinstance(got, (int, float)) and math.isclose(got, expected, rel_tol=1e-12, abs_tol=0)
    return type(got) is type(expected) and got == expected


@pytest.mark.parametrize("row", CONFIG_DEFAULTS, ids=row_id)
def test_config_default(row):
    key, expected, source = row
    assert same(value(Config(), key), expected), f"{key}: {value(Config(), key)!r}, stated {expected!r} ({source})"
    expected, source = RESOLVED.get(key, (expected, source))
    if key not in ("method.momentum", "method.momentum_end"):  # resolved at the start of training
        cfg = load_config(overrides=[])
        assert same(value(cfg, key), expected), f"{key} resolves to {value(cfg, key)!r} ({source})"


@pytest.mark.parametrize("row", METHOD_DEFAULTS, ids=row_id)
def test_method_default(row):
    method, key, expected, source = row
    if key == "mix_lambda":
        assert METHODS[method].mix_lambda == expected, f"{method} registry λ ({source})"
    cfg = load_config(overrides=[f"method.name={method}"])
    got = getattr(cfg.method, key)
    assert same(got, expected), f"{method}: method.{key} resolves to {got!r}, stated {expected!r} ({source})"


def test_every_registered_method_has_its_beta_parameter_in_the_table():
    assert {m for m, key, _, _ in METHOD_DEFAULTS if key == "mix_lambda"} == set(METHODS)


@pytest.mark.parametrize("row", EMA_SCHEDULES, ids=lambda r: f"T={r[0]}")
def test_scaled_ema_schedule(row):
    total, (start, end), source = row
    got = scaled_schedule(total)
    assert got == pytest.approx((start, end), abs=1e-12), source
    assert scaled_schedule(total, "published") == (0.999, 0.999999)  # SPEC.md:87-89 at any length


def test_the_scaled_rule_starts_below_75000_iterations():
    """The constant of the rule: 75,000 iterations (CUB-200, 200 epochs of 375; README)."""
    assert scaled_schedule(74_999) != (0.999, 0.999999)
    assert scaled_schedule(75_000) == (0.999, 0.999999)


@pytest.mark.parametrize("method", ["adautomix", "automix"])
def test_resolve_schedules_fills_the_scaled_momentum_into_the_config(method):
    cfg, _ = resolve_schedules(load_config(overrides=[f"method.name={method}"]), 88)
    expected = (1 - 0.001 * 75_000 / 88, 1 - 1e-6 * 75_000 / 88)  # README: 0.148 -> 0.99915
    assert (cfg.method.momentum, cfg.method.momentum_end) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("iterations,on", [(1_999, False), (2_000, True), (37_500, True)])
def test_zero_init_residual_auto_is_on_from_2000_iterations(iterations, on):
    """docs/adautomix.md, Zero-initialised residual branches: ``auto`` is on for T >= 2,000 iterations, off
    below (SPEC.md:16-21: the published value is for published-length runs, >= 37,500)."""
    cfg, _ = resolve_schedules(load_config(overrides=["method.name=vanilla"]), iterations)
    assert cfg.model.zero_init_residual is on
    explicit, _ = resolve_schedules(load_config(overrides=["model.zero_init_residual=true"]), 10)
    assert explicit.model.zero_init_residual is True  # an explicit value is kept at any length


def test_ema_momentum_is_flat_for_the_first_tenth_then_the_cosine_rule():
    """SPEC.md:87-89: m = 0.999 for t < ⌊0.1·T⌋, then m_end − (m_end − 0.999)·(cos(πt/T) + 1)/2."""
    total = 1000
    assert ema_momentum(99, total) == 0.999
    for t in (100, 500, 999):
        expected = 0.999999 - (0.999999 - 0.999) * (math.cos(math.pi * t / total) + 1) / 2
        assert ema_momentum(t, total) == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize("row", PRESET_DEFAULTS, ids=row_id)
def test_preset_setting(row):
    preset, key, expected, source = row
    cfg = load_config(overrides={"data.root": "/data"}, preset=preset)
    got = value(cfg, key)
    assert same(got, expected), f"preset {preset}: {key} = {got!r}, published {expected!r} ({source})"


def test_heads_and_generator_start_from_n_0_001_with_zero_bias():
    """SPEC.md:14 (heads N(0, 0.01), bias 0) and SPEC.md:44, 52 (G: reduction 2, convs N(0, 0.01),
    bias 0); the std is estimated on ≥ 1,280 weights (standard error 2 %), so 10 % is 5 of them."""
    torch.manual_seed(0)
    classifier = build_classifier("resnet18", 0.25, 10, heads=("one", "mix"))
    generator = MixGenerator(classifier.backbone.stage3_channels)
    assert generator.conv_q.conv.out_channels == classifier.backbone.stage3_channels // 2
    assert generator.conv_v.out_channels == 1
    layers = [*classifier.heads.values(), generator.conv_q.conv, generator.conv_k.conv]
    for layer in layers:
        layer = layer.requires_grad_(False)
        assert layer.weight.numel() >= 1280
        assert float(layer.weight.std()) == pytest.approx(0.01, rel=0.1)
        assert float(layer.weight.mean()) == pytest.approx(0.0, abs=0.002)
        assert torch.count_nonzero(layer.bias) == 0
    assert torch.count_nonzero(generator.conv_v.bias) == 0
    assert float(generator.conv_v.weight.detach().abs().max()) < 0.05  # 64 weights of N(0, 0.01)
