"""MLflow tracking of ablation studies and single runs, behind one thin module
(https://mlflow.org/docs/latest/ml/tracking/).

A study: one experiment per study, tagged as a model-training experiment
(``mlflow.experimentKind``), so that MLflow 3's UI opens it on its runs rather than on the GenAI
overview; one parent run per study and one nested child run per trial. ``StudyTracker`` does all
the logging, in the study's driver, from what Ray Tune hands it: each epoch's metrics as a trial
reports them, then the trial's files, its model and its status when it ends. A trial continued by
``--resume`` finds its run again by its trial-key tag and goes on logging into it. The best
trial's model is registered under the study's name with the alias ``champion``.

A single run (``adautomix train --tracking-uri``): ``RunLogger``, an engine ``Callback``, logs
into one run that the command creates and closes.

Models are logged in MLflow's ``pt2`` format (``torch.export``: a traced graph, no pickle), with
a signature and an input example.

Tracking trouble never stops training: the first failure prints one warning on stderr naming the
tracking URI (its password masked) and the error; what could not be logged is kept and sent when
the store answers again (epochs missed while a server was down are back-filled). The metrics stay
in each run directory (``metrics.jsonl``, ``metrics.json``) in any case.
Nothing in this module imports Ray; ``mlflow`` is imported only when something is logged.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from ..config import flatten
from ..engine import Callback

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"  # a local SQLite store in the working directory
UI_ADDRESS = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default
TAG_PREFIX = "adautomix."
TRIAL_KEY_TAG = "adautomix.trial_key"
STUDY_TAG = "adautomix.study"
MODEL_URI_TAG = "adautomix.model_uri"
CHAMPION = "champion"  # the registry alias of a study's best model
# MLflow 3's UI shows an experiment by its kind: GenAI experiments land on traces, model-training
# ones on their runs (the values of the UI's experiment-type switch)
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
MODEL_FILE = "model.pt2"  # the headline model (torch.export), written by ExportModel
EXAMPLE_FILE = "input_example.npy"  # a batch of two test images, the model's input example
# A dead server should cost seconds, not the client's default minutes of retries per call.
_CLIENT_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                  "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
                  # MLflow prints each closed run's URL, credentials and all; ours are masked
                  "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
RETRY_S = 10.0  # while the store is down, try again at most this often
FINAL_WAIT_S = 120.0  # how long the end of a study waits for a store that is down
_MAX_PARAMS_PER_CALL = 100  # MLflow's log_batch limit
_queue = None  # the thread that does the logging (StudyTracker._call)
_secrets: dict[str, str] = {}  # masked URI -> URI, for trackers unpickled in this process


def resolve_tracking_uri(uri: str | None) -> str:
    """``uri`` (or ``$MLFLOW_TRACKING_URI``, else the local SQLite store) with local paths made
    absolute, so that the URI means the same store from any working directory."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri[len("sqlite:///"):]).resolve())
    if "://" not in uri:  # a plain folder (file store)
        return Path(uri).resolve().as_uri()
    return uri


def is_local_store(uri: str) -> bool:
    """Whether ``uri`` is a store on this machine's disk (a SQLite file or a folder), which a
    process on another node of a cluster cannot reach."""
    return resolve_tracking_uri(uri).split(":", 1)[0] in ("sqlite", "file")


def mask(uri: str) -> str:
    """``uri`` with its password replaced by ``***`` (``http://user:***@host:5000``): the form
    that is printed and written. Credentials belong in ``MLFLOW_TRACKING_USERNAME`` and
    ``MLFLOW_TRACKING_PASSWORD``, which never appear in a URI."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def ui_command(uri: str) -> str:
    """The command that opens the MLflow UI on ``uri`` (password masked)."""
    return f"mlflow ui --backend-store-uri {mask(uri)}"


def runs_url(uri: str, experiment_id: str) -> str:
    """The UI page of the experiment's training runs: on the server itself for an HTTP URI,
    else where ``mlflow ui`` serves. ``workflowType=machine_learning`` switches the UI (which
    remembers GenAI as its mode otherwise) to its model-training side. No credentials in it."""
    if uri.startswith(("http://", "https://")):
        parts = urlsplit(uri)
        base = urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1])).rstrip("/")
    else:
        base = UI_ADDRESS
    return f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def client(uri: str):
    """An ``MlflowClient`` for ``uri`` with short HTTP retries (see ``_CLIENT_DEFAULTS``)."""
    _client_defaults()
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _client_defaults() -> None:
    for key, value in _CLIENT_DEFAULTS.items():
        os.environ.setdefault(key, value)
    # one warning says the store is down, not a line per retry of each call
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)


@contextlib.contextmanager
def _fluent(uri: str):
    """MLflow's fluent API (``mlflow.start_run``, ``register_model``) pointed at ``uri`` for the
    block. ``mlflow.set_tracking_uri`` also sets ``$MLFLOW_TRACKING_URI``, which every process
    started later would inherit (with a password, if the URI has one): it is put back after."""
    import mlflow

    saved = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield mlflow
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved


def warn(uri: str, err: BaseException, what: str, where: str | None = None, retry: bool = False) -> None:
    """The one clear message a tracking failure gets (training goes on); the URI is masked."""
    first = _first_line(err).replace(uri, mask(uri))
    lines = [f"WARNING: MLflow tracking failed ({what}) at {mask(uri)}: {type(err).__name__}: {first}",
             "  training continues; " + ("what is not logged is kept and sent when the store answers again"
                                         if retry else "MLflow logging is off for this study")]
    if where:
        lines.append(f"  the metrics stay in {where} (metrics.jsonl per epoch, metrics.json)")
    print("\n".join(lines), file=sys.stderr, flush=True)


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else ""


def git_commit() -> str:
    """The commit of the code (``-dirty`` when the checkout has changes), or ``unknown``."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=40"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


class ExportModel(Callback):
    """Rank 0 writes the headline model (the ``nn.Module`` whose top-1 is ``top1``: AdAutoMix's
    EMA teacher) to ``out_dir/model.pt2`` at the end of a run, exported with ``torch.export``
    (a graph and its weights, loaded without unpickling code), and two test images
    (``input_example.npy``, float32 ``(2, C, H, W)``) as its input example; the batch size is
    dynamic. ``StudyTracker`` and ``RunLogger`` log it (``mlflow.log_model=true``)."""

    def on_end(self, summary: dict, trainer) -> None:
        import copy

        import numpy as np
        import torch

        model = copy.deepcopy(trainer.step.headline_model).cpu().eval()
        x = next(iter(trainer.test_loader))[0][:2].detach().float().cpu()
        program = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim.AUTO},))
        torch.export.save(program, trainer.out / MODEL_FILE)
        np.save(trainer.out / EXAMPLE_FILE, x.numpy(), allow_pickle=False)


def log_model(uri: str, run_id: str, run_dir: Path) -> str:
    """Log ``run_dir``'s exported model into run ``run_id`` in MLflow's ``pt2`` format, with a
    signature inferred from its input example and its output; returns the model's URI."""
    import mlflow
    import mlflow.pytorch
    import numpy as np
    import torch
    from mlflow.models import infer_signature

    _client_defaults()
    module = torch.export.load(run_dir / MODEL_FILE).module()
    example = np.load(run_dir / EXAMPLE_FILE, allow_pickle=False)
    with torch.no_grad():
        signature = infer_signature(example, module(torch.from_numpy(example)).numpy())
    head = json.loads((run_dir / "metrics.json").read_text())["headline_head"]
    quiet = [logging.getLogger(n) for n in ("mlflow.pytorch", "mlflow.utils.requirements_utils",
                                            "mlflow.models.model")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:
        lg.setLevel(logging.ERROR)
    try:
        with _fluent(uri), mlflow.start_run(run_id=run_id, log_system_metrics=False):
            info = mlflow.pytorch.log_model(
                module, name="model", serialization_format="pt2", input_example=example,
                signature=signature, pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
            mlflow.set_tag(MODEL_URI_TAG, info.model_uri)
            # which head's top-1 the logged model scores (model(x) gives that head's logits)
            mlflow.set_tag(TAG_PREFIX + "model_head", head)
    finally:
        for lg, level in zip(quiet, levels):
            lg.setLevel(level)
    return info.model_uri


class _Outbox:
    """Calls to the store, sent in order on one thread; a call that fails stays, with those
    after it, and all are sent again at the next call once ``RETRY_S`` has passed (at once when
    ``force``d: ``flush``, the end of a run). The first failure prints the one warning."""

    def __init__(self, uri: str, where: str, mask_pickled: bool = True):
        self.uri, self.where, self.mask_pickled = uri, where, mask_pickled
        self.pending: list[tuple[str, Any]] = []
        self.warned, self.down_since = False, None
        self._client = None

    def __getstate__(self) -> dict:
        # what Tune pickles into its experiment state: no client, no password
        uri = mask(self.uri) if self.mask_pickled else self.uri
        return {**self.__dict__, "uri": uri, "_client": None, "pending": []}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.uri = _secrets.get(self.uri, self.uri)

    def send(self, what: str, fn, force: bool = False) -> bool:
        """Queue ``fn(client)`` and send what is queued; True when nothing is left."""
        if fn is not None:
            self.pending.append((what, fn))
        if self.down_since is not None and not force and time.monotonic() - self.down_since < RETRY_S:
            return False
        while self.pending:
            what, fn = self.pending[0]
            try:
                if self._client is None:
                    self._client = client(self.uri)
                fn(self._client)
            except Exception as err:  # noqa: BLE001 - any tracking error must leave training running
                self.down_since = time.monotonic()
                if not self.warned:
                    self.warned = True
                    warn(self.uri, err, what, self.where, retry=True)
                return False
            self.pending.pop(0)
        if self.down_since is not None:
            self.down_since = None
            print(f"MLflow: logging resumed at {mask(self.uri)}; what was missed is logged now",
                  file=sys.stderr, flush=True)
        return True


class StudyTracker:
    """Logs one study to MLflow (see the module docstring). Picklable: holds ids, not a client
    (and, pickled, the URI without its password).

    Args:
        uri: the tracking URI (``resolve_tracking_uri`` output).
        experiment_id, parent_run_id: the study's experiment and parent run (``start``).
        where: named in the warning when tracking fails (the study folder).
    """

    def __init__(self, uri: str, experiment_id: str, parent_run_id: str, where: str = ""):
        _secrets[mask(uri)] = uri
        self.experiment_id, self.parent_run_id, self.where = experiment_id, parent_run_id, where
        self.outbox = _Outbox(uri, where)
        self._runs: dict[str, str] = {}  # trial key -> run id
        self._trials: dict[str, tuple[str, dict]] = {}  # trial key -> (run name, tags)
        self._need_params: set[str] = set()  # runs that have no params yet
        self._done: set[str] = set()  # runs closed (or FINISHED when their trial started again)
        self._epochs: dict[str, list[dict]] = {}  # trial key -> epochs received, not yet logged
        self._continued: set[str] = set()  # runs found again (--resume): back-fill from metrics.jsonl

    @property
    def uri(self) -> str:
        return self.outbox.uri

    @property
    def failed(self) -> bool:
        """Whether some calls could not be sent (yet)."""
        return bool(self.outbox.pending)

    @classmethod
    def start(cls, uri: str, experiment: str, run_name: str, tags: dict[str, str],
              params: dict[str, Any], where: str = "") -> "StudyTracker":
        """Create the study's parent run (and its experiment, tagged as model training)."""
        c = client(uri)
        exp = c.get_experiment_by_name(experiment)
        if exp is None:
            exp_id = c.create_experiment(experiment, tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING})
        else:
            exp_id = exp.experiment_id
            c.set_experiment_tag(exp_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)
        run = c.create_run(exp_id, run_name=run_name, tags=tags)
        _log_params(c, run.info.run_id, params)
        return cls(uri, exp_id, run.info.run_id, where)

    # ---------------------------------------------------------------- the study's trials
    def trial_started(self, key: str, run_name: str, tags: dict[str, str]) -> None:
        """The trial's run: the one tagged with ``key`` (a continued trial), else a new child."""
        self._trials[key] = (run_name, tags)
        self._runs.pop(key, None)
        self._call(f"the run of trial {run_name}", lambda c: self._run_of(c, key))

    def trial_epoch(self, key: str, metrics: dict[str, float], run_dir: Path) -> None:
        """One epoch's metrics at step ``epoch`` (with those a down store missed before it); with
        the first, every value of the trial's resolved ``config.yaml`` as a param (dotted keys)
        and its method, seed and data as tags."""
        self._epochs.setdefault(key, []).append(dict(metrics))

        def log(c) -> None:
            from mlflow.entities import Metric

            run_id = self._run_of(c, key)
            if run_id is None:
                return
            if key in self._need_params and (run_dir / "config.yaml").exists():
                cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
                _log_params(c, run_id, flatten(cfg))
                for name, value in (("method", cfg["method"]["name"]), ("seed", cfg["seed"]),
                                    ("dataset", cfg["data"]["name"]), ("out_dir", run_dir)):
                    c.set_tag(run_id, TAG_PREFIX + name, str(value))
                self._need_params.discard(key)
            if key in self._continued:
                self._backfill(c, key, run_id, run_dir)
            self._log_epochs(c, key, run_id)

        self._call("per-epoch metrics", log)

    def _backfill(self, c, key: str, run_id: str, run_dir: Path) -> None:
        """A continued trial's epochs that its run lacks, from the trial's ``metrics.jsonl``:
        those an interrupted driver received (or the trial finished) but never logged."""
        from mlflow.entities import Metric

        self._continued.discard(key)
        path = run_dir / "metrics.jsonl"
        pending = {int(r["epoch"]) for r in self._epochs.get(key, [])}
        if not path.exists() or not pending:
            return
        logged = {m.step for m in c.get_metric_history(run_id, "top1")}
        now = _now_ms()
        for line in path.read_text().splitlines():
            record = json.loads(line) if line.strip() else {}
            epoch = int(record.get("epoch", 0))
            if 0 < epoch < min(pending) and epoch not in logged:
                c.log_batch(run_id, metrics=[
                    Metric(k, float(v), now, epoch) for k, v in record.items()
                    if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool)])

    def trial_ended(self, key: str, status: str, run_dir: Path, tags: dict[str, str] | None = None) -> None:
        """Close the trial's run (FINISHED, KILLED, FAILED); a finished one gets its files
        (``config.yaml``, ``metrics.json``, ``metrics.jsonl``, pictures) and its model."""
        def end(c) -> None:
            run_id = self._run_of(c, key)
            if run_id is not None:
                self._log_epochs(c, key, run_id)  # epochs a down store missed at the very end
                self._close(c, key, run_id, status, run_dir, tags)

        self._call(f"closing the run of trial {key}", end)

    def _log_epochs(self, c, key: str, run_id: str) -> None:
        """The trial's epochs received and not logged yet, each at step ``epoch``."""
        from mlflow.entities import Metric

        now = _now_ms()
        records = self._epochs.get(key, [])  # Tune's thread appends to it meanwhile
        while records:
            c.log_batch(run_id, metrics=[Metric(k, float(v), now, int(records[0]["epoch"]))
                                         for k, v in records[0].items() if k != "epoch"])
            records.pop(0)

    def _close(self, c, key: str, run_id: str, status: str, run_dir: Path, tags) -> None:
        if status == "FINISHED":
            for name in ("config.yaml", "metrics.json", "metrics.jsonl", "eval.json"):
                if (run_dir / name).exists():
                    c.log_artifact(run_id, str(run_dir / name))
            for picture in sorted((run_dir / "pictures").glob("*.png")):
                c.log_artifact(run_id, str(picture), artifact_path="pictures")
            if (run_dir / MODEL_FILE).exists():
                log_model(self.uri, run_id, run_dir)
        for k, v in (tags or {}).items():
            c.set_tag(run_id, k, v)
        c.set_terminated(run_id, status=status)
        self._done.add(key)  # nothing more is logged into it, unless the trial starts again

    def study_ended(self, files: list[Path], status: str, tags: dict[str, str],
                    champion: str | None = None, model_name: str | None = None,
                    publish=None) -> None:
        """The study's results on the parent run, which is closed with ``status``; the runs of
        trials cut off by an interruption are closed KILLED (``--resume`` opens them again).
        ``champion``: the key of the best trial, whose logged model is registered as
        ``model_name`` with the alias ``champion``. ``publish(client, experiment_id,
        parent_run_id)``: the study's summary metrics and view (``mlflow_view.finish``)."""
        def end(c) -> None:
            cut = c.search_runs([self.experiment_id], max_results=1000, filter_string=(
                f"tags.`mlflow.parentRunId` = '{self.parent_run_id}' and attributes.status = 'RUNNING'"))
            for run in cut:
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
            print(f"MLflow: {mask(self.uri)} is not answering; trying for {FINAL_WAIT_S:.0f} s more "
                  "to log what is missing", file=sys.stderr, flush=True)
            deadline = time.monotonic() + FINAL_WAIT_S
            while self.failed and time.monotonic() < deadline:
                time.sleep(RETRY_S)
                self.flush()

    def _register(self, c, key: str, name: str) -> None:
        found = c.search_runs([self.experiment_id], max_results=1, filter_string=(
            f"tags.`mlflow.parentRunId` = '{self.parent_run_id}' and tags.`{TRIAL_KEY_TAG}` = '{key}'"))
        model_uri = found[0].data.tags.get(MODEL_URI_TAG) if found else None
        if not model_uri:
            return  # the best trial logged no model (mlflow.log_model=false)
        logger = logging.getLogger("mlflow.tracking._model_registry.fluent")
        level = logger.level
        logger.setLevel(logging.WARNING)  # no "Created version" lines
        try:
            with _fluent(self.uri) as mlflow:
                version = mlflow.register_model(model_uri, name, tags={TRIAL_KEY_TAG: key})
            c.set_registered_model_alias(name, CHAMPION, version.version)
        except Exception as err:  # noqa: BLE001 - a store without a model registry: the rest is logged
            print(f"WARNING: MLflow: the best model could not be registered as {name}@{CHAMPION} "
                  f"at {mask(self.uri)}: {type(err).__name__}: {_first_line(err).replace(self.uri, mask(self.uri))}"
                  f"; it stays logged in its run ({model_uri})", file=sys.stderr, flush=True)
            return
        finally:
            logger.setLevel(level)
        c.set_tag(self.parent_run_id, TAG_PREFIX + "champion", f"models:/{name}@{CHAMPION}")

    def reopen(self) -> None:
        """``--resume``: the parent run is RUNNING again."""
        self._call("reopening the parent run",
                   lambda c: c.update_run(self.parent_run_id, status="RUNNING"))

    def flush(self) -> None:
        """Wait until everything handed over so far is logged (or has failed once more)."""
        if _queue is not None:
            _queue.submit(lambda: self.outbox.send("", None, force=True)).result()

    # ---------------------------------------------------------------- internals
    def _run_of(self, c, key: str) -> str | None:
        """The trial's run id, found or created (None when it had FINISHED before: a trial
        whose end Tune had not recorded logs nothing twice)."""
        if key in self._runs:
            return None if key in self._done else self._runs[key]
        run_name, tags = self._trials.get(key, (key, {}))
        found = c.search_runs([self.experiment_id], max_results=1, filter_string=(
            f"tags.`mlflow.parentRunId` = '{self.parent_run_id}' and tags.`{TRIAL_KEY_TAG}` = '{key}'"))
        self._done.discard(key)
        if found:
            run = found[0]
            if run.info.status == "FINISHED":
                self._done.add(key)
            else:
                c.update_run(run.info.run_id, status="RUNNING")
                self._continued.add(key)
            if not run.data.params:
                self._need_params.add(key)
            self._runs[key] = run.info.run_id
        else:
            self._runs[key] = c.create_run(self.experiment_id, run_name=run_name, tags={
                "mlflow.parentRunId": self.parent_run_id, TRIAL_KEY_TAG: key, **tags}).info.run_id
            self._need_params.add(key)
        return None if key in self._done else self._runs[key]

    def _call(self, what: str, fn) -> None:
        """Run ``fn(client)`` on the tracker's own thread, in the order of the calls: Ray Tune
        calls the tracker from its event loop, which must not wait for the store (a model upload
        takes seconds). One thread per process, shared by every tracker: the copy of the tracker
        that a restored Tune experiment unpickles logs through it too, so ``flush`` waits for all."""
        _submit(lambda: self.outbox.send(what, fn))


class RunLogger(Callback):
    """``adautomix train --tracking-uri``: logs one run into the MLflow run ``run_id`` (created
    and closed by ``train_logged``): each epoch's metrics at step ``epoch``, the
    pictures, at the end ``metrics.json``, ``metrics.jsonl`` and the model (``ExportModel``
    writes it first when ``mlflow.log_model=true``). Hooks run on rank 0; picklable for Ray
    Train's workers. Epochs missed while the store was down are sent with the next one."""

    def __init__(self, uri: str, run_id: str, continued: bool = False):
        _secrets[mask(uri)] = uri
        self.run_id, self.continued = run_id, continued
        # Ray Train ships it to the workers in memory, the URI whole (it is never written)
        self.outbox = _Outbox(uri, "", mask_pickled=False)
        self._epochs: list[dict] = []

    def setup(self, trainer) -> None:
        self.outbox.where = str(trainer.out)
        if trainer.rank != 0:
            return
        self.outbox.send("the run's folder", lambda c: c.set_tag(
            self.run_id, TAG_PREFIX + "out_dir", str(Path(trainer.out).resolve())))
        if self.continued:  # the checkpoint's epochs that the run lacks (the store was down)
            history = [dict(r) for r in trainer.history]
            self.outbox.send("the epochs before the checkpoint", lambda c: self._backfill(c, history))

    def on_epoch(self, record: dict) -> None:
        self._epochs.append({k: v for k, v in record.items() if isinstance(v, (int, float))
                             and not isinstance(v, bool)})
        self.outbox.send("per-epoch metrics", self._log_epochs)

    def on_artifact(self, path: Path) -> None:
        self.outbox.send("a picture", lambda c: c.log_artifact(self.run_id, str(path), "pictures"))

    def on_end(self, summary: dict, trainer) -> None:
        run_dir = trainer.out

        def files(c) -> None:
            for name in ("config.yaml", "metrics.json", "metrics.jsonl", "eval.json"):
                if (run_dir / name).exists():  # eval.json: with train.final_eval
                    c.log_artifact(self.run_id, str(run_dir / name))
            if (run_dir / MODEL_FILE).exists():
                log_model(self.outbox.uri, self.run_id, run_dir)

        self.outbox.send("the run's files and model", files, force=True)

    def _backfill(self, c, history: list[dict]) -> None:
        from mlflow.entities import Metric

        logged = {m.step for m in c.get_metric_history(self.run_id, "top1")}
        now = _now_ms()
        for record in history:
            if int(record["epoch"]) not in logged:
                c.log_batch(self.run_id, metrics=[
                    Metric(k, float(v), now, int(record["epoch"])) for k, v in record.items()
                    if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool)])

    def _log_epochs(self, c) -> None:
        from mlflow.entities import Metric

        now = _now_ms()
        while self._epochs:  # one by one: a failure in between logs nothing twice
            record = self._epochs[0]
            c.log_batch(self.run_id, metrics=[Metric(k, float(v), now, int(record["epoch"]))
                                              for k, v in record.items() if k != "epoch"])
            self._epochs.pop(0)


def train_logged(cfg, uri: str, train_fn) -> dict:
    """``adautomix train`` with MLflow: one run in experiment ``train-<data>`` (model training),
    every resolved config value a param, ``RunLogger`` (and ``ExportModel`` with
    ``mlflow.log_model=true``) as the engine's callbacks of ``train_fn(callbacks)``; the run is
    closed FINISHED, FAILED, or KILLED (Ctrl-C). ``train.resume`` continues the latest run
    tagged with the same run directory (``adautomix.out_dir``), if there is one. A store that
    cannot be reached: one warning, training without MLflow."""
    from ..config import to_dict

    uri = resolve_tracking_uri(uri)
    out_dir = str(Path(cfg.out_dir).expanduser().resolve()) if cfg.out_dir else ""
    try:
        c = client(uri)
        name = f"train-{cfg.data.name}"
        exp = c.get_experiment_by_name(name)
        exp_id = exp.experiment_id if exp else c.create_experiment(
            name, tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING})
        run_id = _run_of_dir(c, exp_id, out_dir) if cfg.train.resume and out_dir else None
        continued = run_id is not None
        if continued:
            c.update_run(run_id, status="RUNNING")
            print(f"MLflow: continuing run {run_id}", flush=True)
        else:
            commit = git_commit()
            run_id = c.create_run(exp_id, run_name=f"{cfg.method.name}-{cfg.data.name} seed={cfg.seed}", tags={
                TAG_PREFIX + "method": cfg.method.name, TAG_PREFIX + "seed": str(cfg.seed),
                TAG_PREFIX + "dataset": cfg.data.name, TAG_PREFIX + "git_commit": commit,
                "mlflow.source.git.commit": commit,
                **({TAG_PREFIX + "out_dir": out_dir} if out_dir else {})}).info.run_id
            _log_params(c, run_id, flatten(to_dict(cfg)))
    except Exception as err:  # noqa: BLE001 - training goes on without MLflow
        warn(uri, err, "creating the run", cfg.out_dir or "the run directory")
        return train_fn([])
    callbacks = ([ExportModel()] if cfg.mlflow.log_model else []) + [RunLogger(uri, run_id, continued)]
    status = "FAILED"
    try:
        summary = train_fn(callbacks)
        status = "FINISHED"
        return summary
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
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


def _submit(fn) -> None:
    global _queue
    if _queue is None:
        from concurrent.futures import ThreadPoolExecutor

        import mlflow.entities  # noqa: F401 - imported here once, not by two threads at a time

        _queue = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow")
    _queue.submit(fn)


def _log_params(c, run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(k, "None" if v is None else str(v)) for k, v in params.items()]
    for i in range(0, len(items), _MAX_PARAMS_PER_CALL):
        c.log_batch(run_id, params=items[i:i + _MAX_PARAMS_PER_CALL])


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)
