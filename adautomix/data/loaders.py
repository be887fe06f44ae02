"""Batch loaders: ``TensorLoader`` for splits held in memory, ``FolderLoader`` for image files read
through a DataLoader. Each yields ``(x, y)`` with ``x: B x 3 x H x W`` float (normalised) and
``y: B`` long, sharded over data-parallel ranks."""
from __future__ import annotations

from pathlib import Path

import torch

from .augment import random_crop_flip
from .base import DataError, DataSpec, TensorData

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TensorLoader:
    """Batches of an in-memory split, sharded over ``world_size`` ranks.

    Each epoch draws one permutation from ``(seed, epoch)``; global batch ``k`` is the slice
    ``perm[k*B:(k+1)*B]`` and rank ``r`` takes its elements ``r, r+W, ...``, so the union of the
    ranks' batches is exactly the single-process batch.
    """

    def __init__(self, data: TensorData, spec: DataSpec, batch_size: int, train: bool,
                 device: torch.device, seed: int = 0, rank: int = 0, world_size: int = 1):
        self.data, self.spec, self.train, self.device = data, spec, train, device
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.epoch = 0
        self.mean = torch.tensor(spec.mean, device=device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(spec.std, device=device).view(1, 3, 1, 1) * 255
        self.images = data.images.to(device)
        self.labels = data.labels.to(device)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.train else -(-n // self.batch_size)

    def __iter__(self):
        n = len(self.labels)
        if self.train:
            rng = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(n, generator=rng)
            # the same stream on every rank: each takes its slice of the global batch's draws
            aug_rng = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) * 64)
        else:
            order = torch.arange(n)
        for k in range(len(self)):
            idx = order[k * self.batch_size:(k + 1) * self.batch_size][self.rank::self.world_size]
            idx = idx.to(self.device)
            x = self.images[idx].float()
            if self.train:
                x = random_crop_flip(x, self.spec.crop_padding, self.spec.flip, aug_rng,
                                     shard=(self.rank, self.world_size))
            yield (x - self.mean) / self.std, self.labels[idx]


class FolderLoader:
    """``torchvision`` ImageFolder through a DataLoader, sharded like ``TensorLoader``."""

    def __init__(self, root: Path, split: str, image_size: int, batch_size: int, train: bool,
                 device: torch.device, seed: int = 0, rank: int = 0, world_size: int = 1,
                 workers: int = 2):
        from torchvision import datasets, transforms

        normalize = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
        if train:
            tf = transforms.Compose([transforms.RandomResizedCrop(image_size),
                                     transforms.RandomHorizontalFlip(), transforms.ToTensor(), normalize])
        else:
            tf = transforms.Compose([transforms.Resize(int(round(image_size * 8 / 7))),
                                     transforms.CenterCrop(image_size), transforms.ToTensor(), normalize])
        self.dataset = datasets.ImageFolder(str(root / split), transform=tf, loader=_load_image)
        self.batch_size, self.train, self.device = batch_size, train, device
        self.seed, self.rank, self.world_size, self.workers = seed, rank, world_size, workers
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.train else -(-n // self.batch_size)

    def __iter__(self):
        n = len(self.dataset)
        if self.train:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch))
        else:
            order = torch.arange(n)
        batches = [order[k * self.batch_size:(k + 1) * self.batch_size][self.rank::self.world_size].tolist()
                   for k in range(len(self))]
        torch.manual_seed(self.seed * 1_000_003 + self.epoch * 64 + self.rank)  # augmentation draws
        loader = torch.utils.data.DataLoader(self.dataset, batch_sampler=batches, num_workers=self.workers,
                                             pin_memory=self.device.type == "cuda")
        for x, y in loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def _load_image(path: str):
    from PIL import Image

    try:
        with open(path, "rb") as fh:
            return Image.open(fh).convert("RGB")
    except Exception as err:
        raise DataError(f"unreadable image {path} ({type(err).__name__}: {err})") from None


