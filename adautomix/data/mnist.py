"""MNIST, Fashion-MNIST and Kuzushiji-MNIST from their IDX files in a local folder.

The IDX format (LeCun et al.): a big-endian header -- two zero bytes, a type byte (0x08: unsigned
byte), the number of dimensions, one 4-byte size per dimension -- then the values. Images are
N x 28 x 28 grey, made 3-channel so that every backbone and method runs unchanged. The files are
looked for where torchvision's MNIST classes keep them (``<root>/<MNIST|FashionMNIST|KMNIST>/raw/``)
and directly in ``root``, unpacked or as the released ``.gz``.
"""
from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np
import torch

from .base import DataError, TensorData
from .catalog import DATASETS

FOLDERS = {"mnist": "MNIST", "fashionmnist": "FashionMNIST", "kmnist": "KMNIST"}  # torchvision's names
CLASS_NAMES = {  # for pictures, in label order
    "mnist": tuple(str(i) for i in range(10)),
    "fashionmnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                     "Ankle boot"),
    "kmnist": ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
}
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def read_idx(path: Path) -> np.ndarray:
    """The unsigned-byte array in IDX file ``path`` (``.gz`` read through gzip)."""
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as err:
        raise DataError(f"unreadable file {path} ({type(err).__name__}: {err})") from None
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08 or not 1 <= data[3] <= 3:
        raise DataError(f"unreadable file {path}: not an IDX file of unsigned bytes "
                        "(expected the header 00 00 08 <dimensions>)")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    values = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if values.size != math.prod(shape):
        raise DataError(f"unreadable file {path}: the header promises {math.prod(shape)} values, "
                        f"the file holds {values.size}")
    return values.reshape(shape)


def _find(root: Path, name: str, file: str) -> Path:
    for folder in (root / FOLDERS[name] / "raw", root / FOLDERS[name], root):
        for candidate in (folder / file, folder / f"{file}.gz"):
            if candidate.is_file():
                return candidate
    layout = DATASETS[name].layout.replace('<data.root>', str(root))
    raise DataError(f"{name}: no {file} under {root}; expected {layout} "
                    "(never downloaded)")


def load_mnist_split(name: str, root: str | Path) -> tuple[TensorData, TensorData]:
    """``(train, test)`` of ``name`` (mnist, fashionmnist, kmnist): 3 x 28 x 28 uint8 images."""
    root = Path(root).expanduser()
    splits = []
    for split in ("train", "test"):
        image_file, label_file = (_find(root, name, f) for f in FILES[split])
        images, labels = read_idx(image_file), read_idx(label_file)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(f"{name}: {image_file} holds {images.shape} and {label_file} {labels.shape}; "
                            "expected N x 28 x 28 images and N labels")
        grey = torch.from_numpy(images.copy()).unsqueeze(1)
        splits.append(TensorData(grey.expand(-1, 3, -1, -1).contiguous(), torch.from_numpy(labels.astype(np.int64))))
    return splits[0], splits[1]
