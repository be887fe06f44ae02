"""Ray Train: the engine's ``Trainer`` on N data-parallel workers (Ray Train V2 ``TorchTrainer``).
The driver joins (or starts) the cluster and launches the run; each worker trains its shard of
every global batch under DDP and reports each epoch. Batch split, failure budgets, storage, token
authentication, shared ``out_dir``: docs/ray-train.md."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import secrets
import shutil
import socket
import sys
from pathlib import Path

from .. import engine, stopping
from ..checkpoints import history
from ..config import Config, ConfigError
from ..data.datasets import DataError
from ..models.pretrained import InitError
from ..runlock import RunLock, check_launch_id, write_launch_id
from . import ray_private
from .mlflow_store import is_local_store, mask

# Ray Train's storage inside the run directory, under a fixed run name: Ray Train itself restores
# a second launch of the same run
RAY_STORAGE, RUN_NAME = "ray", "train"
MLFLOW_ENV = "MLFLOW_TRACKING_*"  # MLflow's URI, credentials and TLS settings: every worker gets the driver's
# A worker's errors that the driver raises as one line: bad input (what the launch wrote is undone),
# and a run that stopped itself (a full disk, a non-finite loss)
BAD_INPUT = (DataError, ConfigError, engine.CheckpointError, InitError)
STOPPED = (engine.CheckpointWriteError, engine.NonFiniteLossError)


class RayTrainError(RuntimeError):
    """Ray cannot run the request (e.g. more workers than the cluster can place)."""


def forwarded_env(names: list[str] | tuple[str, ...] = ()) -> dict[str, str]:
    """The driver's variables (those set) that every worker gets: ``MLFLOW_ENV`` and ``names``
    (``train.env_vars``: a name, or a prefix ending in ``*`` such as ``NCCL_*``)."""
    names = (MLFLOW_ENV, *names)
    prefixes, exact = tuple(n[:-1] for n in names if n.endswith("*")), {n for n in names if not n.endswith("*")}
    return {k: v for k, v in os.environ.items() if k in exact or (prefixes and k.startswith(prefixes))}


class ReportEpochs(engine.Callback):
    """The one route of a run's epoch records to Ray (Tune's table, ASHA, the study's tracker),
    with the checkpoint when one was written. ``to="train"`` on Ray Train workers (the report is
    collective: every rank calls it, rank 0 hands over its checkpoint; in a Tune trial Ray's
    ``TuneReportCallback`` passes it on); ``to="tune"`` when the Tune trial process trains."""

    def __init__(self, to: str = "train"):
        self.to = to

    def setup(self, trainer: engine.Trainer) -> None:
        if trainer.history and trainer.epoch >= trainer.cfg.train.epochs:
            # restored after the last epoch (Ray missed the end of the launch): report it again, train nothing
            self._report(trainer, None)

    def on_epoch_end(self, trainer: engine.Trainer, checkpoint: Path | None) -> None:
        self._report(trainer, checkpoint)

    def _report(self, trainer: engine.Trainer, checkpoint: Path | None) -> None:
        metrics = dict(trainer.history[-1])  # the epoch record: plain numbers (engine.EpochRecord)
        if self.to == "tune":
            from ray import tune

            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(checkpoint.parent))
                        if checkpoint is not None else None)
            return
        import ray.train

        if checkpoint is None or trainer.rank != 0:
            ray.train.report(metrics)
            return
        # delete_local_checkpoint_after_upload=False: the folder is the run's own checkpoints/
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(str(checkpoint.parent)),
                         checkpoint_dir_name=f"epoch_{trainer.epoch:05d}",
                         delete_local_checkpoint_after_upload=False)


def _worker_loop(config: dict) -> None:
    """What each Ray Train worker runs: build the Trainer, restore a checkpoint if any, fit."""
    import ray.train
    import ray.train.torch
    import torch
    from torch.nn.parallel import DistributedDataParallel

    cfg: Config = config["cfg"]
    # Ray Train's worker logging sends every logger's INFO records to the console: warnings only
    logging.getLogger().setLevel(logging.WARNING)
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    # train.threads, else the CPUs Ray gives each worker (at least 1)
    torch.set_num_threads(cfg.train.threads or max(1, int(cfg.train.resources_per_worker.get("CPU", 1))))
    device = ray.train.torch.get_device() if cfg.train.use_gpu else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)

    def wrap(step: torch.nn.Module) -> torch.nn.Module:
        # AdAutoMix without L_ce never trains the one-hot head: DDP must look for unused parameters
        unused = cfg.method.name == "adautomix" and not cfg.method.use_ce
        return DistributedDataParallel(
            step, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=unused)

    callbacks = [ReportEpochs("train"), *config["callbacks"]]
    try:
        check_launch_id(Path(cfg.out_dir), config["launch"])  # a worker on a node without out_dir stops
        trainer = engine.Trainer(cfg, rank, world_size, wrap=wrap, callbacks=callbacks, device=device,
                                 quiet=config["quiet"])
        # Ray's checkpoint: the group restarted after a failure, or the run launched again
        restore(trainer, ray.train.get_checkpoint(), cfg.train.resume)
        trainer.fit()
    except BAD_INPUT + STOPPED:  # one line on the driver; Ray Train would log the worker's traceback first
        ray_private.mute_worker_tracebacks()
        raise


def restore(trainer: engine.Trainer, checkpoint, resume: bool) -> None:
    """Start from Ray's ``checkpoint`` of the run (or the run's own ``last.pt`` when that is
    newer) when Ray has one, else from the run's own when ``resume``."""
    own = Path(trainer.cfg.out_dir) / engine.CHECKPOINT
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            trainer.load_checkpoint(engine.newest_checkpoint(Path(folder) / own.name, own))
    elif resume:
        trainer.resume()


def use_token_auth() -> None:
    """``RAY_AUTH_MODE=token`` for every cluster this process starts or joins, unless the user set
    a mode; an already imported Ray re-reads it (as ``ray.init`` does for a new local cluster)."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    os.environ["RAY_AUTH_MODE"] = "token"
    if "ray" in sys.modules:
        ray_private.refresh_auth_mode()


def secure_token_file(create: bool) -> Path | None:
    """Ray's token file (``RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token``), its owner's only
    (0600): made so with ``create`` (Ray would use the umask), tightened when this user's. Returns
    the path; None when the token comes from ``RAY_AUTH_TOKEN``."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return None
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token").expanduser()
    if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
        return path
    if create and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL  # FileExistsError: made meanwhile by another process
        with contextlib.suppress(FileExistsError), os.fdopen(os.open(path, flags, 0o600), "w") as fh:
            fh.write(secrets.token_hex(32))  # Ray's own format: 256 random bits in hex
    if path.exists() and path.stat().st_uid == os.getuid() and path.stat().st_mode & 0o077:
        path.chmod(0o600)
    return path


def connect(address: str | None, env_vars: list[str] | tuple[str, ...] = ()) -> bool:
    """Join ``address`` / ``RAY_ADDRESS``, else start a local cluster (dashboard on 127.0.0.1),
    with token authentication, quiet logs, and ``forwarded_env(env_vars)`` for every task and
    actor. Returns whether a local cluster was started (the caller ``ray.shutdown()``s it)."""
    use_token_auth()
    import ray

    address = address or os.environ.get("RAY_ADDRESS") or None
    if ray.is_initialized():  # inside a Ray task or actor (a Tune trial), or a caller's own init
        connected = ray.get_runtime_context().gcs_address
        if address and ":" in address and not address.startswith("ray://") and \
                address.split(":")[-1] != connected.split(":")[-1]:
            raise RayTrainError(f"this process is already connected to the Ray cluster at "
                                f"{connected}, not {address}")
        return False
    # rank 0's progress lines come through the driver's stdout; the workers log warnings only
    quiet = dict(log_to_driver=True, logging_level=logging.WARNING,
                 logging_config=ray.LoggingConfig(encoding="TEXT", log_level="WARNING"))
    secure_token_file(create=address is None)
    env = forwarded_env(env_vars)
    if address is None:
        # Ray Train V2 frees the workers of a dead controller (a trial ASHA stopped) through the
        # state API, found by auto-detection, which fails beside a second cluster on the machine
        # ("multiple active Ray instances"; the CPUs are never freed): name this one's for it
        port = _free_port(8265)
        quiet.update(include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=port)
        env["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{port}"
    elif ":" in address and "://" not in address:
        # the same for a cluster joined by its GCS address: Ray's state API finds it there
        env["RAY_ADDRESS"] = address
    if env:
        quiet["runtime_env"] = {"env_vars": env}
    try:  # without Ray's notice, at every start, that token authentication is on
        with ray_private.token_notice_muted():
            ray.init(address=address or "local", **quiet)
        stopping.reinstall()  # ray.init took SIGTERM over
    except (ConnectionError, ray.exceptions.AuthenticationError) as err:
        hint = ""
        if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
            hint = (". If the cluster uses token authentication, export RAY_AUTH_MODE=token and "
                    "give this machine the cluster's token (~/.ray/auth_token, or "
                    "RAY_AUTH_TOKEN_PATH=FILE, or RAY_AUTH_TOKEN)")
        raise RayTrainError(f"cannot reach the Ray cluster at {address}: {err}{hint}") from None
    return address is None


def _free_port(preferred: int) -> int:
    """``preferred`` when nothing listens there, else a free port on 127.0.0.1."""
    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise OSError("no free port on 127.0.0.1")


def _worker_resources(cfg: Config) -> dict[str, float]:
    """Resources one worker asks for: what Ray Train's ScalingConfig asks for."""
    t = cfg.train
    if not t.resources_per_worker:
        return {"GPU": 1.0} if t.use_gpu else {"CPU": 1.0}
    need = {k: float(v) for k, v in t.resources_per_worker.items() if v > 0}
    return {**need, "GPU": need.get("GPU", 1.0)} if t.use_gpu else need


def check_cluster_fits(cfg: Config) -> None:
    """Raise ``RayTrainError`` now when the nodes cannot hold ``train.workers`` workers (each on
    one node), instead of waiting for resources that never come. A cluster with an autoscaler is
    left to Ray Train, which checks its limits and times out the placement itself."""
    import ray

    if ray_private.has_autoscaler():
        return
    need = _worker_resources(cfg)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    per_node = [min((math.floor(n.get("Resources", {}).get(k, 0.0) / v + 1e-9) for k, v in need.items()),
                    default=cfg.train.workers) for n in nodes]  # how many workers each node holds
    if sum(per_node) < cfg.train.workers:
        def show(res: dict) -> str:
            return "{" + ", ".join(f"{k}: {v:g}" for k, v in res.items()) + "}"

        have = ", ".join(show({k: n["Resources"].get(k, 0) for k in need}) for n in nodes)
        raise RayTrainError(
            f"train.workers={cfg.train.workers} cannot be placed: each worker needs {show(need)} "
            f"on one node, and the cluster's {len(nodes)} node(s) ({have}) hold "
            f"{sum(per_node)} such worker(s). Lower train.workers, ask for less per worker "
            '(e.g. train.resources_per_worker={"CPU": 0.5}), or add nodes')


def check_store_reachable(uri: str, cfg: Config, address: str | None) -> None:
    """Refuse a tracking store on the driver's disk (SQLite, a folder) on a cluster of several
    nodes: rank 0 logs from any node. Connects to the cluster (``train_with_ray`` reuses it)."""
    if not is_local_store(uri):
        return
    connect(address, cfg.train.env_vars)
    import ray

    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    if nodes > 1:
        raise ConfigError(
            f"--tracking-uri {mask(uri)} is a store on this machine's disk, and the Ray cluster has "
            f"{nodes} nodes: rank 0 logs from whichever node it runs on. Give an MLflow tracking "
            "server that every node reaches (--tracking-uri http://HOST:5000, started with "
            "`mlflow server --host 0.0.0.0 ...`), or train with train.workers=0")


def _worker_error(err: Exception, kinds) -> Exception | None:
    """The first of the workers' errors in Ray Train's failure ``err`` that is one of ``kinds``."""
    return next((f for f in (getattr(err, "worker_failures", None) or {}).values() if isinstance(f, kinds)), None)


def train_with_ray(cfg: Config, address: str | None = None, callbacks: list[engine.Callback] | None = None,
                   quiet: bool = False, *, run_callbacks: list | None = None, keep_storage: bool = False) -> dict:
    """Train ``cfg`` (``train.workers >= 1``, each taking ``batch_size / workers`` of the global
    batch) on Ray Train workers; returns the summary written to ``metrics.json``.

    Args:
        address: the cluster to join (``host:port``, ``auto``, ``ray://...``); default
            ``RAY_ADDRESS``, else a new local cluster.
        callbacks: engine ``Callback`` objects for the Trainer on every worker (picklable).
        run_callbacks: Ray Train callbacks (Ray's ``TuneReportCallback`` in a Tune trial).
        keep_storage: keep Ray Train's storage (``out_dir/ray/train``) of a finished run, so that
            a restored study does not train its trial again; else removed (it copies ``last.pt``).
    """
    if cfg.train.workers < 1:
        raise ValueError(f"train.workers={cfg.train.workers}: Ray Train needs at least 1 worker")
    cfg = dataclasses.replace(cfg, out_dir=str(Path(cfg.out_dir).expanduser().resolve()))  # for the workers
    with RunLock(cfg.out_dir):  # the driver's; its workers write under it
        out = engine.check_run_dir(cfg)
        # what Ray Train copies from the driver: V2 (the default from Ray 2.5x), no print patch (the console
        # showed each line twice), the start timeout of each attempt to place the worker group
        os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
        os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
        os.environ["RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"] = f"{cfg.train.worker_start_timeout_s:g}"
        connect(address, cfg.train.env_vars)  # token authentication before Ray is imported
        import ray.train

        check_cluster_fits(cfg)
        engine.write_config(cfg)
        trainer = _torch_trainer(cfg, list(callbacks or []), quiet, list(run_callbacks or []),
                                 launch=write_launch_id(out))
        try:
            trainer.fit()
        except SystemExit:  # Ctrl-C: Ray Train's handler stopped the workers and exits
            raise KeyboardInterrupt from None
        except ray.train.TrainingFailedError as err:
            _raise_failure(err, cfg, address)
        if not keep_storage:
            shutil.rmtree(out / RAY_STORAGE, ignore_errors=True)
        return json.loads((out / "metrics.json").read_text())


def _torch_trainer(cfg: Config, callbacks: list[engine.Callback], quiet: bool, run_callbacks: list, launch: str):
    """Ray Train's ``TorchTrainer`` of the run: its workers, budgets, storage and environment."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    t = cfg.train
    return TorchTrainer(
        _worker_loop,
        train_loop_config={"cfg": cfg, "callbacks": callbacks, "quiet": quiet, "launch": launch},
        torch_config=TorchConfig(backend="nccl" if t.use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(
            num_workers=t.workers, use_gpu=t.use_gpu,
            resources_per_worker=dict(t.resources_per_worker) or None),
        run_config=ray.train.RunConfig(
            name=RUN_NAME, storage_path=str(Path(cfg.out_dir) / RAY_STORAGE), callbacks=run_callbacks,
            # a worker's failure, a node's preemption, a worker group not (re)placed in time
            failure_config=ray.train.FailureConfig(
                max_failures=t.max_failures, max_preemption_failures=t.max_preemption_failures,
                controller_failure_limit=t.controller_failure_limit),
            worker_runtime_env={"env_vars": forwarded_env(t.env_vars)},
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
            logging_config=ray.train.LoggingConfig(log_level="WARNING")),
    )


def _raise_failure(err: Exception, cfg: Config, address: str | None) -> None:
    """Raise what Ray Train's failure ``err`` means, in one line where it can: a worker's bad
    input (this launch's files undone), a full disk, a group never placed, or how to continue."""
    out, t = Path(cfg.out_dir), cfg.train
    bad = _worker_error(err, BAD_INPUT)
    if bad is not None:  # e.g. data missing on the workers: undo what this launch wrote
        if not t.resume and not (out / "metrics.jsonl").exists():
            (out / "config.yaml").unlink(missing_ok=True)
            shutil.rmtree(out / RAY_STORAGE, ignore_errors=True)
            if out.is_dir() and not any(out.iterdir()):
                out.rmdir()
        raise bad.with_traceback(None) from None
    written = _worker_error(err, STOPPED)
    if written is not None:  # the disk is full, the loss non-finite: the message says it all
        raise written.with_traceback(None) from None
    hint = ""
    if history(out / engine.CHECKPOINT):
        hint = (f"; {out / engine.CHECKPOINT} holds the last checkpoint, continue with: adautomix train "
                f"--config {out / 'config.yaml'} --resume" + (f" --address {address}" if address else ""))
    if ray_private.is_start_timeout(getattr(err, "controller_failure", None)):  # the cause, what to do
        raise RayTrainError(
            f"the worker group could not be placed: {t.controller_failure_limit + 1} starts "
            f"waited train.worker_start_timeout_s={t.worker_start_timeout_s:g} s each for "
            f"{t.workers} worker(s) of {_worker_resources(cfg)} (a node lost, on a cluster "
            f"without an autoscaler){hint}") from None
    raise RayTrainError(f"training failed (train.max_failures={t.max_failures} restarts "
                        f"allowed){hint}.\n{err}") from err
