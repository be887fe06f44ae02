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

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)  # SPEC.md, published configs
CIFAR_STD = (0.2023, 0.1994, 0.2010)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DIGITS_SPLIT_SEED = 0  # fixed: every run, whatever its seed, sees the same test set
DIGITS_TEST_FRACTION = 0.2

CIFAR_LAYOUT = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"],
                b"labels", 10),
    "cifar100": ("cifar-100-python", ["train"], ["test"], b"fine_labels", 100),
}
# the release's file of class names and its key (optional: pictures show indices without it)
CIFAR_META = {"cifar10": ("batches.meta", b"label_names"), "cifar100": ("meta", b"fine_label_names")}


class DataError(RuntimeError):
    """A data set that cannot be read; the message names the path and the expected layout."""


@dataclass
class TensorData:
    """A whole split in memory. ``images``: N x 3 x H x W uint8, ``labels``: N long."""

    images: torch.Tensor
    labels: torch.Tensor


@dataclass
class DataSpec:
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop_padding: int  # random-crop padding (reflect); 0 = none
    flip: bool  # random horizontal flip
    class_names: tuple[str, ...] = ()  # for pictures; () = the class index


# --------------------------------------------------------------------------------------------
# Readers


def load_digits_split() -> tuple[TensorData, TensorData]:
    """scikit-learn's digits as 3x32x32 uint8 images, split 80/20, stratified, fixed seed."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.from_numpy(digits.images).float().unsqueeze(1) / 16.0  # N x 1 x 8 x 8 in [0, 1]
    images = F.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False)
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    labels = torch.from_numpy(digits.target).long()
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=DIGITS_TEST_FRACTION, stratify=digits.target,
        random_state=DIGITS_SPLIT_SEED,
    )
    train_idx, test_idx = torch.from_numpy(np.sort(train_idx)), torch.from_numpy(np.sort(test_idx))
    return (TensorData(images[train_idx], labels[train_idx]),
            TensorData(images[test_idx], labels[test_idx]))


def _cifar_folder(root: Path, name: str) -> Path:
    folder_name, train_files, test_files = CIFAR_LAYOUT[name][:3]
    if (root / folder_name).is_dir():
        return root / folder_name  # a file missing inside is named by _unpickle
    if root.is_dir() and any((root / f).exists() for f in train_files + test_files):
        return root
    files = ", ".join(train_files + test_files)
    raise DataError(
        f"{name}: no data under {root}. Expected the python-pickle release unpacked as "
        f"{root / folder_name}/ holding {files} (it is never downloaded)"
    )


def _unpickle(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DataError(f"missing file {path}: the CIFAR python-pickle release needs it")
    try:
        with path.open("rb") as fh:
            batch = pickle.load(fh, encoding="bytes")
        data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except Exception as err:  # any corrupt pickle is the same problem for the user
        raise DataError(
            f"unreadable file {path}: expected a pickled dict with b'data' (N x 3072 uint8) "
            f"and {label_key!r} ({type(err).__name__}: {err})"
        ) from None
    if len(data) != len(labels):
        raise DataError(f"unreadable file {path}: {len(data)} images but {len(labels)} labels")
    return data, labels


def cifar_class_names(name: str, root: str | Path) -> tuple[str, ...]:
    """The class names from the release's meta file, or () when it is missing or unreadable."""
    file, key = CIFAR_META[name]
    try:
        with (_cifar_folder(Path(root).expanduser(), name) / file).open("rb") as fh:
            return tuple(n.decode() for n in pickle.load(fh, encoding="bytes")[key])
    except Exception:  # names only label pictures; training does not need them
        return ()


def load_cifar_split(name: str, root: str | Path) -> tuple[TensorData, TensorData]:
    """CIFAR-10/100 from ``root`` (the folder holding ``cifar-10-batches-py/`` or
    ``cifar-100-python/``, or that folder itself)."""
    folder = _cifar_folder(Path(root).expanduser(), name)
    _, train_files, test_files, label_key, _ = CIFAR_LAYOUT[name]

    def read(files: list[str]) -> TensorData:
        parts = [_unpickle(folder / f, label_key) for f in files]
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        return TensorData(torch.from_numpy(images), torch.from_numpy(labels))

    return read(train_files), read(test_files)


def imagefolder_classes(root: Path) -> list[str]:
    """Check ``root/train/<class>/*`` and ``root/val/<class>/*``; return the class names."""
    layout = f"expected {root}/train/<class>/*.jpg and {root}/val/<class>/*.jpg"
    classes = {}
    for split in ("train", "val"):
        split_dir = root / split
        if not split_dir.is_dir():
            raise DataError(f"imagefolder: missing folder {split_dir}; {layout}")
        names = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
        if not names:
            raise DataError(f"imagefolder: no class folders in {split_dir}; {layout}")
        for name in names:
            if not any(p.is_file() for p in (split_dir / name).iterdir()):
                raise DataError(f"imagefolder: empty class folder {split_dir / name}; {layout}")
        classes[split] = names
    if classes["train"] != classes["val"]:
        raise DataError(f"imagefolder: class folders of {root}/train and {root}/val differ")
    return classes["train"]


# --------------------------------------------------------------------------------------------
# Loaders


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


def digits_normalization(train: TensorData) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std of the digits training split (in [0, 1] units), the same for each channel."""
    images = train.images.float()
    return (float(images.mean() / 255),) * 3, (float(images.std() / 255),) * 3


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
    from .gpu_loader import tensor_loaders  # on the device, or the CPU pipeline (data.gpu_loader)

    return (*tensor_loaders(train, test, spec, batch, device, cfg.seed, rank, world_size, d.gpu_loader), spec)
