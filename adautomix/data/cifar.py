"""CIFAR-10 / CIFAR-100 from the python-pickle release in a local folder (never downloaded).

Each file of the release is a pickled dict with bytes keys: ``b'data'`` (N x 3072 uint8: 1024
red, 1024 green, 1024 blue values, row-major) and ``b'labels'`` (CIFAR-10) or ``b'fine_labels'``
(CIFAR-100).
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from .base import DataError, TensorData

CIFAR_LAYOUT = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"],
                b"labels", 10),
    "cifar100": ("cifar-100-python", ["train"], ["test"], b"fine_labels", 100),
}
# the release's file of class names and its key (optional: pictures show indices without it)
CIFAR_META = {"cifar10": ("batches.meta", b"label_names"), "cifar100": ("meta", b"fine_label_names")}


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
    except Exception as err:  # noqa: BLE001 - any corrupt pickle is the same problem for the user
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
    except Exception:  # noqa: BLE001 - names only label pictures; training does not need them
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


