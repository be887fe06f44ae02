"""torchvision's backbones behind the interface of the CIFAR ResNets (``cifar_resnet.ResNet``):
``forward(x, mix_at=None, mix_fn=None) -> (stage3, pooled)``, ``stage(k, h)`` for k = 1..4,
``stage3_channels`` and ``out_channels``, so that every method runs on every backbone.

- ResNet-18/34/50 and ResNeXt-50 (32x4d) with torchvision's ImageNet stem (7x7 conv, stride 2,
  3x3 max-pool): the published ImageNet and fine-grained configs' backbones. Stage 3 is
  ``layer3``, 1/16 of the image (14 x 14 at 224).
- ConvNeXt-T (Liu et al., CVPR 2022, https://arxiv.org/abs/2201.03545): stage k is torchvision's
  downsampling layer k and block group k. ``stem="cifar"`` replaces the 4x4 stride-4 patchify stem
  by a 3x3 stride-1 conv + LayerNorm, as OpenMixup's ``ConvNeXt_CIFAR`` of the published
  CIFAR-100 config (whose generator reads stage 3: 384 channels, 8 x 8 at 32).
- Swin-T (Liu et al., ICCV 2021, https://arxiv.org/abs/2103.14030): stage k is block group k
  followed by its patch merging (k < 4), as mmcls / OpenMixup count stages, so stage 3 is the
  published Swin-T CIFAR-100 config's generator input: 768 channels at 1/32 (7 x 7 at 224).
  torchvision keeps Swin's activations channels-last (B x H x W x C); the stage-3 map is returned
  B x C x H x W like the others'.

The modules keep torchvision's names (ResNet's ``fc``, ConvNeXt's ``classifier.2`` and Swin's
``head`` -- the 1000-way layers -- are dropped), so a torchvision state dict loads into them as
it is (``pretrained.py``). The pooled features are torchvision's up to that layer: ResNet's
global average pool, ConvNeXt's pool + LayerNorm, Swin's LayerNorm + pool.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .staged import StagedBackbone

TORCHVISION_RESNETS = {"resnet18": "resnet18", "resnet34": "resnet34", "resnet50": "resnet50",
                       "resnext50": "resnext50_32x4d"}
# the keys of the 1000-way classifier in torchvision's state dicts (not part of the backbone)
HEAD_KEYS = {"resnet": ("fc.",), "convnext_t": ("classifier.2.",), "swin_t": ("head.",)}


class TorchvisionResNet(StagedBackbone):
    """torchvision's ResNet / ResNeXt-50 32x4d (ImageNet stem), without ``fc``."""

    def __init__(self, arch: str = "resnet18", zero_init_residual: bool = True):
        super().__init__()
        import torchvision.models as tvm

        net = getattr(tvm, TORCHVISION_RESNETS[arch])(weights=None, zero_init_residual=zero_init_residual)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.stage3_channels = net.fc.in_features // 2  # each stage doubles the channels
        self.out_channels = net.fc.in_features

    def stage(self, k: int, h: torch.Tensor) -> torch.Tensor:
        if k == 1:
            return self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(h)))))
        return (self.layer2, self.layer3, self.layer4)[k - 2](h)

    def pool(self, h: torch.Tensor) -> torch.Tensor:
        return h.mean(dim=(2, 3))


class TorchvisionConvNeXt(StagedBackbone):
    """torchvision's ConvNeXt-T without its last Linear; ``stem="cifar"``: 3x3 stride-1 stem."""

    def __init__(self, stem: str = "imagenet", drop_path: float | None = None):
        super().__init__()
        import torchvision.models as tvm
        from torchvision.models.convnext import LayerNorm2d

        net = tvm.convnext_tiny(weights=None, **({} if drop_path is None else {"stochastic_depth_prob": drop_path}))
        if stem == "cifar":
            conv = nn.Conv2d(3, 96, kernel_size=3, stride=1, padding=1)
            nn.init.trunc_normal_(conv.weight, std=0.02)  # torchvision's ConvNeXt initialisation
            nn.init.zeros_(conv.bias)
            net.features[0] = nn.Sequential(conv, LayerNorm2d(96, eps=1e-6))
        self.features, self.avgpool = net.features, net.avgpool
        self.classifier = net.classifier[:2]  # LayerNorm2d, Flatten (the Linear, classifier.2, dropped)
        self.stage3_channels, self.out_channels = 384, 768

    def stage(self, k: int, h: torch.Tensor) -> torch.Tensor:
        return self.features[2 * k - 1](self.features[2 * k - 2](h))

    def pool(self, h: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.avgpool(h))


class TorchvisionSwin(StagedBackbone):
    """torchvision's Swin-T without ``head``; stages end with their patch merging (mmcls's count)."""

    STAGES = ((0, 1, 2), (3, 4), (5, 6), (7,))  # torchvision's ``features`` indices of stages 1..4

    def __init__(self, drop_path: float | None = None):
        super().__init__()
        import torchvision.models as tvm

        # swin_t's architecture; built from the class because swin_t() fixes the stochastic depth at 0.2
        net = tvm.SwinTransformer(patch_size=[4, 4], embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24],
                                  window_size=[7, 7], stochastic_depth_prob=0.2 if drop_path is None else drop_path)
        self.features, self.norm, self.avgpool = net.features, net.norm, net.avgpool
        self.stage3_channels = self.out_channels = 768

    def stage(self, k: int, h: torch.Tensor) -> torch.Tensor:
        for i in self.STAGES[k - 1]:
            h = self.features[i](h)
        return h

    def feature_map(self, h: torch.Tensor) -> torch.Tensor:
        return h.permute(0, 3, 1, 2)  # B x H x W x C -> B x C x H x W

    def pool(self, h: torch.Tensor) -> torch.Tensor:
        return self.avgpool(self.norm(h).permute(0, 3, 1, 2)).flatten(1)


def torchvision_backbone(arch: str, stem: str = "imagenet", width: float = 1.0, zero_init_residual: bool = True,
                         drop_path: float | None = None) -> nn.Module:
    """The torchvision backbone ``arch`` (randomly initialised; never downloads weights); the
    catalog's builder of torchvision's stems. ``width`` must be 1 (torchvision's widths)."""
    if width != 1.0:
        raise ValueError(f"torchvision's {arch} has its own widths: width must be 1.0, got {width}")
    if arch in TORCHVISION_RESNETS:
        if stem != "imagenet":
            raise ValueError(f"torchvision's {arch} has the ImageNet stem; the CIFAR stem is cifar_resnet.ResNet")
        return TorchvisionResNet(arch, zero_init_residual)
    if arch == "convnext_t":
        return TorchvisionConvNeXt(stem, drop_path)
    if arch == "swin_t":
        if stem != "imagenet":
            raise ValueError("swin_t has only its 4x4 patch-embedding stem (stem='imagenet')")
        return TorchvisionSwin(drop_path)
    raise ValueError(f"unknown torchvision backbone {arch!r}")
