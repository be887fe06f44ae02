"""Run an ablation study: Ray Tune + Optuna pick the trials, each trial is a Ray Train run,
MLflow keeps everything side by side.

- Grids go through Optuna's ``GridSampler`` and searches through ``TPESampler``, both inside Ray
  Tune's ``OptunaSearch`` (https://docs.ray.io/en/latest/tune/api/suggestion.html). The seed is
  one more grid axis, so ``num_samples`` = grid points x seeds and each runs once.
- Each trial launches ``train_with_ray`` (Ray Train V2 ``TorchTrainer``) with the study's
  resources; ``train.workers=0`` trains inside the trial process instead. Rank 0 sends every
  epoch's record back to the trial through a Ray queue and the trial hands it to ``tune.report``,
  so schedulers such as ASHA (https://arxiv.org/abs/1810.05934) can stop weak trials early.
- MLflow: one parent run per study, one nested child run per trial (``tracking.py``).
- The study folder (``runs/studies/<name>-<time>/``) holds ``state.json`` (parent run, tracking
  URI, fingerprint), ``trials.jsonl`` (one line per finished trial, appended by the driver as each
  trial ends, so it survives a ``kill -9``), ``trials/<key>/`` (run directories), the results
  table and the plot. ``--resume`` skips every trial listed there or FINISHED in MLflow, deletes
  the MLflow runs of trials that did not finish, and runs the rest.
"""
from __future__ import annotations

import functools
import json
import math
import os
import shutil
import socket
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import tracking
from ..config import flatten, load_config, to_dict
from .study import Study, StudyError, Trial, format_value, short_key

STATE = "state.json"
TRIAL_MEMORY = 256 * 2**20  # bytes Ray reserves for a trial process that drives a Ray Train run
RECORDS = "trials.jsonl"
TRIALS = "trials"


# ------------------------------------------------------------------------------ study folder
def new_study_dir(study: Study, root: str | Path = "runs/studies") -> Path:
    return (Path(root) / f"{study.name}-{time.strftime('%Y%m%d-%H%M%S')}").resolve()


def latest_study_dir(study: Study, root: str | Path = "runs/studies") -> Path:
    """The newest folder of this study that has a ``state.json`` (for ``--resume``)."""
    found = sorted(p.parent for p in Path(root).glob(f"{study.name}-*/{STATE}"))
    if not found:
        raise StudyError(f"--resume: no started study {study.name!r} under {root}/ "
                         f"(expected {root}/{study.name}-<time>/{STATE}); run it without --resume")
    return found[-1].resolve()


def read_records(study_dir: Path) -> dict[str, dict]:
    """Finished trials by key (the last line of a key wins; a torn last line is ignored)."""
    records: dict[str, dict] = {}
    path = study_dir / RECORDS
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill while being written: that trial reruns
            records[rec["key"]] = rec
    return records


def append_record(study_dir: Path, record: dict) -> None:
    with (study_dir / RECORDS).open("a") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


# ------------------------------------------------------------------------------ one trial
@dataclass
class TrialContext:
    """Everything a trial needs, shipped to the trial process by Tune (picklable)."""

    study_name: str
    swept: list[str]
    seeds: list[int]
    base: dict[str, Any]
    metric: str
    study_dir: str
    tracking_uri: str | None  # None: tracking is off for this study
    experiment_id: str | None
    parent_run_id: str | None
    git_commit: str
    finished: dict[str, dict] = field(default_factory=dict)  # key -> record (cached, --resume)
    variants: dict[str, dict] = field(default_factory=dict)


class TuneProgress:
    """Engine callback on rank 0: each epoch's record goes to the trial through a Ray queue."""

    def __init__(self, queue, trial_key: str):
        self.queue, self.trial_key = queue, trial_key

    def on_epoch(self, record: dict) -> None:
        # the record carries top1_median_last10, so a scheduler can rank by the paper's figure
        self.queue.put({k: v for k, v in record.items()
                        if isinstance(v, (int, float)) and not isinstance(v, bool)})


def _train(cfg, callbacks: list) -> dict:
    """One training run: Ray Train workers (``train.workers >= 1``) or this process (0)."""
    if cfg.train.workers > 0:
        from .ray_train import train_with_ray

        return train_with_ray(cfg, callbacks=callbacks, quiet=True)
    from ..engine import train

    return train(cfg, callbacks=callbacks, quiet=True)


def run_trial(config: dict, ctx: TrialContext) -> None:
    """The Tune trainable: train one setting + seed, report every epoch, log to MLflow."""
    import ray
    from ray import tune
    from ray.util.queue import Empty, Queue

    trial = Trial({k: config[k] for k in ctx.swept}, int(config.get("seed", ctx.seeds[0])))
    if trial.key in ctx.finished:  # --resume: finished before; neither rerun nor logged again
        tune.report({**ctx.finished[trial.key]["metrics"], "trial_key": trial.key, "cached": 1})
        return
    out_dir = Path(ctx.study_dir) / TRIALS / trial.key
    if out_dir.exists():  # an attempt that did not finish (killed study): start it over
        shutil.rmtree(out_dir)
    cfg = load_config(overrides={**ctx.base, **trial.overrides(ctx.variants), "out_dir": str(out_dir)})

    run_id = None
    if ctx.tracking_uri and ctx.parent_run_id:
        tags = {
            tracking.TRIAL_KEY_TAG: trial.key, tracking.STUDY_TAG: ctx.study_name,
            "adautomix.setting": json.dumps(trial.setting, sort_keys=True),
            "adautomix.method": cfg.method.name, "adautomix.seed": str(cfg.seed),
            "adautomix.dataset": cfg.data.name, "adautomix.git_commit": ctx.git_commit,
            "mlflow.source.git.commit": ctx.git_commit, "adautomix.out_dir": str(out_dir),
            **{f"adautomix.swept.{k}": format_value(v) for k, v in trial.setting.items()},
        }
        try:
            run_id = tracking.start_child_run(ctx.tracking_uri, ctx.experiment_id, ctx.parent_run_id,
                                              trial.name, tags, flatten(to_dict(cfg)))
        except Exception as err:  # noqa: BLE001 - tracking trouble never stops training
            tracking.warn(ctx.tracking_uri, err, f"child run of trial {trial.name}", str(out_dir))

    queue = Queue(actor_options={"num_cpus": 0})
    callbacks: list = [TuneProgress(queue, trial.key)]
    if run_id:
        callbacks.append(tracking.MlflowTracker(ctx.tracking_uri, run_id, cfg.mlflow.log_model,
                                                str(out_dir)))
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["summary"] = _train(cfg, callbacks)
        except BaseException as err:  # noqa: BLE001 - re-raised in the trial's thread below
            outcome["error"] = err

    worker = threading.Thread(target=work, name=f"train-{trial.key}", daemon=True)
    worker.start()
    extra = {"trial_key": trial.key, "mlflow_run_id": run_id or "", "epochs": cfg.train.epochs}

    last: list[dict] = []

    def drain(block: bool) -> None:
        while True:
            try:
                metrics = queue.get(block=block, timeout=1.0) if block else queue.get_nowait()
            except Empty:
                return
            if metrics.get("epoch") == cfg.train.epochs:
                # held back until the run has finished: a scheduler may stop the trial (and so
                # kill this process) on any report, which must not cut the run's final logging
                last.append(metrics)
            else:
                tune.report({**metrics, **extra})

    while worker.is_alive():
        drain(block=True)
    drain(block=False)
    ray.kill(queue.actor)
    if "error" in outcome:
        if run_id:
            _end_child(ctx.tracking_uri, run_id, "FAILED")
        raise outcome["error"]
    if run_id:
        _end_child(ctx.tracking_uri, run_id, "FINISHED")
    for metrics in last:
        tune.report({**metrics, **extra})


def _end_child(uri: str, run_id: str, status: str, tags: dict | None = None) -> None:
    try:
        tracking.end_run(uri, run_id, status, tags)
    except Exception as err:  # noqa: BLE001
        tracking.warn(uri, err, f"closing run {run_id}")


# ------------------------------------------------------------------------------ the driver
class _Recorder:
    """Tune callback in the driver: one ``trials.jsonl`` line per trial as it ends."""

    def __init__(self, study: Study, study_dir: Path, tracking_uri: str | None, cached: set[str]):
        from ray.tune import Callback

        self.study, self.study_dir, self.uri, self.cached = study, study_dir, tracking_uri, cached
        self.errors: list[str] = []
        recorder = self

        class _Callback(Callback):
            def on_trial_complete(self, iteration, trials, trial, **info):
                recorder.complete(trial)

            def on_trial_error(self, iteration, trials, trial, **info):
                recorder.errors.append(f"{trial.trial_id} {trial.config}: see {trial.local_path}")

        self.callback = _Callback()

    def complete(self, trial) -> None:
        result = trial.last_result or {}
        key = result.get("trial_key")
        if not key or result.get("cached") or key in self.cached:
            return
        epochs_done, epochs = int(result.get("epoch", 0)), int(result.get("epochs", 0))
        status = "finished" if epochs_done >= epochs else "stopped_early"
        metrics = {k: v for k, v in result.items() if k in _RESULT_METRICS or k.startswith("top1_")}
        config = dict(trial.config)
        record = {"key": key, "setting": {k: config[k] for k in self.study.swept},
                  "seed": int(config.get("seed", self.study.seeds[0])), "status": status,
                  "epochs_done": epochs_done, "metrics": metrics,
                  "mlflow_run_id": result.get("mlflow_run_id", "")}
        append_record(self.study_dir, record)
        self.cached.add(key)
        if status == "stopped_early" and self.uri and record["mlflow_run_id"]:
            # the scheduler stopped the trial's process: its MLflow run is closed here
            _end_child(self.uri, record["mlflow_run_id"], "KILLED",
                       {"adautomix.stopped_early": f"after epoch {epochs_done} of {epochs}"})


_RESULT_METRICS = ("top1", "top1_median_last10", "loss", "train_img_per_s", "lr", "momentum", "epoch")


def optuna_space(study: Study) -> dict:
    """The study's space as Optuna distributions (plus the seed axis for grids)."""
    import optuna.distributions as od

    space = {}
    for key, spec in study.space.items():
        if study.searcher == "grid":
            space[key] = od.CategoricalDistribution(spec)
            continue
        kind, args = next(iter(spec.items()))
        if kind == "choice":
            space[key] = od.CategoricalDistribution(args)
        elif kind == "int":
            space[key] = od.IntDistribution(args[0], args[1])
        else:
            space[key] = od.FloatDistribution(args[0], args[1], log=kind == "loguniform")
    if study.searcher == "grid":
        space["seed"] = od.CategoricalDistribution(study.seeds)
    return space


def make_searcher(study: Study, finished: dict[str, dict]):
    """``OptunaSearch`` with a grid or TPE sampler. A resumed TPE search is told the finished
    trials' results (so it neither reruns them nor forgets them)."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    space = optuna_space(study)
    points, rewards = None, None
    if study.searcher == "grid":
        sampler = optuna.samplers.GridSampler({k: list(d.choices) for k, d in space.items()}, seed=0)
    else:
        sampler = optuna.samplers.TPESampler(seed=study.seeds[0])
        done = [r for r in finished.values() if study.metric in r["metrics"]]
        if done:
            points = [r["setting"] for r in done]
            rewards = [r["metrics"][study.metric] for r in done]
    return OptunaSearch(space=space, metric=study.metric, mode=study.mode, sampler=sampler,
                        points_to_evaluate=points, evaluated_rewards=rewards)


def make_scheduler(study: Study):
    if not study.scheduler:
        return None
    from ray.tune.schedulers import ASHAScheduler

    epochs = int(study.base.get("train.epochs", 1))
    return ASHAScheduler(time_attr="training_iteration", metric=study.metric, mode=study.mode,
                         max_t=epochs, grace_period=min(study.scheduler["grace_period"], epochs),
                         reduction_factor=study.scheduler["reduction_factor"])


def make_reporter(study: Study, total: int):
    """Tune's live trial table: the swept knobs, the epoch and the headline numbers."""
    from ray.tune import CLIReporter

    params = {k: short_key(k) for k in study.swept}
    if study.searcher == "grid" and len(study.seeds) > 1:
        params["seed"] = "seed"
    metrics = {"epoch": "epoch", "top1": "top1", "loss": "loss", "train_img_per_s": "img/s"}
    if study.metric not in metrics:
        metrics[study.metric] = study.metric.replace("top1_median_last10", "top1_med10")
    return CLIReporter(parameter_columns=params, metric_columns=metrics, total_samples=total,
                       max_report_frequency=15, max_column_length=14, max_progress_rows=30,
                       metric=study.metric, mode=study.mode, sort_by_metric=False)


def connect(address: str | None) -> None:
    """Join ``address`` / ``RAY_ADDRESS`` or start a new local cluster (never a stray one)."""
    import logging

    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    kwargs: dict[str, Any] = dict(logging_level=logging.WARNING, log_to_driver=True)
    if address == "local":
        # Ray Train V2 frees the workers of a run whose controller died (a trial stopped by ASHA)
        # through the dashboard's state API, which its actors find by auto-detection; with a
        # second Ray cluster on the machine that fails ("multiple active Ray instances") and the
        # stopped trial's CPUs are never given back. Name this cluster's API server for them.
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        kwargs.update(include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=port,
                      runtime_env={"env_vars": {"RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{port}"}})
    ray.init(address=address, **kwargs)


@dataclass
class Outcome:
    study_dir: Path
    tracking_uri: str | None
    parent_run_id: str | None
    records: list[dict]
    rows: list[dict]
    errors: list[str]
    table: str
    ran: int  # trials to train in this invocation
    incomplete: bool = False  # fewer trials done than the study has (interrupted or failed)


def run_study(study: Study, *, study_dir: Path | None = None, resume: bool = False,
              tracking_uri: str | None = None, address: str | None = None,
              max_concurrent: int | None = None, out=sys.stdout) -> Outcome:
    """Run (or continue) ``study``; returns where everything went and the results table."""
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # Tune's CLIReporter table instead of the new output
    if resume:
        study_dir = study_dir.resolve() if study_dir else latest_study_dir(study)
        state = json.loads((study_dir / STATE).read_text()) if (study_dir / STATE).exists() else None
        if state is None:
            raise StudyError(f"--resume: {study_dir} holds no {STATE}")
        if state["fingerprint"] != study.fingerprint():
            raise StudyError(f"--resume: {study_dir} was started with a different study file, "
                             "overrides or --smoke; run without --resume to start a new study")
        if tracking_uri and state["tracking_uri"] and tracking.resolve_tracking_uri(tracking_uri) != state["tracking_uri"]:
            raise StudyError(f"--resume: this study logs to {state['tracking_uri']}, not {tracking_uri}")
        uri, exp_id, parent = state["tracking_uri"], state["experiment_id"], state["parent_run_id"]
    else:
        study_dir = (study_dir or new_study_dir(study)).resolve()
        if (study_dir / STATE).exists():
            raise StudyError(f"{study_dir} already holds a study; add --resume to continue it")
        study_dir.mkdir(parents=True, exist_ok=True)
        uri = tracking.resolve_tracking_uri(tracking_uri)
        exp_id, parent = _start_parent(study, study_dir, uri, out)
        if parent is None:
            uri = None
        write_json(study_dir / STATE, {
            "study": study.name, "study_file": str(study.path.resolve()), "fingerprint": study.fingerprint(),
            "overrides": study.overrides, "smoke": study.smoke, "tracking_uri": uri,
            "experiment_id": exp_id, "parent_run_id": parent, "started": time.strftime("%Y-%m-%d %H:%M:%S")})
        (study_dir / "study.yaml").write_text(study.text)

    finished = read_records(study_dir)
    if resume and uri:
        finished = _reconcile_mlflow(study, uri, exp_id, parent, finished, study_dir, out)
        _set_parent_status(uri, parent, "RUNNING")

    total = study.total_trials()
    todo = total - len(finished) if study.searcher == "tpe" else \
        sum(1 for t in study.grid_trials() if t.key not in finished)
    print(f"study {study.name}: {total} trials, {len(finished)} finished before, {todo} to run; "
          f"folder {study_dir}", file=out, flush=True)
    errors: list[str] = []
    if todo > 0:
        try:
            errors = _tune(study, study_dir, uri, exp_id, parent, finished, address,
                           max_concurrent or study.max_concurrent)
        except BaseException as err:
            if uri and parent:  # a parent left RUNNING would look alive in the UI
                _end_child(uri, parent, "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
            raise
    records = list(read_records(study_dir).values())
    incomplete = len(records) < study.total_trials()  # interrupted (Ctrl-C) or failed trials
    rows = aggregate(study, records)
    table = markdown_table(study, rows)
    files = write_results(study, study_dir, rows)
    if uri and parent:
        try:
            tracking.log_files(uri, parent, [study_dir / "study.yaml", *files])
            status = "FAILED" if errors else "KILLED" if incomplete else "FINISHED"
            tracking.end_run(uri, parent, status, {"adautomix.trials_done": str(len(records))})
        except Exception as err:  # noqa: BLE001
            tracking.warn(uri, err, "study results on the parent run", str(study_dir))
    return Outcome(study_dir, uri, parent, records, rows, errors, table, todo, incomplete)


def _start_parent(study: Study, study_dir: Path, uri: str, out) -> tuple[str | None, str | None]:
    commit = tracking.git_commit()
    tags = {tracking.STUDY_TAG: study.name, "adautomix.role": "study",
            "adautomix.searcher": study.searcher, "adautomix.metric": study.metric,
            "adautomix.git_commit": commit, "mlflow.source.git.commit": commit,
            "adautomix.study_dir": str(study_dir), "mlflow.note.content": study.description or study.name,
            "adautomix.dataset": str(study.base.get("data.name", "digits"))}
    params = {"study.name": study.name, "study.searcher": study.searcher,
              "study.seeds": str(study.seeds), "study.metric": study.metric, "study.mode": study.mode,
              "study.trials": study.total_trials(), "study.smoke": study.smoke,
              **{f"study.space.{k}": str(v) for k, v in study.space.items()},
              **{f"base.{k}": v for k, v in study.base.items()}}
    try:
        return tracking.start_parent_run(uri, f"ablation-{study.name}", f"study {study.name}"
                                         + (" (smoke)" if study.smoke else ""), tags, params)
    except Exception as err:  # noqa: BLE001 - the study runs without tracking
        tracking.warn(uri, err, "creating the study's parent run", str(study_dir))
        print("  (the study runs without MLflow; each trial's metrics stay in its run directory "
              f"under {study_dir / TRIALS})", file=sys.stderr, flush=True)
        return None, None


def _set_parent_status(uri: str, run_id: str, status: str) -> None:
    try:
        tracking.client(uri).update_run(run_id, status=status)
    except Exception as err:  # noqa: BLE001
        tracking.warn(uri, err, "reopening the parent run")


def _reconcile_mlflow(study: Study, uri: str, exp_id: str, parent: str, finished: dict[str, dict],
                      study_dir: Path, out) -> dict[str, dict]:
    """``--resume``: keep the FINISHED child of each finished trial, delete every other child
    (a trial cut by the kill reruns with a fresh run), add FINISHED trials the kill kept out of
    ``trials.jsonl``."""
    try:
        children = tracking.child_runs(uri, exp_id, parent)
    except Exception as err:  # noqa: BLE001
        tracking.warn(uri, err, "listing the study's runs for --resume")
        return finished
    kept: set[str] = set()
    for run in children:
        key = run.data.tags.get(tracking.TRIAL_KEY_TAG)
        rec = finished.get(key)
        keep = run.info.status in ("FINISHED", "KILLED") and key not in kept and (
            rec is None or rec.get("mlflow_run_id") in ("", run.info.run_id))
        if keep and rec is None and run.info.status == "FINISHED":
            rec = _record_from_run(study, run)
            append_record(study_dir, rec)
            finished[key] = rec
        if keep and key in finished:
            kept.add(key)
            continue
        tracking.delete_run(uri, run.info.run_id)
        print(f"  removed the unfinished MLflow run {run.info.run_id} ({run.info.run_name}); "
              "the trial runs again", file=out, flush=True)
    return finished


def _record_from_run(study: Study, run) -> dict:
    return {"key": run.data.tags[tracking.TRIAL_KEY_TAG],
            "setting": json.loads(run.data.tags["adautomix.setting"]),
            "seed": int(run.data.params["seed"]), "status": "finished",
            "epochs_done": int(run.data.params["train.epochs"]),  # FINISHED: every epoch ran
            "metrics": dict(run.data.metrics), "mlflow_run_id": run.info.run_id}


def _tune(study: Study, study_dir: Path, uri, exp_id, parent, finished, address,
          max_concurrent: int) -> list[str]:
    import ray
    from ray import tune

    connect(address)
    ctx = TrialContext(study.name, study.swept, study.seeds, study.base, study.metric,
                       str(study_dir), uri, exp_id, parent, tracking.git_commit(), finished,
                       study.variants)
    workers = int(study.base.get("train.workers", 1))
    if workers > 0:
        # the trial process only waits on its Ray Train run, whose workers hold the CPUs/GPUs;
        # Tune needs a non-empty request, so the trial asks for a little memory and no CPU
        resources = {"CPU": 0, "memory": TRIAL_MEMORY}
    else:
        resources = {"CPU": study.resources["cpus_per_worker"],
                     "GPU": study.resources["gpus_per_worker"]}
    trainable = tune.with_resources(tune.with_parameters(run_trial, ctx=ctx), resources)
    recorder = _Recorder(study, study_dir, uri, set(finished))
    namer = functools.partial(_trial_name, swept=study.swept, default_seed=study.seeds[0])
    total = study.total_trials()
    num_samples = total if study.searcher == "grid" else total - len(finished)
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=make_searcher(study, finished),
                                    scheduler=make_scheduler(study), num_samples=num_samples,
                                    max_concurrent_trials=max_concurrent,
                                    trial_name_creator=namer, trial_dirname_creator=namer),
        run_config=tune.RunConfig(name="tune", storage_path=str(study_dir), verbose=1,
                                  # trial names = the trial keys (MLflow tag, trials/<key>/)
                                  progress_reporter=make_reporter(study, num_samples),
                                  callbacks=[recorder.callback],
                                  failure_config=tune.FailureConfig(max_failures=0)),
    )
    try:
        tuner.fit()
    finally:
        if not address and not os.environ.get("RAY_ADDRESS"):
            ray.shutdown()
    return recorder.errors


def _trial_name(tune_trial, swept: list[str], default_seed: int) -> str:
    """Tune's name for a trial: its key (also the MLflow tag and the run folder)."""
    cfg = tune_trial.config
    return "t-" + Trial({k: cfg[k] for k in swept}, int(cfg.get("seed", default_seed))).key


# ------------------------------------------------------------------------------ results
def aggregate(study: Study, records: list[dict]) -> list[dict]:
    """One row per setting: mean and std over seeds of each metric, in the study's order."""
    groups: dict[str, list[dict]] = {}
    order = [json.dumps(t.setting, sort_keys=True) for t in study.grid_trials()] \
        if study.searcher == "grid" else []
    for rec in records:
        groups.setdefault(json.dumps(rec["setting"], sort_keys=True), []).append(rec)
    keys = [k for k in dict.fromkeys(order) if k in groups] + [k for k in groups if k not in order]
    rows = []
    for k in keys:
        recs = sorted(groups[k], key=lambda r: r["seed"])
        names = sorted({m for r in recs for m in r["metrics"]
                        if m in _RESULT_METRICS or m.startswith("top1_")} - {"epoch", "lr"})
        stats = {}
        for m in names:
            values = [float(r["metrics"][m]) for r in recs if m in r["metrics"]]
            stats[m] = (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else
                        float("nan"), len(values))
        rows.append({"setting": json.loads(k), "seeds": [r["seed"] for r in recs], "stats": stats,
                     "stopped_early": sum(r["status"] == "stopped_early" for r in recs)})
    if study.searcher == "tpe":
        sign = -1 if study.mode == "max" else 1
        rows.sort(key=lambda r: sign * r["stats"].get(study.metric, (math.inf * -sign,))[0])
    return rows


def _columns(study: Study, rows: list[dict]) -> list[str]:
    present = {m for r in rows for m in r["stats"]}
    first = [study.metric] + [m for m in ("top1", "top1_median_last10") if m != study.metric]
    heads = sorted(m for m in present if m.startswith("top1_") and m != "top1_median_last10")
    rest = ["loss", "train_img_per_s"]
    return [m for m in first + heads + rest if m in present]


def _fmt(mean: float, std: float, digits: int = 2) -> str:
    return f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown_table(study: Study, rows: list[dict]) -> str:
    """The results table (Markdown): one row per setting, mean ± std over seeds."""
    cols = _columns(study, rows)
    header = [short_key(k) for k in study.swept] + ["seeds"] + \
        [c.replace("train_img_per_s", "img/s") + (" ★" if c == study.metric else "") for c in cols]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        cells = [format_value(r["setting"][k]) for k in study.swept]
        seeds = str(len(r["seeds"])) + (f" ({r['stopped_early']} stopped early)" if r["stopped_early"] else "")
        cells.append(seeds)
        for c in cols:
            if c in r["stats"]:
                mean, std, _ = r["stats"][c]
                cells.append(_fmt(mean, std, 0 if c == "train_img_per_s" else (3 if c == "loss" else 2)))
            else:
                cells.append("")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_results(study: Study, study_dir: Path, rows: list[dict]) -> list[Path]:
    """``results.csv``, ``results.md`` and ``results.png`` in the study folder."""
    import csv

    cols = _columns(study, rows)
    csv_path = study_dir / "results.csv"
    with csv_path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(list(study.swept) + ["n_seeds"] + [f"{c}_{s}" for c in cols for s in ("mean", "std")])
        for r in rows:
            vals = []
            for c in cols:
                mean, std, _ = r["stats"].get(c, (float("nan"), float("nan"), 0))
                vals += [f"{mean:.6g}", "" if math.isnan(std) else f"{std:.6g}"]
            w.writerow([r["setting"][k] for k in study.swept] + [len(r["seeds"])] + vals)
    md_path = study_dir / "results.md"
    md_path.write_text(f"# Study {study.name}\n\n{study.description}\n\n"
                       f"mean ± std over seeds; ★ = {study.metric} ({study.mode})\n\n"
                       + markdown_table(study, rows) + "\n")
    paths = [csv_path, md_path]
    if rows:
        paths.append(plot(study, rows, study_dir / "results.png"))
    return paths


def plot(study: Study, rows: list[dict], path: Path) -> Path:
    """The headline metric against the swept knob with error bars over seeds (the paper's
    Figure 6 style); a heat map for two knobs; one scatter per knob for a TPE search."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = study.metric
    rows = [r for r in rows if m in r["stats"]]
    swept = study.swept
    if study.searcher == "grid" and len(swept) == 2:
        xs = list(dict.fromkeys(r["setting"][swept[0]] for r in rows))
        ys = list(dict.fromkeys(r["setting"][swept[1]] for r in rows))
        grid = [[float("nan")] * len(xs) for _ in ys]
        for r in rows:
            grid[ys.index(r["setting"][swept[1]])][xs.index(r["setting"][swept[0]])] = r["stats"][m][0]
        fig, ax = plt.subplots(figsize=(1.2 * len(xs) + 3, 0.8 * len(ys) + 2.5))
        im = ax.imshow(grid, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(xs)), [format_value(x) for x in xs])
        ax.set_yticks(range(len(ys)), [format_value(y) for y in ys])
        ax.set_xlabel(swept[0])
        ax.set_ylabel(swept[1])
        for i, row in enumerate(grid):
            for j, v in enumerate(row):
                if not math.isnan(v):
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="w")
        fig.colorbar(im, ax=ax, label=f"{m} (mean over seeds)")
    elif study.searcher == "grid":
        fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(rows) + 2), 3.6))
        labels = [", ".join(format_value(r["setting"][k]) for k in swept) for r in rows]
        means = [r["stats"][m][0] for r in rows]
        stds = [0.0 if math.isnan(r["stats"][m][1]) else r["stats"][m][1] for r in rows]
        numeric = all(isinstance(r["setting"][k], (int, float)) and not isinstance(r["setting"][k], bool)
                      for r in rows for k in swept)
        ax.errorbar(range(len(rows)), means, yerr=stds, fmt="o-" if numeric else "o", capsize=4,
                    color="tab:red")
        ax.set_xticks(range(len(rows)), labels)
        ax.set_xlabel(", ".join(swept))
        ax.set_ylabel(f"{m} (%)")
        ax.grid(alpha=0.3)
    else:
        fig, axes = plt.subplots(1, len(swept), figsize=(3.4 * len(swept), 3.2), squeeze=False)
        for ax, key in zip(axes[0], swept):
            ax.scatter([r["setting"][key] for r in rows], [r["stats"][m][0] for r in rows])
            if "loguniform" in study.space[key]:
                ax.set_xscale("log")
            ax.set_xlabel(key)
            ax.set_ylabel(m)
            ax.grid(alpha=0.3)
    n_seeds = max(len(r["seeds"]) for r in rows) if rows else 0
    fig.suptitle(f"{study.name}: {m}, mean ± std over {n_seeds} seed(s)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
