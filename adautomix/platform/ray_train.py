"""Ray Train: the engine's ``Trainer`` on N data-parallel workers (Ray Train V2 ``TorchTrainer``).

Each worker builds the same ``Trainer`` as the in-process path, with its rank, its shard of every
global batch (``data/datasets.py``) and the step module wrapped in DistributedDataParallel, so the
gradients of everything that learns (classifier, and AdAutoMix's generator) are all-reduced in
the one backward of each step. The EMA teacher is updated from identical classifier weights on
every rank, so it stays identical without being broadcast. Only rank 0 writes the run directory.

Checkpoints: rank 0 saves ``out_dir/checkpoints/last.pt`` (the engine), and every rank then calls
``ray.train.report`` with rank 0 handing that folder to Ray. When a worker dies, Ray Train restarts
the group (``FailureConfig(max_failures=train.max_failures)``) and the new workers resume from
``ray.train.get_checkpoint()``, so the epoch count continues. ``--resume`` of a stopped run starts
from ``last.pt``.

Cluster: ``address`` (or ``RAY_ADDRESS``) joins a running cluster, otherwise a local one is started
with its dashboard on 127.0.0.1 and token authentication on. Inside a Ray job or task (a Tune
trial) the existing connection is used as it is. For several nodes, ``out_dir`` must be a path
every node sees (NFS or similar): Ray Train's checkpoint storage lives under it.

Ray Train: https://docs.ray.io/en/latest/train/train.html
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from pathlib import Path

from ..config import Config, ConfigError, from_dict, to_dict
from ..data.datasets import DataError
from ..engine import CHECKPOINT, Trainer, check_run_dir, summarize, write_config

# Ray Train's own checkpoint storage for one launch, inside the run directory; removed when the
# launch ends because it only duplicates checkpoints/last.pt.
RAY_STORAGE = "ray"


class RayTrainError(RuntimeError):
    """Ray cannot run the request (e.g. more workers than the cluster can place)."""


# ------------------------------------------------------------------------------------- workers


class _ReportCheckpoints:
    """Hands each checkpoint of the engine to Ray Train, so a restarted group can resume from it.

    Every rank must call ``ray.train.report`` the same number of times (it is a barrier); only
    rank 0 passes the checkpoint folder, which it has just written.
    """

    def __init__(self, trainer: Trainer):
        self.trainer = trainer

    def on_checkpoint(self, epoch: int, path: Path) -> None:
        import ray.train

        trainer = self.trainer
        checkpoint = None
        if trainer.rank == 0:
            checkpoint = ray.train.Checkpoint.from_directory(str(path.parent))
        metrics = {k: v for k, v in trainer.history[-1].items() if isinstance(v, (int, float))}
        if epoch == trainer.cfg.train.epochs:
            # Ray's Result holds the metrics of the last checkpoint: the run's summary goes there
            metrics["summary"] = summarize(trainer.history, trainer.step.headline)
        # delete_local_checkpoint_after_upload=False: the folder is the run's own checkpoints/
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=f"epoch_{epoch:05d}",
                         delete_local_checkpoint_after_upload=False)


def _torch_threads(cfg: Config) -> int:
    """``train.threads``, else the CPUs Ray gives each worker (at least 1)."""
    if cfg.train.threads:
        return cfg.train.threads
    return max(1, int(cfg.train.resources_per_worker.get("CPU", 1)))


def _worker_loop(config: dict) -> None:
    """What each Ray Train worker runs: build the Trainer, restore a checkpoint if any, fit."""
    import ray.train
    import ray.train.torch
    import torch
    from torch.nn.parallel import DistributedDataParallel

    cfg = from_dict(config["cfg"])
    # Ray Train's worker logging sends INFO records of every logger to the console (one of its
    # modules logs each report there); training progress is printed, so warnings are enough.
    logging.getLogger().setLevel(logging.WARNING)
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(_torch_threads(cfg))
    device = ray.train.torch.get_device() if cfg.train.use_gpu else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)

    def wrap(step: torch.nn.Module) -> torch.nn.Module:
        # AdAutoMix without L_ce never trains the one-hot head; DDP must then be told to look
        # for parameters without a gradient (a search it otherwise skips, and warns about).
        unused = cfg.method.name == "adautomix" and not cfg.method.use_ce
        return DistributedDataParallel(
            step, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=unused)

    user_callbacks = list(config.get("callbacks") or [])
    reporter = _ReportCheckpoints(None)
    trainer = Trainer(cfg, rank, world_size, wrap=wrap, callbacks=[reporter, *user_callbacks],
                      device=device, quiet=config.get("quiet", False))
    reporter.trainer = trainer

    restored = ray.train.get_checkpoint()  # set when Ray Train restarted the group after a failure
    if restored is not None:
        with restored.as_directory() as folder:
            trainer.load_checkpoint(Path(folder) / Path(CHECKPOINT).name)
    elif cfg.train.resume:
        trainer.load_checkpoint(Path(cfg.out_dir) / CHECKPOINT)
    for cb in user_callbacks:
        getattr(cb, "setup", lambda t: None)(trainer)
    trainer.fit()


# ------------------------------------------------------------------------------------- driver


def _connect(address: str | None) -> None:
    """Join ``address`` / ``RAY_ADDRESS``, or start a local cluster; keep Ray's logs quiet."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS") or None
    if ray.is_initialized():  # inside a Ray task or actor (a Tune trial), or a caller's own init
        connected = ray.get_runtime_context().gcs_address
        if address and ":" in address and not address.startswith("ray://") and \
                address.split(":")[-1] != connected.split(":")[-1]:
            raise RayTrainError(f"this process is already connected to the Ray cluster at "
                                f"{connected}, not {address}")
        return
    quiet = dict(
        log_to_driver=True,  # rank 0's progress lines come through the driver's stdout
        logging_level=logging.WARNING,
        # a job LoggingConfig also drops the "(RayTrainWorker pid=...)" prefix of worker lines
        logging_config=ray.LoggingConfig(encoding="TEXT", log_level="WARNING"),
    )
    # A new local cluster gets token authentication (Ray >= 2.5x, token in ~/.ray/auth_token,
    # made on first use); Ray then warns on every start that it is on. Keep it on, drop the notice.
    notice = logging.getLogger("ray._private.authentication.authentication_token_setup")
    level = notice.level
    notice.setLevel(logging.ERROR)
    try:
        if address is None:
            ray.init(address="local", include_dashboard=True, dashboard_host="127.0.0.1", **quiet)
        else:
            ray.init(address=address, **quiet)
    except ConnectionError as err:
        hint = ""
        if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
            hint = (". If the cluster uses token authentication, export RAY_AUTH_MODE=token and "
                    "give this machine the cluster's token (~/.ray/auth_token, or "
                    "RAY_AUTH_TOKEN_PATH=FILE, or RAY_AUTH_TOKEN)")
        raise RayTrainError(f"cannot reach the Ray cluster at {address}: {err}{hint}") from None
    finally:
        notice.setLevel(level)


def _worker_resources(cfg: Config) -> dict[str, float]:
    """Resources one worker asks for: what Ray Train's ScalingConfig asks for."""
    t = cfg.train
    need = {k: float(v) for k, v in t.resources_per_worker.items() if v > 0}
    if not t.resources_per_worker:
        need = {"GPU": 1.0} if t.use_gpu else {"CPU": 1.0}
    if t.use_gpu:
        need.setdefault("GPU", 1.0)
    return need


def check_cluster_fits(cfg: Config) -> None:
    """Raise ``RayTrainError`` now when the cluster's nodes cannot hold ``train.workers`` workers.

    Each worker must fit on one node; a placement that can never happen would otherwise wait for
    resources that never come. Clusters with an autoscaler are left to Ray Train (it checks the
    autoscaler's limits and times out the placement itself).
    """
    import ray

    if _has_autoscaler():
        return
    need = _worker_resources(cfg)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    per_node = []
    for node in nodes:
        have = node.get("Resources", {})
        per_node.append(min((math.floor(have.get(k, 0.0) / v + 1e-9) for k, v in need.items()),
                            default=cfg.train.workers))
    if sum(per_node) < cfg.train.workers:
        def show(res: dict) -> str:
            return "{" + ", ".join(f"{k}: {v:g}" for k, v in res.items()) + "}"

        have = ", ".join(show({k: n["Resources"].get(k, 0) for k in need}) for n in nodes)
        raise RayTrainError(
            f"train.workers={cfg.train.workers} cannot be placed: each worker needs {show(need)} "
            f"on one node, and the cluster's {len(nodes)} node(s) ({have}) hold "
            f"{sum(per_node)} such worker(s). Lower train.workers, ask for less per worker "
            '(e.g. train.resources_per_worker={"CPU": 0.5}), or add nodes')


def _has_autoscaler() -> bool:
    try:  # the same (private) call Ray Train makes before placing workers
        from ray._private.state import state

        return bool(state.get_max_resources_from_cluster_config())
    except Exception:  # an older or newer Ray without it: check the nodes that are up
        return False


def _bad_input(err: Exception) -> Exception | None:
    """A worker's ConfigError / DataError inside Ray Train's failure, if that is what it was."""
    for failure in (getattr(err, "worker_failures", None) or {}).values():
        if isinstance(failure, (DataError, ConfigError)):
            return failure
    return None


def _remove_if_empty(folder: Path) -> None:
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def train_with_ray(cfg: Config, address: str | None = None, callbacks: list | None = None,
                   quiet: bool = False) -> dict:
    """Train ``cfg`` with ``cfg.train.workers`` Ray Train workers; returns the summary.

    Args:
        cfg: validated config with ``train.workers >= 1``; the global batch
            ``train.batch_size`` is split evenly: each worker takes ``batch_size / workers``.
        address: Ray cluster to join (``host:port``, ``auto``, ``ray://...``); default
            ``RAY_ADDRESS``, else a new local cluster.
        callbacks: picklable objects given to the Trainer on every worker (engine callbacks:
            ``on_epoch``, ``on_artifact``, ``on_end`` run on rank 0 only; ``on_checkpoint`` and
            ``setup(trainer)`` on every rank).
        quiet: no progress lines.

    Returns:
        The summary written to ``metrics.json`` (as ``engine.train`` returns it).
    """
    if cfg.train.workers < 1:
        raise ConfigError(f"train.workers={cfg.train.workers}: Ray Train needs at least 1 worker")
    if cfg.train.sync_bn and cfg.train.workers > 1 and not cfg.train.use_gpu:
        raise ConfigError("train.sync_bn=True is not allowed without train.use_gpu=true: PyTorch's "
                          "SyncBatchNorm runs on CUDA only (CPU workers normalise over their shard)")
    cfg = from_dict(to_dict(cfg))  # a copy: out_dir is made absolute for the workers
    cfg.out_dir = str(Path(cfg.out_dir).expanduser().resolve())
    out = check_run_dir(cfg)

    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")  # the default from Ray 2.5x; older: opt in
    # Ray Train copies these two from the driver to its workers. Print patch off: it would send
    # each progress line through a logger as well, so the console showed it twice. Preemption
    # watcher off: its actor makes Ray core print an error line at every start; on clusters of
    # preemptible nodes export RAY_TRAIN_ENABLE_PREEMPTION_WATCHER=1 (preemptions then restart
    # from the last checkpoint without counting against train.max_failures).
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    _connect(address)
    check_cluster_fits(cfg)
    write_config(cfg)

    t = cfg.train
    launch = time.strftime("%Y%m%d-%H%M%S")
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={"cfg": to_dict(cfg), "callbacks": list(callbacks or []), "quiet": quiet},
        torch_config=TorchConfig(backend="nccl" if t.use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(
            num_workers=t.workers, use_gpu=t.use_gpu,
            resources_per_worker=dict(t.resources_per_worker) or None),
        run_config=ray.train.RunConfig(
            name=launch, storage_path=str(out / RAY_STORAGE),
            failure_config=ray.train.FailureConfig(max_failures=t.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
            logging_config=ray.train.LoggingConfig(log_level="WARNING")),
    )
    try:
        result = trainer.fit()
    except ray.train.TrainingFailedError as err:
        bad = _bad_input(err)
        if bad is not None:  # e.g. data missing on the workers: undo what this launch wrote
            if not cfg.train.resume and not (out / "metrics.jsonl").exists():
                (out / "config.yaml").unlink(missing_ok=True)
            raise bad.with_traceback(None) from None
        hint = (f"; {out / CHECKPOINT} holds the last checkpoint: add --resume to continue"
                if (out / CHECKPOINT).exists() else "")
        raise RayTrainError(f"training failed (train.max_failures={t.max_failures} restarts "
                            f"allowed){hint}.\n{err}") from err
    finally:
        # Ray's copies of the checkpoints serve restarts within this launch only; the run's own
        # checkpoint is checkpoints/last.pt (what --resume reads)
        shutil.rmtree(out / RAY_STORAGE / launch, ignore_errors=True)
        _remove_if_empty(out / RAY_STORAGE)
        _remove_if_empty(out)
    summary = (result.metrics or {}).get("summary")
    if summary is None:  # nothing was left to train (a --resume of a finished run)
        summary = json.loads((out / "metrics.json").read_text())
    return summary
