"""Tiny-ImageNet (the official ``tiny-imagenet-200`` release) decoded into memory.

Layout of the unpacked zip: ``wnids.txt`` (the 200 class ids), ``words.txt`` (id -> names,
optional here), ``train/<wnid>/images/<wnid>_<i>.JPEG`` (500 per class), ``val/images/val_<i>.JPEG``
with their classes in ``val/val_annotations.txt`` (tab-separated: file, wnid, box). The
validation split, 10,000 images, is the test set (the test split's labels were never released).
Classes are numbered in sorted wnid order (as an ImageFolder of ``train/`` would). All 110,000
64 x 64 images are decoded once (about 1.35 GB as uint8) so that augmentation runs on whole
batches on the training device.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from .base import DataError, TensorData
from .catalog import DATASETS

FOLDER = "tiny-imagenet-200"
SIDE = 64


def _folder(root: Path) -> Path:
    for folder in (root / FOLDER, root):
        if (folder / "wnids.txt").is_file():
            return folder
    raise DataError(f"tinyimagenet: no {root / FOLDER / 'wnids.txt'}; expected "
                    f"{DATASETS['tinyimagenet'].layout.replace('<data.root>', str(root))} (never downloaded)")


def _decode(files: list[Path]) -> torch.Tensor:
    """N x 3 x 64 x 64 uint8 (grey JPEGs, a few hundred in the release, made RGB)."""
    from PIL import Image

    images = np.empty((len(files), SIDE, SIDE, 3), dtype=np.uint8)

    def decode(i: int) -> None:
        path = files[i]
        try:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"))
        except OSError as err:
            raise DataError(f"tinyimagenet: unreadable image {path} ({type(err).__name__}: {err})") from None
        if pixels.shape[:2] != (SIDE, SIDE):
            raise DataError(f"tinyimagenet: {path} is {pixels.shape[1]}x{pixels.shape[0]}, expected 64x64")
        images[i] = pixels

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # PIL decodes without the GIL
        list(pool.map(decode, range(len(files))))
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


def tinyimagenet_class_names(folder: Path, wnids: list[str]) -> tuple[str, ...]:
    """The first name of each wnid in ``words.txt``, or the wnids when it is missing."""
    words = {}
    if (folder / "words.txt").is_file():
        for line in (folder / "words.txt").read_text().splitlines():
            wnid, _, names = line.partition("\t")
            words[wnid] = names.split(",")[0].strip()
    return tuple(words.get(w, w) for w in wnids)


def load_tinyimagenet_split(root: str | Path) -> tuple[TensorData, TensorData, tuple[str, ...]]:
    """``(train, test, class_names)`` with 3 x 64 x 64 uint8 images; test = the validation split."""
    folder = _folder(Path(root).expanduser())
    wnids = sorted(w.strip() for w in (folder / "wnids.txt").read_text().split() if w.strip())
    index = {w: i for i, w in enumerate(wnids)}
    train_files, train_labels = [], []
    for wnid in wnids:
        images = sorted((folder / "train" / wnid / "images").glob("*.JPEG"))
        if not images:
            raise DataError(f"tinyimagenet: no images in {folder / 'train' / wnid / 'images'} "
                            f"(a class of wnids.txt); expected train/<wnid>/images/*.JPEG")
        train_files += images
        train_labels += [index[wnid]] * len(images)
    annotations = folder / "val" / "val_annotations.txt"
    if not annotations.is_file():
        raise DataError(f"tinyimagenet: missing {annotations}; it holds the validation labels "
                        "(file<TAB>wnid<TAB>box per line)")
    val_files, val_labels = [], []
    for n, line in enumerate(annotations.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2 or parts[1] not in index:
            raise DataError(f"tinyimagenet: {annotations} line {n}: expected file<TAB>wnid with a wnid of "
                            f"wnids.txt, got {line[:80]!r}")
        val_files.append(folder / "val" / "images" / parts[0])
        val_labels.append(index[parts[1]])
    train = TensorData(_decode(train_files), torch.tensor(train_labels))
    test = TensorData(_decode(val_files), torch.tensor(val_labels))
    return train, test, tinyimagenet_class_names(folder, wnids)
