"""MLflow tracking of an ablation study (single runs: ``run_logger.py``): one experiment per study, one parent
run, one child run per trial, logged in the study's driver from what Ray Tune hands it; tracking trouble never
stops training. What is logged and how an outage is survived: docs/mlflow.md."""
from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from ..config import params
from . import mlflow_store as store
from .mlflow_model import CHAMPION, log_run_files, register

RETRY_S = 10.0  # while the store is down, try again at most this often
FINAL_WAIT_S = 120.0  # how long the end of a study waits for a store that is down
_queue = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow")  # the logging thread (StudyTracker._call)
_secrets: dict[str, str] = {}  # masked URI -> URI, for trackers unpickled in this process


class _Outbox:
    """The tracker's calls to the store, in order: a call that fails stays, with those after it, and all are
    sent again at the next call once ``RETRY_S`` has passed (at once when ``force``d). The first failure warns.
    Hand-written because MLflow's asynchronous logging takes only ``log_batch`` (not run creation, artifacts,
    models or a run's end) and drops a batch that failed after its HTTP retries; a study must keep every call
    until the store answers, in order (a run exists before its metrics, its epochs before its end)."""

    def __init__(self, uri: str, where: str):
        self.uri, self.where = uri, where
        self.pending: list[tuple[str, Any]] = []
        self.warned, self.down_since = False, None
        self._client = None

    def __getstate__(self) -> dict:
        # what Tune pickles into its experiment state: no client, no password
        return {**self.__dict__, "uri": store.mask(self.uri), "_client": None, "pending": []}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.uri = _secrets.get(self.uri, self.uri)

    def send(self, what: str, fn, force: bool = False) -> None:
        """Queue ``fn(client)`` (unless None) and send what is queued."""
        if fn is not None:
            self.pending.append((what, fn))
        if self.down_since is not None and not force and time.monotonic() - self.down_since < RETRY_S:
            return
        while self.pending:
            what, fn = self.pending[0]
            try:
                if self._client is None:
                    self._client = store.client(self.uri)
                fn(self._client)
            except Exception as err:  # noqa: BLE001 - any tracking error must leave training running
                self.down_since = time.monotonic()
                if not self.warned:
                    self.warned = True
                    store.warn(self.uri, err, what, self.where, retry=True)
                return
            self.pending.pop(0)
        if self.down_since is not None:
            self.down_since = None
            print(f"MLflow: logging resumed at {store.mask(self.uri)}; what was missed is logged now",
                  file=sys.stderr, flush=True)


class StudyTracker:
    """Logs one study to MLflow (ids from ``start``; ``where``, the study folder, is named in the warning when
    tracking fails). Picklable: holds ids, not a client, and, pickled, the URI without its password."""

    def __init__(self, uri: str, experiment_id: str, parent_run_id: str, where: str = ""):
        _secrets[store.mask(uri)] = uri
        self.experiment_id, self.parent_run_id = experiment_id, parent_run_id
        self.outbox = _Outbox(uri, where)
        self._runs: dict[str, str | None] = {}  # trial key -> run id; None: closed (or FINISHED when found again)
        self._trials: dict[str, tuple[str, dict]] = {}  # trial key -> (run name, tags)
        self._need_params: set[str] = set()  # runs that have no params yet
        self._continued: set[str] = set()  # runs found again (--resume): back-fill from metrics.jsonl

    @property
    def uri(self) -> str:
        return self.outbox.uri

    @property
    def failed(self) -> bool:
        """Whether some calls could not be sent (yet)."""
        return bool(self.outbox.pending)

    @classmethod
    def start(cls, uri: str, name: str, run_name: str, tags: dict[str, str],
              params: dict[str, Any], where: str = "") -> StudyTracker:
        """Create the study's parent run (and its experiment, tagged as model training)."""
        c = store.client(uri)
        exp_id = store.experiment(c, name)
        run = c.create_run(exp_id, run_name=run_name, tags=tags)
        store.log_params(c, run.info.run_id, params)
        return cls(uri, exp_id, run.info.run_id, where)

    def trial_started(self, key: str, run_name: str, tags: dict[str, str]) -> None:
        """The trial's run: the one tagged with ``key`` (a continued trial), else a new child."""
        self._trials[key] = (run_name, tags)
        self._runs.pop(key, None)
        self._call(f"the run of trial {run_name}", lambda c: self._run_of(c, key))

    def trial_epoch(self, key: str, record: dict[str, float], run_dir: Path) -> None:
        """One epoch's record (``engine.EpochRecord``) at step ``epoch``; with the first, every value of the
        trial's resolved ``config.yaml`` as a param (dotted keys) and its method, seed, data and folder as tags."""
        record = dict(record)

        def log(c) -> None:
            run_id = self._run_of(c, key)
            if run_id is None:
                return
            if key in self._need_params and (run_dir / "config.yaml").exists():
                cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
                store.log_params(c, run_id, params(cfg))  # the Config the trial resolved (Tune carries numbers only)
                for name, value in (("method", cfg["method"]["name"]), ("seed", cfg["seed"]),
                                    ("dataset", cfg["data"]["name"]), ("out_dir", run_dir)):
                    c.set_tag(run_id, store.TAG_PREFIX + name, str(value))
                self._need_params.discard(key)
            if key in self._continued:  # the outage path: epochs a killed driver never logged
                jsonl = run_dir / "metrics.jsonl"
                lines = jsonl.read_text().splitlines() if jsonl.exists() else []
                store.backfill(c, run_id, [json.loads(s) for s in lines if s.strip()], before=int(record["epoch"]))
                self._continued.discard(key)
            c.log_batch(run_id, metrics=store.epoch_metrics(record))

        self._call("per-epoch metrics", log)

    def trial_ended(self, key: str, status: str, run_dir: Path, tags: dict[str, str] | None = None) -> None:
        """Close the trial's run (FINISHED, KILLED, FAILED); a finished one gets its files and model first."""
        def end(c) -> None:
            run_id = self._run_of(c, key)
            if run_id is None:
                return
            if status == "FINISHED":
                log_run_files(self.uri, c, run_id, run_dir)
            for k, v in (tags or {}).items():
                c.set_tag(run_id, k, v)
            c.set_terminated(run_id, status=status)
            self._runs[key] = None  # nothing more is logged into it, unless the trial starts again

        self._call(f"closing the run of trial {key}", end)

    def study_ended(self, files: list[Path], status: str, tags: dict[str, str], champion: str | None = None,
                    model_name: str | None = None, publish=None) -> None:
        """The study's results on the parent run, closed with ``status``; runs of trials cut off by an interruption
        are closed KILLED (``--resume`` reopens them). ``champion``: the best trial's key, its model registered as
        ``model_name@champion``. ``publish(client, experiment_id, parent_run_id)``: ``mlflow_view.finish``."""
        def end(c) -> None:
            for run in c.search_runs([self.experiment_id], max_results=1000, filter_string=(
                    f"tags.`mlflow.parentRunId` = '{self.parent_run_id}' and attributes.status = 'RUNNING'")):
                c.set_terminated(run.info.run_id, status="KILLED")
            for path in files:
                c.log_artifact(self.parent_run_id, str(path))
            if champion and model_name:
                self._register(c, champion, model_name)
            for k, v in tags.items():
                c.set_tag(self.parent_run_id, k, v)
            if publish is not None:
                publish(c, self.experiment_id, self.parent_run_id)
            c.set_terminated(self.parent_run_id, status=status)

        self._call("the study's results on the parent run", end)
        self.flush()
        if self.failed:  # the store is down: give it a little time to come back
            print(f"MLflow: {store.mask(self.uri)} is not answering; trying for {FINAL_WAIT_S:.0f} s more "
                  "to log what is missing", file=sys.stderr, flush=True)
            deadline = time.monotonic() + FINAL_WAIT_S
            while self.failed and time.monotonic() < deadline:
                time.sleep(RETRY_S)
                self.flush()

    def _register(self, c, key: str, name: str) -> None:
        found = self._find(c, key)
        model_uri = found[0].data.tags.get(store.MODEL_URI_TAG) if found else None
        if not model_uri:
            return  # the best trial logged no model (mlflow.log_model=false)
        try:
            register(self.uri, c, found[0].info.run_id, model_uri, name, key)
        except Exception as err:  # noqa: BLE001 - a store without a model registry: the rest is logged
            print(f"WARNING: MLflow: the best model could not be registered as {name}@{CHAMPION} "
                  f"at {store.mask(self.uri)}: {store.error_line(err, self.uri)}"
                  f"; it stays logged in its run ({model_uri})", file=sys.stderr, flush=True)
            return
        c.set_tag(self.parent_run_id, store.TAG_PREFIX + "champion", f"models:/{name}@{CHAMPION}")

    def reopen(self) -> None:
        """``--resume``: the parent run is RUNNING again."""
        self._call("reopening the parent run", lambda c: c.update_run(self.parent_run_id, status="RUNNING"))

    def flush(self) -> None:
        """Wait until everything handed over so far is logged (or has failed once more)."""
        _queue.submit(lambda: self.outbox.send("", None, force=True)).result()

    def _run_of(self, c, key: str) -> str | None:
        """The trial's run id, found or created; None when it had FINISHED before (a trial whose end Tune had
        not recorded logs nothing twice)."""
        if key in self._runs:
            return self._runs[key]
        found = self._find(c, key)
        if found:
            run = found[0]
            finished = run.info.status == "FINISHED"
            if not finished:
                c.update_run(run.info.run_id, status="RUNNING")
                self._continued.add(key)
            if not run.data.params:
                self._need_params.add(key)
            self._runs[key] = None if finished else run.info.run_id
        else:
            run_name, tags = self._trials.get(key, (key, {}))
            self._runs[key] = c.create_run(self.experiment_id, run_name=run_name, tags={
                "mlflow.parentRunId": self.parent_run_id, store.TRIAL_KEY_TAG: key, **tags}).info.run_id
            self._need_params.add(key)
        return self._runs[key]

    def _find(self, c, key: str) -> list:
        """The trial's run, if it has one (``[run]``), found by its trial-key tag."""
        return c.search_runs([self.experiment_id], max_results=1, filter_string=(
            f"tags.`mlflow.parentRunId` = '{self.parent_run_id}' and tags.`{store.TRIAL_KEY_TAG}` = '{key}'"))

    def _call(self, what: str, fn) -> None:
        """Run ``fn(client)`` on the tracker's own thread, in call order: Ray Tune calls the tracker from its
        event loop, which must not wait for the store (a model upload takes seconds). One thread per process,
        shared by every tracker, so ``flush`` also waits for a restored Tune experiment's unpickled copy."""
        import mlflow.entities  # noqa: F401 - imported on this thread first, not by two threads at a time

        _queue.submit(lambda: self.outbox.send(what, fn))
