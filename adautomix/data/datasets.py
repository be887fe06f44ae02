"""Data sets and batch loaders; nothing is ever downloaded.

``build_loaders(cfg, device)`` reads the data set ``cfg.data.name`` (the table of data sets, their
layouts and augmentation: ``catalog.py``) and returns its train and test loaders and its
``DataSpec``. One reader module per source: ``digits.py``, ``cifar.py``, ``mnist.py`` (MNIST,
Fashion-MNIST, KMNIST), ``tinyimagenet.py``, ``folders.py`` (imagefolder, ImageNet),
``finegrained.py`` (CUB-200, FGVC-Aircraft, Stanford Cars).

Small-image sets (digits, CIFAR, the MNIST family, Tiny-ImageNet) are held in memory as uint8
tensors; crop, flip and normalisation run on whole batches on the training device (airbench
style, ``augment.py``). The others are image files read through a DataLoader with torchvision's
transforms. Each loader yields ``(x, y)`` with ``x: B x 3 x H x W`` float (normalised) and
``y: B`` long, sharded over data-parallel ranks (``loaders.py``).
"""
from __future__ import annotations

import torch

from .augment import random_crop_flip  # noqa: F401  (part of this module's interface)
from .base import DataError, DataSpec, TensorData
from .catalog import DATASETS, RESIZED_SCALE
from .cifar import cifar_class_names, load_cifar_split
from .digits import digits_normalization, load_digits_split
from .finegrained import aircraft_datasets, cars_datasets, cub_datasets
from .folders import folder_datasets, imagefolder_classes  # noqa: F401
from .loaders import FolderLoader
from .mnist import CLASS_NAMES, load_mnist_split
from .tinyimagenet import load_tinyimagenet_split

FILE_READERS = {"imagefolder": lambda root, size: folder_datasets("imagefolder", root, size),
                "imagenet": lambda root, size: folder_datasets("imagenet", root, size),
                "cub200": cub_datasets, "aircraft": aircraft_datasets, "cars": cars_datasets}


def normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (in [0, 1] units) that the loaders of data set ``name`` normalise
    images with (the catalog's; digits: its own training split's)."""
    if DATASETS[name].mean is None:
        return digits_normalization(load_digits_split()[0])
    return DATASETS[name].mean, DATASETS[name].std


def read_in_memory(name: str, root) -> tuple[TensorData, TensorData, tuple[str, ...]]:
    """``(train, test, class_names)`` of an in-memory data set (``DATASETS[name].in_memory``)."""
    if name == "digits":
        train, test = load_digits_split()
        return train, test, tuple(str(i) for i in range(10))
    if name in ("cifar10", "cifar100"):
        return (*load_cifar_split(name, root), cifar_class_names(name, root))
    if name == "tinyimagenet":
        return load_tinyimagenet_split(root)
    return (*load_mnist_split(name, root), CLASS_NAMES[name])


def _limit(data: TensorData, n: int) -> TensorData:
    return TensorData(data.images[:n], data.labels[:n]) if n else data


def build_loaders(cfg, device: torch.device, rank: int = 0, world_size: int = 1):
    """Train and test loaders plus the ``DataSpec`` for ``cfg.data``.

    Raises ``DataError`` (before any work) when the data cannot be found or read.
    """
    d, batch = cfg.data, cfg.train.batch_size
    info = DATASETS[d.name]
    size = d.image_size or info.image_size
    shard = dict(device=device, seed=cfg.seed, rank=rank, world_size=world_size)
    if not info.in_memory:
        train_set, test_set, names = FILE_READERS[d.name](d.root, size)
        if d.limit_train or d.limit_test:
            train_set, test_set = (torch.utils.data.Subset(s, range(min(n, len(s)))) if n else s
                                   for s, n in ((train_set, d.limit_train), (test_set, d.limit_test)))
        _check_one_batch(d.name, len(train_set), batch)
        spec = DataSpec(len(names), info.mean, info.std, 0, True, names, size)
        return (FolderLoader(train_set, batch, True, workers=d.loader_workers, **shard),
                FolderLoader(test_set, batch, False, workers=d.loader_workers, **shard), spec)
    train, test, names = read_in_memory(d.name, d.root)
    native = train.images.shape[-1]
    mean, std = digits_normalization(train) if info.mean is None else (info.mean, info.std)
    resized_crop = info.resized_crop or (RESIZED_SCALE if size != native else None)
    spec = DataSpec(len(names) or info.num_classes, mean, std, info.crop_padding, info.flip, names, size,
                    resized_crop)
    train, test = _limit(train, d.limit_train), _limit(test, d.limit_test)
    _check_one_batch(d.name, len(train.labels), batch)
    from .gpu_loader import tensor_loaders  # on the device, or the CPU pipeline (data.gpu_loader)

    return (*tensor_loaders(train, test, spec, batch, device, cfg.seed, rank, world_size, d.gpu_loader), spec)


def _check_one_batch(name: str, n: int, batch: int) -> None:
    if n < batch:
        raise DataError(f"{name}: {n} training images, fewer than one batch (train.batch_size={batch})")
