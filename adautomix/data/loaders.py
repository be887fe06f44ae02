"""Batch loaders: ``TensorLoader`` for splits held in memory, ``FolderLoader`` for image files read
through a DataLoader. Each yields ``(x, y)`` with ``x: B x 3 x H x W`` float (normalised) and
``y: B`` long, sharded over data-parallel ranks."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .augment import random_crop_flip, random_resized_crop
from .base import DataError, DataSpec, TensorData
from .catalog import IMAGENET_MEAN, IMAGENET_STD


class TensorLoader:
    """Batches of an in-memory split, sharded over ``world_size`` ranks.

    Each epoch draws one permutation from ``(seed, epoch)``; global batch ``k`` is the slice
    ``perm[k*B:(k+1)*B]`` and rank ``r`` takes its elements ``r, r+W, ...``, so the union of the
    ranks' batches is exactly the single-process batch. ``set_epoch(epoch, start, rng_state)``
    continues an epoch at batch ``start`` with the augmentation generator's state saved there
    (``rng_state()``, taken after a batch was used), so the rest of the epoch is drawn exactly as
    it would have been.
    """

    def __init__(self, data: TensorData, spec: DataSpec, batch_size: int, train: bool,
                 device: torch.device, seed: int = 0, rank: int = 0, world_size: int = 1):
        self.data, self.spec, self.train, self.device = data, spec, train, device
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.epoch, self.start, self.aug_rng, self.resume_rng = 0, 0, None, None
        self.mean = torch.tensor(spec.mean, device=device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(spec.std, device=device).view(1, 3, 1, 1) * 255
        self.images = data.images.to(device)
        self.labels = data.labels.to(device)

    def set_epoch(self, epoch: int, start: int = 0, rng_state: torch.Tensor | None = None) -> None:
        self.epoch, self.start, self.resume_rng = epoch, start, rng_state

    def rng_state(self) -> torch.Tensor | None:
        """The augmentation generator's state now (between two batches of a training epoch)."""
        return self.aug_rng.get_state() if self.aug_rng is not None else None

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
            if self.resume_rng is not None:
                aug_rng.set_state(self.resume_rng)
            self.aug_rng = aug_rng
        else:
            order = torch.arange(n)
        start, self.start, self.resume_rng = (self.start if self.train else 0), 0, None
        for k in range(start, len(self)):
            idx = order[k * self.batch_size:(k + 1) * self.batch_size][self.rank::self.world_size]
            idx = idx.to(self.device)
            x = self.images[idx].float()
            size, shard = self.spec.image_size or x.shape[-1], (self.rank, self.world_size)
            if self.train and self.spec.resized_crop:
                x = random_resized_crop(x, size, self.spec.resized_crop, aug_rng, shard=shard)
                x = random_crop_flip(x, 0, self.spec.flip, aug_rng, shard=shard)
            elif self.train:
                x = random_crop_flip(x, self.spec.crop_padding, self.spec.flip, aug_rng, shard=shard)
            elif self.spec.image_size and x.shape[-2:] != (size, size):  # test images at another size: resized whole
                x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False).clamp_(0, 255)
            yield (x - self.mean) / self.std, self.labels[idx]


def image_transforms(pipeline: str, image_size: int, train: bool):
    """The torchvision transforms of a file-based data set (see ``catalog``): PIL image -> normalised
    3 x image_size x image_size tensor."""
    from torchvision import transforms as T

    bicubic = T.InterpolationMode.BICUBIC if pipeline == "imagenet" else T.InterpolationMode.BILINEAR
    resize = int(round(image_size * 8 / 7))  # 256 for 224
    if train and pipeline == "finegrained":
        steps = [T.Resize(resize), T.RandomResizedCrop(image_size, scale=(0.5, 1.0)), T.RandomHorizontalFlip()]
    elif train:
        steps = [T.RandomResizedCrop(image_size, interpolation=bicubic), T.RandomHorizontalFlip()]
    else:
        steps = [T.Resize(resize, interpolation=bicubic), T.CenterCrop(image_size)]
    return T.Compose(steps + [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


class FolderLoader:
    """Batches of a map-style data set of image files (its transform set) through a DataLoader,
    sharded like ``TensorLoader``."""

    def __init__(self, dataset, batch_size: int, train: bool, device: torch.device, seed: int = 0,
                 rank: int = 0, world_size: int = 1, workers: int = 2):
        self.dataset = dataset
        self.batch_size, self.train, self.device = batch_size, train, device
        self.seed, self.rank, self.world_size, self.workers = seed, rank, world_size, workers
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0, rng_state: torch.Tensor | None = None) -> None:
        """Continue ``epoch`` at batch ``start``: the same images in the same order; the
        augmentation of the rest of the epoch is drawn afresh (the DataLoader's workers draw it)."""
        self.epoch, self.start = epoch, start

    def rng_state(self) -> None:
        return None

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.train else -(-n // self.batch_size)

    def __iter__(self):
        n = len(self.dataset)
        if self.train:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch))
        else:
            order = torch.arange(n)
        start, self.start = (self.start if self.train else 0), 0
        batches = [order[k * self.batch_size:(k + 1) * self.batch_size][self.rank::self.world_size].tolist()
                   for k in range(start, len(self))]
        torch.manual_seed(self.seed * 1_000_003 + self.epoch * 64 + self.rank)  # augmentation draws
        loader = torch.utils.data.DataLoader(self.dataset, batch_sampler=batches, num_workers=self.workers,
                                             pin_memory=self.device.type == "cuda")
        for x, y in loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def load_image(path: str):
    """An RGB PIL image; ``DataError`` naming the file when it cannot be read."""
    from PIL import Image

    try:
        with open(path, "rb") as fh:
            return Image.open(fh).convert("RGB")
    except Exception as err:  # noqa: BLE001 - whatever PIL raises, the file is unreadable
        raise DataError(f"unreadable image {path} ({type(err).__name__}: {err})") from None


