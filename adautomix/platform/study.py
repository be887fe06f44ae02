"""Ablation studies: a declarative YAML file -> a validated ``Study`` -> the list of trials.

The paper's ablations (Adversarial AutoMixup, Qin et al., ICLR 2024,
https://arxiv.org/abs/2312.11954, §4 "Ablation": Tables 5, 8, 9, 10, Figures 6 and 10) are each
one small file in ``ablations/``. A study file holds::

    name: n_mix                    # optional; default: the file name
    description: "..."             # optional, shown in the MLflow parent run
    base: {method: {name: adautomix}, train: {epochs: 200}}   # a (partial) config tree
    space: {method.n_mix: [2, 3, 4, 5]}     # dotted config key -> values (grid) or a distribution
    #   or named variants, each a set of overrides (grid only), e.g. the module ablation:
    #   space: {variant: {basic: {method.use_ce: false, ...}, full: {}}}
    searcher: grid                 # grid (Optuna GridSampler) | tpe (Optuna TPESampler)
    seeds: 3                       # runs per setting: an int N (seeds 0..N-1) or a list of seeds
                                   # (tpe: one seed; each sampled setting runs once)
    num_samples: 20                # tpe only: how many settings to try
    metric: top1_median_last10     # what the table, the plot and the searcher rank by
    mode: max
    resources: {workers: 1, cpus_per_worker: 1, gpus_per_worker: 0}
    scheduler: {name: asha, grace_period: 2, reduction_factor: 2}   # optional (early stopping)
    max_concurrent: 2              # trials running at once
    smoke: {train.epochs: 2}       # optional extra overrides for --smoke

Everything is checked here, before Ray starts: a bad file raises ``StudyError`` naming the key.
Nothing in this module imports Ray, Optuna or MLflow.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..config import Config, ConfigError, flatten, load_config, to_dict

SEARCHERS = ("grid", "tpe")
MODES = ("max", "min")
SCHEDULERS = ("asha",)
STUDY_KEYS = ("name", "description", "base", "space", "searcher", "seeds", "num_samples", "metric",
              "mode", "resources", "scheduler", "max_concurrent", "smoke")
RESOURCE_KEYS = ("workers", "cpus_per_worker", "gpus_per_worker")
SCHEDULER_KEYS = ("name", "grace_period", "reduction_factor")
# tpe distributions: {kind: [low, high]} or {choice: [v1, v2, ...]}
DISTRIBUTIONS = ("uniform", "loguniform", "int", "choice")
# metrics a trial reports every epoch (the heads' top1_<head> come on top, per method)
METRICS = ("top1", "top1_median_last10", "loss", "train_img_per_s")

# --smoke: the same study, tiny (checks a setup end to end in a minute or two)
SMOKE_OVERRIDES = {
    "train.epochs": 2,
    "data.limit_train": 256,
    "data.limit_test": 128,
    "train.batch_size": 32,
    "model.width": 0.125,
    "train.warmup_epochs": 0,
    "train.threads": 1,
}
SMOKE_MAX_SAMPLES = 2  # tpe searches try at most this many settings under --smoke
VARIANT = "variant"  # a space key whose values are named sets of overrides


class StudyError(ValueError):
    """A bad study file; the message names the file and the key."""


@dataclass
class Trial:
    """One run of the study: a setting of the swept keys and a seed.

    ``key`` identifies the trial across invocations (``--resume``): a hash of the setting and the
    seed, stored as a tag on the MLflow child run and in the study's ``trials.jsonl``.
    """

    setting: dict[str, Any]  # swept dotted key -> value
    seed: int

    @property
    def key(self) -> str:
        blob = json.dumps({"setting": self.setting, "seed": self.seed}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]

    @property
    def name(self) -> str:
        parts = [f"{short_key(k)}={format_value(v)}" for k, v in self.setting.items()]
        return " ".join(parts + [f"seed={self.seed}"])

    def overrides(self, variants: dict[str, dict] | None = None) -> dict[str, Any]:
        """Config overrides of this trial; a ``variant`` value expands to its overrides."""
        out = {k: v for k, v in self.setting.items() if k != VARIANT}
        if VARIANT in self.setting:
            out.update((variants or {})[self.setting[VARIANT]])
        return {**out, "seed": self.seed}


@dataclass
class Study:
    """A validated study: what to run, how to search it, what to rank by."""

    name: str
    path: Path
    description: str
    base: dict[str, Any]  # flattened: dotted key -> value (study base, resources, smoke, CLI)
    space: dict[str, Any]  # grid: key -> list of values; tpe: key -> {kind: args}
    searcher: str
    seeds: list[int]
    num_samples: int  # tpe: settings to try; grid: len(grid points)
    metric: str
    mode: str
    resources: dict[str, float]
    scheduler: dict[str, Any] | None
    max_concurrent: int
    smoke: bool = False
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> overrides
    overrides: list[str] = field(default_factory=list)
    text: str = ""  # the study file as written

    @property
    def swept(self) -> list[str]:
        return list(self.space)

    def config_for(self, trial: Trial, out_dir: str = "") -> Config:
        """The resolved config of one trial (base, then the trial's setting and seed)."""
        return load_config(overrides={**self.base, **trial.overrides(self.variants),
                                      "out_dir": out_dir or "x"})

    def grid_trials(self) -> list[Trial]:
        """Every grid point x every seed, in the file's order (grid searcher only)."""
        keys = list(self.space)
        points = itertools.product(*(self.space[k] for k in keys))
        return [Trial(dict(zip(keys, p)), s) for p in points for s in self.seeds]

    def total_trials(self) -> int:
        if self.searcher == "grid":
            return len(self.grid_trials())
        return self.num_samples

    def fingerprint(self) -> str:
        """Changes when anything that decides the trials' configs changes (checked by --resume)."""
        blob = json.dumps({"base": self.base, "space": self.space, "variants": self.variants,
                           "searcher": self.searcher,
                           "seeds": self.seeds, "num_samples": self.num_samples}, sort_keys=True,
                          default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]


def short_key(key: str) -> str:
    """``method.n_mix`` -> ``n_mix``, ``method.name`` -> ``method`` (the part that names the knob)."""
    parts = key.split(".")
    return parts[-2] if parts[-1] == "name" and len(parts) > 1 else parts[-1]


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _fail(path: Path, key: str, message: str) -> None:
    raise StudyError(f"study {path}: {key}: {message}")


def _check_type(path: Path, key: str, value: Any, typ: type | tuple, what: str) -> None:
    if not isinstance(value, typ) or isinstance(value, bool) and bool not in (
            typ if isinstance(typ, tuple) else (typ,)):
        _fail(path, key, f"expected {what}, got {value!r}")


def _check_config(path: Path, where: str, overrides: dict[str, Any]) -> Config:
    try:
        return load_config(overrides={**overrides, "out_dir": "x"})
    except ConfigError as err:
        raise StudyError(f"study {path}: {where}: {err}") from None


def _space_values(path: Path, searcher: str, key: str, spec: Any) -> Any:
    """Check one entry of ``space``; returns it normalised (grid: list; tpe: {kind: args})."""
    where = f"space.{key}"
    if searcher == "grid":
        if isinstance(spec, dict):
            _fail(path, where, "a grid study lists the values, e.g. [2, 3, 4]; distributions "
                               f"({', '.join(DISTRIBUTIONS)}) need searcher: tpe")
        values = spec if isinstance(spec, list) else [spec]
        if not values:
            _fail(path, where, "empty list of values")
        for v in values:
            if not isinstance(v, (str, int, float, bool)) and v is not None:
                _fail(path, where, f"grid values are plain numbers, strings or booleans; got {v!r}")
        if len(set(map(json.dumps, values))) != len(values):
            _fail(path, where, f"repeated values in {values!r}")
        return values
    if isinstance(spec, list):
        spec = {"choice": spec}
    if not isinstance(spec, dict) or len(spec) != 1:
        _fail(path, where, f"expected one of {{{', '.join(DISTRIBUTIONS)}: ...}}, got {spec!r}")
    kind, args = next(iter(spec.items()))
    if kind not in DISTRIBUTIONS:
        _fail(path, where, f"unknown distribution {kind!r} (allowed: {', '.join(DISTRIBUTIONS)})")
    if not isinstance(args, list) or not args:
        _fail(path, where, f"{kind}: expected a non-empty list, got {args!r}")
    if kind != "choice":
        if len(args) != 2 or not all(isinstance(a, (int, float)) and not isinstance(a, bool)
                                     for a in args) or not args[0] < args[1]:
            _fail(path, where, f"{kind}: expected [low, high] with low < high, got {args!r}")
        if kind == "loguniform" and args[0] <= 0:
            _fail(path, where, f"loguniform: low must be > 0, got {args[0]!r}")
        if kind == "int" and not all(isinstance(a, int) for a in args):
            _fail(path, where, f"int: expected integer bounds, got {args!r}")
        args = [float(a) for a in args] if kind != "int" else args
    return {kind: args}


def _candidate_values(spec: Any) -> list:
    """Values that stand for a space entry when checking it against the config's rules."""
    if isinstance(spec, list):
        return spec
    kind, args = next(iter(spec.items()))
    return list(args)


def load_study(path: str | Path, overrides: list[str] | None = None, smoke: bool = False) -> Study:
    """Read and validate a study file; ``overrides`` (``key=value``) reach the base config.

    Raises:
        StudyError: naming the file and the key, for anything that would fail later.
    """
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"study {path}: file not found")
    text = path.read_text()
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise StudyError(f"study {path}: not valid YAML ({err})") from None
    if not isinstance(raw, dict):
        raise StudyError(f"study {path}: expected a mapping at the top level")
    for key in raw:
        if key not in STUDY_KEYS:
            _fail(path, str(key), f"unknown key (allowed: {', '.join(STUDY_KEYS)})")

    name = raw.get("name", path.stem)
    _check_type(path, "name", name, str, "a string")
    description = raw.get("description", "")
    _check_type(path, "description", description, str, "a string")

    searcher = raw.get("searcher", "grid")
    if searcher not in SEARCHERS:
        _fail(path, "searcher", f"{searcher!r} is not one of {', '.join(SEARCHERS)}")

    seeds = raw.get("seeds", 1)
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            _fail(path, "seeds", f"expected >= 1 run per setting, got {seeds}")
        seeds = list(range(seeds))
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) and not isinstance(s, bool)
                                                       and s >= 0 for s in seeds)):
        _fail(path, "seeds", f"expected a count >= 1 or a list of seeds >= 0, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        _fail(path, "seeds", f"repeated seeds in {seeds!r}")

    metric = raw.get("metric", "top1_median_last10")
    _check_type(path, "metric", metric, str, "a metric name")
    if metric not in METRICS and not metric.startswith("top1_"):
        _fail(path, "metric", f"{metric!r}: expected one of {', '.join(METRICS)} or top1_<head>")
    mode = raw.get("mode", "max")
    if mode not in MODES:
        _fail(path, "mode", f"{mode!r} is not one of {', '.join(MODES)}")

    max_concurrent = raw.get("max_concurrent", 2)
    _check_type(path, "max_concurrent", max_concurrent, int, "an integer >= 1")
    if max_concurrent < 1:
        _fail(path, "max_concurrent", f"expected >= 1, got {max_concurrent}")

    # --- base config: study base -> resources -> smoke -> command-line overrides
    base_tree = raw.get("base", {}) or {}
    if not isinstance(base_tree, dict):
        _fail(path, "base", f"expected a config tree (mapping), got {base_tree!r}")
    base = flatten(base_tree)
    _check_config(path, "base", base)

    res_raw = raw.get("resources", {}) or {}
    if not isinstance(res_raw, dict):
        _fail(path, "resources", f"expected a mapping, got {res_raw!r}")
    for key in res_raw:
        if key not in RESOURCE_KEYS:
            _fail(path, f"resources.{key}", f"unknown key (allowed: {', '.join(RESOURCE_KEYS)})")
    resources = {"workers": 1, "cpus_per_worker": 1, "gpus_per_worker": 0, **res_raw}
    for key, value in resources.items():
        _check_type(path, f"resources.{key}", value, (int, float), "a number")
        if value < 0 or key == "workers" and (value < 1 or value != int(value)):
            _fail(path, f"resources.{key}", f"{value!r} is not allowed (workers: an integer >= 1;"
                                            " others: >= 0)")
    base.update({
        "train.workers": int(resources["workers"]),
        "train.use_gpu": resources["gpus_per_worker"] > 0,
        "train.resources_per_worker": {"CPU": resources["cpus_per_worker"],
                                       **({"GPU": resources["gpus_per_worker"]}
                                          if resources["gpus_per_worker"] else {})},
    })

    smoke_raw = raw.get("smoke", {}) or {}
    if not isinstance(smoke_raw, dict):
        _fail(path, "smoke", f"expected a mapping of key: value, got {smoke_raw!r}")
    if smoke:
        base.update(SMOKE_OVERRIDES)
        base.update(flatten(smoke_raw))
    else:
        _check_config(path, "smoke", {**base, **SMOKE_OVERRIDES, **flatten(smoke_raw)})

    cli: dict[str, Any] = {}
    for item in overrides or []:
        if "=" not in item:
            raise StudyError(f"override {item!r}: expected key=value, e.g. train.epochs=5")
        key, value = item.split("=", 1)
        cli[key.strip()] = value
    base.update(cli)
    try:
        resolved = load_config(overrides={**base, "out_dir": "x"})
    except ConfigError as err:
        raise StudyError(f"study {path}: base config with overrides: {err}") from None
    # keep the resolved values (not the strings typed on the command line)
    resolved_flat = flatten(to_dict(resolved))
    base = {k: resolved_flat[k] for k in base}

    # --- search space
    space_raw = raw.get("space")
    if not isinstance(space_raw, dict) or not space_raw:
        _fail(path, "space", "empty: a study sweeps at least one config key, e.g. "
                             "space: {method.n_mix: [2, 3]}")
    space: dict[str, Any] = {}
    variants: dict[str, dict[str, Any]] = {}
    for key, spec in space_raw.items():
        key = str(key)
        if key == VARIANT:
            if searcher != "grid":
                _fail(path, "space.variant", "named variants need searcher: grid")
            if not isinstance(spec, dict) or not spec:
                _fail(path, "space.variant", "expected {name: {dotted.key: value, ...}, ...} with "
                                             f"at least one variant, got {spec!r}")
            for vname, vover in spec.items():
                if not isinstance(vover, dict):
                    _fail(path, f"space.variant.{vname}", f"expected a mapping of overrides, got {vover!r}")
                vover = flatten(vover)
                for k in vover:
                    if k in cli:
                        _fail(path, f"space.variant.{vname}.{k}", f"set by the study; remove the "
                                                                  f"override {k}=...")
                resolved_v = _check_config(path, f"space.variant.{vname}", {**base, **vover})
                flat_v = flatten(to_dict(resolved_v))
                variants[str(vname)] = {k: flat_v[k] for k in vover}
            space[VARIANT] = list(variants)
            continue
        if key == "seed":
            _fail(path, "space.seed", "seeds are set by the top-level key `seeds`")
        if key in cli:
            _fail(path, f"space.{key}", f"swept by the study; remove the override {key}=...")
        space[key] = _space_values(path, searcher, key, spec)
        for value in _candidate_values(space[key]):
            _check_config(path, f"space.{key}={value!r}", {**base, key: value})

    if searcher == "grid":
        if "num_samples" in raw:
            _fail(path, "num_samples", "only for searcher: tpe (a grid runs every point once per seed)")
        num_samples = math.prod(len(v) for v in space.values())
    else:
        if len(seeds) != 1:
            _fail(path, "seeds", "a tpe search runs each setting once: give one seed (e.g. seeds: "
                                 f"[0]), got {seeds!r}")
        num_samples = raw.get("num_samples", 10)
        _check_type(path, "num_samples", num_samples, int, "an integer >= 1")
        if num_samples < 1:
            _fail(path, "num_samples", f"expected >= 1, got {num_samples}")

    sched = raw.get("scheduler")
    if sched is not None:
        if not isinstance(sched, dict):
            _fail(path, "scheduler", f"expected a mapping such as {{name: asha}}, got {sched!r}")
        for key in sched:
            if key not in SCHEDULER_KEYS:
                _fail(path, f"scheduler.{key}", f"unknown key (allowed: {', '.join(SCHEDULER_KEYS)})")
        if sched.get("name") not in SCHEDULERS:
            _fail(path, "scheduler.name", f"{sched.get('name')!r} is not one of {', '.join(SCHEDULERS)}")
        sched = {"grace_period": 1, "reduction_factor": 2, **sched}
        for key in ("grace_period", "reduction_factor"):
            _check_type(path, f"scheduler.{key}", sched[key], int, "an integer")
        if sched["grace_period"] < 1 or sched["reduction_factor"] < 2:
            _fail(path, "scheduler", "grace_period >= 1 and reduction_factor >= 2")

    study = Study(name=name, path=path, description=description, base=base, space=space,
                  searcher=searcher, seeds=seeds, num_samples=num_samples, metric=metric,
                  mode=mode, resources=resources, scheduler=sched, max_concurrent=max_concurrent,
                  smoke=smoke, overrides=list(overrides or []), text=text)
    if smoke:
        study.seeds = study.seeds[:1]
        if searcher == "tpe":
            study.num_samples = min(study.num_samples, SMOKE_MAX_SAMPLES)
    study.variants = variants
    if searcher == "grid":  # every point must be a valid config (e.g. N >= 2 for each N)
        for trial in study.grid_trials()[:: len(study.seeds)]:
            _check_config(path, f"space point {trial.setting}",
                          {**base, **trial.overrides(variants), "seed": 0})
    return study


def describe(study: Study) -> str:
    """What ``--dry-run`` prints: the study, then one line per trial it would run."""
    epochs = study.base.get("train.epochs", Config().train.epochs)
    lines = [
        f"study {study.name} ({study.path}){' [smoke]' if study.smoke else ''}",
        f"  searcher {study.searcher}, metric {study.metric} ({study.mode}), seeds {study.seeds}, "
        f"max_concurrent {study.max_concurrent}",
        f"  resources per trial: {study.resources['workers']} Ray Train worker(s) x "
        f"{study.resources['cpus_per_worker']} CPU, {study.resources['gpus_per_worker']} GPU",
        f"  base: method {'(swept)' if 'method.name' in study.space else study.base.get('method.name', 'vanilla')}, data "
        f"{study.base.get('data.name', 'digits')}, {epochs} epochs"
        + (f", scheduler {study.scheduler['name']}" if study.scheduler else ""),
    ]
    if study.searcher == "grid":
        trials = study.grid_trials()
        lines.append(f"  {len(trials)} trials ({study.num_samples} settings x {len(study.seeds)} seeds):")
        lines += [f"  {i + 1:4d}  {t.key}  {t.name}" for i, t in enumerate(trials)]
    else:
        lines.append(f"  {study.total_trials()} trials: TPE picks {study.num_samples} settings from")
        lines += [f"        {k}: {v}" for k, v in study.space.items()]
        lines.append(f"        seed {study.seeds[0]}")
    return "\n".join(lines)
