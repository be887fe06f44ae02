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

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Method:
    """One registered method.

    Attributes:
        name: the value of ``method.name``.
        paper: short citation with a link.
        mix_lambda: default Beta(λ, λ) parameter of its mixing ratio (the paper's Table 1); 0 for
            methods that draw no λ (vanilla, SmoothMix), which then take no ``mix_lambda``.
        build: the builder ``(cfg, num_classes) -> step module``, named ``"module:function"`` and
            imported only when a run builds it (this table imports no torch: the config reads it).
        params: the ``method.*`` keys it reads besides ``mix_lambda`` (listed in the docs and
            tracked per run). A hand-crafted method's keys are named ``<name>_<argument>`` and
            reach its mixing function as ``<argument>``: ``method.fmix_decay_power`` is
            ``fmix(..., decay_power=...)``.
        needs: what it needs beyond a batch: ``"teacher"`` (an EMA copy of the classifier),
            ``"generator"`` (a learned mask generator), ``"input_gradient"`` (a saliency pass:
            the loss's gradient with respect to the images).
        defaults: ``method.*`` keys whose default differs between methods (config value None =
            take it from here; the config fills them in ``validate``).
    """

    name: str
    paper: str
    mix_lambda: float
    build: str
    params: tuple[str, ...] = ()
    needs: frozenset[str] = frozenset()
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def builder(self) -> Callable:
        """The function ``build`` names, imported now."""
        module, _, function = self.build.partition(":")
        return getattr(importlib.import_module(module), function)


_BUILDERS = "adautomix.methods.builders"  # the module of the builders below (it imports torch)

METHODS: dict[str, Method] = {m.name: m for m in [
    Method("vanilla", "no mixing", 0.0, f"{_BUILDERS}:hand_crafted"),
    Method("mixup", "Zhang et al., ICLR 2018, https://arxiv.org/abs/1710.09412", 1.0, f"{_BUILDERS}:hand_crafted"),
    Method("cutmix", "Yun et al., ICCV 2019, https://arxiv.org/abs/1905.04899", 0.2, f"{_BUILDERS}:hand_crafted"),
    Method("manifoldmix", "Verma et al., ICML 2019, https://arxiv.org/abs/1806.05236", 2.0,
           f"{_BUILDERS}:manifoldmix", params=("manifold_layers",)),
    # Beta parameters of the methods below: OpenMixup's CIFAR-100 ResNet-18 benchmark table
    # (docs/en/mixup_benchmarks/Mixup_cifar.md; its 800-epoch FMix, SaliencyMix and ResizeMix
    # numbers are the AdAutoMix paper's Table 1 rows). SmoothMix draws no λ: its mask's mean is λ.
    Method("fmix", "Harris et al., 2020, https://arxiv.org/abs/2002.12047", 0.2, f"{_BUILDERS}:hand_crafted",
           params=("fmix_decay_power",)),
    Method("resizemix", "Qin et al., 2020, https://arxiv.org/abs/2012.11101", 1.0, f"{_BUILDERS}:hand_crafted",
           params=("resizemix_scale_min", "resizemix_scale_max", "resizemix_interpolation")),
    Method("saliencymix", "Uddin et al., ICLR 2021, https://arxiv.org/abs/2006.01791", 0.2,
           f"{_BUILDERS}:hand_crafted", params=("saliencymix_box",)),
    Method("gridmix", "Baek et al., Pattern Recognition 2021, "
           "https://www.sciencedirect.com/science/article/pii/S0031320320303976",
           0.2, f"{_BUILDERS}:hand_crafted",
           params=("gridmix_holes_min", "gridmix_holes_max", "gridmix_area_min", "gridmix_area_max")),
    Method("smoothmix", "Lee et al., CVPR Workshops 2020, https://openaccess.thecvf.com/content_CVPRW_2020/"
           "papers/w45/Lee_SmoothMix_A_Simple_Yet_Effective_Data_Augmentation_to_Train_Robust_CVPRW_2020_paper.pdf",
           0.0, f"{_BUILDERS}:hand_crafted", params=("smoothmix_sigma_min", "smoothmix_sigma_max")),
    Method("adautomix", "Qin et al., ICLR 2024, https://arxiv.org/abs/2312.11954", 1.0, f"{_BUILDERS}:adautomix",
           params=("n_mix", "alpha", "beta", "use_ce", "use_mce", "use_cos", "use_ema", "adversarial",
                   "lam_concat", "lam_margin", "lam_margin_rule", "random_n", "upsample",
                   "teacher_source_passes", "ema_schedule", "momentum", "momentum_end", "momentum_warmup"),
           needs=frozenset({"teacher", "generator"}),
           defaults={"lam_margin": 0.03, "upsample": "bilinear"}),  # the authors' CIFAR configs
    Method("automix", "Liu et al., ECCV 2022, https://arxiv.org/abs/2103.13027", 2.0, f"{_BUILDERS}:automix",
           params=("mask_loss_weight", "mask_loss_margin", "lam_concat", "lam_margin", "upsample",
                   "use_ema", "ema_schedule", "momentum", "momentum_end", "momentum_warmup"),
           needs=frozenset({"teacher", "generator"}),
           defaults={"lam_margin": 0.08, "upsample": "nearest"}),  # OpenMixup's CIFAR config
    Method("puzzlemix", "Kim et al., ICML 2020, https://arxiv.org/abs/2009.06962", 1.0, f"{_BUILDERS}:puzzlemix",
           params=("block_num_min", "block_num_max", "mix_levels", "label_smoothness",
                   "data_smoothness", "prior_weight", "neigh_size", "transport", "transport_weight",
                   "transport_size", "transport_solver"),
           needs=frozenset({"input_gradient"})),
]}


def get(name: str) -> Method:
    """The registered method ``name`` (``KeyError`` naming the known ones otherwise)."""
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; registered: {', '.join(METHODS)}") from None
