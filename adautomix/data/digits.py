"""scikit-learn's handwritten digits as a small real data set that ships with the package.

1,797 8x8 grey digits (inside scikit-learn, so nothing is downloaded), upscaled to 3x32x32 with a
fixed stratified 80/20 train/test split, so every backbone and mixing method runs unchanged and
offline.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .base import TensorData

DIGITS_SPLIT_SEED = 0  # fixed: every run, whatever its seed, sees the same test set
DIGITS_TEST_FRACTION = 0.2


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


def digits_normalization(train: TensorData) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std of the digits training split (in [0, 1] units), the same for each channel."""
    images = train.images.float()
    return (float(images.mean() / 255),) * 3, (float(images.std() / 255),) * 3
