"""Specifications of the torchvision backbones (adautomix.models.backbones) and of ``model.init``
(adautomix.models.pretrained). torchvision's models are built locally with ``weights=None``;
nothing is downloaded. Swin-T and ConvNeXt-T run at small inputs (32-64 pixels) to stay cheap."""
from __future__ import annotations

import pickle

import pytest
import torch
import torchvision.models as tvm

from adautomix.config import load_config
from adautomix.engine import Trainer, build_step
from adautomix.models.backbones import torchvision_backbone
from adautomix.models.cifar_resnet import build_classifier
from adautomix.models.pretrained import InitError, load_init

TORCHVISION = {"resnet18": tvm.resnet18, "convnext_t": tvm.convnext_tiny, "swin_t": tvm.swin_t}
LAST_LINEAR = {"resnet18": "fc", "convnext_t": "classifier.2", "swin_t": "head"}


def _linear(model, name):
    for part in name.split("."):
        model = model[int(part)] if part.isdigit() else getattr(model, part)
    return model


@pytest.mark.parametrize("arch, stem, image, stride, channels", [
    ("resnet18", "imagenet", 64, 16, 256),  # the published ImageNet / CUB configs: 14 x 14 at 224 (x16)
    ("convnext_t", "cifar", 32, 4, 384),  # the published CIFAR-100 ConvNeXt-T: 8 x 8 at 32 (x4)
    ("swin_t", "imagenet", 64, 32, 768),  # the published CIFAR-100 Swin-T at 224: 7 x 7 (x32)
])
def test_the_generators_feature_map_is_the_published_stage_with_the_published_scale(arch, stem, image, stride,
                                                                                     channels):
    backbone = torchvision_backbone(arch, stem).eval()
    stage3, pooled = backbone(torch.randn(2, 3, image, image))
    assert stage3.shape == (2, channels, image // stride, image // stride) == (2, backbone.stage3_channels,
                                                                               *stage3.shape[-2:])
    assert pooled.shape == (2, backbone.out_channels)


@pytest.mark.parametrize("arch", ["resnet18", "convnext_t", "swin_t"])
def test_a_torchvision_state_dict_loads_and_the_backbone_computes_torchvisions_features(tmp_path, arch):
    torch.manual_seed(0)
    reference = TORCHVISION[arch](weights=None).eval()  # a locally built torchvision model
    torch.save(reference.state_dict(), tmp_path / "weights.pth")
    classifier = build_classifier(arch, 1.0, 7, stem="imagenet")
    note = load_init(classifier.backbone, tmp_path / "weights.pth", arch, "imagenet")
    assert "torchvision state dict" in note
    x = torch.randn(2, 3, 64, 64)
    classifier.eval()
    pooled = classifier.backbone(x)[1]
    last = _linear(reference, LAST_LINEAR[arch])  # torchvision's 1000-way layer on our pooled features
    with torch.no_grad():
        assert torch.allclose(torch.nn.functional.linear(pooled, last.weight, last.bias), reference(x), atol=1e-4)
    assert classifier(x).shape == (2, 7)  # the head is a fresh 7-way one


@pytest.mark.parametrize("arch, stem", [("resnet50", "imagenet"), ("convnext_t", "cifar"), ("swin_t", "imagenet")])
def test_mixing_at_the_input_of_each_stage_sees_each_stages_output(arch, stem):
    backbone = torchvision_backbone(arch, stem).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        plain = backbone(x)[1]
        hidden = [x]
        for k in range(1, 4):
            hidden.append(backbone.stage(k, hidden[-1]))
        for k in range(4):
            seen = []
            mixed = backbone(x, mix_at=k, mix_fn=lambda h, seen=seen: seen.append(h) or h.flip(0))[1]
            assert torch.equal(seen[0], hidden[k])  # h_k, the state entering stage k + 1
            assert torch.allclose(mixed, plain.flip(0), atol=1e-5)  # the rest of the net runs on the mix


@pytest.mark.parametrize("overrides", [
    {"model.arch": "swin_t", "model.drop_path": 0.3, "method.name": "adautomix", "data.image_size": 32},
    {"model.arch": "convnext_t", "model.stem": "imagenet", "method.name": "automix"},
    {"model.arch": "resnet18", "model.stem": "imagenet", "method.name": "manifoldmix"},
], ids=["adautomix-swin_t", "automix-convnext_t", "manifoldmix-resnet18-imagenet"])
def test_learned_and_manifold_methods_train_a_step_on_torchvision_backbones(overrides):
    cfg = load_config(overrides={"train.batch_size": 4, "out_dir": "unused", "method.momentum": 0.9,
                                 "method.momentum_end": 0.99, **overrides})
    torch.manual_seed(0)
    step = build_step(cfg, num_classes=5).train()
    step.rng = torch.Generator().manual_seed(0)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    loss, _ = step(x, y)
    loss.backward()
    assert torch.isfinite(loss)
    if hasattr(step, "generator"):
        assert all(p.grad is not None for p in step.generator.parameters())
        _, masks, mixed, _, _ = step.mixed_samples(x, y)
        assert masks.shape[-2:] == (32, 32) and mixed.shape == x.shape  # upsampled to the image size


def test_model_stem_auto_is_cifar_for_small_images_and_imagenet_for_large_ones_and_swin():
    def stem(**o):
        return load_config(overrides={"data.root": "x", "out_dir": "x", **o}).model.stem
    assert stem(**{"data.name": "cifar100"}) == "cifar"
    assert stem(**{"data.name": "tinyimagenet"}) == "cifar"  # the published Tiny-ImageNet configs
    assert stem(**{"data.name": "cub200"}) == "imagenet"
    assert stem(**{"data.name": "cifar100", "model.arch": "swin_t"}) == "imagenet"


@pytest.mark.parametrize("overrides, key", [
    ({"model.arch": "swin_t", "model.stem": "cifar"}, "model.stem"),
    ({"model.stem": "imagenet", "model.width": 0.5}, "model.width"),
    ({"model.drop_path": 0.1}, "model.drop_path"),
])
def test_backbone_settings_that_cannot_be_built_are_config_errors(overrides, key):
    from adautomix.config import ConfigError

    with pytest.raises(ConfigError) as err:
        load_config(overrides={"out_dir": "x", **overrides})
    assert str(err.value).startswith(key)


# -------------------------------------------------------------------------------- model.init


def test_model_init_from_a_run_takes_the_teachers_backbone_and_resets_the_heads(tmp_path):
    source = load_config(overrides={"model.width": 0.125, "method.name": "adautomix", "train.epochs": 1,
                                    "train.batch_size": 16, "data.limit_train": 32, "data.limit_test": 16,
                                    "train.threads": 1, "out_dir": str(tmp_path / "source")})
    trainer = Trainer(source, quiet=True)
    trainer.train_epoch()  # two steps: the teacher has moved by EMA, away from the classifier
    trainer.save_checkpoint(tmp_path / "source" / "checkpoints" / "last.pt")  # the run's checkpoint file
    saved = torch.load(tmp_path / "source" / "checkpoints" / "last.pt", weights_only=True)["step"]
    teacher = {k[len("teacher.model.backbone."):]: v for k, v in saved.items()
               if k.startswith("teacher.model.backbone.")}
    assert not torch.equal(teacher["stem.0.weight"], saved["classifier.backbone.stem.0.weight"])

    target = load_config(overrides={"model.width": 0.125, "method.name": "mixup", "out_dir": "unused",
                                    "model.init": str(tmp_path / "source")})  # the run directory
    step = build_step(target, num_classes=37)
    for name, value in step.classifier.backbone.state_dict().items():
        assert torch.equal(value, teacher[name]), name
    assert step.classifier.heads["one"].weight.shape == (37, step.classifier.backbone.out_channels)


def test_model_init_refuses_a_checkpoint_of_another_architecture(tmp_path):
    torch.save({"step": {}, "config": {"model": {"arch": "resnet34", "stem": "cifar"}}}, tmp_path / "last.pt")
    match = "model.arch=resnet34 model.stem=cifar, but this run builds model.arch=resnet18"
    with pytest.raises(InitError, match=match):
        load_init(build_classifier("resnet18", 0.125, 3).backbone, tmp_path / "last.pt", "resnet18", "cifar")


def test_model_init_refuses_a_file_that_would_run_pickled_code(tmp_path):
    with (tmp_path / "evil.pth").open("wb") as fh:
        pickle.dump({"weight": torch.nn.Linear(2, 2)}, fh)  # a module object, not a state dict
    with pytest.raises(InitError, match="refused: it holds a pickled Python object"):
        load_init(build_classifier("resnet18", 0.125, 3).backbone, tmp_path / "evil.pth", "resnet18", "cifar")


def test_model_init_names_mismatched_tensors_and_points_torchvision_files_at_the_imagenet_stem(tmp_path):
    torch.save(tvm.resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(InitError) as err:
        load_init(build_classifier("resnet18", 1.0, 3).backbone, tmp_path / "r18.pth", "resnet18", "cifar")
    message = str(err.value)
    assert "missing" in message and "unexpected" in message and "model.stem=imagenet" in message
    torch.save(tvm.resnet50(weights=None).state_dict(), tmp_path / "r50.pth")
    with pytest.raises(InitError, match="of another shape"):  # ResNet-50 weights in a ResNet-18
        load_init(build_classifier("resnet18", 1.0, 3, stem="imagenet").backbone, tmp_path / "r50.pth",
                  "resnet18", "imagenet")


def test_model_init_names_a_missing_file(tmp_path):
    with pytest.raises(InitError, match="no such file"):
        load_init(build_classifier("resnet18", 0.125, 3).backbone, tmp_path / "nothing", "resnet18", "cifar")
