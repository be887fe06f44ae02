"""A loader that keeps a whole in-memory data set on the training device (airbench's approach).

Keller Jordan's cifar10-airbench (https://github.com/KellerJordan/cifar10-airbench) keeps CIFAR
on the GPU as one tensor and crops and flips whole batches there, so no host process, pinned
buffer or copy stands between the data and the model. ``DeviceTensorLoader`` does the same for
any ``TensorData`` split (digits, CIFAR, and the other small-image sets kept as tensors):

- the uint8 images (N x C x H x W) and labels go to the device once;
- each epoch, the batch order and every crop offset and flip of the epoch are drawn on the CPU
  from exactly the generators and in exactly the order of the CPU pipeline
  (``TensorLoader`` + ``random_crop_flip``), and go to the device in one copy;
- each batch is one gather: row ``i`` of an output image is row ``reflect(dy + i - p)`` of the
  stored image, column ``j`` is column ``reflect(dx + j - p)`` (flipped: ``dx + W-1-j - p``),
  which is the window of the reflect-padded image the CPU pipeline crops, mirrored where it
  mirrors. The images are converted to float and normalised after the gather, with the CPU
  pipeline's arithmetic, so the batches are the CPU pipeline's bit for bit, on any device.

Nothing in a training step waits for the host: no per-batch copy, no per-batch draw.
``tensor_loaders`` picks this loader or the CPU pipeline (``data.gpu_loader``).
"""
from __future__ import annotations

import torch

from .base import DataSpec, TensorData
from .loaders import TensorLoader


def use_device_loader(setting: bool | str, device: torch.device) -> bool:
    """``data.gpu_loader``: true, false, or ``"auto"`` (on for CUDA devices)."""
    return device.type == "cuda" if setting == "auto" else bool(setting)


def _reflect(t: torch.Tensor, size: int) -> torch.Tensor:
    """Index into a length-``size`` axis of positions ``t`` in [-size+1, 2*size-2], reflecting
    at the borders without repeating the edge (``F.pad(mode="reflect")``)."""
    t = t.abs()
    return torch.where(t > size - 1, 2 * (size - 1) - t, t)


class DeviceTensorLoader(TensorLoader):
    """Batches of an in-memory split that lives on ``device``; the same batches as
    ``TensorLoader`` (same arguments) bit for bit, sharded the same way over ranks.

    Args:
        data: the split (``images`` N x C x H x W uint8, ``labels`` N).
        spec: normalisation and augmentation (``crop_padding``, reflect; ``flip``).
        batch_size: global batch size; rank ``r`` of ``world_size`` takes elements r, r+W, ...
        train: shuffle and augment (else the split in order, last batch partial).
        device: where the data lives and the batches are made.
        seed: with the epoch, seeds the order and the augmentation.
    """

    def __init__(self, data: TensorData, spec: DataSpec, batch_size: int, train: bool,
                 device: torch.device, seed: int = 0, rank: int = 0, world_size: int = 1):
        _, _, h, w = data.images.shape
        if train and spec.crop_padding >= min(h, w):
            raise ValueError(f"crop padding {spec.crop_padding} needs images larger than {h}x{w}")
        # the images, labels and normalisation constants go to the device as TensorLoader's do
        super().__init__(data, spec, batch_size, train, device, seed, rank, world_size)

    def _epoch_draws(self):
        """This rank's share of the epoch, drawn on the CPU as ``TensorLoader`` and
        ``random_crop_flip`` draw it batch by batch: ``(sizes, indices, dy, dx, flips)``, the
        last four concatenated over the epoch's batches (dy, dx, flips: None when unused)."""
        n, b, p = len(self.labels), self.batch_size, self.spec.crop_padding
        shard = slice(self.rank, None, self.world_size)
        rng = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(n, generator=rng)
        aug_rng = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) * 64)
        sizes, idx, dy, dx, flip = [], [], [], [], []
        for k in range(len(self)):
            local = order[k * b:(k + 1) * b][shard]
            sizes.append(len(local))
            idx.append(local)
            draws = len(local) * self.world_size  # the draws are made for the global batch
            if p:
                dy.append(torch.randint(0, 2 * p + 1, (draws,), generator=aug_rng)[shard])
                dx.append(torch.randint(0, 2 * p + 1, (draws,), generator=aug_rng)[shard])
            if self.spec.flip:
                flip.append((torch.rand(draws, generator=aug_rng) < 0.5)[shard])
        # one host-to-device copy per epoch; the batches are slices of these
        to = lambda parts: torch.cat(parts).to(self.device, non_blocking=True) if parts else None  # noqa: E731
        return sizes, to(idx), to(dy), to(dx), to(flip)

    def __iter__(self):
        if not self.train:  # evaluation: the split in order, this rank's elements of each batch
            order = torch.arange(len(self.labels), device=self.device)
            for k in range(len(self)):
                i = order[k * self.batch_size:(k + 1) * self.batch_size][self.rank::self.world_size]
                yield self._normalize(self.images[i]), self.labels[i]
            return
        sizes, idx, dy, dx, flip = self._epoch_draws()  # the whole epoch's: a resume skips into them
        _, c, h, w = self.images.shape
        p = self.spec.crop_padding
        channels = torch.arange(c, device=self.device)[None, :, None, None]
        rows_base, cols_base = torch.arange(h, device=self.device), torch.arange(w, device=self.device)
        skip, self.start = self.start, 0
        start = sum(sizes[:skip])
        for size in sizes[skip:]:
            batch = slice(start, start + size)
            start += size
            rows, cols = rows_base.expand(size, h), cols_base.expand(size, w)
            if p:  # window (dy, dx) of the image padded by p
                rows = _reflect(dy[batch, None] + rows - p, h)
                cols = dx[batch, None] + cols - p
            if flip is not None:  # a mirrored window: column j shows window column W-1-j
                cols = torch.where(flip[batch, None], cols.flip(-1), cols)
            if p:
                cols = _reflect(cols, w)
            i = idx[batch]
            x = self.images[i[:, None, None, None], channels, rows[:, None, :, None], cols[:, None, None, :]]
            yield self._normalize(x), self.labels[i]

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) / self.std


class HostToDevice:
    """A CPU loader's batches moved to ``device`` (pinned memory, asynchronous copy): the CPU
    pipeline for a CUDA run with ``data.gpu_loader=false``."""

    def __init__(self, loader: TensorLoader, device: torch.device):
        self.loader, self.device = loader, device

    def set_epoch(self, epoch: int, start: int = 0, rng_state: torch.Tensor | None = None) -> None:
        self.loader.set_epoch(epoch, start, rng_state)

    def rng_state(self) -> torch.Tensor | None:
        return self.loader.rng_state()

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        pin = self.device.type == "cuda"
        for x, y in self.loader:
            if pin:
                x, y = x.pin_memory(), y.pin_memory()
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def tensor_loaders(train: TensorData, test: TensorData, spec: DataSpec, batch_size: int,
                   device: torch.device, seed: int, rank: int, world_size: int,
                   gpu_loader: bool | str = "auto"):
    """Train and test loaders of an in-memory data set: on the device (``DeviceTensorLoader``)
    when ``data.gpu_loader`` says so, else the CPU pipeline (``TensorLoader`` on the CPU, its
    batches copied to ``device``)."""
    if use_device_loader(gpu_loader, device):
        if spec.resized_crop or spec.image_size not in (None, train.images.shape[-1]):
            # RandomResizedCrop / resizing (Tiny-ImageNet's pipeline): TensorLoader's batched
            # version, on the device as well (its draws are made per batch on the host)
            return (TensorLoader(train, spec, batch_size, True, device, seed, rank, world_size),
                    TensorLoader(test, spec, batch_size, False, device, seed, rank, world_size))
        return (DeviceTensorLoader(train, spec, batch_size, True, device, seed, rank, world_size),
                DeviceTensorLoader(test, spec, batch_size, False, device, seed, rank, world_size))
    cpu = torch.device("cpu")
    loaders = (TensorLoader(train, spec, batch_size, True, cpu, seed, rank, world_size),
               TensorLoader(test, spec, batch_size, False, cpu, seed, rank, world_size))
    return loaders if device.type == "cpu" else tuple(HostToDevice(lo, device) for lo in loaders)
