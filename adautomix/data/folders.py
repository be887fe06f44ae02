"""Data sets laid out as one folder per class: ``root/train/<class>/*``, ``root/val/<class>/*``
(``imagefolder``, and ImageNet-1K with its wnid folders), read with torchvision's ImageFolder."""
from __future__ import annotations

from pathlib import Path

from .base import DataError
from .catalog import DATASETS
from .loaders import image_transforms, load_image


def imagefolder_classes(root: Path, name: str = "imagefolder") -> list[str]:
    """Check ``root/train/<class>/*`` and ``root/val/<class>/*``; return the class names."""
    layout = f"expected {root}/train/<class>/*.jpg and {root}/val/<class>/*.jpg"
    if name != "imagefolder":
        layout = f"expected {DATASETS[name].layout.replace('<data.root>', str(root))}"
    classes = {}
    for split in ("train", "val"):
        split_dir = root / split
        if not split_dir.is_dir():
            raise DataError(f"{name}: missing folder {split_dir}; {layout}")
        names = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
        if not names:
            raise DataError(f"{name}: no class folders in {split_dir}; {layout}")
        for class_name in names:
            if not any(p.is_file() for p in (split_dir / class_name).iterdir()):
                raise DataError(f"{name}: empty class folder {split_dir / class_name}; {layout}")
        classes[split] = names
    if classes["train"] != classes["val"]:
        raise DataError(f"{name}: class folders of {root}/train and {root}/val differ")
    return classes["train"]


def folder_datasets(name: str, root: str | Path, image_size: int):
    """``(train, test, class_names)``: ImageFolder data sets of ``root/train`` and ``root/val`` with
    the transforms of ``name``'s pipeline."""
    from torchvision.datasets import ImageFolder

    root = Path(root).expanduser()
    classes = imagefolder_classes(root, name)
    pipeline = DATASETS[name].pipeline
    train, test = (ImageFolder(str(root / split), transform=image_transforms(pipeline, image_size, split == "train"),
                               loader=load_image) for split in ("train", "val"))
    return train, test, tuple(classes)
