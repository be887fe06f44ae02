"""MLflow tracking of a single run (``adautomix train --tracking-uri``), in process or on Ray
Train's workers: ``train_logged`` creates and closes the run, ``RunLogger`` logs on rank 0.

One route per epoch record: rank 0 hands it to MLflow's asynchronous logging
(``log_batch(synchronous=False)``), so training never waits for the store. The outage path: the
epochs the run lacks are back-filled from the run's history at its end (when something failed)
and when it is continued (``train.resume``).
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from ..config import params
from ..engine import Callback
from .mlflow_model import ExportModel, log_run_files
from .mlflow_store import (
    TAG_PREFIX,
    backfill,
    client,
    commit_tags,
    epoch_metrics,
    experiment,
    log_params,
    resolve_tracking_uri,
    runs_url,
    ui_command,
    warn,
)

_ASYNC_LOGGER = "mlflow.utils.async_logging.async_logging_queue"  # reports MLflow's failed batches


class RunLogger(Callback):
    """Logs one run into the MLflow run ``run_id``: each epoch's metrics at step ``epoch``, and at
    the end the run's files, pictures and model (``ExportModel`` writes it first when
    ``mlflow.log_model=true``), as a study's trial does. Hooks run on rank 0;
    picklable for Ray Train's workers (the URI travels whole, in memory: it is never written)."""

    def __init__(self, uri: str, run_id: str, continued: bool = False):
        self.uri, self.run_id, self.continued = uri, run_id, continued
        self.where, self.failed = "", False  # failed: something was not logged (warned once)
        self._client, self._sent = None, []  # _sent: MLflow's handles of the epochs logged async

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_client": None, "_sent": []}

    def setup(self, trainer) -> None:
        self.where = str(trainer.out)
        if trainer.rank != 0:
            return
        logging.getLogger(_ASYNC_LOGGER).addFilter(self._async_failure)
        self._try("the run's folder", lambda c: c.set_tag(
            self.run_id, TAG_PREFIX + "out_dir", str(Path(trainer.out).resolve())))
        if self.continued:  # the checkpoint's epochs that the run lacks
            self._try("the epochs before the checkpoint", lambda c: backfill(c, self.run_id, trainer.history))

    def on_epoch(self, record: dict) -> None:
        self._try("per-epoch metrics", lambda c: self._sent.append(
            c.log_batch(self.run_id, metrics=epoch_metrics(record), synchronous=False)))

    def on_end(self, summary: dict, trainer) -> None:
        run_dir = Path(trainer.out)
        self._try("per-epoch metrics", lambda c: self.wait())
        logging.getLogger(_ASYNC_LOGGER).removeFilter(self._async_failure)

        def files(c) -> None:
            if self.failed:  # the outage path: the epochs the store missed while it was down
                backfill(c, self.run_id, trainer.history)
            log_run_files(self.uri, c, self.run_id, run_dir)

        self._try("the run's files and model", files)

    def wait(self) -> None:
        """Wait until MLflow has sent (or given up on) every epoch handed to it; raises the
        first failure."""
        sent, self._sent, errors = self._sent, [], []
        for operations in sent:
            try:
                operations.wait()
            except Exception as err:  # noqa: BLE001 - the later ones are waited for too
                errors.append(err)
        if errors:
            raise errors[0]

    def _async_failure(self, record: logging.LogRecord) -> bool:
        """MLflow's asynchronous logging prints an error line for each batch it could not send,
        the URI's password and all: the first becomes the one warning, none is printed (the end
        of the run back-fills what the store missed)."""
        if "Failed to log run data" not in record.getMessage():
            return True
        self._fail(ConnectionError(record.getMessage()), "per-epoch metrics")
        return False

    def _try(self, what: str, fn) -> None:
        try:
            if self._client is None:
                self._client = client(self.uri)
            fn(self._client)
        except Exception as err:  # noqa: BLE001 - any tracking error must leave training running
            self._fail(err, what)

    def _fail(self, err: BaseException, what: str) -> None:
        if not self.failed:  # one warning
            warn(self.uri, err, what, self.where, retry=True)
        self.failed = True


def train_logged(cfg, uri: str, train_fn) -> dict:
    """``adautomix train`` with MLflow: one run in experiment ``train-<data>`` (model training),
    every resolved config value a param, ``RunLogger`` (and ``ExportModel`` with
    ``mlflow.log_model=true``) as the engine's callbacks of ``train_fn(callbacks)``; the run is
    closed FINISHED, FAILED, or KILLED (Ctrl-C). ``train.resume`` continues the latest run
    tagged with the same run directory (``adautomix.out_dir``), if there is one. A store that
    cannot be reached: one warning, training without MLflow."""
    uri = resolve_tracking_uri(uri)
    out_dir = str(Path(cfg.out_dir).expanduser().resolve()) if cfg.out_dir else ""
    try:
        c = client(uri)
        exp_id = experiment(c, f"train-{cfg.data.name}")
        run_id = _run_of_dir(c, exp_id, out_dir) if cfg.train.resume and out_dir else None
        continued = run_id is not None
        if continued:
            c.update_run(run_id, status="RUNNING")
            print(f"MLflow: continuing run {run_id}", flush=True)
        else:
            run_id = c.create_run(exp_id, run_name=f"{cfg.method.name}-{cfg.data.name} seed={cfg.seed}", tags={
                TAG_PREFIX + "method": cfg.method.name, TAG_PREFIX + "seed": str(cfg.seed),
                TAG_PREFIX + "dataset": cfg.data.name, **commit_tags(),
                **({TAG_PREFIX + "out_dir": out_dir} if out_dir else {})}).info.run_id
            log_params(c, run_id, params(cfg))  # from the Config object
    except Exception as err:  # noqa: BLE001 - training goes on without MLflow
        warn(uri, err, "creating the run", cfg.out_dir or "the run directory")
        return train_fn([])
    logger = RunLogger(uri, run_id, continued)
    status = "FAILED"
    try:
        summary = train_fn(([ExportModel()] if cfg.mlflow.log_model else []) + [logger])
        status = "FINISHED"
        return summary
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        # in process, the epochs MLflow holds go out before the run's end (a failure: warned by
        # the logger, back-filled by --resume)
        with contextlib.suppress(Exception):
            logger.wait()
        try:
            c.set_terminated(run_id, status=status)
            print(f"MLflow: run {run_id} ({status}); {ui_command(uri)}\n"
                  f"        then open {runs_url(uri, exp_id)}", flush=True)
        except Exception as err:  # noqa: BLE001
            warn(uri, err, "closing the run")


def _run_of_dir(c, experiment_id: str, out_dir: str) -> str | None:
    """The latest run of ``experiment_id`` tagged with the run directory ``out_dir``."""
    found = c.search_runs([experiment_id], max_results=1, order_by=["attributes.start_time DESC"],
                          filter_string=f"tags.`{TAG_PREFIX}out_dir` = '{out_dir}'")
    return found[0].info.run_id if found else None
