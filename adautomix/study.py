"""Ablation studies: a declarative YAML file -> a validated ``Study`` -> its trials, each with the
overrides of its ``Config``; the file's keys and their precedence are in docs/studies.md.

Each trial resolves its config once, where it runs (``Trial.resolve``); here only the base config
and each grid point (once, not per seed) or a TPE space's bounds are built, to check them, so a bad
file raises ``StudyError`` naming the key before Ray starts. Nothing here imports Ray, Optuna or
MLflow.
"""
from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .config import Config, ConfigError, flatten, load_config, parse_overrides, preset_items, to_dict
from .evaluation.report import format_value, short_key

SEARCHERS = ("grid", "tpe")
MODES = ("max", "min")
SCHEDULERS = ("asha",)
STUDY_KEYS = ("name", "description", "preset", "base", "space", "searcher", "seeds", "num_samples", "tpe",
              "metric", "mode", "reference", "resources", "scheduler", "max_concurrent", "smoke")
RESOURCES = {"workers": 1, "cpus_per_worker": 1, "gpus_per_worker": 0, "in_trial": True}
SCHEDULER_KEYS = ("name", "grace_period", "reduction_factor")
# Optuna's TPESampler settings a study may set; written out so that a search is reproducible
# and its settings are on record (Optuna's own defaults, except the seed)
TPE_DEFAULTS = {"seed": 0, "n_startup_trials": 10, "multivariate": False, "constant_liar": True}
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
TRIALS = "trials"  # the study folder's subfolder of trial run directories (Tune's experiment)


class StudyError(ValueError):
    """A bad study file; the message names the file and the key."""


@dataclass
class Trial:
    """One run of the study: a setting of the swept keys, a seed, and the overrides its config
    is built from; the config is resolved once, where the trial runs (``resolve``).

    ``key`` identifies the trial across invocations (``--resume``): a hash of the setting and the
    seed; it names the trial's run directory (``trials/<key>/``, relative to the study folder,
    also ``config.out_dir``) and tags its MLflow run.
    """

    setting: dict[str, Any]  # swept dotted key -> value
    seed: int
    overrides: dict[str, Any] = field(default_factory=dict, repr=False)  # the config's, all of them
    epochs: int | None = None  # train.epochs of its setting (grid: known from the check at load)

    @property
    def key(self) -> str:
        return trial_key(self.setting, self.seed)

    @property
    def name(self) -> str:
        parts = [f"{short_key(k)}={format_value(v)}" for k, v in self.setting.items()]
        return " ".join(parts + [f"seed={self.seed}"])

    def resolve(self, study_dir: str | Path | None = None) -> Config:
        """The trial's config, built and validated now; ``study_dir``: its run directory is
        ``study_dir/trials/<key>`` (absolute), else ``trials/<key>``."""
        out_dir = Path(study_dir or "") / TRIALS / self.key
        return load_config(overrides={**self.overrides, "out_dir": str(out_dir)})


def trial_key(setting: dict[str, Any], seed: int) -> str:
    blob = json.dumps({"setting": setting, "seed": seed}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


@dataclass
class Study:
    """A validated study: what to run, how to search it, what to rank by."""

    name: str
    path: Path
    description: str
    base: Config  # the resolved base config (study base, resources, smoke, command line)
    overrides_base: dict[str, Any]  # the dotted overrides ``base`` was built from
    space: dict[str, Any]  # grid: key -> list of values; tpe: key -> {kind: args}
    searcher: str
    seeds: list[int]
    num_samples: int  # tpe: settings to try; grid: grid points
    metric: str
    mode: str
    resources: dict[str, Any]
    scheduler: dict[str, Any] | None
    max_concurrent: int
    tpe: dict[str, Any] = field(default_factory=dict)  # TPESampler settings (tpe only)
    smoke: bool = False
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> overrides
    overrides: list[str] = field(default_factory=list)  # key=value from the command line
    text: str = ""  # the study file as written
    grid: list[Trial] = field(default_factory=list)  # grid only: every point x every seed
    reference: dict[str, Any] | None = None  # grid only: the setting the table compares with

    @property
    def swept(self) -> list[str]:
        return list(self.space)

    def trials(self) -> list[Trial]:
        """A grid study's trials in the file's order (points, then seeds)."""
        return self.grid

    @functools.cached_property
    def _grid_by_key(self) -> dict[str, Trial]:
        """The grid's trials by key: ``trial`` runs for every Tune event of a study."""
        return {t.key: t for t in self.grid}

    def trial(self, setting: dict[str, Any], seed: int) -> Trial:
        """The trial of ``setting`` and ``seed``: a grid's own ``Trial``, or a TPE trial of the
        values Optuna picked."""
        trial = self._grid_by_key.get(trial_key(setting, seed))
        if trial is not None:
            return trial
        if self.searcher == "grid":
            raise StudyError(f"study {self.path}: no grid point {setting} with seed {seed}")
        return _make_trial(self, setting, seed)

    def total_trials(self) -> int:
        return len(self.grid) if self.searcher == "grid" else self.num_samples

    def max_epochs(self) -> int:
        """The most epochs any trial trains (what early stopping counts up to)."""
        if self.grid:
            return max(t.epochs for t in self.grid)
        spec = self.space.get("train.epochs")
        return int(max(_candidate_values(spec))) if spec else self.base.train.epochs

    def fingerprint(self) -> str:
        """Changes when anything that decides the trials' configs changes (checked by --resume)."""
        base = to_dict(self.base)
        base.pop("out_dir")
        blob = json.dumps({"base": base, "space": self.space, "variants": self.variants,
                           "searcher": self.searcher, "seeds": self.seeds, "tpe": self.tpe,
                           "num_samples": self.num_samples}, sort_keys=True, default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]

    def params(self) -> dict[str, Any]:
        """The study as flat params (its parent run's in MLflow): how it searches and ranks,
        and the base overrides every trial shares."""
        return {"study.name": self.name, "study.searcher": self.searcher, "study.seeds": str(self.seeds),
                "study.metric": self.metric, "study.mode": self.mode, "study.trials": self.total_trials(),
                "study.smoke": self.smoke, "study.reference": json.dumps(self.reference, sort_keys=True),
                **{f"study.tpe.{k}": v for k, v in self.tpe.items()},
                **{f"study.space.{k}": str(v) for k, v in self.space.items()},
                **{f"base.{k}": v for k, v in self.overrides_base.items()}}


def _fail(path: Path, key: str, message: str) -> None:
    raise StudyError(f"study {path}: {key}: {message}")


def _check_type(path: Path, key: str, value: Any, typ: type | tuple, what: str) -> None:
    if not isinstance(value, typ) or isinstance(value, bool) and bool not in (
            typ if isinstance(typ, tuple) else (typ,)):
        _fail(path, key, f"expected {what}, got {value!r}")


def _config(path: Path, where: str, overrides: dict[str, Any]) -> Config:
    try:
        return load_config(overrides=overrides)
    except ConfigError as err:
        raise StudyError(f"study {path}: {where}: {err}") from None


def _make_trial(study: Study, setting: dict[str, Any], seed: int) -> Trial:
    """A trial with its overrides: the study's base overrides, then the setting and the seed."""
    overrides = {k: v for k, v in setting.items() if k != VARIANT}
    if VARIANT in setting:
        overrides.update(study.variants[setting[VARIANT]])
    return Trial(dict(setting), seed, {**study.overrides_base, **overrides, "seed": seed})


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


def _section(path: Path, raw: dict, key: str, allowed: dict | tuple) -> dict:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        _fail(path, key, f"expected a mapping, got {value!r}")
    for k in value:
        if k not in allowed:
            _fail(path, f"{key}.{k}", f"unknown key (allowed: {', '.join(allowed)})")
    return value


def _reference(path: Path, value: Any, searcher: str, space: dict[str, Any]) -> dict[str, Any] | None:
    """The grid point the results table compares every setting with: ``reference:`` as the
    value of the one swept key or ``{key: value}`` of every swept key; default the first point."""
    if searcher != "grid":
        if value is not None:
            _fail(path, "reference", "only for searcher: grid (a search ranks its settings)")
        return None
    if value is None:
        return {k: values[0] for k, values in space.items()}
    if not isinstance(value, dict):
        if len(space) != 1:
            _fail(path, "reference", f"expected {{key: value}} for each of {', '.join(space)}, got {value!r}")
        value = {next(iter(space)): value}
    if set(value) != set(space):
        _fail(path, "reference", f"expected a value for each swept key ({', '.join(space)}), got {value!r}")
    for key, v in value.items():
        if v not in space[key]:
            _fail(path, f"reference.{key}", f"{v!r} is not one of the swept values {space[key]!r}")
    return {k: value[k] for k in space}


def load_study(path: str | Path, overrides: list[str] | None = None, smoke: bool = False) -> Study:
    """Read and validate a study file; ``overrides`` (``key=value``) reach the base config.

    The driver builds the base config, and each grid point's config once (not per seed) to check
    it; every trial resolves its own config where it runs (``Trial.resolve``).

    Raises:
        StudyError: naming the file and the key, for anything that would fail later.
    """
    path = Path(path)
    text, raw = _read(path)
    settings = _settings(path, raw)
    try:
        cli = parse_overrides(list(overrides or []))
    except ConfigError as err:
        raise StudyError(str(err)) from None
    resources = _resources(path, raw)
    base = _base_overrides(path, raw, resources, smoke, cli)
    base_config = _config(path, "base config with overrides", {**base, "out_dir": TRIALS})
    space, variants = _space(path, raw, settings["searcher"], cli)
    num_samples, tpe = _search(path, raw, settings["searcher"], settings["seeds"], space, base)
    study = Study(**settings, path=path, base=base_config, overrides_base=base, space=space,
                  num_samples=num_samples, resources=resources, scheduler=_scheduler(path, raw),
                  reference=_reference(path, raw.get("reference"), settings["searcher"], space), tpe=tpe,
                  smoke=smoke, variants=variants, overrides=list(overrides or []), text=text)
    if smoke:
        study.seeds = study.seeds[:1]
        if study.searcher == "tpe":
            study.num_samples = min(study.num_samples, SMOKE_MAX_SAMPLES)
    if study.searcher == "grid":
        study.grid = _grid(study)
    return study


def _read(path: Path) -> tuple[str, dict]:
    """The study file's text and its mapping, every top-level key known."""
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
    return text, raw


def _settings(path: Path, raw: dict) -> dict[str, Any]:
    """The study's plain settings: ``name``, ``description``, ``searcher``, ``seeds``, what it
    ranks by (``metric``, ``mode``) and ``max_concurrent``."""
    name, description = raw.get("name", path.stem), raw.get("description", "")
    _check_type(path, "name", name, str, "a string")
    _check_type(path, "description", description, str, "a string")
    searcher = raw.get("searcher", "grid")
    if searcher not in SEARCHERS:
        _fail(path, "searcher", f"{searcher!r} is not one of {', '.join(SEARCHERS)}")
    seeds = _seeds(path, raw)
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
    return dict(name=name, description=description, searcher=searcher, seeds=seeds, metric=metric,
                mode=mode, max_concurrent=max_concurrent)


def _seeds(path: Path, raw: dict) -> list[int]:
    """``seeds``: a count N (seeds 0..N-1) or a list of distinct seeds."""
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
    return seeds


def _resources(path: Path, raw: dict) -> dict[str, Any]:
    """``resources``: the study file's own keys (the config checks the train.* keys they become)."""
    resources = {**RESOURCES, **_section(path, raw, "resources", tuple(RESOURCES))}
    for key, value in resources.items():
        if key == "in_trial":
            _check_type(path, "resources.in_trial", value, bool, "true or false")
            continue
        _check_type(path, f"resources.{key}", value, (int, float), "a number")
        if value < 0 or key == "workers" and (value < 1 or value != int(value)):
            _fail(path, f"resources.{key}", f"{value!r} is not allowed (workers: an integer >= 1;"
                                            " others: >= 0)")
        if value > 1 and value != int(value):  # Ray's rule for fractional resources
            _fail(path, f"resources.{key}", f"{value!r} is not allowed: a fraction between 0 and 1 "
                                            "(e.g. 0.25: four trials share one), or a whole number")
    return resources


def _base_overrides(path: Path, raw: dict, resources: dict, smoke: bool, cli: dict) -> dict[str, Any]:
    """The dotted overrides of the base config: preset -> study base -> resources -> smoke ->
    command line. Without ``smoke`` the smoke section is checked all the same."""
    base: dict[str, Any] = {}
    preset = raw.get("preset")
    if preset is not None:
        _check_type(path, "preset", preset, str, "a preset name (adautomix train --list-presets)")
        try:
            base = {key: value for key, value, _ in preset_items(preset)}
        except ConfigError as err:
            _fail(path, "preset", str(err))
    base_tree = raw.get("base", {}) or {}
    if not isinstance(base_tree, dict):
        _fail(path, "base", f"expected a config tree (mapping), got {base_tree!r}")
    base.update(flatten(base_tree))
    workers, cpus, gpus = int(resources["workers"]), resources["cpus_per_worker"], resources["gpus_per_worker"]
    if workers == 1 and resources["in_trial"]:
        # one worker trains inside the Tune trial process (train.workers=0: in-process),
        # with as many torch threads as the trial has CPUs unless train.threads says otherwise
        base.update({"train.workers": 0, "train.threads": base.get("train.threads") or max(1, int(cpus))})
    else:
        base.update({"train.workers": workers, "train.use_gpu": gpus > 0,
                     "train.resources_per_worker": {"CPU": cpus, **({"GPU": gpus} if gpus else {})}})
    smoke_raw = raw.get("smoke", {}) or {}
    if not isinstance(smoke_raw, dict):
        _fail(path, "smoke", f"expected a mapping of key: value, got {smoke_raw!r}")
    if smoke:
        base.update({**SMOKE_OVERRIDES, **flatten(smoke_raw)})
    else:
        _config(path, "smoke", {**base, **SMOKE_OVERRIDES, **flatten(smoke_raw)})
    return {**base, **cli}


def _space(path: Path, raw: dict, searcher: str, cli: dict) -> tuple[dict[str, Any], dict[str, dict]]:
    """``space``: swept key -> its values (grid) or distribution (tpe), and the named variants."""
    space_raw = raw.get("space")
    if not isinstance(space_raw, dict) or not space_raw:
        _fail(path, "space", "empty: a study sweeps at least one config key, e.g. "
                             "space: {method.n_mix: [2, 3]}")
    space: dict[str, Any] = {}
    variants: dict[str, dict[str, Any]] = {}
    for key, spec in space_raw.items():
        key = str(key)
        if key == VARIANT:
            variants = _variants(path, searcher, spec, cli)
            space[VARIANT] = list(variants)
            continue
        if key == "seed":
            _fail(path, "space.seed", "seeds are set by the top-level key `seeds`")
        if key in cli:
            _fail(path, f"space.{key}", f"swept by the study; remove the override {key}=...")
        space[key] = _space_values(path, searcher, key, spec)
    return space, variants


def _variants(path: Path, searcher: str, spec: Any, cli: dict) -> dict[str, dict[str, Any]]:
    """``space.variant``: name -> its dotted overrides."""
    if searcher != "grid":
        _fail(path, "space.variant", "named variants need searcher: grid")
    if not isinstance(spec, dict) or not spec:
        _fail(path, "space.variant", "expected {name: {dotted.key: value, ...}, ...} with "
                                     f"at least one variant, got {spec!r}")
    variants = {}
    for vname, vover in spec.items():
        if not isinstance(vover, dict):
            _fail(path, f"space.variant.{vname}", f"expected a mapping of overrides, got {vover!r}")
        vover = flatten(vover)
        for k in vover:
            if k in cli:
                _fail(path, f"space.variant.{vname}.{k}", f"set by the study; remove the override {k}=...")
        variants[str(vname)] = vover
    return variants


def _search(path: Path, raw: dict, searcher: str, seeds: list[int], space: dict,
            base: dict) -> tuple[int, dict[str, Any]]:
    """``num_samples`` and the TPE settings; a tpe space's bounds are checked against the config
    (a sampled value lies between them)."""
    if searcher == "grid":
        for key in ("num_samples", "tpe"):
            if key in raw:
                _fail(path, key, "only for searcher: tpe (a grid runs every point once per seed)")
        return math.prod(len(v) for v in space.values()), {}
    if len(seeds) != 1:
        _fail(path, "seeds", "a tpe search runs each setting once: give one seed (e.g. seeds: "
                             f"[0]), got {seeds!r}")
    num_samples = raw.get("num_samples", 10)
    _check_type(path, "num_samples", num_samples, int, "an integer >= 1")
    if num_samples < 1:
        _fail(path, "num_samples", f"expected >= 1, got {num_samples}")
    tpe = {**TPE_DEFAULTS, **_section(path, raw, "tpe", tuple(TPE_DEFAULTS))}
    for key, default in TPE_DEFAULTS.items():
        _check_type(path, f"tpe.{key}", tpe[key], type(default), type(default).__name__)
    if tpe["seed"] < 0 or tpe["n_startup_trials"] < 0:
        _fail(path, "tpe", "seed and n_startup_trials must be >= 0")
    for key, spec in space.items():
        for value in _candidate_values(spec):
            _config(path, f"space.{key}={value!r}", {**base, key: value, "out_dir": TRIALS})
    return num_samples, tpe


def _scheduler(path: Path, raw: dict) -> dict[str, Any] | None:
    sched = raw.get("scheduler")
    if sched is None:
        return None
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
    return sched


def _grid(study: Study) -> list[Trial]:
    """Every point x every seed, in the file's order. Each point's config is built once here to
    check it (everything but the seed and out_dir, which cannot make it invalid)."""
    trials = []
    for point in itertools.product(*study.space.values()):
        setting = dict(zip(study.space, point))
        first = _make_trial(study, setting, study.seeds[0])
        epochs = _config(study.path, f"trial {first.name}", {**first.overrides, "out_dir": TRIALS}).train.epochs
        for seed in study.seeds:
            trials.append(_make_trial(study, setting, seed))
            trials[-1].epochs = epochs
    return trials


def describe(study: Study) -> str:
    """What ``--dry-run`` prints: the study, then one line per trial it would run."""
    b, r = study.base, study.resources
    where = (f"in the trial process ({r['cpus_per_worker']} CPU, {r['gpus_per_worker']} GPU)"
             if b.train.workers == 0 else f"on {b.train.workers} Ray Train worker(s), each "
             f"{b.train.resources_per_worker or ('1 GPU' if b.train.use_gpu else '1 CPU')}")
    lines = [
        f"study {study.name} ({study.path}){' [smoke]' if study.smoke else ''}",
        f"  searcher {study.searcher}, metric {study.metric} ({study.mode}), seeds {study.seeds}, "
        f"max_concurrent {study.max_concurrent}",
        f"  each trial trains {where}",
        f"  base: method {'(swept)' if 'method.name' in study.space else b.method.name}, data "
        f"{b.data.name}, {study.max_epochs()} epochs"
        + (f", scheduler {study.scheduler['name']}" if study.scheduler else ""),
    ]
    if study.searcher == "grid":
        trials = study.trials()
        lines.append(f"  {len(trials)} trials ({study.num_samples} settings x {len(study.seeds)} seeds):")
        lines += [f"  {i + 1:4d}  {t.key}  {t.name}" for i, t in enumerate(trials)]
    else:
        lines.append(f"  {study.total_trials()} trials: TPE ({', '.join(f'{k} {v}' for k, v in study.tpe.items())}) "
                     f"picks {study.num_samples} settings from")
        lines += [f"        {k}: {v}" for k, v in study.space.items()]
        lines.append(f"        seed {study.seeds[0]}")
    return "\n".join(lines)
