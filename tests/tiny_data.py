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


def _save_image(path: Path, pixels: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file of unsigned bytes (the MNIST format): 00 00 08 <ndim>, big-endian sizes, values;
    gzip-compressed when ``path`` ends in ``.gz``."""
    import gzip
    import struct

    data = struct.pack(f">BBBB{array.ndim}I", 0, 0, 8, array.ndim, *array.shape) + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    (gzip.open if path.suffix == ".gz" else open)(path, "wb").write(data)


def write_mnist(root: Path, folder: str | None = "MNIST", n_train: int = 12, n_test: int = 6,
                gz: bool = False, seed: int = 0) -> dict:
    """The four IDX files of an MNIST-family release, in torchvision's ``<root>/<folder>/raw/`` (or
    ``root`` itself when ``folder`` is None); returns ``{"train": (images, labels), "test": ...}``."""
    rng = np.random.default_rng(seed)
    where = Path(root) / folder / "raw" if folder else Path(root)
    written = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        suffix = ".gz" if gz else ""
        write_idx(where / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(where / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
        written[split] = (images, labels)
    return written


def write_tinyimagenet(root: Path, wnids=("n01443537", "n01629819", "n01641577"), per_class: int = 3,
                       n_val: int = 6, seed: int = 0) -> Path:
    """``root/tiny-imagenet-200/`` as the official zip unpacks: wnids.txt, words.txt,
    train/<wnid>/images/<wnid>_<i>.JPEG (+ <wnid>_boxes.txt), val/images/val_<i>.JPEG with
    val/val_annotations.txt (file, wnid, box; tab-separated); 64 x 64 JPEGs (one grey)."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "tiny-imagenet-200"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    (folder / "words.txt").write_text("".join(f"{w}\tclass {i}, other name\n" for i, w in enumerate(wnids)))
    for w in wnids:
        for i in range(per_class):
            _save_image(folder / "train" / w / "images" / f"{w}_{i}.JPEG",
                        rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8))
        (folder / "train" / w / f"{w}_boxes.txt").write_text("")
    lines = []
    for i in range(n_val):
        shape = (64, 64) if i == 0 else (64, 64, 3)  # the release has some grey JPEGs
        _save_image(folder / "val" / "images" / f"val_{i}.JPEG", rng.integers(0, 256, size=shape, dtype=np.uint8))
        lines.append(f"val_{i}.JPEG\t{wnids[i % len(wnids)]}\t0\t0\t63\t63\n")
    (folder / "val" / "val_annotations.txt").write_text("".join(lines))
    return folder


def write_cub200(root: Path, classes: int = 3, per_class: int = 4, size: int = 40, seed: int = 0) -> Path:
    """``root/CUB_200_2011/`` as the official tgz unpacks: images.txt, image_class_labels.txt,
    train_test_split.txt, classes.txt and images/<NNN.Name>/<file>.jpg; the first half of each
    class is the training split."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "CUB_200_2011"
    images, labels, split, names = [], [], [], []
    image_id = 0
    for c in range(1, classes + 1):
        name = f"{c:03d}.Bird_{c}"
        names.append(f"{c} {name}\n")
        for i in range(per_class):
            image_id += 1
            rel = f"{name}/Bird_{c}_{i:04d}.jpg"
            _save_image(folder / "images" / rel, rng.integers(0, 256, size=(size, size + 8, 3), dtype=np.uint8))
            images.append(f"{image_id} {rel}\n")
            labels.append(f"{image_id} {c}\n")
            split.append(f"{image_id} {int(i < per_class // 2)}\n")
    for file, lines in (("images.txt", images), ("image_class_labels.txt", labels),
                        ("train_test_split.txt", split), ("classes.txt", names)):
        (folder / file).write_text("".join(lines))
    return folder


def write_aircraft(root: Path, variants=("707-320", "A320", "Hawk T1"), per_split: int = 2, size: int = 40,
                   seed: int = 0) -> Path:
    """``root/fgvc-aircraft-2013b/data/`` as torchvision's FGVCAircraft reads it: variants.txt,
    images_variant_{trainval,test}.txt (``<image id> <variant>``) and images/<image id>.jpg."""
    rng = np.random.default_rng(seed)
    data = Path(root) / "fgvc-aircraft-2013b" / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "variants.txt").write_text("".join(f"{v}\n" for v in variants))
    image_id = 1000000
    for split in ("trainval", "test"):
        lines = []
        for v in variants:
            for _ in range(per_split):
                image_id += 1
                _save_image(data / "images" / f"{image_id}.jpg", rng.integers(0, 256, size=(size, size + 10, 3),
                                                                              dtype=np.uint8))
                lines.append(f"{image_id} {v}\n")
        (data / f"images_variant_{split}.txt").write_text("".join(lines))
    return data


def write_cars(root: Path, classes=("AM General Hummer SUV 2000", "Acura RL Sedan 2012"), per_split: int = 2,
               size: int = 40, seed: int = 0) -> Path:
    """``root/stanford_cars/`` as torchvision's StanfordCars reads it: devkit/cars_meta.mat
    (class_names), devkit/cars_train_annos.mat and cars_test_annos_withlabels.mat (a struct array
    ``annotations`` with bbox_x1, bbox_y1, bbox_x2, bbox_y2, class (1-based) and fname),
    cars_train/*.jpg and cars_test/*.jpg (MATLAB files written with SciPy)."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    folder = Path(root) / "stanford_cars"
    (folder / "devkit").mkdir(parents=True, exist_ok=True)
    savemat(folder / "devkit" / "cars_meta.mat", {"class_names": np.array([list(classes)], dtype=object)})
    fields = [("bbox_x1", "O"), ("bbox_y1", "O"), ("bbox_x2", "O"), ("bbox_y2", "O"), ("class", "O"), ("fname", "O")]
    for split, annos in (("train", folder / "devkit" / "cars_train_annos.mat"),
                         ("test", folder / "cars_test_annos_withlabels.mat")):
        rows = []
        for c in range(len(classes)):
            for i in range(per_split):
                fname = f"{c:02d}{i:03d}.jpg"
                _save_image(folder / f"cars_{split}" / fname, rng.integers(0, 256, size=(size, size + 6, 3),
                                                                           dtype=np.uint8))
                rows.append((1, 1, size - 1, size - 1, c + 1, fname))
        annotations = np.array([rows], dtype=fields)
        savemat(annos, {"annotations": annotations})
    return folder
