"""Tiny data sets written to disk in the exact formats users have, for the tests.

- CIFAR-10 / CIFAR-100: the python-pickle release (``cifar-10-batches-py/``,
  ``cifar-100-python/``): each file a pickled dict with bytes keys, ``b'data'`` an N x 3072 uint8
  array (1024 red, then 1024 green, then 1024 blue values, row-major) and ``b'labels'``
  (CIFAR-10) or ``b'fine_labels'`` / ``b'coarse_labels'`` (CIFAR-100), pickled with protocol 2 as
  the release was.
- imagefolder: ``root/{train,val}/<class>/*.png``.

Imported by the test modules as ``from tiny_data import ...`` (pytest puts ``tests/`` on sys.path).
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


def _pickle(path: Path, batch: dict) -> None:
    with path.open("wb") as fh:
        pickle.dump(batch, fh, protocol=2)


def write_cifar100(root: Path, n_train: int = 40, n_test: int = 20, seed: int = 0) -> dict:
    """Write ``root/cifar-100-python/{train,test,meta}``; returns the arrays written.

    Returns ``{"train": (data N x 3072 uint8, fine_labels N int), "test": (...)}``.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, n in (("train", n_train), ("test", n_test)):
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        fine = rng.integers(0, 100, size=n).tolist()
        _pickle(folder / split, {
            b"filenames": [f"img_{i:05d}.png".encode() for i in range(n)],
            b"batch_label": f"{split}ing batch 1 of 1".encode(),
            b"fine_labels": fine,
            b"coarse_labels": [label // 5 for label in fine],
            b"data": data,
        })
        written[split] = (data, np.asarray(fine))
    _pickle(folder / "meta", {
        b"fine_label_names": [f"class_{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"superclass_{i}".encode() for i in range(20)],
    })
    return written


def write_cifar10(root: Path, n_per_batch: int = 8, seed: int = 0) -> None:
    """Write ``root/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        _pickle(folder / name, {
            b"batch_label": name.encode(),
            b"labels": rng.integers(0, 10, size=n_per_batch).tolist(),
            b"data": rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8),
            b"filenames": [f"{name}_{i}.png".encode() for i in range(n_per_batch)],
        })
    _pickle(folder / "batches.meta", {b"label_names": [f"class_{i}".encode() for i in range(10)]})


def write_imagefolder(root: Path, classes=("cat", "dog", "fox"), per_class: int = 3,
                      size: int = 12, seed: int = 0) -> Path:
    """Write ``root/{train,val}/<class>/<i>.png`` with small random RGB images; returns ``root``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    root = Path(root)
    for split in ("train", "val"):
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root
