"""Presets: the published settings of each benchmark of the AdAutoMix paper, one per row of its
tables, for ``adautomix train --preset NAME`` (and a study's ``preset:``).

Each preset is a partial config read from the authors' published configs (their repository
JinXins/Adversarial-AutoMixup, ``configs/classification/<data set>/...``; ConvNeXt-T has only its
run log, ``experiments/CIFAR100/adautomix_convnext_200e.log``): the optimiser, the learning-rate
schedule (cosine annealing to an absolute ``min_lr``; stepped per iteration here, per epoch by mmcv's
default: a difference of at most one epoch's step), the generator's own
learning rate where the config gives it one (``paramwise_options`` / ``addtional_scheduler`` of
``mix_block``), epochs, batch size (over all GPUs), augmentation, α (``mixup_radio``), β
(``beta_radio``), N (``mix_samples`` / ``co_mix``, ``is_random``), ``lam_margin``, ``lam_concat``,
the mask upsampling and the EMA schedule (``CosineScheduleHook``: 0.999 to ``end_momentum``, flat
for the ``adjust_scope`` start). Overrides go on top (``--config``, ``key=value``); ``data.root``
is always the user's (and ``model.init`` for the fine-grained protocol, which fine-tunes from
ImageNet weights). What a published config does that this platform does not is listed in the
preset's ``not_reproduced`` and printed when it is used.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

REPO = "JinXins/Adversarial-AutoMixup"


@dataclass(frozen=True)
class Preset:
    """One benchmark setting.

    Attributes:
        name: the value of ``--preset``.
        what: one line for ``--list-presets``.
        source: the published file it follows.
        config: dotted config keys -> values.
        not_reproduced: published settings this platform does not have.
        init: what ``model.init`` should be (the fine-grained protocol); "" = none.
    """

    name: str
    what: str
    source: str
    config: dict[str, Any]
    not_reproduced: tuple[str, ...] = ()
    init: str = ""


def _adautomix(n_mix: int, beta: float, momentum_end: float, lam_concat: bool, upsample: str = "bilinear",
               random_n: bool = False, lam_margin: float = 0.03, warmup: float = 0.1) -> dict[str, Any]:
    """The ``model=dict(type='AdAutoMix', ...)`` part (alpha=1.0 and mixup_radio=0.5 everywhere)."""
    return {"method.name": "adautomix", "method.mix_lambda": 1.0, "method.alpha": 0.5, "method.beta": beta,
            "method.n_mix": n_mix, "method.random_n": random_n, "method.lam_margin": lam_margin,
            "method.lam_concat": lam_concat, "method.upsample": upsample, "method.ema_schedule": "published",
            "method.momentum": 0.999, "method.momentum_end": momentum_end, "method.momentum_warmup": warmup}


# OpenMixup's ResNets zero the last BatchNorm γ of every residual block; a preset follows a
# published schedule, so it keeps that whatever the run's length (the default decides by length)
_ZERO_INIT = {"model.zero_init_residual": True}


def _sgd(lr: float, weight_decay: float, batch: int, epochs: int, min_lr: float,
         generator_lr: float | None = None, generator_min_lr: float | None = None) -> dict[str, Any]:
    return {"train.optimizer": "sgd", "train.lr": lr, "train.momentum": 0.9, "train.weight_decay": weight_decay,
            "train.batch_size": batch, "train.epochs": epochs, "train.min_lr": min_lr,
            "train.generator_lr": generator_lr, "train.generator_min_lr": generator_min_lr}


def _cifar(arch: str) -> dict[str, Any]:
    return {"data.name": "cifar100", "model.arch": arch, "model.stem": "cifar", **_ZERO_INIT,
            **_sgd(0.1, 1e-4, 100, 800, 0.05), **_adautomix(3, 0.3, 0.999999, lam_concat=False)}


def _tiny(arch: str, min_lr: float, generator_min_lr: float) -> dict[str, Any]:
    return {"data.name": "tinyimagenet", "model.arch": arch, "model.stem": "cifar", **_ZERO_INIT,
            **_sgd(0.2, 1e-4, 100, 400, min_lr, 0.1, generator_min_lr),
            **_adautomix(3, 0.4, 0.999999, lam_concat=False)}


def _imagenet(arch: str) -> dict[str, Any]:
    return {"data.name": "imagenet", "model.arch": arch, "model.stem": "imagenet", "data.loader_workers": 8,
            **_ZERO_INIT,
            **_sgd(0.1, 1e-4, 256, 100, 0.0, 0.1, 0.001), **_adautomix(2, 0.1, 0.99999, lam_concat=True)}


def _finegrained(data: str, arch: str, beta: float, random_n: bool, lam_margin: float = 0.03,
                 min_lr: float = 0.0, generator_min_lr: float = 0.001) -> dict[str, Any]:
    return {"data.name": data, "model.arch": arch, "model.stem": "imagenet", "data.loader_workers": 4,
            **_ZERO_INIT,
            **_sgd(0.001, 5e-4, 16, 200, min_lr, 0.1, generator_min_lr),
            **_adautomix(3, beta, 0.99999, lam_concat=True, random_n=random_n, lam_margin=lam_margin)}


_VIT_LIKE = ("RandAugment (2 ops, magnitude 7)", "label smoothing 0.1 in both heads",
             "no weight decay on norms, biases and position tables", "heads initialised TruncNormal(0.02)")
_INIT = "a torchvision {} state dict of ImageNet weights (the published runs load tools/{}-pytorch.pth)"

PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("cifar100-r18", "CIFAR-100, ResNet-18 (CIFAR stem), 800 epochs (paper Table 1)",
           f"{REPO} configs/classification/cifar100/basic/r18_adautomix_bilinear.py (800 epochs: "
           "experiments/CIFAR100/adautomix_r18_800e.log)", _cifar("resnet18")),
    Preset("cifar100-rx50", "CIFAR-100, ResNeXt-50 32x4d (CIFAR stem), 800 epochs (paper Table 1)",
           f"{REPO} configs/classification/cifar100/basic/rx50_adautomix.py (800 epochs: "
           "experiments/CIFAR100/adautomix_rx50_800e.log)", _cifar("resnext50")),
    Preset("cifar100-swin-t", "CIFAR-100 at 224x224, Swin-T, AdamW, 200 epochs (paper Table 2)",
           f"{REPO} configs/classification/cifar100/vit/swin_t_adautomix_nearest.py",
           {"data.name": "cifar100", "data.image_size": 224, "model.arch": "swin_t", "model.stem": "imagenet",
            "model.drop_path": 0.2, "train.optimizer": "adamw", "train.lr": 5e-4, "train.weight_decay": 0.05,
            "train.batch_size": 100, "train.epochs": 200, "train.min_lr": 1e-4, "train.warmup_epochs": 20,
            "train.grad_clip": 10.0, "train.generator_lr": 1e-3, "train.generator_min_lr": 1e-4,
            **_adautomix(3, 0.3, 0.99996, lam_concat=True, upsample="nearest", random_n=True, lam_margin=0.0,
                         warmup=0.25)},
           not_reproduced=_VIT_LIKE),
    Preset("cifar100-convnext-t", "CIFAR-100, ConvNeXt-T (CIFAR stem), AdamW, 200 epochs (paper Table 2)",
           f"{REPO} experiments/CIFAR100/adautomix_convnext_200e.log (its config, printed in the log)",
           {"data.name": "cifar100", "model.arch": "convnext_t", "model.stem": "cifar", "model.drop_path": 0.3,
            "train.optimizer": "adamw", "train.lr": 2e-3, "train.weight_decay": 0.05, "train.batch_size": 100,
            "train.epochs": 200, "train.min_lr": 1e-4, "train.warmup_epochs": 20, "train.generator_lr": 5e-4,
            "train.generator_min_lr": 5e-5,
            **_adautomix(3, 0.3, 0.99996, lam_concat=True, upsample="nearest", warmup=0.25)},
           not_reproduced=_VIT_LIKE),
    Preset("tinyimagenet-r18", "Tiny-ImageNet, ResNet-18 (CIFAR stem), 400 epochs (paper Table 1)",
           f"{REPO} configs/classification/tiny_imagenet/adautomix/basic/r18_adautomix_blinear.py",
           _tiny("resnet18", 0.0, 0.0)),
    Preset("tinyimagenet-rx50", "Tiny-ImageNet, ResNeXt-50 32x4d (CIFAR stem), 400 epochs (paper Table 1)",
           f"{REPO} configs/classification/tiny_imagenet/adautomix/basic/rx50_adautomix_bilinear.py",
           _tiny("resnext50", 0.05, 0.001)),
    Preset("imagenet-r18", "ImageNet-1K, ResNet-18, 100 epochs, N = 2 (paper Table 1)",
           f"{REPO} configs/classification/imagenet/adautomix/basic/r18_adautomix_bilinear.py",
           _imagenet("resnet18")),
    Preset("imagenet-r34", "ImageNet-1K, ResNet-34, 100 epochs, N = 2 (paper Table 1)",
           f"{REPO} has no ResNet-34 config: the ResNet-18 one "
           "(configs/classification/imagenet/adautomix/basic/r18_adautomix_bilinear.py) with ResNet-34",
           _imagenet("resnet34")),
    Preset("imagenet-r50", "ImageNet-1K, ResNet-50, 100 epochs, N = 2 (paper Table 1)",
           f"{REPO} configs/classification/imagenet/adautomix/basic/r50_adautomix_bilinear.py",
           _imagenet("resnet50")),
    Preset("cub-r18", "CUB-200-2011, ResNet-18 fine-tuned from ImageNet weights, 200 epochs (paper Table 3)",
           f"{REPO} configs/classification/cub200/adautomix/basic/r18_adautomix_bilinear.py",
           _finegrained("cub200", "resnet18", 0.3, random_n=True), init=_INIT.format("ResNet-18", "resnet18")),
    Preset("cub-r50", "CUB-200-2011, ResNet-50 fine-tuned from ImageNet weights, 200 epochs (paper Table 3)",
           f"{REPO} configs/classification/cub200/adautomix/basic/r50_adautomix_bilinear.py",
           _finegrained("cub200", "resnet50", 0.1, random_n=False), init=_INIT.format("ResNet-50", "resnet50")),
    Preset("aircraft-r18", "FGVC-Aircraft, ResNet-18 fine-tuned from ImageNet weights, 200 epochs (paper Table 3)",
           f"{REPO} configs/classification/aircrafts/adautomix/basic/r18_adautomix_bilinear.py",
           _finegrained("aircraft", "resnet18", 0.3, random_n=True, lam_margin=0.0, min_lr=5e-4),
           init=_INIT.format("ResNet-18", "resnet18")),
    Preset("aircraft-rx50", "FGVC-Aircraft, ResNeXt-50 fine-tuned from ImageNet weights, 200 epochs (paper Table 3)",
           f"{REPO} configs/classification/aircrafts/adautomix/basic/rx50_adautomix_bilinear.py",
           _finegrained("aircraft", "resnext50", 0.6, random_n=True), init=_INIT.format("ResNeXt-50", "resnext50")),
    Preset("cars-r18", "Stanford Cars, ResNet-18 fine-tuned from ImageNet weights, 200 epochs (paper Table 3)",
           f"{REPO} configs/classification/cars/adautomix/basic/r18_adautomix_bilinear.py",
           _finegrained("cars", "resnet18", 0.5, random_n=False), init=_INIT.format("ResNet-18", "resnet18")),
    Preset("cars-rx50", "Stanford Cars, ResNeXt-50 fine-tuned from ImageNet weights, 200 epochs (paper Table 3)",
           f"{REPO} configs/classification/cars/adautomix/basic/rx50_adautomix_bilinear.py",
           _finegrained("cars", "resnext50", 0.3, random_n=False), init=_INIT.format("ResNeXt-50", "resnext50")),
]}


def get(name: str) -> Preset:
    """The preset ``name``; ``KeyError`` naming the known ones otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None


def notes(preset: Preset, init_set: bool) -> list[str]:
    """The lines printed when ``preset`` is used: its source, what it does not reproduce and, for
    the fine-grained protocol without ``model.init``, what to initialise from."""
    lines = [f"preset {preset.name}: {preset.what}; from {preset.source}"]
    if preset.not_reproduced:
        lines.append(f"preset {preset.name}: not reproduced here: {'; '.join(preset.not_reproduced)}")
    if preset.init and not init_set:
        lines.append(f"preset {preset.name}: the published protocol fine-tunes from ImageNet weights; "
                     f"set model.init=PATH to {preset.init}")
    return lines
