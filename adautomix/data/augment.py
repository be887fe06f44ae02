"""Batch augmentations of in-memory images, run on whole batches on the training device."""
from __future__ import annotations

import math

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




def resized_crop_boxes(n: int, height: int, width: int, scale: tuple[float, float],
                       ratio: tuple[float, float], rng: torch.Generator, attempts: int = 10) -> torch.Tensor:
    """The boxes of torchvision's ``RandomResizedCrop.get_params``, drawn for ``n`` images at once.

    Per image: up to ``attempts`` draws of an area fraction ~ U(scale) and an aspect ratio w/h
    ~ log-U(ratio); the first box that fits the image is taken, at a uniform position. When none
    fits, torchvision's fallback: the largest centred box whose aspect ratio is clamped to ``ratio``.

    Returns:
        n x 4 long tensor of ``(top, left, box_height, box_width)``.
    """
    area = height * width * (scale[0] + (scale[1] - scale[0]) * torch.rand(n, attempts, generator=rng,
                                                                            dtype=torch.float64))
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(lo + (hi - lo) * torch.rand(n, attempts, generator=rng, dtype=torch.float64))
    w = torch.round(torch.sqrt(area * aspect)).long()
    h = torch.round(torch.sqrt(area / aspect)).long()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.long().argmax(dim=1, keepdim=True)  # the first draw that fits
    w, h = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0]
    image_ratio = width / height
    if image_ratio < ratio[0]:
        fallback = (round(width / ratio[0]), width)
    elif image_ratio > ratio[1]:
        fallback = (height, round(height * ratio[1]))
    else:
        fallback = (height, width)
    found = fits.any(dim=1)
    h = torch.where(found, h, fallback[0])
    w = torch.where(found, w, fallback[1])
    top = (torch.rand(n, generator=rng, dtype=torch.float64) * (height - h + 1)).long()
    left = (torch.rand(n, generator=rng, dtype=torch.float64) * (width - w + 1)).long()
    top = torch.where(found, top, (height - h) // 2)
    left = torch.where(found, left, (width - w) // 2)
    return torch.stack([top, left, h, w], dim=1)


def resized_crop(x: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Crop one box per image and resize it to ``size x size`` with bicubic interpolation.

    Sampling positions are those of ``F.interpolate(..., mode="bicubic", align_corners=False)``
    on the box; taps that fall outside the image are clamped to its border.

    Args:
        x: B x C x H x W float images.
        boxes: B x 4 ``(top, left, box_height, box_width)`` in pixels.
        size: output side.

    Returns:
        B x C x size x size.
    """
    b, _, height, width = x.shape
    boxes = boxes.to(x.device, torch.float32)
    top, left, bh, bw = boxes.unbind(dim=1)
    steps = (torch.arange(size, device=x.device, dtype=torch.float32) + 0.5) / size  # pixel centres
    src_y = top[:, None] + steps[None] * bh[:, None] - 0.5  # B x size, in input pixels
    src_x = left[:, None] + steps[None] * bw[:, None] - 0.5
    grid_y = (2 * src_y + 1) / height - 1  # grid_sample's align_corners=False coordinates
    grid_x = (2 * src_x + 1) / width - 1
    grid = torch.stack([grid_x[:, None, :].expand(b, size, size), grid_y[:, :, None].expand(b, size, size)], dim=-1)
    return F.grid_sample(x, grid.to(x.dtype), mode="bicubic", padding_mode="border", align_corners=False)


def random_resized_crop(x: torch.Tensor, size: int, scale: tuple[float, float], rng: torch.Generator,
                        ratio: tuple[float, float] = (3 / 4, 4 / 3), shard: tuple[int, int] = (0, 1)
                        ) -> torch.Tensor:
    """torchvision's RandomResizedCrop (bicubic) on a whole batch: a box per image drawn as
    ``resized_crop_boxes`` does, resized to ``size x size``, values clamped to [0, 255].

    Args:
        x: B x C x H x W float images in [0, 255].
        size: output side.
        scale: range of the box's area as a fraction of the image's.
        rng: CPU generator for the boxes.
        ratio: range of the box's aspect ratio (width / height).
        shard: ``(rank, world_size)``, as for ``random_crop_flip``: boxes are drawn for the global
            batch and sliced, so the ranks together augment exactly as one process would.
    """
    b, _, height, width = x.shape
    rank, world_size = shard
    boxes = resized_crop_boxes(b * world_size, height, width, scale, ratio, rng)[rank::world_size]
    return resized_crop(x, boxes, size).clamp_(0, 255)
