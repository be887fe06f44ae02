"""The data sets ``data.name`` can name: one entry each, the one place that says what a data set is,
where its files are expected, its standard image size, normalisation and training augmentation.

Nothing is ever downloaded: every set but ``digits`` is read from the folder ``data.root``. The
config validates ``data.name`` against this table and fills ``data.image_size`` from it; the
readers put ``layout`` in their error messages; the README's table follows it. No torch import
here (the config reads this module).

Augmentation (training split; test images are only resized / centre-cropped):
- in-memory sets at their native size: a random crop of the image padded by ``crop_padding``
  pixels (reflect) and, where ``flip``, a horizontal flip; Tiny-ImageNet: ``resized_crop``;
- in-memory sets at another ``data.image_size`` (e.g. CIFAR at 224 for Swin-T): RandomResizedCrop
  with scale 0.8-1 (the published Swin-T CIFAR-100 pipeline) + flip; test images resized;
- image files (``pipeline``): ``imagefolder`` RandomResizedCrop + flip, test resize to 8/7 of the
  size + centre crop; ``imagenet`` the same, bicubic (the published ImageNet config);
  ``finegrained`` resize to 8/7 (256 for 224), RandomResizedCrop with scale 0.5-1, flip; test
  resize + centre crop (the published CUB-200 / Aircraft / Cars configs).
"""
from __future__ import annotations

from dataclasses import dataclass

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)  # SPEC.md, published configs
CIFAR_STD = (0.2023, 0.1994, 0.2010)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZED_SCALE = (0.8, 1.0)  # RandomResizedCrop scale for an in-memory set at a non-native size


@dataclass(frozen=True)
class Dataset:
    """One data set.

    Attributes:
        name: the value of ``data.name``.
        what: one line for the docs.
        num_classes: classes (0: as many as class folders found).
        image_size: the standard (native or published) training size, ``data.image_size``'s default.
        mean, std: per-channel normalisation in [0, 1] units (None: computed from the training split).
        layout: the files expected under ``data.root``, as the error messages show it.
        in_memory: the whole set is decoded into a uint8 tensor once (small images); else image
            files are read through a DataLoader each epoch.
        crop_padding, flip, resized_crop: training augmentation of an in-memory set at its native
            size (``resized_crop``: RandomResizedCrop scale range, instead of the padded crop).
        pipeline: transforms of a file-based set: ``imagefolder``, ``imagenet`` or ``finegrained``.
    """

    name: str
    what: str
    num_classes: int
    image_size: int
    mean: tuple[float, float, float] | None
    std: tuple[float, float, float] | None
    layout: str
    in_memory: bool = True
    crop_padding: int = 0
    flip: bool = True
    resized_crop: tuple[float, float] | None = None
    pipeline: str = ""


def _mnist(name: str, folder: str, what: str, mean: float, std: float, flip: bool) -> Dataset:
    files = "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte"
    return Dataset(name, what, 10, 28, (mean,) * 3, (std,) * 3,
                   f"<data.root>/{folder}/raw/ (torchvision's layout) or <data.root>/ holding {files} "
                   "(each may also be .gz)", crop_padding=2, flip=flip)


_FILES = dict(in_memory=False, mean=IMAGENET_MEAN, std=IMAGENET_STD)

DATASETS: dict[str, Dataset] = {d.name: d for d in [
    Dataset("digits", "scikit-learn's 1,797 handwritten digits, 10 classes, upscaled from 8x8 to 3x32x32",
            10, 32, None, None, "ships inside scikit-learn (no data.root)", crop_padding=4,
            flip=False),  # a mirrored digit is another symbol
    Dataset("cifar10", "CIFAR-10, python-pickle release", 10, 32, CIFAR_MEAN, CIFAR_STD,
            "<data.root>/cifar-10-batches-py/data_batch_1 ... data_batch_5, test_batch", crop_padding=4),
    Dataset("cifar100", "CIFAR-100, python-pickle release", 100, 32, CIFAR_MEAN, CIFAR_STD,
            "<data.root>/cifar-100-python/train, test", crop_padding=4),
    # statistics of the training splits, as commonly used (MNIST: 0.1307 / 0.3081)
    _mnist("mnist", "MNIST", "MNIST handwritten digits, 28x28 grey made 3-channel", 0.1307, 0.3081, flip=False),
    _mnist("fashionmnist", "FashionMNIST", "Fashion-MNIST clothing, 28x28 grey made 3-channel", 0.2860, 0.3530,
           flip=True),
    _mnist("kmnist", "KMNIST", "Kuzushiji-MNIST cursive Japanese, 28x28 grey made 3-channel", 0.1918, 0.3483,
           flip=False),
    Dataset("tinyimagenet", "Tiny-ImageNet, 200 classes, 64x64 (validation split as the test set)",
            200, 64, IMAGENET_MEAN, IMAGENET_STD,
            "<data.root>/tiny-imagenet-200/ with wnids.txt, train/<wnid>/images/*.JPEG, "
            "val/images/*.JPEG and val/val_annotations.txt (the official zip, unpacked)",
            resized_crop=(0.08, 1.0)),
    Dataset("imagenet", "ImageNet-1K (ILSVRC-2012), one folder per class", 0, 224, **_FILES,
            layout="<data.root>/train/<wnid>/*.JPEG and <data.root>/val/<wnid>/*.JPEG (validation images "
                   "sorted into class folders, e.g. by the common valprep.sh)", pipeline="imagenet"),
    Dataset("cub200", "CUB-200-2011 birds, 200 classes, official train/test split", 200, 224, **_FILES,
            layout="<data.root>/CUB_200_2011/ with images.txt, image_class_labels.txt, "
                   "train_test_split.txt and images/<class>/*.jpg (the official tgz, unpacked)",
            pipeline="finegrained"),
    Dataset("aircraft", "FGVC-Aircraft, 100 variants, trainval/test split", 100, 224, **_FILES,
            layout="<data.root>/fgvc-aircraft-2013b/data/ with variants.txt, images_variant_trainval.txt, "
                   "images_variant_test.txt and images/*.jpg (torchvision's FGVCAircraft layout)",
            pipeline="finegrained"),
    Dataset("cars", "Stanford Cars, 196 classes, train/test split", 196, 224, **_FILES,
            layout="<data.root>/stanford_cars/ with devkit/cars_meta.mat, devkit/cars_train_annos.mat, "
                   "cars_test_annos_withlabels.mat, cars_train/*.jpg and cars_test/*.jpg "
                   "(torchvision's StanfordCars layout)", pipeline="finegrained"),
    Dataset("imagefolder", "any classification set of image files, one folder per class", 0, 32, **_FILES,
            layout="<data.root>/train/<class>/*.png|jpg|... and <data.root>/val/<class>/* "
                   "(the same class folders)", pipeline="imagefolder"),
]}
