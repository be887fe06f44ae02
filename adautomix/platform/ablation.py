"""Run an ablation study on Ray Tune: a ``Study`` wired to Tune's own parts (grid search or
Optuna's TPE in ``OptunaSearch``, ASHA, ``Tuner.restore`` for ``--resume``, MLflow tracking as a
Tune callback, results from ``ResultGrid``). How it runs: docs/studies.md."""
from __future__ import annotations

import functools
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .. import study_folder
from ..checkpoints import history
from ..engine import CHECKPOINT, NonFiniteLossError, Trainer, numeric
from ..evaluation import report
from ..runlock import RunLock
from ..study import TRIALS, Study, StudyError, Trial
from . import mlflow_view
from .mlflow_model import ExportModel
from .mlflow_store import STUDY_TAG, commit_tags, mask, resolve_tracking_uri, warn
from .ray_train import ReportEpochs, connect, restore, train_with_ray
from .tracking import StudyTracker

OPTUNA_LOG = "optuna.log"
TRIAL_MEMORY = 256 * 2**20  # bytes Ray reserves for a trial process that drives a Ray Train run


# ------------------------------------------------------------------------------ one trial
def run_trial(config: dict, study: Study, study_dir: str) -> None:
    """The Tune trainable: train the trial's resolved config, reporting every epoch."""
    from ray import tune

    cfg = _ident(study, config).resolve(study_dir)  # the trial's one build
    callbacks = [ExportModel()] if cfg.mlflow.log_model else []
    if cfg.train.workers == 0:
        trainer = Trainer(cfg, callbacks=[ReportEpochs("tune"), *callbacks], quiet=True)
        # Tune's checkpoint; else the trial's own, when it stopped before Tune recorded one
        restore(trainer, tune.get_checkpoint(), bool(history(Path(cfg.out_dir) / CHECKPOINT)))
        trainer.fit()
        return
    from ray.tune.integration.ray_train import TuneReportCallback

    # Ray Train's checkpoint brings the run's history back, and metrics.jsonl is written again
    (Path(cfg.out_dir) / "metrics.jsonl").unlink(missing_ok=True)
    train_with_ray(cfg, callbacks=callbacks, quiet=True, run_callbacks=[TuneReportCallback()], keep_storage=True)


def _ident(study: Study, config: dict) -> Trial:
    """The study's trial of a Tune trial's config: its setting and seed (its config is not built here)."""
    return study.trial({k: config[k] for k in study.swept}, int(config.get("seed", study.seeds[0])))


def _key(study: Study, trial) -> str:
    """A Tune trial's key: its folder, its Tune name, its MLflow tag."""
    return _ident(study, trial.config).key


def _finished(study: Study, config: dict, metrics: dict) -> bool:
    """Whether a trial's last report is its last epoch (Tune's ``done`` flag is not restored)."""
    epochs = _ident(study, config).epochs or int(config.get("train.epochs", study.base.train.epochs))
    return metrics.get("epoch", 0) >= epochs


# ------------------------------------------------------------------------------ Tune's parts
def _tracking_callback(tracker: StudyTracker, study: Study, study_dir: Path):
    """A Tune callback that hands each trial's start, epochs and end to ``tracker``. (Ray's
    ``MLflowLoggerCallback`` cannot serve: a restored experiment gets a second run for every
    continued trial, it logs the sampled config, not the resolved one, and its steps are reports.)"""
    from ray.tune import Callback
    from ray.tune.result import AUTO_RESULT_KEYS

    commit = commit_tags()

    def run_dir(trial) -> Path:
        return study_dir / TRIALS / _key(study, trial)

    class Tracking(Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            t = _ident(study, trial.config)
            tracker.trial_started(t.key, t.name, {
                STUDY_TAG: study.name, "adautomix.setting": json.dumps(t.setting, sort_keys=True), **commit,
                **{f"adautomix.swept.{k}": report.format_value(v) for k, v in t.setting.items()}})

        def on_trial_result(self, iteration, trials, trial, result, **info):
            record = numeric({k: v for k, v in result.items() if k not in AUTO_RESULT_KEYS})
            if "epoch" in record:  # the engine's epoch record, less what Tune added to it
                tracker.trial_epoch(_key(study, trial), record, run_dir(trial))

        def on_trial_complete(self, iteration, trials, trial, **info):
            last = trial.last_result or {}
            if _finished(study, trial.config, last):
                tracker.trial_ended(_key(study, trial), "FINISHED", run_dir(trial))
            else:  # the scheduler stopped it
                tracker.trial_ended(_key(study, trial), "KILLED", run_dir(trial),
                                    {"adautomix.stopped_early": f"after epoch {last.get('epoch', 0)}"})

        def on_trial_error(self, iteration, trials, trial, **info):
            tracker.trial_ended(_key(study, trial), "FAILED", run_dir(trial))

    return Tracking()


def search_space(study: Study) -> dict:
    """The study's space in Tune's terms: a grid over the settings and seeds, or the distributions
    TPE samples from (``OptunaSearch`` converts them into Optuna's)."""
    from ray import tune

    if study.searcher == "grid":
        return {k: tune.grid_search(v) for k, v in study.space.items()} | {"seed": tune.grid_search(study.seeds)}
    domains = {"choice": tune.choice, "uniform": tune.uniform, "loguniform": tune.loguniform,
               "int": lambda low, high: tune.randint(low, high + 1)}  # Tune's upper bound is exclusive
    return {key: domains[kind](args) if kind == "choice" else domains[kind](*args)
            for key, spec in study.space.items() for kind, args in spec.items()}


def make_searcher(study: Study, study_dir: Path):
    """Optuna's TPE sampler (its settings from the study) behind Ray Tune's ``OptunaSearch``;
    the Optuna study lives in a journal file in the study folder."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no line per trial on the console
    return OptunaSearch(metric=study.metric, mode=study.mode, sampler=optuna.samplers.TPESampler(**study.tpe),
                        storage=JournalStorage(JournalFileBackend(str(study_dir / OPTUNA_LOG))),
                        study_name=study.name)


def make_scheduler(study: Study):
    """ASHA over epochs, up to the most a trial trains; a trial that reaches them ends by itself
    (``stop_last_trials=False``), so its last epoch's logging is never cut."""
    if not study.scheduler:
        return None
    from ray.tune.schedulers import ASHAScheduler

    epochs = study.max_epochs()
    return ASHAScheduler(time_attr="epoch", metric=study.metric, mode=study.mode, max_t=epochs,
                         grace_period=min(study.scheduler["grace_period"], epochs),
                         reduction_factor=study.scheduler["reduction_factor"], stop_last_trials=False)


def make_reporter(study: Study):
    """Tune's live trial table: the swept knobs, the epoch and the headline numbers."""
    from ray.tune import CLIReporter

    params = {k: report.short_key(k) for k in study.swept}
    if study.searcher == "grid" and len(study.seeds) > 1:
        params["seed"] = "seed"
    metrics = {"epoch": "epoch", "top1": "top1", "loss": "loss", "train_img_per_s": "img/s"}
    if study.metric not in metrics:
        metrics[study.metric] = study.metric.replace("top1_median_last10", "top1_med10")
    return CLIReporter(parameter_columns=params, metric_columns=metrics,
                       total_samples=study.total_trials(), max_report_frequency=15,
                       max_column_length=14, max_progress_rows=30, metric=study.metric,
                       mode=study.mode, sort_by_metric=False)


def make_tuner(study: Study, study_dir: Path, tracker: StudyTracker | None, max_concurrent: int):
    from ray import tune

    name = functools.partial(_key, study)
    in_trial = study.base.train.workers == 0
    callbacks = [_tracking_callback(tracker, study, study_dir)] if tracker else []
    return tune.Tuner(
        trainable(study, study_dir),
        param_space=search_space(study),
        tune_config=tune.TuneConfig(
            search_alg=make_searcher(study, study_dir) if study.searcher == "tpe" else None,
            scheduler=make_scheduler(study), num_samples=1 if study.searcher == "grid" else study.num_samples,
            max_concurrent_trials=max_concurrent, trial_name_creator=name, trial_dirname_creator=name),
        run_config=tune.RunConfig(
            name=TRIALS, storage_path=str(study_dir), verbose=1, progress_reporter=make_reporter(study),
            callbacks=callbacks, checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            # a trial in its own process restarts from its checkpoint; Ray Train's runs do it themselves
            failure_config=tune.FailureConfig(max_failures=study.base.train.max_failures if in_trial else 0)),
    )


def trainable(study: Study, study_dir: Path):
    from ray import tune

    if study.base.train.workers == 0:  # the trial process trains: it holds the CPUs and GPUs
        resources = {"CPU": study.resources["cpus_per_worker"], "GPU": study.resources["gpus_per_worker"]}
    else:  # the trial only waits on its Ray Train workers; Tune needs a non-empty request
        resources = {"CPU": 0, "memory": TRIAL_MEMORY}
    return tune.with_resources(tune.with_parameters(run_trial, study=study, study_dir=str(study_dir)),
                               resources)


# ------------------------------------------------------------------------------ the study
@dataclass
class Outcome:
    study_dir: Path
    tracking_uri: str | None
    experiment_id: str | None
    records: list[dict]  # finished and stopped-early trials (see evaluation.report)
    failed: list[str]  # one line per failed trial
    table: str
    ran: int  # trials this invocation started or continued
    incomplete: bool  # fewer trials ended than the study has (interrupted or failed)
    interrupted: bool = False  # stopped by Ctrl-C (SIGINT); Tune saved its state for --resume
    parent_run_id: str | None = None  # the study's MLflow parent run (mlflow_view.study_url)


def run_study(study: Study, *, study_dir: Path | None = None, resume: bool = False,
              tracking_uri: str | None = None, address: str | None = None,
              max_concurrent: int | None = None, out=sys.stdout) -> Outcome:
    """Run (or continue) ``study``; returns where everything went and the results table."""
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # Tune's CLIReporter table instead of the new output
    # Tune saves its state at each trial checkpoint, so that a restore starts every trial from the
    # last epoch Tune and MLflow saw; with short epochs it warns that this is often: intended
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if resume:
        study_dir = study_dir.resolve() if study_dir else study_folder.latest_study_dir(study)
    else:
        study_dir = (study_dir or study_folder.new_study_dir(study)).resolve()
    with RunLock(study_dir, "study folder"):  # one driver per study folder, for the whole study
        tracker = _open(study, study_dir, resume, tracking_uri)
        grid, before, notices = _fit(study, study_dir, resume, tracker, address,
                                     max_concurrent or study.max_concurrent, out)
        return _finish(study, study_dir, tracker, grid, before, notices.interrupted)


def _finish(study: Study, study_dir: Path, tracker: StudyTracker | None, grid, before: int,
            interrupted: bool) -> Outcome:
    """The results of Tune's ``grid``: the table and its files, the MLflow parent run closed."""
    incomplete = grid.num_terminated + grid.num_errors < study.total_trials()  # interrupted
    records, failed = _records(study, grid, incomplete)
    results = report.build(records, study.metric, study.mode, study.swept, study.reference,
                           [t.setting for t in study.trials()], search=study.searcher == "tpe")
    files = study_folder.write_results(study, study_dir, results)
    if tracker:
        tracker.study_ended([study_dir / "study.yaml", *files],
                            "FAILED" if failed else "KILLED" if incomplete else "FINISHED",
                            {"adautomix.trials_done": str(len(records))},
                            champion=report.best_key(records, study.metric, study.mode), model_name=study.name,
                            publish=functools.partial(
                                mlflow_view.finish, rows=report.csv_rows(results)[1],
                                metric=study.metric, mode=study.mode, swept=study.swept))
    return Outcome(study_dir, tracker.uri if tracker and not tracker.failed else None,
                   tracker.experiment_id if tracker else None, records, failed, report.markdown(results),
                   study.total_trials() - before, incomplete, interrupted,
                   tracker.parent_run_id if tracker else None)


def _open(study: Study, study_dir: Path, resume: bool, tracking_uri: str | None) -> StudyTracker | None:
    """The study folder, checked (``resume``) or started, with the study's MLflow parent run
    reopened or created; returns its tracker (None: no tracking)."""
    if resume:
        state = study_folder.read_state(study, study_dir)
        uri = _resume_uri(state["tracking_uri"], tracking_uri)
        tracker = StudyTracker(uri, state["experiment_id"], state["parent_run_id"], str(study_dir)) if uri else None
        if tracker:
            tracker.reopen()
        return tracker
    study_folder.start(study, study_dir)
    uri, tracker = resolve_tracking_uri(tracking_uri), None
    tags = {STUDY_TAG: study.name, "adautomix.role": "study", "adautomix.searcher": study.searcher,
            "adautomix.metric": study.metric, **commit_tags(), "adautomix.study_dir": str(study_dir),
            "mlflow.note.content": study.description or study.name, "adautomix.dataset": study.base.data.name}
    try:
        tracker = StudyTracker.start(uri, f"ablation-{study.name}", f"study {study.name}"
                                     + (" (smoke)" if study.smoke else ""), tags, study.params(), str(study_dir))
    except Exception as err:  # noqa: BLE001 - the study runs without tracking
        warn(uri, err, "creating the study's parent run", str(study_dir / TRIALS))
    study_folder.write_state(study, study_dir, {
        "tracking_uri": mask(tracker.uri) if tracker else None,  # no password
        "experiment_id": tracker.experiment_id if tracker else None,
        "parent_run_id": tracker.parent_run_id if tracker else None})
    return tracker


def _fit(study: Study, study_dir: Path, resume: bool, tracker: StudyTracker | None, address: str | None,
         max_concurrent: int, out):
    """Tune's run of the study, restored when ``resume`` finds Tune's state: its ``ResultGrid``,
    the trials that had ended before, and the ``_TuneStopNotices`` (whether Ctrl-C stopped it)."""
    import ray
    from ray import tune

    started = connect(address, study.base.train.env_vars)
    # Ctrl-C: Tune's handler stops the trials and saves its state; the runner prints one line
    notices = _TuneStopNotices()
    logging.getLogger("ray.tune.tune").addFilter(notices)
    try:
        experiment = study_dir / TRIALS
        if resume and tune.Tuner.can_restore(str(experiment)):
            tuner = tune.Tuner.restore(str(experiment), trainable(study, study_dir),
                                       resume_unfinished=True, resume_errored=True)
            before = tuner.get_results().num_terminated  # finished or stopped early
        else:
            tuner = make_tuner(study, study_dir, tracker, max_concurrent)
            before = 0
        print(f"study {study.name}: {study.total_trials()} trials, {before} finished before, "
              f"{study.total_trials() - before} to run; folder {study_dir}", file=out, flush=True)
        return tuner.fit(), before, notices
    except BaseException as err:
        if tracker:  # a parent left RUNNING would look alive in the UI
            tracker.study_ended([], "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED", {})
        raise
    finally:
        logging.getLogger("ray.tune.tune").removeFilter(notices)
        if started:
            ray.shutdown()


class _TuneStopNotices(logging.Filter):
    """Drops Tune's notices of a Ctrl-C (stop received, trials not complete, how to restore); records it came."""

    interrupted = False

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("Stop signal received"):
            self.interrupted = True
            return False
        return not (self.interrupted and message.startswith(
            ("Trials did not complete", "Experiment has been interrupted")))


def _records(study: Study, grid, incomplete: bool) -> tuple[list[dict], list[str]]:
    """Plain records of Tune's results (``evaluation.report``) and one line per failed trial. A
    trial that ended before its last epoch stopped early; in an interrupted study it is left out."""
    records, failed = [], []
    for result in grid:
        trial = _ident(study, result.config)
        metrics = numeric(result.metrics or {})
        finished = _finished(study, result.config, metrics)
        if result.error is not None:
            failed.append(f"{trial.name}: {_error_line(result.error)}; see {result.path}")
        elif "epoch" in metrics and (finished or not incomplete):
            records.append({"setting": trial.setting, "seed": trial.seed, "key": trial.key,
                            "status": "finished" if finished else "stopped_early",
                            "epochs_done": int(metrics["epoch"]), "metrics": metrics,
                            "history": _history(result, study.metric)})
    return records, failed


def _error_line(error: BaseException) -> str:
    """A failed trial's error type; with the reason when the run stopped itself (non-finite loss)."""
    seen = error
    while seen is not None:
        cause = getattr(seen, "cause", None) or seen.__cause__  # Ray's RayTaskError keeps .cause
        # RayTaskError(NonFiniteLossError) is an instance too, but its text is the traceback
        if isinstance(seen, NonFiniteLossError) and not isinstance(cause, NonFiniteLossError):
            return f"NonFiniteLossError: {seen}"
        seen = cause
    return type(error).__name__


def _history(result, metric: str) -> list[dict]:
    """The trial's ``epoch``, ``top1`` and ``metric`` of every result Tune received (its progress.csv)."""
    frame = result.metrics_dataframe
    if frame is None or "epoch" not in frame:
        return []
    wanted = [c for c in dict.fromkeys(["epoch", "top1", metric]) if c in frame]
    # an epoch trained again after a restore from an older checkpoint counts once, as retrained
    return frame[wanted].dropna(subset=["epoch"]).drop_duplicates("epoch", keep="last").to_dict("records")


def _resume_uri(stored: str | None, given: str | None) -> str | None:
    """A resumed study's tracking URI: ``state.json``'s, unless its password is masked there; then
    the full URI must be given again (``--tracking-uri`` or ``$MLFLOW_TRACKING_URI``)."""
    if not stored:
        return None
    if not given and mask(stored) == stored:  # no password: the stored URI is whole
        return stored
    if not given and not os.environ.get("MLFLOW_TRACKING_URI"):
        raise StudyError(f"--resume: this study logs to {stored}; give the URI with its password "
                         "again (--tracking-uri or $MLFLOW_TRACKING_URI)")
    uri = resolve_tracking_uri(given)
    if mask(uri) != stored:
        raise StudyError(f"--resume: this study logs to {stored}, not {mask(uri)}")
    return uri
