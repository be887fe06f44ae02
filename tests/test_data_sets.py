"""Specifications of the data sets beyond digits / CIFAR / imagefolder: each one's layout is written
to disk in its real format (``tiny_data``) and read back through ``build_loaders``; a wrong layout
is one DataError naming the path and the expected layout. Also the batched RandomResizedCrop."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from adautomix.config import load_config
from adautomix.data.augment import random_resized_crop, resized_crop, resized_crop_boxes
from adautomix.data.datasets import DataError, build_loaders
from adautomix.data.mnist import load_mnist_split
from adautomix.data.tinyimagenet import load_tinyimagenet_split

from tiny_data import (
    write_aircraft,
    write_cars,
    write_cifar100,
    write_cub200,
    write_idx,
    write_imagefolder,
    write_mnist,
    write_tinyimagenet,
)

CPU = torch.device("cpu")


def loaders(name, root, **overrides):
    cfg = load_config(overrides={"data.name": name, "data.root": str(root), "data.loader_workers": 0,
                                 "train.batch_size": 2, "out_dir": "unused", **overrides})
    return build_loaders(cfg, CPU)


def labels_of(loader):
    return torch.cat([y for _, y in loader]).tolist()


# -------------------------------------------------------------------------------- MNIST family

MNIST_FOLDERS = [("mnist", "MNIST"), ("fashionmnist", "FashionMNIST"), ("kmnist", "KMNIST")]


@pytest.mark.parametrize("name, folder", MNIST_FOLDERS)
def test_mnist_family_reads_torchvisions_layout_as_torchvision_does_grey_made_3_channel(tmp_path, name, folder):
    import torchvision.datasets as tvd

    written = write_mnist(tmp_path, folder)
    train, test = load_mnist_split(name, tmp_path)
    reference = getattr(tvd, folder)(str(tmp_path), train=True, download=False)  # the library's reader
    assert train.images.shape == (12, 3, 28, 28) and train.images.dtype == torch.uint8
    for c in range(3):
        assert torch.equal(train.images[:, c], reference.data)
    assert torch.equal(train.labels, reference.targets)
    assert np.array_equal(test.images[:, 1].numpy(), written["test"][0])
    assert test.labels.tolist() == written["test"][1].tolist()


def test_mnist_loaders_give_28x28_batches_of_10_classes_and_read_gz_files_in_the_root(tmp_path):
    written = write_mnist(tmp_path, folder=None, gz=True)
    train_loader, test_loader, spec = loaders("fashionmnist", tmp_path)
    assert spec.num_classes == 10 and spec.flip and spec.crop_padding == 2
    x, _ = next(iter(train_loader))
    assert x.shape == (2, 3, 28, 28)
    assert labels_of(test_loader) == written["test"][1].tolist()


def test_mnist_names_the_missing_file_and_the_layout(tmp_path):
    write_mnist(tmp_path, "KMNIST")
    (tmp_path / "KMNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError) as err:
        load_mnist_split("kmnist", tmp_path)
    assert "t10k-labels-idx1-ubyte" in str(err.value) and "KMNIST/raw/" in str(err.value)


def test_mnist_names_a_file_that_is_not_idx(tmp_path):
    write_mnist(tmp_path, "MNIST")
    bad = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    bad.write_bytes(b"PK\x03\x04 a zip file")
    with pytest.raises(DataError, match="not an IDX file") as err:
        load_mnist_split("mnist", tmp_path)
    assert str(bad) in str(err.value)
    write_idx(bad, np.zeros((5, 28, 28), np.uint8))  # 5 images for 12 labels
    with pytest.raises(DataError, match="N labels"):
        load_mnist_split("mnist", tmp_path)


# -------------------------------------------------------------------------------- Tiny-ImageNet


def test_tinyimagenet_reads_train_folders_and_validation_labels_from_val_annotations(tmp_path):
    wnids = ("n02", "n01", "n03")  # classes are numbered in sorted wnid order
    write_tinyimagenet(tmp_path, wnids=wnids, per_class=2, n_val=6)
    train, test, names = load_tinyimagenet_split(tmp_path)
    assert train.images.shape == (6, 3, 64, 64) and test.images.shape == (6, 3, 64, 64)
    assert train.labels.tolist() == [0, 0, 1, 1, 2, 2]
    # val_i's wnid is wnids[i % 3]: n02, n01, n03 -> 1, 0, 2
    assert test.labels.tolist() == [1, 0, 2, 1, 0, 2]
    assert names == ("class 1", "class 0", "class 2")  # the first name of words.txt, in label order
    assert torch.equal(test.images[0, 0], test.images[0, 2])  # the grey JPEG made RGB


def test_tinyimagenet_loaders_random_resized_crop_64_for_training_and_keep_test_images(tmp_path):
    write_tinyimagenet(tmp_path)
    train_loader, test_loader, spec = loaders("tinyimagenet", tmp_path)
    assert spec.num_classes == 3 and spec.resized_crop == (0.08, 1.0) and spec.image_size == 64
    x, _ = next(iter(train_loader))
    assert x.shape == (2, 3, 64, 64)
    _, test, _ = load_tinyimagenet_split(tmp_path)
    first, _ = next(iter(test_loader))
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1) * 255
    std = torch.tensor(spec.std).view(1, 3, 1, 1) * 255
    assert torch.allclose(first * std + mean, test.images[:2].float(), atol=1e-3)  # unaugmented


@pytest.mark.parametrize("damage, message", [
    ("no_annotations", "val_annotations.txt"),
    ("unknown_wnid", "line 2"),
    ("no_folder", "tiny-imagenet-200/wnids.txt"),
])
def test_tinyimagenet_names_what_is_wrong_with_the_layout(tmp_path, damage, message):
    folder = write_tinyimagenet(tmp_path)
    annotations = folder / "val" / "val_annotations.txt"
    if damage == "no_annotations":
        annotations.unlink()
    elif damage == "unknown_wnid":
        lines = annotations.read_text().splitlines()
        annotations.write_text("\n".join([lines[0], "val_1.JPEG\tn99999999\t0\t0\t1\t1"] + lines[2:]))
    else:
        (folder / "wnids.txt").unlink()
    with pytest.raises(DataError, match=message) as err:
        load_tinyimagenet_split(tmp_path)
    assert str(tmp_path) in str(err.value)


# -------------------------------------------------------------------------------- ImageNet and the fine-grained sets


def test_imagenet_reads_wnid_folders_at_the_configured_size(tmp_path):
    write_imagefolder(tmp_path, classes=("n01440764", "n01443537"), per_class=2, size=40)
    train_loader, test_loader, spec = loaders("imagenet", tmp_path, **{"data.image_size": 32})
    assert spec.num_classes == 2 and spec.class_names == ("n01440764", "n01443537")
    x, _ = next(iter(train_loader))
    assert x.shape == (2, 3, 32, 32)
    assert sorted(labels_of(test_loader)) == [0, 0, 1, 1]


def test_imagenet_without_class_folders_in_val_names_the_layout(tmp_path):
    write_imagefolder(tmp_path, classes=("n01440764",), per_class=1)
    for f in (tmp_path / "val" / "n01440764").iterdir():
        f.rename(tmp_path / "val" / f.name)  # the validation images as released: one flat folder
    (tmp_path / "val" / "n01440764").rmdir()
    with pytest.raises(DataError, match="imagenet: no class folders") as err:
        loaders("imagenet", tmp_path)
    assert "valprep" in str(err.value)


def test_cub200_follows_the_official_train_test_split_and_class_labels(tmp_path):
    write_cub200(tmp_path, classes=3, per_class=4)
    train_loader, test_loader, spec = loaders("cub200", tmp_path, **{"data.image_size": 32})
    assert spec.num_classes == 3 and spec.class_names == ("Bird_1", "Bird_2", "Bird_3")
    assert sorted(labels_of(test_loader)) == [0, 0, 1, 1, 2, 2]  # 2 of each class's 4 are test images
    assert len(train_loader.dataset) == 6
    x, _ = next(iter(train_loader))
    assert x.shape == (2, 3, 32, 32)


def test_cub200_names_a_missing_index_file_and_the_layout(tmp_path):
    folder = write_cub200(tmp_path)
    (folder / "train_test_split.txt").unlink()
    with pytest.raises(DataError) as err:
        loaders("cub200", tmp_path)
    assert str(folder / "train_test_split.txt") in str(err.value) and "images.txt" in str(err.value)


def test_aircraft_is_read_by_torchvisions_fgvc_aircraft_variants_trainval_and_test(tmp_path):
    write_aircraft(tmp_path, variants=("707-320", "A320", "Hawk T1"), per_split=2)
    train_loader, test_loader, spec = loaders("aircraft", tmp_path, **{"data.image_size": 32})
    assert spec.num_classes == 3 and spec.class_names == ("707-320", "A320", "Hawk T1")
    assert labels_of(test_loader) == [0, 0, 1, 1, 2, 2]
    x, _ = next(iter(train_loader))
    assert x.shape == (2, 3, 32, 32)


def test_cars_is_read_by_torchvisions_stanford_cars(tmp_path):
    write_cars(tmp_path, per_split=2)
    train_loader, test_loader, spec = loaders("cars", tmp_path, **{"data.image_size": 32})
    assert spec.num_classes == 2
    assert labels_of(test_loader) == [0, 0, 1, 1]
    x, _ = next(iter(train_loader))
    assert x.shape == (2, 3, 32, 32)


@pytest.mark.parametrize("name, writer, removed", [
    ("aircraft", write_aircraft, "fgvc-aircraft-2013b/data/images_variant_test.txt"),
    ("cars", write_cars, "stanford_cars/cars_test_annos_withlabels.mat"),
])
def test_fine_grained_sets_name_the_missing_file_and_the_layout(tmp_path, name, writer, removed):
    writer(tmp_path)
    (tmp_path / removed).unlink()
    with pytest.raises(DataError) as err:
        loaders(name, tmp_path)
    assert str(tmp_path / removed) in str(err.value) and "never downloaded" in str(err.value)


def test_every_data_set_on_disk_refuses_an_empty_folder_with_one_line(tmp_path):
    for name in ("mnist", "fashionmnist", "kmnist", "tinyimagenet", "imagenet", "cub200", "aircraft", "cars"):
        with pytest.raises(DataError) as err:
            loaders(name, tmp_path)
        message = str(err.value)
        assert message.startswith(f"{name}: ") and str(tmp_path) in message and "\n" not in message, message


def test_the_standard_image_size_is_the_data_sets_own():
    sizes = {name: load_config(overrides={"data.name": name, "data.root": "x", "out_dir": "x"}).data.image_size
             for name in ("cifar100", "mnist", "tinyimagenet", "imagenet", "cub200")}
    assert sizes == {"cifar100": 32, "mnist": 28, "tinyimagenet": 64, "imagenet": 224, "cub200": 224}


def test_cifar_at_another_size_random_resized_crops_training_images_and_resizes_test_images(tmp_path):
    write_cifar100(tmp_path, n_train=4, n_test=2)
    train_loader, test_loader, spec = loaders("cifar100", tmp_path, **{"data.image_size": 48})
    assert spec.resized_crop == (0.8, 1.0)  # the published Swin-T CIFAR-100 pipeline's scale
    assert next(iter(train_loader))[0].shape == (2, 3, 48, 48)
    assert next(iter(test_loader))[0].shape == (2, 3, 48, 48)


# -------------------------------------------------------------------------------- RandomResizedCrop


def test_resized_crop_boxes_have_the_drawn_area_and_aspect_and_fit_the_image():
    boxes = resized_crop_boxes(2000, 40, 50, scale=(0.2, 0.6), ratio=(3 / 4, 4 / 3),
                               rng=torch.Generator().manual_seed(0))
    top, left, h, w = boxes.T.double()
    assert bool(((top >= 0) & (left >= 0) & (top + h <= 40) & (left + w <= 50)).all())
    area = h * w / (40 * 50)
    assert area.min() > 0.2 - 0.03 and area.max() < 0.6 + 0.03  # up to the rounding of the sides
    aspect = w / h
    assert aspect.min() > 0.75 - 0.1 and aspect.max() < 4 / 3 + 0.1
    assert len(set(top.tolist())) > 10 and len(set(left.tolist())) > 10  # positions are drawn


def test_resized_crop_boxes_fall_back_to_torchvisions_centre_crop_when_no_draw_fits():
    # area >= 99 % of a 10 x 40 image with a square-ish aspect never fits: the centre box
    # with the aspect clamped to 4/3 (height 10, width round(10 * 4/3) = 13)
    boxes = resized_crop_boxes(5, 10, 40, scale=(0.99, 1.0), ratio=(3 / 4, 4 / 3),
                               rng=torch.Generator().manual_seed(0))
    assert boxes.tolist() == [[0, (40 - 13) // 2, 10, 13]] * 5


def test_resized_crop_of_the_whole_image_is_bicubic_interpolation():
    x = torch.rand(3, 3, 16, 16) * 255
    whole = torch.tensor([[0, 0, 16, 16]] * 3)
    expected = F.interpolate(x, size=(40, 40), mode="bicubic", align_corners=False)
    assert torch.allclose(resized_crop(x, whole, 40), expected, atol=1e-3)


def test_resized_crop_of_a_box_resizes_that_box_alone():
    x = torch.zeros(1, 1, 12, 12)
    x[..., 2:8, 4:10] = 100.0  # the box (top 2, left 4, 6 x 6) is constant: so is its resized copy
    out = resized_crop(x, torch.tensor([[2, 4, 6, 6]]), 9)
    inner = out[..., 2:7, 2:7]  # the outer two samples' bicubic taps reach outside the box
    assert torch.allclose(inner, torch.full_like(inner, 100.0), atol=1e-3)


def test_random_resized_crop_on_two_ranks_equals_the_one_process_batch():
    x = torch.rand(8, 3, 16, 16) * 255
    whole = random_resized_crop(x, 12, (0.3, 1.0), torch.Generator().manual_seed(5))
    shards = [random_resized_crop(x[r::2], 12, (0.3, 1.0), torch.Generator().manual_seed(5), shard=(r, 2))
              for r in range(2)]
    assert torch.allclose(whole[0::2], shards[0]) and torch.allclose(whole[1::2], shards[1])
    assert whole.min() >= 0 and whole.max() <= 255 and math.isfinite(float(whole.sum()))
