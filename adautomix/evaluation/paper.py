"""The AdAutoMix paper's published numbers (Qin et al., ICLR 2024, https://arxiv.org/abs/2312.11954;
SPEC.md "Paper results"), each with the setting it was measured in, so that a report can print
the paper's value beside a measured number whose setting matches.

A setting is a set of config values (dotted keys). Top-1 (Table 1): CIFAR-100, 800 epochs, full
width. The paper does not say whether its top-1 is the final epoch's or the median of the last
10 (SPEC.md, "What is reported"), so the value stands beside both ``top1`` and
``top1_median_last10``. ECE (Figure 4): CIFAR-100; the paper names no backbone or length for it,
so only the data set, the method and full width are matched. Tiny-ImageNet (ResNet-18 and
ResNeXt-50, 400 epochs) and ImageNet-1K (ResNet-50, 100 epochs): the published settings of the
presets ``tinyimagenet-*`` and ``imagenet-r50``.
"""
from __future__ import annotations

from typing import Any

_CIFAR100_TOP1 = {  # method: (ResNet-18, ResNeXt-50), 800 epochs
    "vanilla": (78.04, 81.09), "mixup": (79.12, 82.10), "cutmix": (78.17, 78.32),
    "saliencymix": (79.12, 78.77), "fmix": (79.69, 79.02), "resizemix": (80.01, 80.35),
    "puzzlemix": (81.13, 82.85), "automix": (82.04, 83.64), "adautomix": (82.32, 84.22),
}


_TINYIMAGENET_TOP1 = {  # method: (ResNet-18, ResNeXt-50), 400 epochs
    "vanilla": (61.68, 65.04), "automix": (67.33, 70.72), "adautomix": (69.19, 72.89),
}
_IMAGENET_TOP1 = {"vanilla": 76.83, "automix": 77.91, "adautomix": 78.04}  # ResNet-50, 100 epochs


def _entries() -> list[dict[str, Any]]:
    tables = [(data, epochs, method, arch, value)
              for data, epochs, table in (("cifar100", 800, _CIFAR100_TOP1), ("tinyimagenet", 400, _TINYIMAGENET_TOP1))
              for method, values in table.items() for arch, value in zip(("resnet18", "resnext50"), values)]
    tables += [("imagenet", 100, method, "resnet50", value) for method, value in _IMAGENET_TOP1.items()]
    entries = []
    for data, epochs, method, arch, value in tables:
        for metric in ("top1", "top1_median_last10"):
            entries.append({"metric": metric, "value": value, "source": "Table 1", "setting": {
                "data.name": data, "model.arch": arch, "model.width": 1.0, "train.epochs": epochs,
                "method.name": method}})
    entries.append({"metric": "eval_ece", "value": 3.2, "source": "Figure 4", "setting": {
        "data.name": "cifar100", "model.width": 1.0, "method.name": "adautomix"}})
    return entries


PAPER = _entries()


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    return a == b


def paper_value(metric: str, setting: dict[str, Any]) -> dict[str, Any] | None:
    """The paper's entry for ``metric`` whose setting ``setting`` (dotted config keys -> values)
    matches in every key the entry names, or None."""
    for entry in PAPER:
        if entry["metric"] == metric and all(k in setting and _same(setting[k], v)
                                             for k, v in entry["setting"].items()):
            return entry
    return None
