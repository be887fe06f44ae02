"""Specifications of the run configuration (adautomix.config)."""
from __future__ import annotations

import dataclasses
import re
import subprocess
import sys

import pytest

from adautomix.config import (
    SEED_MAX,
    Config,
    ConfigError,
    from_dict,
    help_text,
    load_config,
    params,
    parse_overrides,
    to_dict,
)

PUBLIC_KEYS = ["data.name", "data.root", "model.arch", "model.width", "method.name",
               "train.epochs", "train.batch_size", "seed", "out_dir"]


def test_overrides_set_the_public_keys_with_their_types():
    cfg = load_config(overrides=["data.name=digits", "model.arch=resnet34", "model.width=0.25",
                                 "method.name=mixup", "train.epochs=5", "train.batch_size=64",
                                 "seed=3", "out_dir=runs/x"])
    assert (cfg.data.name, cfg.model.arch, cfg.method.name, cfg.out_dir) == ("digits", "resnet34", "mixup", "runs/x")
    assert cfg.model.width == 0.25 and isinstance(cfg.model.width, float)
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.seed) == (5, 64, 3)


def test_an_integer_is_accepted_where_a_float_is_expected():
    cfg = load_config(overrides=["model.width=1", "train.lr=1", "out_dir=x"])
    assert isinstance(cfg.model.width, float) and isinstance(cfg.train.lr, float)


def test_booleans_and_none_are_parsed_from_the_command_line():
    cfg = load_config(overrides=["train.nesterov=true", "train.bf16=false", "method.mix_lambda=null",
                                 "method.name=mixup", "out_dir=x"])
    assert cfg.train.nesterov is True and cfg.train.bf16 is False
    assert cfg.method.mix_lambda == 1.0  # None -> the method's default


def test_yaml_file_sets_keys_and_overrides_win(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("method:\n  name: cutmix\ntrain:\n  epochs: 7\n  lr: 0.05\nseed: 2\n")
    cfg = load_config(path, ["train.epochs=9", "out_dir=x"])
    assert cfg.method.name == "cutmix" and cfg.train.lr == 0.05 and cfg.seed == 2
    assert cfg.train.epochs == 9
    assert cfg.train.batch_size == Config().train.batch_size  # untouched keys keep defaults


def test_resolved_config_round_trips_through_a_plain_dict():
    cfg = load_config(overrides=["method.name=mixup", "train.resources_per_worker={CPU: 1}", "out_dir=x"])
    assert from_dict(to_dict(cfg)) == cfg


def test_out_dir_defaults_to_a_fresh_folder_under_runs():
    cfg = load_config(overrides=["method.name=cutmix"])
    assert cfg.out_dir.startswith("runs/cutmix-digits-")


UNKNOWN_KEYS = [
    # (override, key the message must name, a key it must offer instead)
    ("trian.epochs=3", "trian.epochs", "train"),  # unknown section
    ("train.epoch=3", "train.epoch", "epochs"),  # unknown key
    ("learning_rate=0.1", "learning_rate", "train"),  # unknown top-level key
    ("model.width.x=1", "model.width.x", "no sub-keys"),
]


def test_out_dir_is_a_path_a_file_uri_becomes_one_and_a_bucket_uri_is_refused(tmp_path):
    assert load_config(overrides=[f"out_dir={(tmp_path / 'a b').as_uri()}"]).out_dir == str(tmp_path / "a b")
    for uri in ("s3://bucket/runs/x", "gs://bucket/x"):
        with pytest.raises(ConfigError, match=r"out_dir=.*is not allowed: a folder path .*mount it"):
            load_config(overrides=[f"out_dir={uri}"])


@pytest.mark.parametrize("override, key, allowed", UNKNOWN_KEYS, ids=[u[0] for u in UNKNOWN_KEYS])
def test_config_rejects_an_unknown_key_naming_it_and_the_keys_allowed_there(override, key, allowed):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[override, "out_dir=x"])
    assert str(err.value).startswith(key) and allowed in str(err.value), str(err.value)


BAD_VALUES = [
    # (override, key the message must name, a word of what is allowed)
    ("train.epochs=three", "train.epochs", "int"),  # wrong type
    ("train.epochs=2.5", "train.epochs", "int"),
    ("train.epochs=[1", "train.epochs", "int"),  # not even YAML
    ("model.width=wide", "model.width", "float"),
    ("train.nesterov=maybe", "train.nesterov", "bool"),
    ("train.epochs=0", "train.epochs", ">= 1"),  # out of range
    ("train.batch_size=1", "train.batch_size", ">= 2"),
    ("train.lr=0", "train.lr", "> 0"),
    ("train.lr=-0.1", "train.lr", "> 0"),
    ("model.width=0", "model.width", "0 < width"),
    ("seed=-1", "seed", ">= 0"),
    ("data.name=svhn", "data.name", "digits"),  # unknown choice
    ("method.name=mixcut", "method.name", "cutmix"),
    ("model.arch=vgg16", "model.arch", "resnet18"),
    ("train.optimizer=adam", "train.optimizer", "adamw"),
]


@pytest.mark.parametrize("override, key, allowed", BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_config_rejects_a_bad_value_naming_the_key_the_value_and_what_is_allowed(override, key, allowed):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[override, "out_dir=x"])
    message = str(err.value)
    assert message.startswith(key), message
    assert allowed in message, message
    value = override.split("=", 1)[1]
    assert value in message or repr(value) in message, message


def test_a_data_set_read_from_disk_needs_data_root():
    with pytest.raises(ConfigError, match="data.root"):
        load_config(overrides=["data.name=cifar10", "out_dir=x"])


def test_an_override_without_equals_sign_is_rejected():
    with pytest.raises(ConfigError, match="key=value"):
        load_config(overrides=["train.epochs"])


def test_a_config_file_with_an_unknown_key_names_it(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  epochz: 3\n")
    with pytest.raises(ConfigError, match="train.epochz"):
        load_config(path)


def test_a_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_help_text_lists_every_public_key_with_its_default():
    lines = {line.split()[0]: line.split(None, 1)[1] for line in help_text().splitlines()}
    for key in PUBLIC_KEYS:
        assert key in lines
    assert lines["train.epochs"] == repr(Config().train.epochs)
    assert lines["data.name"] == "'digits'"


REFUSED = [
    # (override, key the message must name, a word of why)
    ("train.lr=.inf", "train.lr", "finite"),  # inf / nan for any float key
    ("train.lr=-.inf", "train.lr", "finite"),
    ("train.weight_decay=.inf", "train.weight_decay", "finite"),
    ("method.alpha=.nan", "method.alpha", "finite"),
    ("model.width=.NaN", "model.width", "finite"),
    ("train.epochs=true", "train.epochs", "int"),  # a boolean where a number is expected
    ("train.lr=false", "train.lr", "float"),
    ("model.width=yes", "model.width", "float"),  # YAML 1.1: yes is a boolean
    ("train.resources_per_worker={CPU: true}", "train.resources_per_worker.CPU", "not a boolean"),
    ("train.resources_per_worker={CPU: .inf}", "train.resources_per_worker.CPU", "finite"),
    ("train.resources_per_worker={GPU: 1}", "train.resources_per_worker.GPU", "train.use_gpu=true"),
    ("data.root=no", "data.root", "quote"),  # YAML reads no as a boolean
    ("data.root=1", "data.root", "quote"),
    ("seed=4294967296", "seed", "2**32 - 1"),  # numpy's and Optuna's seeds stop at 2**32 - 1
]


@pytest.mark.parametrize("override, key, why", REFUSED, ids=[r[0] for r in REFUSED])
def test_config_refuses_non_finite_numbers_booleans_for_numbers_and_non_string_paths(override, key, why):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[override, "out_dir=x"])
    message = str(err.value)
    assert message.startswith(key) and why in message and "\n" not in message, message


def test_non_finite_floats_are_refused_from_a_yaml_file_and_from_a_dict(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  lr: .inf\n")
    with pytest.raises(ConfigError, match="train.lr: expected a finite number"):
        load_config(path)
    with pytest.raises(ConfigError, match="method.beta: expected a finite number"):
        load_config(overrides={"method.beta": float("nan")})


def test_a_path_read_as_a_boolean_from_a_yaml_file_is_refused_and_a_quoted_one_is_kept(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("data:\n  name: cifar10\n  root: no\n")
    with pytest.raises(ConfigError, match="data.root: expected a string, got False"):
        load_config(path)
    path.write_text('data:\n  name: cifar10\n  root: "no"\n')
    cfg = load_config(path, ["out_dir=x"])
    assert cfg.data.root == "no" and from_dict(to_dict(cfg)) == cfg  # a run's config.yaml reads back
    assert load_config(overrides=['data.root="no"', "data.name=cifar10", "out_dir=x"]).data.root == "no"


def test_gpu_resources_go_with_train_use_gpu_as_ray_train_requires():
    cfg = load_config(overrides=["train.use_gpu=true", "train.resources_per_worker={GPU: 0.5, CPU: 2}",
                                 "out_dir=x"])
    assert cfg.train.resources_per_worker == {"GPU": 0.5, "CPU": 2}
    with pytest.raises(ConfigError, match="train.resources_per_worker.GPU=0 is not allowed"):
        load_config(overrides=["train.use_gpu=true", "train.resources_per_worker={GPU: 0}", "out_dir=x"])


def test_the_seed_range_ends_at_2_to_the_32_minus_1():
    assert load_config(overrides=[f"seed={SEED_MAX}", "out_dir=x"]).seed == 2**32 - 1


def test_every_bad_key_of_a_file_and_a_command_line_is_named_one_line_each(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("data:\n  root: no\ntrain:\n  epochz: 3\n  resources_per_worker: {CPU: true}\n")
    overrides = ["train.lr=.inf", "train.epochs=three", "method.name=mixcut", "method.block_num_min=3",
                 "seed=-1", "model.width"]
    with pytest.raises(ConfigError) as err:
        load_config(path, overrides)
    named = [re.split("[:=]", line, maxsplit=1)[0] for line in str(err.value).splitlines()]
    assert sorted(named) == sorted(["data.root", "train.epochz", "train.resources_per_worker.CPU", "train.lr",
                                    "train.epochs", "method.name", "method.block_num_min", "seed",
                                    "override 'model.width'"]), str(err.value)


def test_a_value_that_is_only_wrong_against_a_bad_keys_default_is_not_reported():
    # train.lr is refused and keeps its default 0.1, below min_lr: only train.lr is named
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["train.lr=.inf", "train.min_lr=0.5", "out_dir=x"])
    assert str(err.value) == "train.lr: expected a finite number, got inf"


def test_the_command_line_names_every_bad_key_on_its_own_line_and_exits_2(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "adautomix", "train", "train.lr=.inf", "method.alpha=.nan", "data.root=no",
         "train.resources_per_worker={GPU: 1}", "seed=4294967296", f"out_dir={tmp_path / 'run'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    keys = ["train.lr", "method.alpha", "data.root", "train.resources_per_worker.GPU", "seed"]
    assert [line.split()[2].split(":")[0].split("=")[0] for line in lines] == keys, lines
    assert all(line.startswith("adautomix: error: ") for line in lines)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_key_value_items_are_split_at_the_first_equals_sign_and_every_bad_item_is_named():
    assert parse_overrides(["train.epochs=5", " seed = 3", "data.root=/a=b", "out_dir="]) == \
        {"train.epochs": "5", "seed": " 3", "data.root": "/a=b", "out_dir": ""}
    with pytest.raises(ConfigError) as err:
        parse_overrides(["train.epochs", "seed=1", "lr"])
    assert str(err.value).splitlines() == [
        "override 'train.epochs': expected key=value, e.g. train.epochs=5",
        "override 'lr': expected key=value, e.g. train.epochs=5"]


def test_params_are_every_dotted_key_with_its_value_as_text():
    cfg = load_config(overrides=["method.name=mixup", "train.epochs=3", 'train.resources_per_worker={"CPU": 2}',
                                 "out_dir=x"])
    flat = params(cfg)
    assert (flat["method.name"], flat["train.epochs"], flat["train.lr"]) == ("mixup", "3", "0.1")
    assert (flat["data.root"], flat["method.mix_lambda"]) == ("None", "1.0")  # mixup's λ, resolved
    assert flat["train.resources_per_worker"] == "{'CPU': 2}" and flat["method.manifold_layers"] == "[0, 1, 2]"
    keys = set()  # every leaf of the tree, one key each
    for f in dataclasses.fields(cfg):
        section = getattr(cfg, f.name)
        keys |= ({f"{f.name}.{g.name}" for g in dataclasses.fields(section)}
                 if dataclasses.is_dataclass(section) else {f.name})
    assert set(flat) == keys


def test_the_run_rules_of_ray_train_are_the_configs_and_reported_with_the_rest():
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["train.workers=2", "train.sync_bn=true", "train.epochs=0"])
    lines = str(err.value).splitlines()
    assert any(line.startswith("train.sync_bn=True is not allowed") and "CUDA" in line for line in lines)
    assert any(line.startswith("train.epochs=0") for line in lines)
    with pytest.raises(ConfigError, match="cannot share a GPU"):
        load_config(overrides=["train.workers=2", "train.use_gpu=true", 'train.resources_per_worker={"GPU": 0.5}'])
    one = load_config(overrides=["train.workers=1", "train.use_gpu=true", 'train.resources_per_worker={"GPU": 0.5}'])
    assert one.train.resources_per_worker == {"GPU": 0.5}  # one-worker runs share GPUs
