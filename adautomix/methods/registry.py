"""The method registry: the one place that names every method, its builder, its λ and its needs.

Adding a method is its code (a mixing function in ``mixing.py`` or a step module of its own)
plus one ``Method`` entry in ``METHODS`` below. The config validates ``method.name`` against
this table and fills the default λ and the method's other defaults from it; the engine builds
the step module from it; the benchmark, the studies and the docs list methods from it.

A step module has ``forward(x, y) -> (loss, parts)`` (everything that needs gradients, so DDP
can wrap it), ``after_step(iteration, total) -> dict``, ``eval_heads() -> {name: (model, head)}``,
``headline`` (the head reported as ``top1``) and ``headline_model`` (the ``nn.Module`` that
scores ``headline``; what is exported); the engine sets ``rng`` and ``iteration`` before each
forward.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

import torch.nn as nn

if TYPE_CHECKING:
    from ..config import Config


@dataclass(frozen=True)
class Method:
    """One registered method.

    Attributes:
        name: the value of ``method.name``.
        paper: short citation with a link.
        mix_lambda: default Beta(λ, λ) parameter of its mixing ratio (the paper's Table 1); 0 for
            methods that do not mix.
        build: ``(cfg, num_classes) -> step module``.
        params: the ``method.*`` keys it reads besides ``mix_lambda`` (passed to mixing
            functions as keyword arguments; listed in the docs and tracked per run).
        needs: what it needs beyond a batch: ``"teacher"`` (an EMA copy of the classifier),
            ``"generator"`` (a learned mask generator).
        defaults: ``method.*`` keys whose default differs between methods (config value None =
            take it from here; the config fills them in ``validate``).
    """

    name: str
    paper: str
    mix_lambda: float
    build: Callable[["Config", int], nn.Module]
    params: tuple[str, ...] = ()
    needs: frozenset[str] = frozenset()
    defaults: Mapping[str, Any] = field(default_factory=dict)


def _hand_crafted(cfg: "Config", num_classes: int) -> nn.Module:
    from ..models.cifar_resnet import build_classifier
    from .mixing import MIX_FUNCTIONS, MixStep

    m = cfg.method
    params = {"mix_lambda": m.mix_lambda, **{p: getattr(m, p) for p in METHODS[m.name].params}}
    return MixStep(build_classifier(cfg.model.arch, cfg.model.width, num_classes,
                                    zero_init_residual=cfg.model.zero_init_residual),
                   MIX_FUNCTIONS[m.name], params)


def _two_head_classifier(cfg: "Config", num_classes: int):
    from ..models.cifar_resnet import build_classifier

    return build_classifier(cfg.model.arch, cfg.model.width, num_classes, heads=("one", "mix"),
                            zero_init_residual=cfg.model.zero_init_residual)


def _adautomix(cfg: "Config", num_classes: int) -> nn.Module:
    from .adautomix import AdAutoMixStep

    return AdAutoMixStep.from_config(_two_head_classifier(cfg, num_classes), cfg.method)


def _automix(cfg: "Config", num_classes: int) -> nn.Module:
    from .automix import AutoMixStep

    return AutoMixStep.from_config(_two_head_classifier(cfg, num_classes), cfg.method)


METHODS: dict[str, Method] = {m.name: m for m in [
    Method("vanilla", "no mixing", 0.0, _hand_crafted),
    Method("mixup", "Zhang et al., ICLR 2018, https://arxiv.org/abs/1710.09412", 1.0, _hand_crafted),
    Method("cutmix", "Yun et al., ICCV 2019, https://arxiv.org/abs/1905.04899", 0.2, _hand_crafted),
    Method("adautomix", "Qin et al., ICLR 2024, https://arxiv.org/abs/2312.11954", 1.0, _adautomix,
           params=("n_mix", "alpha", "beta", "use_ce", "use_mce", "use_cos", "use_ema", "adversarial",
                   "lam_concat", "lam_margin", "lam_margin_rule", "random_n", "upsample",
                   "ema_schedule", "momentum", "momentum_end", "momentum_warmup"),
           needs=frozenset({"teacher", "generator"}),
           defaults={"lam_margin": 0.03, "upsample": "bilinear"}),  # the authors' CIFAR configs
    Method("automix", "Liu et al., ECCV 2022, https://arxiv.org/abs/2103.13027", 2.0, _automix,
           params=("mask_loss_weight", "mask_loss_margin", "lam_concat", "lam_margin", "upsample",
                   "use_ema", "ema_schedule", "momentum", "momentum_end", "momentum_warmup"),
           needs=frozenset({"teacher", "generator"}),
           defaults={"lam_margin": 0.08, "upsample": "nearest"}),  # OpenMixup's CIFAR config
]}


def get(name: str) -> Method:
    """The registered method ``name`` (``KeyError`` naming the known ones otherwise)."""
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; registered: {', '.join(METHODS)}") from None
