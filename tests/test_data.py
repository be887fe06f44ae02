"""Specifications of the data sets and the batch augmentation (adautomix.data.datasets)."""
from __future__ import annotations

import pickle
from collections import Counter

import numpy as np
import pytest
import torch

from adautomix.config import load_config
from adautomix.data.datasets import (
    DataError,
    build_loaders,
    imagefolder_classes,
    load_cifar_split,
    load_digits_split,
    random_crop_flip,
)

from tiny_data import write_cifar10, write_cifar100, write_imagefolder

CPU = torch.device("cpu")


# -------------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits():
    return load_digits_split()


def test_digits_are_3x32x32_uint8_images_of_10_classes(digits):
    train, test = digits
    for split in (train, test):
        assert split.images.dtype == torch.uint8
        assert split.images.shape[1:] == (3, 32, 32)
        assert split.labels.dtype == torch.long
        assert len(split.images) == len(split.labels)
    assert sorted(set(train.labels.tolist())) == list(range(10))
    assert sorted(set(test.labels.tolist())) == list(range(10))
    assert len(train.labels) + len(test.labels) == 1797  # scikit-learn's digits, all of them
    # the three channels are the same grey image, and the images are not blank
    assert torch.equal(train.images[:, 0], train.images[:, 2])
    assert train.images.float().std() > 20


def test_digits_split_is_stratified_80_20(digits):
    train, test = digits
    n_train, n_test = Counter(train.labels.tolist()), Counter(test.labels.tolist())
    for c in range(10):
        total = n_train[c] + n_test[c]
        assert abs(n_test[c] - 0.2 * total) <= 1, (c, n_test[c], total)


def test_digits_split_is_the_same_on_every_call(digits):
    train, test = digits
    train2, test2 = load_digits_split()
    assert torch.equal(train.images, train2.images) and torch.equal(train.labels, train2.labels)
    assert torch.equal(test.images, test2.images) and torch.equal(test.labels, test2.labels)


def test_digits_test_set_does_not_depend_on_the_run_seed():
    batches = []
    for seed in (0, 7):
        cfg = load_config(overrides={"seed": seed, "train.batch_size": 64, "out_dir": "unused"})
        _, test_loader, spec = build_loaders(cfg, CPU)
        batches.append(torch.cat([y for _, y in test_loader]))
        assert spec.num_classes == 10
    assert torch.equal(batches[0], batches[1])


# -------------------------------------------------------------------------------- CIFAR


def test_cifar100_loader_reads_the_python_pickle_release(tmp_path):
    written = write_cifar100(tmp_path, n_train=40, n_test=20)
    train, test = load_cifar_split("cifar100", tmp_path)
    for split, data in (("train", train), ("test", test)):
        raw, labels = written[split]
        assert data.images.dtype == torch.uint8 and data.images.shape == (len(raw), 3, 32, 32)
        # row layout of the release: 1024 red, 1024 green, 1024 blue values
        assert torch.equal(data.images[:, 0].reshape(len(raw), -1), torch.from_numpy(raw[:, :1024]))
        assert torch.equal(data.images[:, 2].reshape(len(raw), -1), torch.from_numpy(raw[:, 2048:]))
        assert data.labels.tolist() == labels.tolist()


def test_cifar100_loader_also_accepts_the_unpacked_folder_itself(tmp_path):
    write_cifar100(tmp_path, n_train=10, n_test=5)
    train, test = load_cifar_split("cifar100", tmp_path / "cifar-100-python")
    assert (len(train.labels), len(test.labels)) == (10, 5)


def test_cifar10_loader_joins_the_five_training_batches(tmp_path):
    write_cifar10(tmp_path, n_per_batch=8)
    train, test = load_cifar_split("cifar10", tmp_path)
    assert (len(train.labels), len(test.labels)) == (40, 8)


def test_cifar_loaders_give_normalised_batches_with_100_classes(tmp_path):
    write_cifar100(tmp_path, n_train=40, n_test=20)
    cfg = load_config(overrides={"data.name": "cifar100", "data.root": str(tmp_path),
                                 "train.batch_size": 16, "out_dir": "unused"})
    train_loader, test_loader, spec = build_loaders(cfg, CPU)
    assert spec.num_classes == 100
    assert len(train_loader) == 2 and len(test_loader) == 2  # train drops the last partial batch
    x, y = next(iter(train_loader))
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32 and y.shape == (16,)
    assert -3 < x.mean() < 3 and x.abs().max() < 5  # normalised, not 0..255


@pytest.mark.parametrize("missing", ["train", "test"])
def test_cifar_loader_names_the_missing_file(tmp_path, missing):
    write_cifar100(tmp_path)
    (tmp_path / "cifar-100-python" / missing).unlink()
    with pytest.raises(DataError) as err:
        load_cifar_split("cifar100", tmp_path)
    assert str(tmp_path / "cifar-100-python" / missing) in str(err.value)
    assert "missing" in str(err.value)


def test_cifar_loader_names_the_folder_and_the_expected_layout_when_it_is_absent(tmp_path):
    root = tmp_path / "no-such-folder"
    with pytest.raises(DataError) as err:
        load_cifar_split("cifar100", root)
    message = str(err.value)
    assert str(root / "cifar-100-python") in message
    assert "train" in message and "test" in message and "never downloaded" in message


def test_cifar_loader_names_an_unreadable_file(tmp_path):
    write_cifar100(tmp_path)
    broken = tmp_path / "cifar-100-python" / "train"
    broken.write_bytes(b"this is not a pickle")
    with pytest.raises(DataError) as err:
        load_cifar_split("cifar100", tmp_path)
    assert str(broken) in str(err.value) and "unreadable" in str(err.value)


def test_cifar_loader_names_a_pickle_without_the_label_key(tmp_path):
    write_cifar100(tmp_path)
    test_file = tmp_path / "cifar-100-python" / "test"
    with test_file.open("wb") as fh:  # a CIFAR-10 batch where CIFAR-100 is expected
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}, fh, protocol=2)
    with pytest.raises(DataError) as err:
        load_cifar_split("cifar100", tmp_path)
    assert str(test_file) in str(err.value) and "fine_labels" in str(err.value)


# -------------------------------------------------------------------------------- imagefolder


def test_imagefolder_layout_gives_the_sorted_class_names(tmp_path):
    write_imagefolder(tmp_path, classes=("dog", "cat", "fox"))
    assert imagefolder_classes(tmp_path) == ["cat", "dog", "fox"]


def test_imagefolder_loaders_give_batches_of_the_configured_size(tmp_path):
    write_imagefolder(tmp_path, classes=("cat", "dog"), per_class=4, size=20)
    cfg = load_config(overrides={"data.name": "imagefolder", "data.root": str(tmp_path),
                                 "data.image_size": 16, "data.loader_workers": 0,
                                 "train.batch_size": 4, "out_dir": "unused"})
    train_loader, test_loader, spec = build_loaders(cfg, CPU)
    assert spec.num_classes == 2
    x, y = next(iter(train_loader))
    assert x.shape == (4, 3, 16, 16) and set(y.tolist()) <= {0, 1}
    assert sum(len(y) for _, y in test_loader) == 8


@pytest.mark.parametrize("missing", ["train", "val"])
def test_imagefolder_names_the_missing_split_folder_and_the_layout(tmp_path, missing):
    write_imagefolder(tmp_path)
    for p in sorted((tmp_path / missing).rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    (tmp_path / missing).rmdir()
    with pytest.raises(DataError) as err:
        imagefolder_classes(tmp_path)
    assert str(tmp_path / missing) in str(err.value)
    assert f"{tmp_path}/train/<class>/" in str(err.value)


def test_imagefolder_rejects_different_classes_in_train_and_val(tmp_path):
    write_imagefolder(tmp_path, classes=("cat", "dog"))
    write_imagefolder(tmp_path / "other", classes=("cow",))
    (tmp_path / "other" / "val" / "cow").rename(tmp_path / "val" / "cow")
    with pytest.raises(DataError, match="differ"):
        imagefolder_classes(tmp_path)


# -------------------------------------------------------------------------------- augmentation


def test_random_crop_flip_keeps_the_shape():
    x = torch.rand(8, 3, 32, 32)
    out = random_crop_flip(x, padding=4, flip=True, rng=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype


def test_random_crop_flip_is_deterministic_for_a_seeded_generator():
    x = torch.rand(16, 3, 32, 32)
    a = random_crop_flip(x, 4, True, torch.Generator().manual_seed(3))
    b = random_crop_flip(x, 4, True, torch.Generator().manual_seed(3))
    c = random_crop_flip(x, 4, True, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_random_crop_is_a_window_of_the_reflect_padded_image():
    x = torch.rand(6, 3, 12, 12)
    out = random_crop_flip(x, padding=2, flip=False, rng=torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    offsets = []
    for i in range(len(x)):
        found = [(dy, dx) for dy in range(5) for dx in range(5)
                 if torch.equal(out[i], padded[i, :, dy:dy + 12, dx:dx + 12])]
        assert found, f"image {i} is not a crop of its padded input"
        offsets.append(found[0])
    assert len(set(offsets)) > 1  # the offsets are drawn per image


def test_random_flip_mirrors_about_half_of_the_images_and_leaves_the_rest():
    x = torch.rand(200, 1, 4, 4)
    out = random_crop_flip(x, padding=0, flip=True, rng=torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x)])
    kept = torch.tensor([torch.equal(o, xi) for o, xi in zip(out, x)])
    assert bool((flipped ^ kept).all())
    assert 60 < int(flipped.sum()) < 140
