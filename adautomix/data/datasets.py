"""Data sets and batch loaders; nothing is ever downloaded.

- ``digits``: scikit-learn's 1,797 handwritten 8x8 digits (shipped inside scikit-learn), upscaled
  to 3x32x32, with a fixed stratified train/test split, so every backbone and mixing method runs
  unchanged and offline.
- ``cifar10`` / ``cifar100``: the python-pickle release read from a local folder.
- ``imagefolder``: ``root/train/<class>/*`` and ``root/val/<class>/*``.

In-memory sets (digits, CIFAR) are kept as uint8 tensors; crop, flip and normalisation run on
whole batches on the training device (airbench style). Each loader yields ``(x, y)`` with
``x: B x 3 x H x W`` float (normalised) and ``y: B`` long, sharded over data-parallel ranks.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .augment import random_crop_flip  # noqa: F401  (part of this module's interface)
from .base import DataError, DataSpec, TensorData
from .cifar import CIFAR_LAYOUT, cifar_class_names, load_cifar_split  # noqa: F401
from .digits import digits_normalization, load_digits_split
from .folders import imagefolder_classes
from .loaders import IMAGENET_MEAN, IMAGENET_STD, FolderLoader, TensorLoader

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)  # SPEC.md, published configs
CIFAR_STD = (0.2023, 0.1994, 0.2010)


def normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (in [0, 1] units) that the loaders of data set ``name`` normalise
    images with (digits: its own statistics; imagefolder: ImageNet's; CIFAR: the published ones)."""
    if name == "digits":
        return digits_normalization(load_digits_split()[0])
    if name == "imagefolder":
        return IMAGENET_MEAN, IMAGENET_STD
    return CIFAR_MEAN, CIFAR_STD


def _limit(data: TensorData, n: int) -> TensorData:
    return TensorData(data.images[:n], data.labels[:n]) if n else data


def build_loaders(cfg, device: torch.device, rank: int = 0, world_size: int = 1):
    """Train and test loaders plus the ``DataSpec`` for ``cfg.data``.

    Raises ``DataError`` (before any work) when the data cannot be found or read.
    """
    d, batch = cfg.data, cfg.train.batch_size
    if d.name == "imagefolder":
        root = Path(d.root).expanduser()
        classes = imagefolder_classes(root)
        spec = DataSpec(len(classes), IMAGENET_MEAN, IMAGENET_STD, 0, True, tuple(classes))
        common = dict(image_size=d.image_size, device=device, seed=cfg.seed, rank=rank,
                      world_size=world_size, workers=d.loader_workers)
        return (FolderLoader(root, "train", batch_size=batch, train=True, **common),
                FolderLoader(root, "val", batch_size=batch, train=False, **common), spec)
    if d.name == "digits":
        train, test = load_digits_split()
        # no flip: a mirrored digit is another symbol
        spec = DataSpec(10, *digits_normalization(train), 4, False, tuple(str(i) for i in range(10)))
    else:
        train, test = load_cifar_split(d.name, d.root)
        spec = DataSpec(CIFAR_LAYOUT[d.name][4], CIFAR_MEAN, CIFAR_STD, 4, True,
                        cifar_class_names(d.name, d.root))
    train, test = _limit(train, d.limit_train), _limit(test, d.limit_test)
    if len(train.labels) < batch:
        raise DataError(f"{d.name}: {len(train.labels)} training images, fewer than one batch "
                        f"(train.batch_size={batch})")
    return (TensorLoader(train, spec, batch, True, device, cfg.seed, rank, world_size),
            TensorLoader(test, spec, batch, False, device, cfg.seed, rank, world_size), spec)
