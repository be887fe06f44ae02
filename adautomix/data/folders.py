"""Data sets laid out as one folder per class: ``root/train/<class>/*``, ``root/val/<class>/*``."""
from __future__ import annotations

from pathlib import Path

from .base import DataError


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


