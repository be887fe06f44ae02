"""CIFAR-style ResNets and the two-head classifier of AdAutoMix.

ResNet (He et al., 2016, https://arxiv.org/abs/1512.03385) and ResNeXt (Xie et al., 2017,
https://arxiv.org/abs/1611.05431) with the CIFAR stem used by the paper: one 3x3 convolution,
stride 1, no max-pool. ``width`` scales every stage's channels, so narrow networks can be trained
on a laptop CPU. The backbone returns its stage-3 feature map (the mix generator's input) and its
pooled features from one forward pass, and can mix its hidden states at the input of any stage
(Manifold Mixup: ``forward(x, mix_at=k, mix_fn=...)``). As in OpenMixup's ResNets (the published
backbones), convs are initialised Kaiming (fan_out) and, with ``zero_init_residual``, the last
BatchNorm γ of every residual block starts at 0, so each block starts as the identity (Goyal et
al., 2017, https://arxiv.org/abs/1706.02677).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from .catalog import build_backbone
from .staged import StagedBackbone

# arch -> (block, blocks per stage, groups, width per group)
ARCHS = {
    "resnet18": ("basic", (2, 2, 2, 2), 1, 64),
    "resnet34": ("basic", (3, 4, 6, 3), 1, 64),
    "resnet50": ("bottleneck", (3, 4, 6, 3), 1, 64),
    "resnext50": ("bottleneck", (3, 4, 6, 3), 32, 4),
}


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int, groups: int, base_width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(inplanes, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int, groups: int, base_width: int):
        super().__init__()
        width = max(1, int(planes * base_width / 64)) * groups
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(inplanes, planes * 4, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


def _shortcut(inplanes: int, planes: int, stride: int) -> nn.Module:
    if stride == 1 and inplanes == planes:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))


class ResNet(StagedBackbone):
    """CIFAR-stem ResNet / ResNeXt backbone.

    ``forward(x)`` with ``x: B x 3 x H x W`` returns ``(stage3, pooled)``:
    ``stage3: B x C3 x H/4 x W/4`` (ResNet-18, width 1: 256 x 8 x 8 for 32 x 32 input) and
    ``pooled: B x out_channels``.
    """

    def __init__(self, arch: str = "resnet18", width: float = 1.0, zero_init_residual: bool = True):
        super().__init__()
        kind, blocks, groups, base_width = ARCHS[arch]
        block = BasicBlock if kind == "basic" else Bottleneck
        planes = [max(groups, int(round(p * width))) for p in (64, 128, 256, 512)]
        self.inplanes = planes[0]
        self.stem = nn.Sequential(nn.Conv2d(3, planes[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(planes[0]), nn.ReLU(inplace=True))
        self.layer1 = self._stage(block, planes[0], blocks[0], 1, groups, base_width)
        self.layer2 = self._stage(block, planes[1], blocks[1], 2, groups, base_width)
        self.layer3 = self._stage(block, planes[2], blocks[2], 2, groups, base_width)
        self.layer4 = self._stage(block, planes[3], blocks[3], 2, groups, base_width)
        self.stage3_channels = planes[2] * block.expansion
        self.out_channels = planes[3] * block.expansion
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.bn2.weight if isinstance(m, BasicBlock) else m.bn3.weight)

    def _stage(self, block, planes: int, n: int, stride: int, groups: int, base_width: int):
        layers = []
        for i in range(n):
            layers.append(block(self.inplanes, planes, stride if i == 0 else 1, groups, base_width))
            self.inplanes = planes * block.expansion
        return nn.Sequential(*layers)

    def stage(self, k: int, h: torch.Tensor) -> torch.Tensor:
        """Stage k = 1..4: h_{k-1} -> h_k, with h_0 the image; stage 1 includes the stem."""
        if k == 1:
            return self.layer1(self.stem(h))
        return (self.layer2, self.layer3, self.layer4)[k - 2](h)


class Classifier(nn.Module):
    """Backbone ``f`` with linear heads on its pooled features.

    AdAutoMix uses two heads: ``one`` (h1, trained on clean images) and ``mix`` (hm, trained on
    mixed images); the baselines use ``one`` only. Heads are initialised N(0, 0.01), bias 0.
    ``forward(x)`` returns the ``one`` head's logits ``B x num_classes`` so the module predicts
    on its own (e.g. after ``mlflow.pytorch.load_model``).
    """

    def __init__(self, backbone: nn.Module, num_classes: int, heads: tuple[str, ...] = ("one",)):
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleDict({h: nn.Linear(backbone.out_channels, num_classes) for h in heads})
        for head in self.heads.values():
            nn.init.normal_(head.weight, 0.0, 0.01)
            nn.init.zeros_(head.bias)

    def forward(self, x: torch.Tensor, head: str = "one", mix_at: int | None = None,
                mix_fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """Logits ``B x num_classes`` of ``head``; ``mix_at``, ``mix_fn``: see ``ResNet.forward``."""
        return self.heads[head](self.backbone(x, mix_at, mix_fn)[1])


def build_classifier(arch: str, width: float, num_classes: int, heads: tuple[str, ...] = ("one",),
                     zero_init_residual: bool = True, stem: str = "cifar",
                     drop_path: float | None = None) -> Classifier:
    """A ``Classifier`` on backbone ``arch`` (``catalog.py``): this module's ResNets for the CIFAR
    stem, torchvision's (``backbones.py``) for the ImageNet stem and for ``swin_t`` / ``convnext_t``."""
    return Classifier(build_backbone(arch, stem, width, zero_init_residual, drop_path), num_classes, heads)


def cifar_backbone(arch: str, stem: str, width: float, zero_init_residual: bool, drop_path: float | None) -> ResNet:
    """The catalog's builder of the CIFAR-stem ResNets (``drop_path`` does not apply)."""
    if stem != "cifar" or arch not in ARCHS:
        raise ValueError(f"cifar_resnet.ResNet has the CIFAR stem and the ResNets {', '.join(ARCHS)}")
    return ResNet(arch, width, zero_init_residual)
