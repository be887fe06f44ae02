"""Batch augmentations of in-memory images, run on whole batches on the training device."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(x: torch.Tensor, padding: int, flip: bool, rng: torch.Generator,
                     shard: tuple[int, int] = (0, 1)) -> torch.Tensor:
    """Random crop (reflect padding) and horizontal flip of a whole batch at once.

    Args:
        x: B x C x H x W images.
        padding: pixels of reflect padding before the crop; 0 skips the crop.
        flip: flip each image left-right with probability 1/2.
        rng: CPU generator for the offsets and flips.
        shard: ``(rank, world_size)``: ``x`` holds elements ``rank, rank + W, ...`` of a global
            batch of ``B * W``; the draws are made for the global batch and sliced the same way,
            so the union over ranks is augmented exactly as one process would augment it.
    """
    b, c, h, w = x.shape
    rank, world_size = shard

    def draw(values: torch.Tensor) -> torch.Tensor:
        return values[rank::world_size].to(x.device)

    if padding:
        padded = F.pad(x, (padding,) * 4, mode="reflect")
        dy = draw(torch.randint(0, 2 * padding + 1, (b * world_size,), generator=rng))
        dx = draw(torch.randint(0, 2 * padding + 1, (b * world_size,), generator=rng))
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        x = padded[torch.arange(b, device=x.device)[:, None, None, None],
                   torch.arange(c, device=x.device)[None, :, None, None], rows, cols]
    if flip:
        mask = draw(torch.rand(b * world_size, generator=rng) < 0.5)
        x = torch.where(mask[:, None, None, None], x.flip(-1), x)
    return x


