"""Typed, validated run configuration: YAML file + dotted ``key=value`` overrides.

Every knob of a run lives in one ``Config`` tree of dataclasses. ``load_config`` reads an
optional YAML file, applies overrides such as ``method.name=mixup train.epochs=5``, checks types
and ranges, and raises ``ConfigError`` (naming the key, the value and what is allowed) before any
work starts. ``to_dict`` gives back the resolved tree, written as the run's ``config.yaml``.
"""
from __future__ import annotations

import dataclasses
import math
import re
import time
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

import yaml

from .data.catalog import DATASETS
from .methods.registry import METHODS
from .models.catalog import ARCHS, STEMS

OPTIMIZERS = ("sgd", "adamw")
UPSAMPLE = ("bilinear", "nearest")
LAM_MARGIN_RULES = ("authors", "openmixup")
TEACHER_SOURCE_PASSES = ("auto", "single", "per_source")
EMA_SCHEDULES = ("scaled", "published")
TRANSPORT_SOLVERS = ("paper", "exact")
DEVICES = ("auto", "cpu", "cuda")
MANIFOLD_LAYERS = (0, 1, 2, 3)  # Manifold Mixup: 0 = the input, k = the output of residual stage k
RESIZE_MODES = ("nearest", "bilinear")
SALIENCY_BOXES = ("batch", "sample")
EVAL_SUITES = ("calibration", "corruption", "fgsm", "occlusion")  # evaluation/suite.py SUITES
SEED_MAX = 2**32 - 1  # numpy's and Optuna's seeds; keeps the engine's derived torch seeds < 2**64
Auto = typing.Literal["auto"]  # a switch that is true, false or "auto" (decided by the device)


class ConfigError(ValueError):
    """A bad configuration value; the message names the key, the value and what is allowed, one
    line per bad key when there are several."""


@dataclass
class DataConfig:
    name: str = "digits"  # one of DATASETS (data/catalog.py)
    root: str | None = None  # folder holding the data set (all but digits)
    image_size: int | None = None  # side of the training images; None = the data set's standard size
    limit_train: int = 0  # >0: keep only the first N training images (smoke runs)
    limit_test: int = 0  # >0: keep only the first N test images
    loader_workers: int = 2  # data sets of image files: DataLoader worker processes
    # in-memory sets (digits, CIFAR, MNIST family, Tiny-ImageNet): keep the whole set on the
    # training device and crop and flip there (data/gpu_loader.py); auto = on CUDA
    gpu_loader: bool | Auto = "auto"


@dataclass
class ModelConfig:
    arch: str = "resnet18"  # one of ARCHS (models/catalog.py)
    # one of STEMS: cifar = 3x3 conv, stride 1, no max-pool; imagenet = torchvision's; auto = imagenet
    # for swin_t and for images larger than 64 pixels, else cifar (as the published configs)
    stem: str = "auto"
    width: float = 1.0  # channel multiplier (CIFAR-stem ResNets); 0.25 makes ResNet-18 16x cheaper
    # last BatchNorm γ of each residual block starts at 0 (OpenMixup, made for published-length
    # runs); auto = on for runs of >= ZERO_INIT_MIN_ITERATIONS optimizer steps (engine.py), off
    # for shorter ones, where it leaves the network near a stack of shortcuts
    zero_init_residual: bool | Auto = "auto"
    drop_path: float | None = None  # stochastic depth of swin_t / convnext_t; None = torchvision's default
    # initialise the backbone from a run dir / checkpoint of this project or a torchvision state dict
    init: str | None = None


@dataclass
class MethodConfig:
    name: str = "vanilla"  # a registered method (methods/registry.py)
    mix_lambda: float | None = None  # λ: Beta(λ, λ) parameter; None = the method's default
    # AdAutoMix (SPEC.md; defaults = the published CIFAR configs)
    n_mix: int = 3  # N: images mixed per sample
    alpha: float = 0.5  # α: weight of L_mce against L_ce
    beta: float = 0.3  # β: adversarial weight against the cosine term
    use_ce: bool = True  # L_ce on clean images
    use_mce: bool = True  # L_mce, plain mixup of the same sources (published code: only N > 2)
    use_cos: bool = True  # cosine-similarity term in the generator loss
    use_ema: bool = True  # EMA teacher; off = generator loss through the current classifier
    adversarial: bool = True  # alternate adversarial / cooperative generator steps
    lam_concat: bool = False  # feed λ_i to the generator as an extra channel (the paper's variant)
    # λ_1 within this of 0 or 1 -> plain mixup in the classifier branch; None = the method's
    # default (registry: AdAutoMix 0.03, AutoMix 0.08)
    lam_margin: float | None = None
    lam_margin_rule: str = "authors"  # one of LAM_MARGIN_RULES: whose plain-mixup condition
    random_n: bool = False  # draw N uniformly from 2..n_mix each step
    # AdAutoMix: where the cosine term's source logits come from, one of TEACHER_SOURCE_PASSES:
    # "single" = the clean pass re-indexed, "per_source" = N teacher passes on x[π_i] (the
    # published code: independent drop-path draws), "auto" = per_source iff the teacher has drop-path
    teacher_source_passes: str = "auto"
    # mask upsampling, one of UPSAMPLE; None = the method's default (AdAutoMix bilinear, AutoMix nearest)
    upsample: str | None = None
    ema_schedule: str = "scaled"  # one of EMA_SCHEDULES: "scaled" to the run's length, or "published"
    momentum: float | None = None  # EMA momentum at the start; None = from ema_schedule
    momentum_end: float | None = None  # EMA momentum at the last iteration; None = from ema_schedule
    momentum_warmup: float = 0.1  # fraction of iterations at the start momentum
    vis_every: int = 0  # write a mixed-sample PNG every K epochs (and at the end); 0 = end only
    # PuzzleMix (Kim et al., ICML 2020; defaults = the authors' published CIFAR-100 command)
    block_num_min: int = 2  # n x n mask blocks, n drawn each step from the powers of two in [min, max]
    block_num_max: int = 16
    mix_levels: int = 3  # m: the mask takes the values 0, 1/(m-1), ..., 1 (released code: n_labels)
    label_smoothness: float = 1.2  # β: penalty on mask differences between neighbouring blocks
    data_smoothness: float = 0.5  # γ: penalty on pixel jumps across block boundaries
    prior_weight: float = 0.2  # η: pull of the mask's mean towards λ
    neigh_size: int = 4  # side of the pixel cells compared across block boundaries
    transport: bool = True  # move each source's salient blocks to where the mask shows them
    transport_weight: float = 0.8  # ξ: weight of the distance a block moves (released code: t_eps)
    transport_size: int = 4  # block side of the transport grid in pixels; 0 = the mask's blocks
    transport_solver: str = "paper"  # one of TRANSPORT_SOLVERS: the paper's approximation or exact
    # Manifold Mixup: S, the layers k mixing is drawn from (the paper's CIFAR setting: 0, 1, 2)
    manifold_layers: list[int] = field(default_factory=lambda: [0, 1, 2])
    # hand-crafted baselines (methods/mixing.py; defaults: the papers and OpenMixup's CIFAR configs)
    fmix_decay_power: float = 3.0  # FMix: d of the mask noise's 1/f^d amplitude
    resizemix_scale_min: float = 0.1  # ResizeMix: range of τ, the pasted patch's side / the image's
    resizemix_scale_max: float = 0.8
    resizemix_interpolation: str = "nearest"  # ResizeMix: one of RESIZE_MODES
    saliencymix_box: str = "batch"  # SaliencyMix: one of SALIENCY_BOXES (batch: the authors' code)
    gridmix_holes_min: int = 2  # GridMix: range of the number of grid cells across the crop
    gridmix_holes_max: int = 6
    gridmix_area_min: float = 0.5  # GridMix: range of the crop's area / the image's
    gridmix_area_max: float = 1.0
    smoothmix_sigma_min: float = 0.25  # SmoothMix: range of the Gaussian's σ / image height
    smoothmix_sigma_max: float = 0.5
    # AutoMix (its published CIFAR config; lam_concat, lam_margin, upsample, use_ema and the EMA
    # schedule above apply as well)
    mask_loss_weight: float = 0.1  # weight of the Mix Block's mask loss
    mask_loss_margin: float = 0.1  # ε: the mask loss is 0 while the mean mask is within ε of λ


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 100  # global batch, split evenly over Ray workers
    optimizer: str = "sgd"  # one of OPTIMIZERS
    lr: float = 0.1
    momentum: float = 0.9  # SGD momentum
    nesterov: bool = False
    weight_decay: float = 1e-4
    min_lr: float = 0.0  # cosine schedule floor (the published AdAutoMix CIFAR config: 0.05)
    warmup_epochs: int = 0  # linear warmup before the cosine schedule
    # the learned mask generator's own learning rate and cosine floor (published fine-grained and
    # ImageNet configs); None = train.lr / the same fraction of it as train.min_lr
    generator_lr: float | None = None
    generator_min_lr: float | None = None
    grad_clip: float = 0.0  # clip the gradients' global L2 norm to this; 0 = off
    device: str = "auto"  # one of DEVICES; auto = cuda when present
    bf16: bool | Auto = "auto"  # bf16 autocast; auto = on CUDA
    channels_last: bool | Auto = "auto"  # channels-last memory format; auto = on CUDA
    compile: bool | Auto = "auto"  # torch.compile the step (accel.py); auto = on CUDA
    resume: bool = False  # continue from out_dir/checkpoints/last.pt
    ckpt_every: int = 1  # epochs between checkpoints
    ckpt_every_minutes: float = 10.0  # also a mid-epoch checkpoint this often (a hard kill loses at most this); 0 = off
    keep_checkpoints: int = 2  # checkpoints kept (last.pt, last.1.pt, ...): a damaged newest one falls back
    stop_grace_s: float = 20.0  # SIGTERM: seconds to finish the step and save (Kubernetes kills after 30)
    # Ray Train (train.workers > 0)
    workers: int = 0  # 0 = in-process; N = Ray Train with N data-parallel workers
    use_gpu: bool = False
    resources_per_worker: dict = field(default_factory=dict)  # e.g. {"CPU": 1, "node_a": 1}
    sync_bn: bool = False
    max_failures: int = 0  # restarts from the last checkpoint after a worker dies
    threads: int = 0  # torch CPU threads per process; 0 = torch's default
    # Ray Train faults and the workers' environment (platform/ray_train.py)
    max_preemption_failures: int = -1  # restarts after node preemptions, not counted in max_failures; -1 = no limit
    controller_failure_limit: int = 4  # worker-group starts that time out before the run gives up; -1 = no limit
    worker_start_timeout_s: float = 60.0  # how long each start waits for its workers to be placed
    env_vars: list[str] = field(default_factory=list)  # driver variables sent to every worker: NAME or PREFIX*
    # evaluation suites run on the headline model after the last epoch (rank 0): eval.json,
    # pictures, and their numbers in the last epoch's record (evaluation/suite.py)
    final_eval: list[str] = field(default_factory=list)
    # fault injection for tests: "TERM@ITERATION" makes loss term TERM (and the total) NaN at
    # that 0-based iteration of the run, to check that the run stops (README, "Numerics"); "" = off
    inject_nonfinite: str = ""


@dataclass
class EvalConfig:
    """``adautomix eval`` and ``train.final_eval`` (evaluation/suite.py)."""

    seed: int = 0  # corruption noise and occlusion patches
    fgsm_epsilon: float = 8 / 255  # FGSM's L-inf budget in pixel units ([0, 1] scale)
    occlusion_patch: int = 16  # side of the occluding patches, pixels
    calibration_bins: int = 15  # equal-width confidence bins of the ECE


@dataclass
class MlflowConfig:
    log_model: bool = False  # log the final classifier in MLflow's PyTorch format


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0
    out_dir: str = ""  # run directory; "" = runs/<method>-<data>-<time>


def to_dict(cfg: Any) -> dict:
    """The config tree as plain nested dicts (what ``config.yaml`` holds)."""
    return dataclasses.asdict(cfg)


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value and key != "resources_per_worker":
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(key: str, value: Any, typ: Any, parse: bool = False) -> Any:
    """Convert ``value`` to ``typ``; ``parse``: ``value`` is override text, read as YAML (values
    from a YAML file are typed already: a quoted "no" stays a string)."""
    raw = value
    if parse and isinstance(value, str) and typ is not str:
        try:
            value = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            pass  # not YAML (e.g. "[1"): left a string, so the type check below names it
    args = typing.get_args(typ)
    if isinstance(typ, types.UnionType) or typing.get_origin(typ) is typing.Union:
        if value is None and type(None) in args:
            return None
        if Auto in args:
            if value == "auto" or isinstance(value, bool):
                return value
            raise ConfigError(f"{key}: expected true, false or auto, got {value!r}")
        typ = next(a for a in args if a is not type(None))
    if typ is bool:
        if isinstance(value, bool):
            return value
    elif typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"{key}: expected a finite number, got {value!r}")
            return float(value)
    elif typ is str:
        if isinstance(value, str):
            return value
        shell = f" (on the command line: '{key}=\"{raw}\"')" if isinstance(raw, str) else ""
        raise ConfigError(f"{key}: expected a string, got {value!r}: YAML reads unquoted yes, no, on, off, "
                          f"true, false and numbers as other types; quote the value{shell}")
    elif typ is dict:
        if isinstance(value, dict):
            return value
    elif typing.get_origin(typ) is list:
        (item,) = typing.get_args(typ)
        if isinstance(value, (list, tuple)):
            return [_coerce(f"{key}[{i}]", v, item) for i, v in enumerate(value)]
        raise ConfigError(f"{key}: expected a list of {item.__name__}, e.g. [0, 1], got {value!r}")
    raise ConfigError(f"{key}: expected {getattr(typ, '__name__', typ)}, got {value!r}")


def _set(tree: Any, dotted: str, value: Any, parse: bool = False) -> None:
    node, parts = tree, dotted.split(".")
    for depth, part in enumerate(parts):
        types_ = _field_types(type(node))
        if part not in types_:
            where = ".".join(parts[:depth]) or "top level"
            raise ConfigError(
                f"{dotted}: unknown key (allowed under {where}: {', '.join(sorted(types_))})"
            )
        if depth == len(parts) - 1:
            if dataclasses.is_dataclass(types_[part]):
                if not isinstance(value, dict):
                    raise ConfigError(f"{dotted}: expected a mapping, got {value!r}")
                for k, v in value.items():
                    _set(tree, f"{dotted}.{k}", v)
            else:
                setattr(node, part, _coerce(dotted, value, types_[part], parse))
        else:
            if not dataclasses.is_dataclass(types_[part]):
                raise ConfigError(f"{dotted}: {'.'.join(parts[:depth + 1])} has no sub-keys")
            node = getattr(node, part)


class _Problems(dict):
    """One message per bad key (the first found), so that every bad key is reported at once."""

    def check(self, cond: bool, key: str, value: Any, allowed: str) -> bool:
        if not cond:
            self.setdefault(key, f"{key}={value!r} is not allowed: {allowed}")
        return cond


def validate(cfg: Config) -> Config:
    """Check ranges and choices, every rule of a run's keys (the one place they live); fill the
    defaults that depend on other keys (the data set's image size, the method's λ and defaults,
    ``model.stem=auto``, ``out_dir``). Returns ``cfg``, which nothing changes afterwards.

    Raises ``ConfigError`` naming every bad key, one line each."""
    problems = _Problems()
    _check_data(cfg.data, problems)
    _check_model(cfg.model, cfg.data.image_size, problems)
    _check_method(cfg.method, cfg.data.image_size, problems)
    _check_train(cfg.train, problems)
    _check_eval(cfg.eval, problems)
    _check_run(cfg, problems)
    if problems:
        raise ConfigError("\n".join(problems.values()))
    if not cfg.out_dir:
        cfg.out_dir = f"runs/{cfg.method.name}-{cfg.data.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    return cfg


def _check_data(d: DataConfig, problems: _Problems) -> None:
    """``data.*``; fills ``data.image_size`` from the data set's catalog entry."""
    _check = problems.check
    _check(d.name in DATASETS, "data.name", d.name, f"one of {', '.join(DATASETS)}")
    _check(d.name == "digits" or bool(d.root), "data.root", d.root,
           f"a folder is required for data.name={d.name}")
    if d.image_size is None and d.name in DATASETS:
        d.image_size = DATASETS[d.name].image_size
    _check(d.image_size is None or d.image_size >= 8, "data.image_size", d.image_size, ">= 8")
    _check(d.limit_train >= 0, "data.limit_train", d.limit_train, ">= 0 (0 = all)")
    _check(d.limit_test >= 0, "data.limit_test", d.limit_test, ">= 0 (0 = all)")
    _check(d.loader_workers >= 0, "data.loader_workers", d.loader_workers, ">= 0")
    if d.name in DATASETS:
        _check(not (d.gpu_loader is True and not DATASETS[d.name].in_memory), "data.gpu_loader",
               d.gpu_loader, f"auto or false for {d.name}: its image files go through a DataLoader "
               "(the device loader serves the in-memory sets)")


def _check_method(mt: MethodConfig, image_size: int | None, problems: _Problems) -> None:
    """``method.*``; fills ``mix_lambda`` and the method's other defaults from the registry."""
    _check = problems.check
    if _check(mt.name in METHODS, "method.name", mt.name, f"one of {', '.join(METHODS)}"):
        if mt.mix_lambda is None:
            mt.mix_lambda = METHODS[mt.name].mix_lambda
        if METHODS[mt.name].mix_lambda == 0:
            _check(mt.mix_lambda == 0, "method.mix_lambda", mt.mix_lambda,
                   f"unset or 0: {mt.name} draws no λ from a Beta distribution")
        for key, value in METHODS[mt.name].defaults.items():  # the one place method defaults are filled
            if getattr(mt, key) is None:
                setattr(mt, key, value)
        _check(METHODS[mt.name].mix_lambda == 0 or mt.mix_lambda > 0, "method.mix_lambda", mt.mix_lambda, "> 0")
    _check(mt.n_mix >= 2, "method.n_mix", mt.n_mix, ">= 2 (N images are mixed)")
    _check(0 <= mt.alpha <= 1, "method.alpha", mt.alpha, "0 <= alpha <= 1")
    _check(0 <= mt.beta <= 1, "method.beta", mt.beta, "0 <= beta <= 1")
    _check(mt.lam_margin is None or 0 <= mt.lam_margin < 0.5, "method.lam_margin", mt.lam_margin,
           "0 <= margin < 0.5")
    _check(mt.upsample is None or mt.upsample in UPSAMPLE, "method.upsample", mt.upsample,
           f"one of {', '.join(UPSAMPLE)}")
    _check(mt.lam_margin_rule in LAM_MARGIN_RULES, "method.lam_margin_rule", mt.lam_margin_rule,
           f"one of {', '.join(LAM_MARGIN_RULES)}")
    _check(mt.teacher_source_passes in TEACHER_SOURCE_PASSES, "method.teacher_source_passes",
           mt.teacher_source_passes, f"one of {', '.join(TEACHER_SOURCE_PASSES)}")
    _check(mt.ema_schedule in EMA_SCHEDULES, "method.ema_schedule", mt.ema_schedule,
           f"one of {', '.join(EMA_SCHEDULES)}")
    for key in ("momentum", "momentum_end"):
        value = getattr(mt, key)
        _check(value is None or 0 <= value <= 1, f"method.{key}", value, "0 <= momentum <= 1, or null")
    if mt.momentum is not None and mt.momentum_end is not None:
        _check(mt.momentum <= mt.momentum_end, "method.momentum_end", mt.momentum_end,
               f">= method.momentum ({mt.momentum})")
    _check(0 <= mt.momentum_warmup <= 1, "method.momentum_warmup", mt.momentum_warmup, "0..1")
    _check(mt.vis_every >= 0, "method.vis_every", mt.vis_every, ">= 0")
    _check_puzzlemix(mt, image_size or 32, problems)
    _check(bool(mt.manifold_layers) and set(mt.manifold_layers) <= set(MANIFOLD_LAYERS)
           and len(set(mt.manifold_layers)) == len(mt.manifold_layers), "method.manifold_layers",
           mt.manifold_layers, f"a non-empty list of distinct layers from {list(MANIFOLD_LAYERS)} "
           "(0 = the input, k = the output of residual stage k)")
    _check(mt.fmix_decay_power > 0, "method.fmix_decay_power", mt.fmix_decay_power, "> 0")
    _check(0 < mt.resizemix_scale_min <= 1, "method.resizemix_scale_min", mt.resizemix_scale_min, "0 < scale <= 1")
    _check(mt.resizemix_scale_min <= mt.resizemix_scale_max <= 1, "method.resizemix_scale_max",
           mt.resizemix_scale_max, f"method.resizemix_scale_min ({mt.resizemix_scale_min}) <= scale <= 1")
    _check(mt.resizemix_interpolation in RESIZE_MODES, "method.resizemix_interpolation",
           mt.resizemix_interpolation, f"one of {', '.join(RESIZE_MODES)}")
    _check(mt.saliencymix_box in SALIENCY_BOXES, "method.saliencymix_box", mt.saliencymix_box,
           f"one of {', '.join(SALIENCY_BOXES)}")
    _check(mt.gridmix_holes_min >= 1, "method.gridmix_holes_min", mt.gridmix_holes_min, ">= 1")
    _check(mt.gridmix_holes_max >= mt.gridmix_holes_min, "method.gridmix_holes_max", mt.gridmix_holes_max,
           f">= method.gridmix_holes_min ({mt.gridmix_holes_min})")
    _check(0 < mt.gridmix_area_min <= 1, "method.gridmix_area_min", mt.gridmix_area_min, "0 < area <= 1")
    _check(mt.gridmix_area_min <= mt.gridmix_area_max <= 1, "method.gridmix_area_max", mt.gridmix_area_max,
           f"method.gridmix_area_min ({mt.gridmix_area_min}) <= area <= 1")
    _check(mt.smoothmix_sigma_min > 0, "method.smoothmix_sigma_min", mt.smoothmix_sigma_min, "> 0")
    _check(mt.smoothmix_sigma_max >= mt.smoothmix_sigma_min, "method.smoothmix_sigma_max",
           mt.smoothmix_sigma_max, f">= method.smoothmix_sigma_min ({mt.smoothmix_sigma_min})")
    _check(mt.mask_loss_weight >= 0, "method.mask_loss_weight", mt.mask_loss_weight, ">= 0")
    _check(0 <= mt.mask_loss_margin < 1, "method.mask_loss_margin", mt.mask_loss_margin, "0 <= margin < 1")


def _check_train(t: TrainConfig, problems: _Problems) -> None:
    """``train.*``: the optimisation, the device, and Ray Train's workers and faults."""
    _check = problems.check
    _check(t.epochs >= 1, "train.epochs", t.epochs, ">= 1")
    _check(t.batch_size >= 2, "train.batch_size", t.batch_size, ">= 2")
    _check(t.optimizer in OPTIMIZERS, "train.optimizer", t.optimizer, f"one of {', '.join(OPTIMIZERS)}")
    _check(t.lr > 0, "train.lr", t.lr, "> 0")
    _check(0 <= t.min_lr <= t.lr, "train.min_lr", t.min_lr, f"0 <= min_lr <= train.lr ({t.lr})")
    _check(0 <= t.momentum < 1, "train.momentum", t.momentum, "0 <= momentum < 1")
    _check(t.weight_decay >= 0, "train.weight_decay", t.weight_decay, ">= 0")
    _check(0 <= t.warmup_epochs < t.epochs, "train.warmup_epochs", t.warmup_epochs,
           f"0 <= warmup_epochs < train.epochs ({t.epochs})")
    _check(t.generator_lr is None or t.generator_lr > 0, "train.generator_lr", t.generator_lr, "> 0, or null")
    _check(t.generator_min_lr is None or 0 <= t.generator_min_lr <= (t.generator_lr or t.lr),
           "train.generator_min_lr", t.generator_min_lr,
           f"0 <= generator_min_lr <= the generator's learning rate ({t.generator_lr or t.lr}), or null")
    _check(t.grad_clip >= 0, "train.grad_clip", t.grad_clip, ">= 0 (0 = off)")
    _check(t.device in DEVICES, "train.device", t.device, f"one of {', '.join(DEVICES)}")
    _check(t.ckpt_every >= 1, "train.ckpt_every", t.ckpt_every, ">= 1")
    _check(t.ckpt_every_minutes >= 0, "train.ckpt_every_minutes", t.ckpt_every_minutes, ">= 0 (0 = off)")
    _check(t.keep_checkpoints >= 1, "train.keep_checkpoints", t.keep_checkpoints, ">= 1")
    _check(t.stop_grace_s > 0, "train.stop_grace_s", t.stop_grace_s, "> 0")
    _check(t.workers >= 0, "train.workers", t.workers, ">= 0 (0 = in-process)")
    _check(t.workers == 0 or t.batch_size % t.workers == 0, "train.batch_size", t.batch_size,
           f"a multiple of train.workers ({t.workers}): the global batch is split evenly")
    _check(t.max_failures >= -1, "train.max_failures", t.max_failures, ">= -1 (-1 = unlimited)")
    _check(t.threads >= 0, "train.threads", t.threads, ">= 0 (0 = torch's default)")
    # Ray Train faults and the workers' environment
    _check(t.max_preemption_failures >= -1, "train.max_preemption_failures", t.max_preemption_failures,
           ">= -1 (-1 = unlimited)")
    _check(t.controller_failure_limit >= -1, "train.controller_failure_limit", t.controller_failure_limit,
           ">= -1 (-1 = unlimited)")
    _check(0 < t.worker_start_timeout_s < float("inf"), "train.worker_start_timeout_s",
           t.worker_start_timeout_s, "a number of seconds > 0")
    for i, name in enumerate(t.env_vars):
        _check(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*\*?", name) is not None, f"train.env_vars[{i}]", name,
               "a variable name, or a prefix ending in * (e.g. NCCL_*)")
    for k, v in t.resources_per_worker.items():
        _check(isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
               and math.isfinite(v) and v >= 0, f"train.resources_per_worker.{k}", v,
               "a resource name with a finite number >= 0 (not a boolean)")
    if "GPU" in t.resources_per_worker and "train.resources_per_worker.GPU" not in problems:
        gpus = t.resources_per_worker["GPU"]
        _check((gpus > 0) == t.use_gpu, "train.resources_per_worker.GPU", gpus,
               "> 0 with train.use_gpu=true, 0 or absent without (Ray Train's rule)")
        _check(t.workers <= 1 or not 0 < gpus < 1, "train.resources_per_worker.GPU", gpus,
               f"a whole number with train.workers={t.workers}: the workers of one run cannot share a GPU "
               "(NCCL); a fraction is for one-worker runs, which then share GPUs")
    _check(not (t.sync_bn and t.workers > 1 and not t.use_gpu), "train.sync_bn", t.sync_bn,
           "false without train.use_gpu=true: PyTorch's SyncBatchNorm runs on CUDA only (CPU workers "
           "normalise over their shard)")
    for i, suite in enumerate(t.final_eval):
        _check(suite in EVAL_SUITES, f"train.final_eval[{i}]", suite, f"one of {', '.join(EVAL_SUITES)}")
    _check(len(set(t.final_eval)) == len(t.final_eval), "train.final_eval", t.final_eval, "no suite twice")
    _check(t.inject_nonfinite == "" or re.fullmatch(r"\w+@\d+", t.inject_nonfinite) is not None,
           "train.inject_nonfinite", t.inject_nonfinite, "'' (off) or TERM@ITERATION, e.g. loss_amce@3")


def _check_eval(e: EvalConfig, problems: _Problems) -> None:
    _check = problems.check
    _check(0 <= e.seed <= SEED_MAX, "eval.seed", e.seed, f">= 0 and <= 2**32 - 1 ({SEED_MAX})")
    _check(0 <= e.fgsm_epsilon <= 1, "eval.fgsm_epsilon", e.fgsm_epsilon, "0..1 (pixel units; 8/255 = 0.0314)")
    _check(e.occlusion_patch >= 1, "eval.occlusion_patch", e.occlusion_patch, ">= 1 pixel")
    _check(e.calibration_bins >= 1, "eval.calibration_bins", e.calibration_bins, ">= 1")


def _check_run(cfg: Config, problems: _Problems) -> None:
    """``seed`` and ``out_dir`` (a ``file://`` URI becomes its path)."""
    _check = problems.check
    _check(0 <= cfg.seed <= SEED_MAX, "seed", cfg.seed, f">= 0 and <= 2**32 - 1 ({SEED_MAX})")
    if cfg.out_dir.startswith("file://"):  # Ray's form of a path on a (shared) file system
        cfg.out_dir = url2pathname(urlsplit(cfg.out_dir).path)
    _check("://" not in cfg.out_dir, "out_dir", cfg.out_dir,
           "a folder path (or file:///path): the run directory is written and read with file I/O "
           "on every node; for a bucket, mount it at the same path on each node (s3fs, gcsfuse, "
           "Mountpoint for Amazon S3) and give that path")


def _check_model(m: ModelConfig, image_size: int | None, problems: _Problems) -> None:
    """``model.*``; resolves ``model.stem=auto`` (imagenet for swin_t and for images larger than
    64 pixels, else cifar: the published configs' choice for CIFAR and Tiny-ImageNet)."""
    _check = problems.check
    if not _check(m.arch in ARCHS, "model.arch", m.arch, f"one of {', '.join(ARCHS)}"):
        return
    arch = ARCHS[m.arch]
    if _check(m.stem in STEMS, "model.stem", m.stem, f"one of {', '.join(STEMS)}") and m.stem == "auto":
        m.stem = "imagenet" if "cifar" not in arch.builders or (image_size or 32) > 64 else "cifar"
    _check(m.stem in arch.builders, "model.stem", m.stem,
           f"{' or '.join(arch.builders)} (or auto) for {m.arch}: {arch.what}")
    in_house = arch.width and m.stem == "cifar"  # models/cifar_resnet.py; the rest is torchvision's
    _check(0 < m.width <= 4 and (in_house or m.width == 1.0), "model.width", m.width,
           "0 < width <= 4 for the CIFAR-stem ResNets; 1.0 for torchvision's backbones (model.stem=imagenet, "
           "swin_t, convnext_t)")
    _check(m.drop_path is None or (arch.drop_path and 0 <= m.drop_path < 1),
           "model.drop_path", m.drop_path, "null, or 0 <= drop_path < 1 for swin_t and convnext_t")
    _check(m.init is None or bool(m.init), "model.init", m.init, "a path, or null")


def _is_power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def _check_puzzlemix(mt: MethodConfig, image_size: int, problems: _Problems) -> None:
    """PuzzleMix's keys; with ``method.name=puzzlemix``, also that every grid fits the images."""
    _check, before = problems.check, len(problems)
    for key in ("block_num_min", "block_num_max"):
        value = getattr(mt, key)
        _check(value >= 2 and _is_power_of_two(value), f"method.{key}", value, "a power of two >= 2")
    _check(mt.block_num_min <= mt.block_num_max, "method.block_num_max", mt.block_num_max,
           f">= method.block_num_min ({mt.block_num_min})")
    _check(mt.mix_levels >= 2, "method.mix_levels", mt.mix_levels, ">= 2")
    _check(mt.label_smoothness >= 0, "method.label_smoothness", mt.label_smoothness, ">= 0")
    _check(0 <= mt.data_smoothness <= 1, "method.data_smoothness", mt.data_smoothness,
           "0..1 (keeps every graph-cut edge weight >= 0)")
    _check(mt.prior_weight >= 0, "method.prior_weight", mt.prior_weight, ">= 0")
    _check(mt.neigh_size >= 1, "method.neigh_size", mt.neigh_size, ">= 1")
    _check(mt.transport_weight >= 0, "method.transport_weight", mt.transport_weight, ">= 0")
    _check(mt.transport_size >= 0, "method.transport_size", mt.transport_size, ">= 0 (0 = the mask's blocks)")
    _check(mt.transport_solver in TRANSPORT_SOLVERS, "method.transport_solver", mt.transport_solver,
           f"one of {', '.join(TRANSPORT_SOLVERS)}")
    if mt.name != "puzzlemix" or len(problems) > before:  # the grids need valid sizes
        return
    n = mt.block_num_min
    while n <= mt.block_num_max:
        _check(image_size % n == 0, "method.block_num_max", mt.block_num_max,
               f"the image side ({image_size}) must split into {n} blocks")
        block = image_size // n
        for key, size in (("neigh_size", mt.neigh_size), ("transport_size", mt.transport_size)):
            _check(size == 0 or block % min(size, block) == 0, f"method.{key}", size,
                   f"a divisor of every block side ({block} pixels for {n} x {n} blocks)")
        n *= 2


def load_config(path: str | Path | None = None, overrides: list[str] | dict | None = None,
                preset: str | None = None) -> Config:
    """Build a validated ``Config`` from an optional preset, YAML file and overrides.

    Args:
        path: YAML file with a (partial) config tree; missing keys keep their defaults.
        overrides: ``["train.epochs=5", ...]`` or ``{"train.epochs": 5}``, applied after the file;
            their string values are read as YAML (``"5"`` -> 5), as on the command line.
        preset: a name of ``presets.PRESETS``, applied first (the file and overrides go on top).
    """
    items, problems = preset_items(preset), []
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path}: not found")
        try:
            tree = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {path}: not valid YAML ({err})") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"config file {path}: expected a mapping at the top level")
        items += [(key, value, False) for key, value in flatten(tree).items()]  # typed already
    if not isinstance(overrides, dict):
        overrides = parse_overrides(overrides or [], problems)  # bad items join the other problems
    items += [(key, value, True) for key, value in overrides.items()]
    return _build(items, problems)


def parse_overrides(items: list[str], problems: list[str] | None = None) -> dict[str, str]:
    """``["train.epochs=5", ...]`` -> ``{"train.epochs": "5"}`` (the values stay text, read as
    YAML when they are set). An item without ``=`` raises ``ConfigError``, or with ``problems``
    is added to it as one line."""
    bad = [f"override {item!r}: expected key=value, e.g. train.epochs=5" for item in items if "=" not in item]
    if bad and problems is None:
        raise ConfigError("\n".join(bad))
    if problems is not None:
        problems.extend(bad)
    return {key.strip(): value for key, value in (item.split("=", 1) for item in items if "=" in item)}


def params(cfg: Config | dict) -> dict[str, str]:
    """The config (or its ``to_dict`` tree, as a run's ``config.yaml`` holds it) as flat params, as MLflow
    logs them: dotted key -> the value as text."""
    tree = cfg if isinstance(cfg, dict) else to_dict(cfg)
    return {key: "None" if value is None else str(value) for key, value in flatten(tree).items()}


def preset_items(name: str | None) -> list[tuple[str, Any, bool]]:
    """The ``(key, value, parse)`` items of preset ``name`` (none for None); ``ConfigError`` for an
    unknown name."""
    if name is None:
        return []
    from .presets import PRESETS

    if name not in PRESETS:
        raise ConfigError(f"preset {name!r} is not allowed: one of {', '.join(PRESETS)}")
    return [(key, value, False) for key, value in PRESETS[name].config.items()]


def from_dict(tree: dict) -> Config:
    """Rebuild a validated ``Config`` from ``to_dict`` output (e.g. a run's config.yaml)."""
    return _build([(key, value, False) for key, value in flatten(tree).items()])


def _build(items: list[tuple[str, Any, bool]], problems: list[str] | None = None) -> Config:
    """Set ``(key, value, parse)`` items on a default ``Config`` and validate it, collecting
    every bad key; ``parse``: the value is text to read as YAML."""
    cfg, problems, failed = Config(), list(problems or []), []
    for key, value, parse in items:
        try:
            _set(cfg, key, value, parse)
        except ConfigError as err:  # the key keeps its default; go on to find every bad key
            problems.append(str(err))
            failed.append(re.escape(key))
    try:
        validate(cfg)
    except ConfigError as err:  # less the lines that compare with a bad key's default
        mentions_failed = re.compile(rf"\b({'|'.join(failed)})\b") if failed else None
        problems += [line for line in str(err).splitlines()
                     if mentions_failed is None or not mentions_failed.search(line)]
    if problems:
        raise ConfigError("\n".join(problems))
    return cfg


def help_text() -> str:
    """Every key with its default, for ``adautomix train --help``."""
    lines = []
    for key, value in flatten(to_dict(Config())).items():
        lines.append(f"  {key:28s} {value!r}")
    return "\n".join(lines)
