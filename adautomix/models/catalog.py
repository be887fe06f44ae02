"""The backbones ``model.arch`` can name: one entry each, the one place that says which stems an
architecture has, which knobs apply to it and which function builds it.

No torch import here (the config reads this module): a builder is named ``"module:function"``
and imported only when a run builds its model (``build_backbone``). Every builder takes
``(arch, stem, width, zero_init_residual, drop_path)`` and returns a ``staged.StagedBackbone``.
"""
from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass

CIFAR = "adautomix.models.cifar_resnet:cifar_backbone"  # 3x3 conv, stride 1, no max-pool
TORCHVISION = "adautomix.models.backbones:torchvision_backbone"  # torchvision's stems
STEMS = ("auto", "cifar", "imagenet")  # model.stem; auto: see config's _check_model


@dataclass(frozen=True)
class Arch:
    """One backbone.

    Attributes:
        name: the value of ``model.arch``.
        what: one line for the docs.
        builders: stem (``cifar``, ``imagenet``) -> the ``"module:function"`` that builds it.
        width: ``model.width`` applies (with the CIFAR stem: this project's ResNets).
        drop_path: ``model.drop_path`` (stochastic depth) applies.
    """

    name: str
    what: str
    builders: Mapping[str, str]
    width: bool = False
    drop_path: bool = False


def _resnet(name: str, what: str) -> Arch:
    return Arch(name, what, {"cifar": CIFAR, "imagenet": TORCHVISION}, width=True)


ARCHS: dict[str, Arch] = {a.name: a for a in [
    _resnet("resnet18", "ResNet-18 (He et al., 2016)"),
    _resnet("resnet34", "ResNet-34 (He et al., 2016)"),
    _resnet("resnet50", "ResNet-50 (He et al., 2016)"),
    _resnet("resnext50", "ResNeXt-50 32x4d (Xie et al., 2017)"),
    Arch("swin_t", "Swin-T (Liu et al., ICCV 2021); only its 4x4 patch embedding stem",
         {"imagenet": TORCHVISION}, drop_path=True),
    Arch("convnext_t", "ConvNeXt-T (Liu et al., CVPR 2022); its CIFAR stem is OpenMixup's",
         {"cifar": TORCHVISION, "imagenet": TORCHVISION}, drop_path=True),
]}


def build_backbone(arch: str, stem: str, width: float = 1.0, zero_init_residual: bool = True,
                   drop_path: float | None = None):
    """The backbone ``arch`` with ``stem``, randomly initialised, built by its catalog entry."""
    module, _, function = ARCHS[arch].builders[stem].partition(":")
    build = getattr(importlib.import_module(module), function)
    return build(arch, stem, width, zero_init_residual, drop_path)
