"""Where the cosine term's teacher logits on the N sources come from
(``method.teacher_source_passes``): the published code runs the teacher on each source batch
x[π_i], so with drop-path (Swin-T, ConvNeXt-T) each source gets its own draw; one clean pass,
re-indexed, is exact without drop-path. ``auto`` (the default) runs per-source passes only when
the model has drop-path."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torchvision.ops import StochasticDepth

from adautomix.config import ConfigError, load_config
from adautomix.methods.adautomix import AdAutoMixStep
from adautomix.methods.generator import MixGenerator
from adautomix.methods.teacher import has_drop_path
from adautomix.models.cifar_resnet import build_classifier


def make_step(drop_path: float | None, passes: str = "auto", n_mix: int = 3) -> AdAutoMixStep:
    torch.manual_seed(0)
    classifier = build_classifier("resnet18", 0.125, 10, heads=("one", "mix"))
    if drop_path is not None:  # stochastic depth on the last stage's output, as in a Swin/ConvNeXt block
        classifier.backbone.layer4 = nn.Sequential(classifier.backbone.layer4, StochasticDepth(drop_path, "row"))
    step = AdAutoMixStep(classifier, MixGenerator(classifier.backbone.stage3_channels), n_mix=n_mix,
                         teacher_source_passes=passes)
    step.rng = torch.Generator().manual_seed(1)
    return step


def batch(b: int = 8):
    g = torch.Generator().manual_seed(2)
    return torch.randn(b, 3, 32, 32, generator=g), torch.randint(0, 10, (b,), generator=g)


@pytest.mark.parametrize("drop_path,passes,per_source", [
    (None, "auto", False), (0.0, "auto", False), (0.2, "auto", True),
    (0.2, "single", False), (None, "per_source", True),
])
def test_auto_runs_per_source_passes_only_when_the_model_has_drop_path(drop_path, passes, per_source):
    step = make_step(drop_path, passes)
    assert has_drop_path(step.classifier) == bool(drop_path)
    assert step.per_source == per_source
    assert (step.teacher_bn is None) == per_source  # real passes: no BatchNorm replay


def teacher_inputs(step: AdAutoMixStep, x, y) -> list[torch.Tensor]:
    seen = []
    handle = step.teacher.model.backbone.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
    try:
        step(x, y)
    finally:
        handle.remove()
    return seen


def is_row_permutation(a: torch.Tensor, b: torch.Tensor) -> bool:
    key = lambda t: t.flatten(1)[:, 0].argsort()  # noqa: E731 - random images: distinct first pixels
    return torch.equal(a[key(a)], b[key(b)])


@pytest.mark.parametrize("passes,count", [("single", 2), ("per_source", 2 + 3)])
def test_per_source_passes_run_the_teacher_on_each_source_after_the_generated_mix(passes, count):
    step = make_step(0.2, passes)
    x, y = batch()
    inputs = teacher_inputs(step, x, y)
    assert len(inputs) == count
    assert torch.equal(inputs[0], x)  # clean: the generator's features
    assert not is_row_permutation(inputs[1], x)  # the generated mix
    assert all(is_row_permutation(t, x) for t in inputs[2:])


@pytest.mark.parametrize("passes", ["single", "per_source"])
def test_the_teachers_batchnorm_takes_the_published_two_plus_n_updates_either_way(passes):
    step = make_step(None, passes)
    bn = next(m for m in step.teacher.model.modules() if isinstance(m, nn.BatchNorm2d))
    before = int(bn.num_batches_tracked)
    step(*batch())
    assert int(bn.num_batches_tracked) - before == 2 + 3


def test_per_source_and_single_agree_without_drop_path():
    x, y = batch()
    parts = {}
    for passes in ("single", "per_source"):
        _, parts[passes] = make_step(None, passes)(x, y)
    torch.testing.assert_close(parts["per_source"]["cos"], parts["single"]["cos"], rtol=1e-5, atol=1e-6)


def test_per_source_draws_differ_with_drop_path():
    x, y = batch()
    torch.manual_seed(5)
    _, single = make_step(0.5, "single")(x, y)
    torch.manual_seed(5)
    _, per_source = make_step(0.5, "per_source")(x, y)
    assert not torch.allclose(single["cos"], per_source["cos"])


def test_the_switch_takes_only_its_values():
    with pytest.raises(ConfigError, match="method.teacher_source_passes"):
        load_config(overrides=["method.name=adautomix", "method.teacher_source_passes=twice"])
