"""The fine-grained sets of the paper's transfer protocol: CUB-200-2011, FGVC-Aircraft, Stanford Cars.

- CUB-200-2011 (Wah et al., 2011): the official release's index files, ``images.txt``
  (``<id> <class folder>/<file>``), ``image_class_labels.txt`` (``<id> <class 1..200>``) and
  ``train_test_split.txt`` (``<id> <1 = train, 0 = test>``), with ``classes.txt`` for the names;
  5,994 training and 5,794 test images.
- FGVC-Aircraft (Maji et al., 2013) and Stanford Cars (Krause et al., 2013): read by torchvision's
  ``FGVCAircraft`` (variant level, ``trainval`` / ``test``: 6,667 / 3,333 images) and
  ``StanfordCars`` (8,144 / 8,041; its ``.mat`` files need SciPy), always with ``download=False``.
  The files they need are checked first, so a wrong folder is one line naming what is missing.
"""
from __future__ import annotations

from pathlib import Path

from .base import DataError
from .catalog import DATASETS
from .loaders import image_transforms, load_image

CUB_FOLDER = "CUB_200_2011"
CUB_FILES = ("images.txt", "image_class_labels.txt", "train_test_split.txt")
AIRCRAFT_FILES = ("data/variants.txt", "data/images_variant_trainval.txt", "data/images_variant_test.txt",
                  "data/images")
CARS_FILES = ("devkit/cars_meta.mat", "devkit/cars_train_annos.mat", "cars_test_annos_withlabels.mat",
              "cars_train", "cars_test")


def _missing(name: str, root: Path, folder: Path, files: tuple[str, ...]) -> None:
    for f in files:
        if not (folder / f).exists():
            raise DataError(f"{name}: missing {folder / f}; expected "
                            f"{DATASETS[name].layout.replace('<data.root>', str(root))} (never downloaded)")


class FileList:
    """A map-style data set of ``(path, label)`` samples with a transform (what ImageFolder is for
    class folders)."""

    def __init__(self, samples: list[tuple[Path, int]], transform):
        self.samples, self.transform = samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        path, label = self.samples[i]
        return self.transform(load_image(str(path))), label


def _table(path: Path) -> dict[str, str]:
    """``<id> <value>`` lines -> {id: value}."""
    rows = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            key, _, value = line.strip().partition(" ")
            if not value:
                raise DataError(f"cub200: {path} line {n}: expected '<image id> <value>', got {line[:80]!r}")
            rows[key] = value.strip()
    return rows


def cub_datasets(root: str | Path, image_size: int):
    """``(train, test, class_names)`` of CUB-200-2011 under ``root`` (or ``root`` itself)."""
    root = Path(root).expanduser()
    folder = root / CUB_FOLDER if (root / CUB_FOLDER).is_dir() else root
    _missing("cub200", root, folder, CUB_FILES + ("images",))
    images, labels, is_train = (_table(folder / f) for f in CUB_FILES)
    samples: dict[bool, list[tuple[Path, int]]] = {True: [], False: []}
    for image_id, rel in images.items():
        if image_id not in labels or image_id not in is_train:
            raise DataError(f"cub200: image id {image_id} of {folder / 'images.txt'} has no line in "
                            "image_class_labels.txt or train_test_split.txt")
        samples[is_train[image_id] == "1"].append((folder / "images" / rel, int(labels[image_id]) - 1))
    n_classes = max(label for _, label in samples[True] + samples[False]) + 1
    names = _table(folder / "classes.txt") if (folder / "classes.txt").is_file() else {}
    class_names = tuple(names.get(str(c + 1), str(c)).split(".", 1)[-1] for c in range(n_classes))
    return (FileList(samples[True], image_transforms("finegrained", image_size, True)),
            FileList(samples[False], image_transforms("finegrained", image_size, False)), class_names)


def aircraft_datasets(root: str | Path, image_size: int):
    """``(train, test, class_names)``: torchvision's FGVCAircraft, variants, trainval / test."""
    from torchvision.datasets import FGVCAircraft

    root = Path(root).expanduser()
    _missing("aircraft", root, root / "fgvc-aircraft-2013b", AIRCRAFT_FILES)
    train, test = (FGVCAircraft(str(root), split=split, annotation_level="variant", download=False,
                                transform=image_transforms("finegrained", image_size, split == "trainval"))
                   for split in ("trainval", "test"))
    return train, test, tuple(train.classes)


def cars_datasets(root: str | Path, image_size: int):
    """``(train, test, class_names)``: torchvision's StanfordCars, train / test."""
    from torchvision.datasets import StanfordCars

    root = Path(root).expanduser()
    _missing("cars", root, root / "stanford_cars", CARS_FILES)
    train, test = (StanfordCars(str(root), split=split, download=False,
                                transform=image_transforms("finegrained", image_size, split == "train"))
                   for split in ("train", "test"))
    return train, test, tuple(str(c) for c in train.classes)
