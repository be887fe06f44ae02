"""Specifications of the presets (adautomix.presets), ``adautomix train --preset / --list-presets /
--dry-run``, a study's ``preset:``, and the two optimiser settings the presets need
(``train.generator_lr`` with its own cosine floor, ``train.grad_clip``)."""
from __future__ import annotations

import pytest
import torch
import yaml

from adautomix.cli import main as cli_main
from adautomix.config import from_dict, load_config, to_dict
from adautomix.engine import Trainer
from adautomix.presets import PRESETS
from adautomix.study import StudyError, load_study

# SPEC.md "Published settings", one row per preset (the numbers every row of a table shares)
PUBLISHED = {
    "cifar100-r18": dict(data="cifar100", arch="resnet18", stem="cifar", opt="sgd", lr=0.1, wd=1e-4, batch=100,
                         epochs=800, min_lr=0.05),
    "cifar100-rx50": dict(data="cifar100", arch="resnext50", stem="cifar", opt="sgd", lr=0.1, wd=1e-4, batch=100,
                          epochs=800, min_lr=0.05),
    "cifar100-swin-t": dict(data="cifar100", arch="swin_t", stem="imagenet", opt="adamw", lr=5e-4, wd=0.05,
                            batch=100, epochs=200, size=224),
    "cifar100-convnext-t": dict(data="cifar100", arch="convnext_t", opt="adamw", lr=2e-3, wd=0.05, batch=100,
                                epochs=200),
    "tinyimagenet-r18": dict(data="tinyimagenet", arch="resnet18", opt="sgd", lr=0.2, batch=100, epochs=400),
    "tinyimagenet-rx50": dict(data="tinyimagenet", arch="resnext50", opt="sgd", lr=0.2, batch=100, epochs=400),
    **{f"imagenet-r{d}": dict(data="imagenet", arch=f"resnet{d}", stem="imagenet", opt="sgd", lr=0.1, wd=1e-4,
                              batch=256, epochs=100) for d in (18, 34, 50)},
    **{f"{p}-{a}": dict(data=d, arch={"r18": "resnet18", "r50": "resnet50", "rx50": "resnext50"}[a],
                        stem="imagenet", opt="sgd", lr=0.001, momentum=0.9, wd=5e-4, batch=16, epochs=200,
                        alpha=0.5)
       for p, d, archs in (("cub", "cub200", ("r18", "r50")), ("aircraft", "aircraft", ("r18", "rx50")),
                           ("cars", "cars", ("r18", "rx50"))) for a in archs},
}
KEYS = dict(data="data.name", arch="model.arch", stem="model.stem", opt="train.optimizer", lr="train.lr",
            wd="train.weight_decay", batch="train.batch_size", epochs="train.epochs", min_lr="train.min_lr",
            size="data.image_size", momentum="train.momentum", alpha="method.alpha")


def value(cfg, dotted):
    node = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def test_there_is_a_preset_for_every_row_of_the_published_settings():
    assert sorted(PRESETS) == sorted(PUBLISHED)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_each_preset_resolves_to_the_published_settings(name):
    cfg = load_config(overrides={"data.root": "/data"}, preset=name)
    assert cfg.method.name == "adautomix"
    for short, expected in PUBLISHED[name].items():
        assert value(cfg, KEYS[short]) == expected, (name, KEYS[short])


def test_the_fine_grained_and_imagenet_generators_have_their_published_learning_rate():
    # paramwise_options={'mix_block': dict(lr=0.1)} and addtional_scheduler min_lr=0.001
    for name in ("imagenet-r50", "cub-r18", "aircraft-rx50", "cars-r18"):
        t = load_config(overrides={"data.root": "/data"}, preset=name).train
        assert (t.generator_lr, t.generator_min_lr) == (0.1, 0.001), name
    assert load_config(overrides={"data.root": "/d"}, preset="cifar100-r18").train.generator_lr is None


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_each_preset_dry_runs_printing_a_config_that_resolves_to_the_same_run(name, capsys, tmp_path):
    args = ["train", "--preset", name, f"data.root={tmp_path / 'absent'}", "out_dir=somewhere", "--dry-run"]
    assert cli_main(args) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"# preset {name}: ")
    tree = yaml.safe_load(printed)
    assert to_dict(from_dict(tree)) == to_dict(load_config(overrides={"data.root": str(tmp_path / "absent"),
                                                                      "out_dir": "somewhere"}, preset=name))
    assert list(tmp_path.iterdir()) == []  # nothing written, no data read


def test_overrides_and_a_config_file_go_on_top_of_a_preset(tmp_path):
    (tmp_path / "mine.yaml").write_text("train: {epochs: 3}\nmethod: {beta: 0.2}\n")
    cfg = load_config(tmp_path / "mine.yaml", ["data.root=/d", "method.beta=0.25"], preset="cub-r50")
    assert (cfg.train.epochs, cfg.method.beta, cfg.train.lr) == (3, 0.25, 0.001)


def test_list_presets_names_every_preset(capsys):
    assert cli_main(["train", "--list-presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(PRESETS)


def test_an_unknown_preset_is_one_line_naming_the_known_ones(capsys):
    assert cli_main(["train", "--preset", "cifar10-r18", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cifar10-r18" in err[0] and "cifar100-r18" in err[0]


def test_a_study_can_start_from_a_preset(tmp_path):
    study = tmp_path / "s.yaml"
    study.write_text("preset: tinyimagenet-r18\nbase: {data: {root: /data}, train: {epochs: 2}}\n"
                     "space: {method.beta: [0.3, 0.4]}\n")
    loaded = load_study(study)
    assert (loaded.base.data.name, loaded.base.train.lr, loaded.base.train.epochs) == ("tinyimagenet", 0.2, 2)
    study.write_text("preset: no-such-preset\nspace: {method.beta: [0.3]}\n")
    with pytest.raises(StudyError, match="preset: preset 'no-such-preset'"):
        load_study(study)


# -------------------------------------------------------------------------------- optimiser settings

TINY = {"model.width": 0.125, "data.limit_train": 32, "data.limit_test": 16, "train.batch_size": 16,
        "train.threads": 1, "train.epochs": 1}


def test_the_generator_has_its_own_learning_rate_and_cosine_floor(tmp_path):
    cfg = load_config(overrides={**TINY, "method.name": "adautomix", "train.lr": 0.2, "train.min_lr": 0.02,
                                 "train.generator_lr": 0.1, "train.generator_min_lr": 0.001,
                                 "out_dir": str(tmp_path)})
    trainer = Trainer(cfg, quiet=True)
    classifier, generator = trainer.optimizer.param_groups
    assert {id(p) for p in generator["params"]} == {id(p) for p in trainer.step.generator.parameters()}
    assert (classifier["lr"], generator["lr"]) == (0.2, 0.1)
    trainer.train_epoch()  # both cosines end at their floors after the last iteration
    assert classifier["lr"] == pytest.approx(0.02) and generator["lr"] == pytest.approx(0.001)


def test_grad_clip_bounds_the_norm_of_the_whole_update(tmp_path):
    cfg = load_config(overrides={**TINY, "data.limit_train": 16, "train.lr": 1.0, "train.momentum": 0.0,
                                 "train.weight_decay": 0.0, "train.grad_clip": 1e-3, "out_dir": str(tmp_path)})
    trainer = Trainer(cfg, quiet=True)
    before = [p.detach().clone() for p in trainer.params]
    trainer.train_epoch()  # one SGD step: Δθ = -lr · g, g clipped to norm 1e-3
    step = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(trainer.params, before)))
    assert float(step) == pytest.approx(1e-3, rel=1e-3)
