"""The builders the method registry names (``Method.build``): ``(cfg, num_classes) -> step module``,
each around a fresh classifier of ``cfg.model``. Imported only when a run builds its step."""
from __future__ import annotations

import torch.nn as nn

from ..config import Config
from ..data.datasets import normalization
from ..models.cifar_resnet import build_classifier
from ..models.pretrained import load_init
from .adautomix import AdAutoMixStep
from .automix import AutoMixStep
from .manifoldmix import ManifoldMixStep
from .mixing import MIX_FUNCTIONS, MixStep
from .puzzlemix import PuzzleMixStep
from .registry import METHODS


def classifier(cfg: Config, num_classes: int, heads: tuple[str, ...] = ("one",)) -> nn.Module:
    """The classifier of ``cfg.model`` (backbone + heads), its backbone loaded from ``model.init``."""
    m = cfg.model
    # "auto" is resolved from the run's length before a run builds its step
    # (engine.resolve_schedules); a step built outside a run (tests, bench) keeps the published value
    zero_init = m.zero_init_residual if isinstance(m.zero_init_residual, bool) else True
    model = build_classifier(m.arch, m.width, num_classes, heads=heads, zero_init_residual=zero_init,
                             stem=m.stem, drop_path=m.drop_path)
    if m.init and not cfg.train.resume:  # a resumed run's checkpoint holds every weight
        load_init(model.backbone, m.init, m.arch, m.stem)
    return model


def hand_crafted(cfg: Config, num_classes: int) -> nn.Module:
    m, method = cfg.method, METHODS[cfg.method.name]
    params = {p.removeprefix(f"{m.name}_"): getattr(m, p) for p in method.params}
    if method.mix_lambda:  # methods that draw λ (or τ) from Beta(λ, λ)
        params["mix_lambda"] = m.mix_lambda
    return MixStep(classifier(cfg, num_classes), MIX_FUNCTIONS[m.name], params)


def manifoldmix(cfg: Config, num_classes: int) -> nn.Module:
    return ManifoldMixStep(classifier(cfg, num_classes), cfg.method.mix_lambda, cfg.method.manifold_layers)


def _two_head_classifier(cfg: Config, num_classes: int):
    return classifier(cfg, num_classes, heads=("one", "mix"))


def adautomix(cfg: Config, num_classes: int) -> nn.Module:
    return AdAutoMixStep.from_config(_two_head_classifier(cfg, num_classes), cfg.method)


def automix(cfg: Config, num_classes: int) -> nn.Module:
    return AutoMixStep.from_config(_two_head_classifier(cfg, num_classes), cfg.method)


def puzzlemix(cfg: Config, num_classes: int) -> nn.Module:
    m = cfg.method
    params = {"mix_lambda": m.mix_lambda, **{p: getattr(m, p) for p in METHODS[m.name].params},
              "pixel_std": normalization(cfg.data.name)[1]}
    return PuzzleMixStep(classifier(cfg, num_classes), params)
