"""MLflow tracking of a single run (``adautomix train --tracking-uri``, docs/training.md), in process or on Ray
Train's workers: ``train_logged`` creates and closes the run, ``RunLogger`` logs on rank 0 through MLflow's
asynchronous logging, so training never waits for the store. The outage path: the epochs the run lacks are
back-filled from the run's history at its end (when something failed) and when it is continued."""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from ..config import params
from ..engine import Callback
from . import mlflow_store as store
from .mlflow_model import ExportModel, log_run_files

_ASYNC_LOGGER = "mlflow.utils.async_logging.async_logging_queue"  # reports MLflow's failed batches


class RunLogger(Callback):
    """Logs one run into the MLflow run ``run_id``, as a study's trial is: each epoch's metrics at step ``epoch``,
    at the end its files, pictures and model (written first by ``ExportModel`` with ``mlflow.log_model=true``).
    Hooks run on rank 0; picklable for Ray Train's workers (the URI travels whole, in memory: never written)."""

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
            self.run_id, store.TAG_PREFIX + "out_dir", str(Path(trainer.out).resolve())))
        if self.continued:  # the checkpoint's epochs that the run lacks
            self._try("the epochs before the checkpoint", lambda c: store.backfill(c, self.run_id, trainer.history))

    def on_epoch(self, record: dict) -> None:
        self._try("per-epoch metrics", lambda c: self._sent.append(
            c.log_batch(self.run_id, metrics=store.epoch_metrics(record), synchronous=False)))

    def on_end(self, summary: dict, trainer) -> None:
        self._try("per-epoch metrics", lambda c: self.wait())
        logging.getLogger(_ASYNC_LOGGER).removeFilter(self._async_failure)

        def files(c) -> None:
            if self.failed:  # the outage path: the epochs the store missed while it was down
                store.backfill(c, self.run_id, trainer.history)
            log_run_files(self.uri, c, self.run_id, Path(trainer.out))

        self._try("the run's files and model", files)

    def wait(self) -> None:
        """Wait until MLflow has sent (or given up on) every epoch handed to it; raises the first failure."""
        sent, self._sent, errors = self._sent, [], []
        for operations in sent:
            try:
                operations.wait()
            except Exception as err:  # noqa: BLE001 - the later ones are waited for too
                errors.append(err)
        if errors:
            raise errors[0]

    def _async_failure(self, record: logging.LogRecord) -> bool:
        """Drops MLflow's error line for each batch it could not send (it holds the URI's password); the first
        becomes the one warning (the run's end back-fills what the store missed)."""
        if "Failed to log run data" not in record.getMessage():
            return True
        self._fail(ConnectionError(record.getMessage()), "per-epoch metrics")
        return False

    def _try(self, what: str, fn) -> None:
        try:
            if self._client is None:
                self._client = store.client(self.uri)
            fn(self._client)
        except Exception as err:  # noqa: BLE001 - any tracking error must leave training running
            self._fail(err, what)

    def _fail(self, err: BaseException, what: str) -> None:
        if not self.failed:  # one warning
            store.warn(self.uri, err, what, self.where, retry=True)
        self.failed = True


def train_logged(cfg, uri: str, train_fn) -> dict:
    """``adautomix train`` with MLflow (docs/training.md): one run in experiment ``train-<data>`` (or, with
    ``train.resume``, the latest one tagged with the same run directory), ``RunLogger`` (and ``ExportModel``) as
    the callbacks of ``train_fn(callbacks)``, closed FINISHED, FAILED or KILLED (Ctrl-C). A store that cannot be
    reached: one warning, training without MLflow."""
    uri = store.resolve_tracking_uri(uri)
    out_dir = str(Path(cfg.out_dir).expanduser().resolve()) if cfg.out_dir else ""
    try:
        c = store.client(uri)
        exp_id = store.experiment(c, f"train-{cfg.data.name}")
        found = []  # the run to continue: the latest one tagged with this run directory
        if cfg.train.resume and out_dir:
            found = c.search_runs([exp_id], max_results=1, order_by=["attributes.start_time DESC"],
                                  filter_string=f"tags.`{store.TAG_PREFIX}out_dir` = '{out_dir}'")
        if found:
            run_id = found[0].info.run_id
            c.update_run(run_id, status="RUNNING")
            print(f"MLflow: continuing run {run_id}", flush=True)
        else:
            run_id = c.create_run(exp_id, run_name=f"{cfg.method.name}-{cfg.data.name} seed={cfg.seed}", tags={
                store.TAG_PREFIX + "method": cfg.method.name, store.TAG_PREFIX + "seed": str(cfg.seed),
                store.TAG_PREFIX + "dataset": cfg.data.name, **store.commit_tags(),
                **({store.TAG_PREFIX + "out_dir": out_dir} if out_dir else {})}).info.run_id
            store.log_params(c, run_id, params(cfg))  # from the Config object
    except Exception as err:  # noqa: BLE001 - training goes on without MLflow
        store.warn(uri, err, "creating the run", cfg.out_dir or "the run directory")
        return train_fn([])
    logger = RunLogger(uri, run_id, bool(found))
    status = "FAILED"
    try:
        summary = train_fn(([ExportModel()] if cfg.mlflow.log_model else []) + [logger])
        status = "FINISHED"
        return summary
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        # in process, the epochs MLflow holds go out before the run's end (a failure: warned, back-filled by --resume)
        with contextlib.suppress(Exception):
            logger.wait()
        try:
            c.set_terminated(run_id, status=status)
            print(f"MLflow: run {run_id} ({status}); {store.ui_command(uri)}\n"
                  f"        then open {store.runs_url(uri, exp_id)}", flush=True)
        except Exception as err:  # noqa: BLE001
            store.warn(uri, err, "closing the run")
