"""The forward every backbone shares (``cifar_resnet.ResNet`` and torchvision's in ``backbones.py``):
four stages, the stage-3 map kept, mixing at the input of a stage."""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn


class StagedBackbone(nn.Module):
    """The shared forward: four stages, the stage-3 map kept, mixing at the input of a stage."""

    def stage(self, k: int, h: torch.Tensor) -> torch.Tensor:
        """Stage k = 1..4: h_{k-1} -> h_k, with h_0 the image; stage 1 includes the stem."""
        raise NotImplementedError

    def pool(self, h: torch.Tensor) -> torch.Tensor:
        """h_4 -> B x out_channels: global average pooling."""
        return h.mean(dim=(2, 3))

    def feature_map(self, h: torch.Tensor) -> torch.Tensor:
        """h_3 as B x C x H x W."""
        return h

    def forward(self, x: torch.Tensor, mix_at: int | None = None,
                mix_fn: Callable[[torch.Tensor], torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the four stages; returns ``(stage3 B x C3 x h x w, pooled B x out_channels)``.

        Args:
            x: B x 3 x H x W images (h_0).
            mix_at: k in 0..3: the hidden state h_k entering stage k+1 is replaced by
                ``mix_fn(h_k)`` (k = 0: the images themselves); None: no mixing.
            mix_fn: a function of a batch of hidden states that keeps their shape.
        """
        h, stage3 = x, None
        for k in range(4):
            if k == mix_at:
                h = mix_fn(h)
            h = self.stage(k + 1, h)
            if k == 2:
                stage3 = self.feature_map(h)
        return stage3, self.pool(h)
