"""The training engine: one loop for every method, in one process or on each Ray Train worker.

A method is a *step module*: ``forward(x, y) -> (loss, parts)`` holds everything that needs
gradients (so DDP can wrap it, one forward per backward), ``after_step`` does the post-optimizer
work (the EMA teacher), ``eval_heads`` names the heads to evaluate. The engine owns the data,
optimizer, cosine schedule, evaluation, checkpoints and the run directory.

Run directory (``cfg.out_dir``): ``config.yaml``, ``metrics.jsonl`` (one line per epoch),
``metrics.json`` (summary), ``checkpoints/last.pt`` and the ``train.keep_checkpoints - 1`` before
it (``checkpoints.py``), ``pictures/`` (mixed samples). One process writes it: ``train`` holds its
lock (``runlock.py``).

A checkpoint is written at the end of every ``train.ckpt_every`` epochs, and inside an epoch every
``train.ckpt_every_minutes`` and when a stop is requested (SIGTERM, ``stopping.py``). One written
inside an epoch also holds the epoch's position: the batches done, the loader's and the step's
random generators and the epoch's running sums, so the run resumes at the next batch and ends
with the weights of a run that was never stopped.
"""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn
import yaml

from . import accel, checkpoints, stopping
from .checkpoints import CHECKPOINT, CheckpointError
from .config import Config, ConfigError, to_dict
from .data.datasets import build_loaders
from .data.loaders import TensorLoader
from .methods.registry import METHODS
from .methods.teacher import PUBLISHED_ITERATIONS, PUBLISHED_MOMENTUM, scaled_schedule
from .metrics import ProgressPrinter, top1_counts
from .runlock import RunLock


class RunExistsError(RuntimeError):
    """``out_dir`` already holds a run and ``train.resume`` is off."""


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (e.g. the disk is full); the previous one is intact."""


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite (past the generator's guards): the run stops before that
    step's update, and its last checkpoint, written from finite weights, is kept."""


# One epoch's record: ``epoch`` (1-based) and the epoch's numbers (losses, ``lr``, ``top1`` and
# ``top1_<head>``, ``top1_median_last10``, ``train_img_per_s``, ``epoch_seconds``, and in the last
# epoch the ``eval_*`` numbers of ``train.final_eval``), all plain numbers. The engine writes it as
# a line of ``metrics.jsonl`` and hands it to the callbacks; Ray, Tune and MLflow receive it as is.
EpochRecord = dict[str, float]


def numeric(values: dict) -> EpochRecord:
    """The plain numbers in ``values`` (booleans are not numbers here): the epoch record in a
    result that Ray Tune has added its own entries to."""
    return {k: v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class Callback:
    """The engine's hooks; a logger or reporter overrides the ones it needs (the rest do nothing).

    Under Ray Train every worker runs the loop: ``setup`` and ``on_epoch_end`` are called on every
    rank (Ray Train's ``report`` must be called by all of them), the others on rank 0 only.
    """

    def setup(self, trainer: Trainer) -> None:
        """Every rank, once per launch, before the first epoch (after a checkpoint was restored)."""

    def on_epoch(self, record: EpochRecord) -> None:
        """Rank 0: the epoch's record, just written to ``metrics.jsonl``."""

    def on_artifact(self, path: Path) -> None:
        """Rank 0: a file written into the run directory (a mixed-sample picture)."""

    def on_epoch_end(self, trainer: Trainer, checkpoint: Path | None) -> None:
        """Every rank, after each epoch (its record is ``trainer.history[-1]``); ``checkpoint``
        is the file rank 0 has just written (every ``train.ckpt_every`` epochs and at the end),
        else None."""

    def on_end(self, summary: dict, trainer: Trainer) -> None:
        """Rank 0: the run is done and ``metrics.json`` written."""


def select_device(cfg: Config) -> torch.device:
    """``cuda`` (the current device) when asked for or when ``auto`` finds one, else ``cpu``."""
    if cfg.train.device == "cpu" or (cfg.train.device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("train.device='cuda' is not allowed: torch sees no CUDA device "
                          "(use auto or cpu)")
    return torch.device("cuda", torch.cuda.current_device())


def build_step(cfg: Config, num_classes: int) -> nn.Module:
    """The step module of ``cfg.method`` around a fresh classifier (see ``methods.registry``)."""
    return METHODS[cfg.method.name].builder()(cfg, num_classes)


# model.zero_init_residual=auto: zeroed residual branches (OpenMixup's ResNets) only for runs of at
# least this many optimizer steps. Measured with vanilla ResNet-18 x0.25 (README, "Zero-initialised
# residual branches"): with the zeros, 88 steps of digits reach 43 % against 97 % without, 220
# steps still trail by 2-5 points; 2,120 steps of Fashion-MNIST end equal (88.4 / 88.3 %). Every
# published schedule is >= 37,500 steps, so presets get the published value either way.
ZERO_INIT_MIN_ITERATIONS = 2_000


def resolve_schedules(cfg: Config, total_iterations: int) -> tuple[Config, list[str]]:
    """The settings that depend on the run's length (the EMA teacher's momentum schedule,
    ``model.zero_init_residual=auto``), resolved: returns a new ``Config`` with them filled
    (``cfg`` itself is never changed) and one line per value resolved, printed at the start of
    training."""
    notes = []
    if cfg.model.zero_init_residual == "auto":
        on = total_iterations >= ZERO_INIT_MIN_ITERATIONS
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, zero_init_residual=on))
        notes.append(f"zero-initialised residual branches: {'on' if on else 'off'} ({total_iterations} "
                     f"iterations {'>=' if on else '<'} {ZERO_INIT_MIN_ITERATIONS}; "
                     f"model.zero_init_residual=true|false sets it)")
    m = cfg.method
    if "teacher" not in METHODS[m.name].needs or (m.momentum is not None and m.momentum_end is not None):
        return cfg, notes
    start, end = scaled_schedule(total_iterations, m.ema_schedule)
    how = ("the published schedule" if (start, end) == PUBLISHED_MOMENTUM else
           f"scaled to {total_iterations} iterations: the published 0.999 -> 0.999999 is made "
           f"for runs of >= {PUBLISHED_ITERATIONS} (method.ema_schedule=published keeps it)")
    momentum = start if m.momentum is None else m.momentum
    momentum_end = max(end, momentum) if m.momentum_end is None else m.momentum_end
    if momentum > momentum_end:
        raise ConfigError(f"method.momentum={momentum} is not allowed: it must not exceed "
                          f"method.momentum_end ({momentum_end})")
    method = dataclasses.replace(m, momentum=momentum, momentum_end=momentum_end)
    return (dataclasses.replace(cfg, method=method),
            notes + [f"EMA teacher momentum {momentum:.6g} -> {momentum_end:.6g} ({how})"])


def param_groups(cfg: Config, step: nn.Module) -> tuple[list[dict], list[float]]:
    """The optimizer's parameter groups and each one's cosine floor (its min lr / its lr): one
    group, or with ``train.generator_lr`` the learned mask generator in a group of its own (the
    published fine-grained, Tiny-ImageNet, ImageNet and Swin-T configs give it its own lr)."""
    t = cfg.train
    params = [p for p in step.parameters() if p.requires_grad]
    generator = getattr(step, "generator", None)
    if t.generator_lr is None or generator is None:
        return [{"params": params}], [t.min_lr / t.lr]
    own = {id(p) for p in generator.parameters()}
    floor = t.min_lr / t.lr if t.generator_min_lr is None else t.generator_min_lr / t.generator_lr
    return ([{"params": [p for p in params if id(p) not in own]},
             {"params": [p for p in params if id(p) in own], "lr": t.generator_lr}], [t.min_lr / t.lr, floor])


def build_optimizer(cfg: Config, params) -> torch.optim.Optimizer:
    t = cfg.train
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay,
                               nesterov=t.nesterov and t.momentum > 0)
    return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)


class WarmupCosine:
    """LR factor at iteration ``i``: linear warmup, then cosine from 1 to ``min_lr / lr``."""

    def __init__(self, total: int, warmup: int, floor: float):
        self.total, self.warmup, self.floor = total, warmup, floor

    def __call__(self, i: int) -> float:
        if i < self.warmup:
            return (i + 1) / self.warmup
        progress = (i - self.warmup) / max(1, self.total - self.warmup)
        return self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def step_generator(seed: int, epoch: int, rank: int) -> torch.Generator:
    """The CPU generator of a step's random draws (λ, partners, masks) in ``epoch`` on ``rank``:
    a stream of its own for every seed, epoch and data-parallel rank."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 64 + rank + 1)


def _rank_mean(values: dict[str, float], device: torch.device) -> dict[str, float]:
    if not (dist.is_available() and dist.is_initialized()) or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return dict(zip(keys, (t / dist.get_world_size()).tolist()))


def _rank_sum(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t


def check_run_dir(cfg: Config) -> Path:
    """Refuse to overwrite a run unless resuming; refuse to resume what has no checkpoint."""
    out = Path(cfg.out_dir)
    if not cfg.train.resume and (out / "metrics.jsonl").exists():
        raise RunExistsError(f"out_dir {out} already holds a run; add --resume to continue it "
                             "or choose another out_dir")
    if cfg.train.resume and not checkpoints.history(out / CHECKPOINT):
        raise RunExistsError(f"train.resume: no checkpoint at {out / CHECKPOINT}")
    return out


def write_config(cfg: Config) -> None:
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


class Trainer:
    """Trains ``cfg`` on this process's shard; rank 0 writes the run directory.

    Args:
        cfg: validated config.
        rank, world_size: data-parallel position (1 process: 0, 1).
        wrap: turns the step module into what is called each step (DDP under Ray Train).
        callbacks: ``Callback`` objects (see there for which hook runs on which rank).
    """

    def __init__(self, cfg: Config, rank: int = 0, world_size: int = 1,
                 wrap: Callable[[nn.Module], nn.Module] | None = None,
                 callbacks: list[Callback] | None = None,
                 device: torch.device | None = None, quiet: bool = False):
        self.cfg, self.rank, self.world_size = cfg, rank, world_size
        self.callbacks = callbacks or []
        self.out = Path(cfg.out_dir)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        self.device = device or select_device(cfg)
        torch.manual_seed(cfg.seed)
        self.train_loader, self.test_loader, self.spec = build_loaders(cfg, self.device, rank, world_size)
        self.iters_per_epoch = len(self.train_loader)
        self.total_iterations = cfg.train.epochs * self.iters_per_epoch
        cfg, self.notes = resolve_schedules(cfg, self.total_iterations)
        self.cfg = cfg  # with the values resolved from the run's length
        if cfg.model.init and not cfg.train.resume:
            self.notes.append(f"model.init: the backbone starts from {cfg.model.init}; heads start afresh")
        self.switches = accel.resolve(cfg.train, self.device)  # bf16, channels_last, compile
        self.step = build_step(cfg, self.spec.num_classes).to(self.device)
        if self.switches["channels_last"]:
            self.step.to(memory_format=torch.channels_last)
        if cfg.train.sync_bn and world_size > 1:
            self.step = nn.SyncBatchNorm.convert_sync_batchnorm(self.step)
        compiled = accel.compile_step(self.step) if self.switches["compile"] else None
        if self.device.type == "cuda" or any(self.switches.values()):
            self.notes.append(accel.describe(self.switches, compiled,
                                             isinstance(self.train_loader, TensorLoader)
                                             and self.train_loader.device.type != "cpu"))
        self.model = wrap(self.step) if wrap else self.step
        groups, floors = param_groups(cfg, self.step)
        self.params = [p for g in groups for p in g["params"]]
        self.optimizer = build_optimizer(cfg, groups)
        t = cfg.train
        schedules = [WarmupCosine(self.total_iterations, t.warmup_epochs * self.iters_per_epoch, floor)
                     for floor in floors]
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, schedules[0] if len(schedules) == 1 else schedules)
        self.epoch, self.iteration = 0, 0
        self.history: list[dict] = []
        self.within: dict | None = None  # the epoch's position when a checkpoint was taken inside it
        self.saved_at = time.monotonic()
        self.progress = ProgressPrinter(cfg.train.epochs, enabled=rank == 0 and not quiet)
        self.autocast = dict(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.switches["bf16"])
        self.memory_format = torch.channels_last if self.switches["channels_last"] else torch.contiguous_format
        self.inject_nonfinite = parse_injection(cfg.train.inject_nonfinite)

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self, within: dict | None = None) -> dict:
        """Tensors and plain Python values only: ``torch.load(weights_only=True)`` reads it back.
        ``within``: the position inside the epoch in progress (``train_epoch``), else None."""
        state = {"step": self.step.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "epoch": self.epoch,
                 "iteration": self.iteration, "rng": torch.get_rng_state(),
                 "history": self.history, "config": to_dict(self.cfg)}
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        if within is not None:
            state["within_epoch"] = within
        return state

    def load_state_dict(self, state: dict) -> None:
        self.step.load_state_dict(state["step"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.iteration = state["epoch"], state["iteration"]
        torch.set_rng_state(state["rng"].cpu())
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), self.device)
        self.history = list(state["history"])
        self.within = state.get("within_epoch")

    def _nonfinite(self, loss: torch.Tensor, parts: dict, batch_index: int) -> NonFiniteLossError:
        """The one-line error for a non-finite loss at this step: the epoch, the iteration and
        every non-finite term (the step's parts in their order, then the total)."""
        values = {k: float(v.detach()) for k, v in {**parts, "loss": loss}.items()
                  if torch.is_tensor(v) and v.numel() == 1}
        terms = {k: v for k, v in values.items() if not math.isfinite(v)}
        named = ", ".join(f"{k} = {v}" for k, v in terms.items())
        kept = self.out / CHECKPOINT
        last = (f"{kept} (epoch {int(read_checkpoint(kept)['epoch'])}) is kept" if kept.exists()
                else "no checkpoint had been written")
        return NonFiniteLossError(
            f"non-finite loss in epoch {self.epoch + 1}, iteration {batch_index + 1} of "
            f"{self.iters_per_epoch} (step {self.iteration + 1} of the run): {named}; the run stops "
            f"before this step's update and {last}")

    def save_checkpoint(self, path: Path, within: dict | None = None) -> None:
        """Write the checkpoint (``checkpoints.write``: atomic, read back, the last
        ``train.keep_checkpoints`` kept); ``CheckpointWriteError`` saying what to do if it fails."""
        if not weights_finite(self.step):  # a NaN that passed the loss check: keep the last good file
            raise NonFiniteLossError(
                f"non-finite weights after epoch {self.epoch}: its checkpoint is not written; "
                f"{path} {'holds the last good one' if path.exists() else 'was never written'}")
        try:
            checkpoints.write(self.state_dict(within), path, self.cfg.train.keep_checkpoints)
            self.saved_at = time.monotonic()
        except (OSError, RuntimeError) as err:  # torch.save reports a failed write as RuntimeError
            kept = "the previous checkpoint there is intact" if path.exists() else "no earlier checkpoint"
            free = shutil.disk_usage(path.parent).free / 2**20
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CheckpointWriteError(
                f"cannot write the checkpoint of epoch {self.epoch} to {path} ({reason}; {free:.1f} MiB "
                f"free on that file system); {kept}. Free space in out_dir, then add --resume to continue"
            ) from None

    def load_checkpoint(self, path: Path) -> None:
        """Load ``path`` without unpickling code (``read_checkpoint``)."""
        self.load_state_dict(read_checkpoint(path, self.device))

    def resume(self) -> Path:
        """Load the newest readable checkpoint of the run directory (damaged newer ones are
        named in a warning); returns its file."""
        path, state = checkpoints.newest_readable(self.out / CHECKPOINT, self.device)
        self.load_state_dict(state)
        return path

    # ---------------------------------------------------------------- loop
    def train_epoch(self) -> dict[str, float]:
        self.model.train()
        within, self.within = self.within or {}, None
        n = within.get("batches", 0)  # batches of this epoch done before a resume
        self.train_loader.set_epoch(self.epoch, n, within.get("loader_rng"))
        self.step.rng = step_generator(self.cfg.seed, self.epoch, self.rank)
        if "step_rng" in within:
            self.step.rng.set_state(within["step_rng"])
        sums: dict[str, float] = dict(within.get("sums", {}))
        self.progress.start_epoch(self.epoch + 1, len(self.train_loader), self.cfg.train.batch_size)
        start = time.perf_counter() - within.get("seconds", 0.0)
        every = self.cfg.train.ckpt_every_minutes * 60
        for x, y in self.train_loader:
            x = x.contiguous(memory_format=self.memory_format)
            self.step.iteration = self.iteration
            with torch.autocast(**self.autocast):
                loss, parts = self.model(x, y)
            if self.inject_nonfinite is not None and self.iteration == self.inject_nonfinite[1]:
                loss, parts = inject_nonfinite(loss, parts, self.inject_nonfinite[0])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            # one host sync per step, outside any compiled graph: no update from a non-finite loss
            if not torch.isfinite(loss.detach()):
                raise self._nonfinite(loss, parts, n)
            if self.cfg.train.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.params, self.cfg.train.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            extra = self.step.after_step(self.iteration, self.total_iterations)
            self.iteration += 1
            n += 1
            self.progress.batch(n)
            for k, v in {"loss": loss, **parts}.items():  # tensors are summed on the device: no wait per step
                sums[k] = sums.get(k, 0.0) + (v.detach().double() if torch.is_tensor(v) else float(v))
            for k, v in extra.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            stop = stopping.requested()
            if (stop or (every and time.monotonic() - self.saved_at >= every)) and n < len(self.train_loader):
                self._save_within_epoch(n, sums, time.perf_counter() - start, stop)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        record = {k: float(v) / n for k, v in sums.items()}
        record = _rank_mean(record, self.device)
        record["lr"] = self.optimizer.param_groups[0]["lr"]
        record["train_img_per_s"] = n * self.cfg.train.batch_size / seconds
        record["epoch_seconds"] = seconds
        return record

    def _save_within_epoch(self, batches: int, sums: dict, seconds: float, stop: bool) -> None:
        """Checkpoint the epoch's position (one process only: under Ray Train the ranks would
        have to agree on the step, and their random generators differ); on a stop, raise
        ``stopping.Stopped`` after the save."""
        if self.world_size > 1:
            return
        within = {"batches": batches, "seconds": seconds,
                  "sums": {k: float(v) for k, v in sums.items()},
                  "loader_rng": self.train_loader.rng_state(), "step_rng": self.step.rng.get_state()}
        self.save_checkpoint(self.out / CHECKPOINT, within)
        if stop:
            raise stopping.Stopped(f"stopped in epoch {self.epoch + 1} after batch {batches}")

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Top-1 (%) of every head of the step module on this rank's test shard, summed over ranks."""
        heads = self.step.eval_heads()
        for model, _ in heads.values():
            model.eval()
        counts = torch.zeros(len(heads) + 1, dtype=torch.float64, device=self.device)
        for x, y in self.test_loader:
            x = x.contiguous(memory_format=self.memory_format)
            with torch.autocast(**self.autocast):
                for i, (model, head) in enumerate(heads.values()):
                    counts[i] += top1_counts(model(x, head=head), y)
            counts[-1] += len(y)
        counts = _rank_sum(counts)
        return {name: float(100 * counts[i] / counts[-1]) for i, name in enumerate(heads)}

    def fit(self, resume_from: Path | None = None) -> dict:
        """Train to ``cfg.train.epochs``; returns the summary written to ``metrics.json``."""
        if resume_from is not None:
            self.load_checkpoint(resume_from)
        self.saved_at = time.monotonic()
        if self.rank == 0:
            write_config(self.cfg)  # with the values resolved from the run's length
            for note in self.notes:
                self.progress.note(note)
            # lines after the checkpoint's epoch belong to work that is about to be redone
            (self.out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in self.history))
        for cb in self.callbacks:
            cb.setup(self)
        headline = self.step.headline
        while self.epoch < self.cfg.train.epochs:
            record = {"epoch": self.epoch + 1, **self.train_epoch()}
            heads = self.evaluate()
            record.update({f"top1_{k}": v for k, v in heads.items()})
            record["top1"] = heads[headline]
            # the paper's figure so far: median top-1 of the last min(10, epochs) epochs
            record["top1_median_last10"] = statistics.median([r["top1"] for r in self.history[-9:]] + [record["top1"]])
            if self.rank == 0 and self.cfg.train.final_eval and self.epoch + 1 == self.cfg.train.epochs:
                # in the last epoch's record, so that it reaches Tune and MLflow with it
                record.update(self.run_eval(self.cfg.train.final_eval))
            self.epoch += 1
            self.history.append(record)
            if self.rank == 0:
                with (self.out / "metrics.jsonl").open("a") as fh:
                    fh.write(json.dumps(record) + "\n")
                self.progress.epoch(record)
                self._pictures()
                for cb in self.callbacks:
                    cb.on_epoch(record)
            checkpoint = None
            if self.epoch % self.cfg.train.ckpt_every == 0 or self.epoch == self.cfg.train.epochs:
                checkpoint = self.out / CHECKPOINT
                if self.rank == 0:
                    self.save_checkpoint(checkpoint)
            for cb in self.callbacks:
                cb.on_epoch_end(self, checkpoint)
            if stopping.requested() and self.epoch < self.cfg.train.epochs and self.world_size == 1:
                if checkpoint is None:
                    self.save_checkpoint(self.out / CHECKPOINT)
                raise stopping.Stopped(f"stopped after epoch {self.epoch}")
        summary = summarize(self.history, headline)
        if self.rank == 0:
            (self.out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
            self.progress.done(summary)
            for cb in self.callbacks:
                cb.on_end(summary, self)
        return summary

    def run_eval(self, suites: list[str], run_dir: Path | None = None,
                 checkpoint: Path | None = None) -> dict[str, float]:
        """The evaluation suites (``evaluation/suite.py``) on the headline model over the whole
        test split; writes ``eval.json`` and pictures into ``run_dir`` (default: the run's
        folder) and returns the flat ``eval_*`` metrics."""
        from .evaluation.suite import flat_metrics, run_suites, write_eval_json

        run_dir = Path(run_dir or self.out)
        # a Ray Train rank holds a shard of the test split; the suites see all of it
        loader = self.test_loader if self.world_size == 1 else build_loaders(self.cfg, self.device)[1]
        title = f"{getattr(self.step, 'display_name', self.cfg.method.name)} ({self.step.headline})"
        self.progress.note(f"evaluation suites {', '.join(suites)} on {title}, epoch {self.epoch}")
        results = run_suites(self.step.headline_model, loader, self.spec.mean, self.spec.std, suites,
                             self.cfg.eval, run_dir, title, log=self.progress.note)
        about = {"model": {"method": self.cfg.method.name, "head": self.step.headline, "epoch": self.epoch,
                           "checkpoint": str(checkpoint) if checkpoint else None},
                 "data": {"name": self.cfg.data.name,
                          "test_images": len(loader.labels if hasattr(loader, "labels") else loader.dataset)}}
        write_eval_json(run_dir, results, about)
        for suite in results.values():
            if "picture" in suite:
                for cb in self.callbacks:
                    cb.on_artifact(run_dir / suite["picture"])
        return flat_metrics(results)

    def _pictures(self) -> None:
        """Mixed-sample PNG every ``method.vis_every`` epochs and at the end (AdAutoMix, AutoMix)."""
        every = self.cfg.method.vis_every
        if not hasattr(self.step, "mixed_samples"):
            return
        if not (self.epoch == self.cfg.train.epochs or (every and self.epoch % every == 0)):
            return
        from .visualize import one_per_class, save_mixed_samples

        x, y = one_per_class(self.test_loader)
        path = self.out / "pictures" / f"mixed_epoch{self.epoch:04d}.png"
        stats = {k: v for k, v in self.history[-1].items() if k.startswith("mask_")}
        save_mixed_samples(self.step, x, y, self.spec, path, self.epoch,
                           title=getattr(self.step, "display_name", self.cfg.method.name), stats=stats or None)
        for cb in self.callbacks:
            cb.on_artifact(path)


def weights_finite(module: nn.Module) -> bool:
    """Whether every floating-point parameter and buffer of ``module`` is finite."""
    tensors = [t for t in module.state_dict().values() if torch.is_tensor(t) and t.is_floating_point()]
    return bool(torch.stack([t.isfinite().all() for t in tensors]).all()) if tensors else True


def parse_injection(spec: str) -> tuple[str, int] | None:
    """``train.inject_nonfinite`` ("TERM@ITERATION", a fault-injection hook for tests) as
    (term, 0-based iteration of the run), or None when off ("")."""
    if not spec:
        return None
    term, _, at = spec.partition("@")
    return term, int(at)


def inject_nonfinite(loss: torch.Tensor, parts: dict, term: str) -> tuple[torch.Tensor, dict]:
    """The step's loss and parts as if ``term`` had become NaN (the total with it)."""
    nan = torch.tensor(float("nan"), device=loss.device)
    return loss + nan, {**parts, term: parts.get(term, nan) + nan}


def read_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict:
    """A checkpoint's state, loaded without unpickling code (``checkpoints.read``): a file holding
    anything but tensors and plain Python values, or a damaged one, is refused with
    ``CheckpointError``."""
    return checkpoints.read(path, device)


def newest_checkpoint(restored: Path, own: Path) -> Path:
    """The later of a checkpoint Ray handed back (Tune's or Ray Train's copy) and the newest
    readable of the run's own ``checkpoints/last.pt`` files: Ray records a reported checkpoint
    after the fact, so a run stopped (Ctrl-C, a dead driver) can leave Ray's copy an epoch or
    more behind the file rank 0 wrote at the end of each epoch."""
    try:
        own, _ = checkpoints.newest_readable(own)
    except CheckpointError:
        return restored
    return own if checkpoints.position(own) > checkpoints.position(restored) else restored


def summarize(history: list[dict], headline: str) -> dict:
    """``metrics.json``: final top-1, median of the last min(10, epochs), per-head top-1 (and
    the ``eval_*`` numbers of ``train.final_eval``)."""
    last = history[-1]
    heads = {k[len("top1_"):]: v for k, v in last.items() if k.startswith("top1_") and k != "top1_median_last10"}
    return {
        "top1": last["top1"],
        "top1_median_last10": last["top1_median_last10"],
        "heads": heads,
        "headline_head": headline,
        "epochs_done": last["epoch"],
        "train_img_per_s": statistics.median(r["train_img_per_s"] for r in history),
        "final_loss": last["loss"],
        **({"eval": {k: v for k, v in last.items() if k.startswith("eval_")}}
           if any(k.startswith("eval_") for k in last) else {}),
    }


def train(cfg: Config, callbacks: list[Callback] | None = None, quiet: bool = False) -> dict:
    """Train ``cfg`` in this process (``train.workers == 0``) and return the summary; holds the
    run directory's lock throughout (``runlock.LockedError`` if another process holds it)."""
    with RunLock(cfg.out_dir):
        check_run_dir(cfg)
        trainer = Trainer(cfg, callbacks=callbacks, quiet=quiet)  # reads the data: errors stop here
        if cfg.train.resume:
            trainer.resume()
        return trainer.fit()
