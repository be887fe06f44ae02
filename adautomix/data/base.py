"""What every reader and loader shares: the error a bad data set raises, a split held in memory,
and what the training loop needs to know about a data set."""
from __future__ import annotations

from dataclasses import dataclass

import torch


class DataError(RuntimeError):
    """A data set that cannot be read; the message names the path and the expected layout."""


@dataclass
class TensorData:
    """A whole split in memory. ``images``: N x 3 x H x W uint8, ``labels``: N long."""

    images: torch.Tensor
    labels: torch.Tensor


@dataclass
class DataSpec:
    """What the loop and the loaders need to know about a data set (in-memory sets: augmentation)."""

    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop_padding: int  # random-crop padding (reflect); 0 = none
    flip: bool  # random horizontal flip
    class_names: tuple[str, ...] = ()  # for pictures; () = the class index
    image_size: int = 0  # side of the images the loaders yield; 0 = as stored
    resized_crop: tuple[float, float] | None = None  # RandomResizedCrop scale range, instead of the padded crop

