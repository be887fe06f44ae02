"""Two Ray Train workers take the same steps as one process: the parameters after K steps.

What "the same steps" means. A DDP rank trains on its shard of the global batch (elements r,
r+W, ... : test_ray_train.py checks the shards reassemble it), draws its λ, partners and masks
from its own generator (``engine.step_generator(seed, epoch, rank)``) within its shard, as every
DDP mixup does, and normalises its BatchNorm layers over its shard (``train.sync_bn`` needs CUDA).
The gradient is the mean of the ranks' gradients. So the one-process reference here reproduces
the ranks, not the whole batch: an in-process run (``engine.train``) whose model is
``PerShardSteps``, which runs the step module on each rank's shard with that rank's generator and
its BatchNorm buffers as DDP keeps them (rank 0's broadcast at each forward), and returns the mean
of their losses (its gradient is the mean of their gradients, as DDP's all-reduce). Every other
piece, the data order, the optimizer, the schedule, the EMA update, is the engine's. Comparing
against a one-process run on the whole batch instead would mix within 32 images rather than 16
and normalise over 32: a different computation.

The check is the parameters of the whole step module (classifier, and for the learned mixes
the generator and the teacher) after K = 3 steps, on both ranks, against the reference. The
tolerance is justified by numbers computed in the test, not written down: the same reference
with seed 1 (another initialisation and other draws) and the distance the K steps moved the
parameters both exceed it by orders of magnitude.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import ray.cloudpickle
import torch
import torch.nn as nn

from adautomix.engine import Callback, step_generator, train
from adautomix.platform.ray_train import train_with_ray

from test_ray_train import tiny

# Callbacks below are defined in this module, which Ray's workers cannot import: ship by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

WORKERS, K = 2, 3
# 32 images, batch 32: one step per epoch, so the parameters after epoch k are those after step k
STEPS = ["data.limit_train=32", "data.limit_test=32", f"train.epochs={K}"]
# Relative L2 distance of all parameters. Measured: 0 for vanilla, PuzzleMix and Manifold Mixup; at
# most 6e-9 for AdAutoMix and for AutoMix's first two steps (DDP adds the ranks' gradients in another
# order than autograd adds their losses); 5.1e-6 for AutoMix's third step, which is where its
# reference sits on a kink: moving the reference's parameters by one float32 ulp (1.2e-7) after step
# 2, in either of two random directions, moves its step 3 by the same 5.2e-6. A wrong run is farther:
# DDP without broadcasting BatchNorm buffers (PuzzleMix's saliency pass reads them) 1.3e-4, without
# the gradient all-reduce the ranks part at once, another seed 1.1.
TOLERANCE = 3e-5


class SaveParameters(Callback):
    """Each rank writes every parameter of its step module after every epoch (= step)."""

    def __init__(self, folder: Path):
        self.folder = folder

    def on_epoch_end(self, trainer, checkpoint):
        params = {k: v.detach().cpu().clone() for k, v in trainer.step.named_parameters()}
        torch.save(params, self.folder / f"rank{trainer.rank}_step{trainer.epoch}.pt")


class PerShardSteps(nn.Module):
    """What ``world_size`` DDP ranks compute, in one process: the step on each rank's shard with
    that rank's generator; the mean of the ranks' losses (so the mean of their gradients).

    Buffers (BatchNorm running statistics) as DDP keeps them (``broadcast_buffers``): every rank
    starts each forward from rank 0's buffers and updates its own copy; rank 0's go on. They
    matter where a step reads them while training (PuzzleMix's eval-mode saliency pass).
    """

    def __init__(self, trainer, world_size: int):
        super().__init__()
        self.step, self.trainer, self.world_size = trainer.step, trainer, world_size
        self.epoch, self.generators = None, []

    def forward(self, x: torch.Tensor, y: torch.Tensor):
        if self.epoch != self.trainer.epoch:  # each rank's generator restarts every epoch
            self.epoch = self.trainer.epoch
            self.generators = [step_generator(self.trainer.cfg.seed, self.epoch, r) for r in range(self.world_size)]
        buffers = [b for _, b in self.step.named_buffers()]
        start = [b.detach().clone() for b in buffers]
        losses, parts = [], []
        for rank, rng in enumerate(self.generators):
            if rank:  # through .data: the earlier ranks' graphs hold these buffers (unread in backward)
                for b, s in zip(buffers, start):
                    b.data.copy_(s)
            self.step.rng = rng
            loss, p = self.step(x[rank::self.world_size], y[rank::self.world_size])
            losses.append(loss)
            parts.append(p)
            if rank == 0:
                rank0 = [b.detach().clone() for b in buffers]
        for b, s in zip(buffers, rank0):
            b.data.copy_(s)
        mean = {k: sum(p[k] for p in parts) / len(parts) for k in parts[0]}
        return sum(losses) / len(losses), mean


class EmulateRanks(Callback):
    def setup(self, trainer):
        trainer.model = PerShardSteps(trainer, WORKERS)


def flat(params: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([params[k].double().flatten() for k in sorted(params)])


def distance(a: dict, b: dict) -> float:
    """‖θ_a − θ_b‖ / ‖θ_b‖ over every parameter."""
    assert a.keys() == b.keys() and a
    return float((flat(a) - flat(b)).norm() / flat(b).norm())


def largest_difference(a: dict, b: dict) -> str:
    """The parameter whose relative difference is largest, for a failure message."""
    name = max(a, key=lambda k: float((a[k] - b[k]).norm() / b[k].norm().clamp_min(1e-30)))
    return f"{name}: {float((a[name] - b[name]).norm() / b[name].norm().clamp_min(1e-30)):.2e}"


def reference(tmp_path: Path, method: list[str], seed: int) -> Path:
    folder = tmp_path / f"reference-seed{seed}"
    folder.mkdir()
    train(tiny(tmp_path, *method, *STEPS, f"seed={seed}", name=f"one-seed{seed}"),
          callbacks=[EmulateRanks(), SaveParameters(folder)], quiet=True)
    return folder


@pytest.mark.parametrize("method", [
    ["method.name=vanilla"],
    ["method.name=adautomix"],
    ["method.name=puzzlemix"],
    ["method.name=manifoldmix"],
    ["method.name=automix"],
], ids=lambda m: m[0].split("=")[1])
def test_two_workers_take_the_same_steps_as_one_process(tmp_path, ray_connected, method):
    ref = reference(tmp_path, method, seed=0)
    other = reference(tmp_path, method, seed=1)
    got = tmp_path / "ray"
    got.mkdir()
    summary = train_with_ray(tiny(tmp_path, *method, *STEPS, f"train.workers={WORKERS}", name="two"),
                             callbacks=[SaveParameters(got)], quiet=True)
    assert summary["epochs_done"] == K

    expected = torch.load(ref / f"rank0_step{K}.pt")
    moved = distance(torch.load(ref / "rank0_step1.pt"), expected)  # steps 2..K
    unrelated = distance(torch.load(other / f"rank0_step{K}.pt"), expected)
    # the reasons for the tolerance: what an unrelated run and the training itself change
    assert unrelated > 1000 * TOLERANCE, f"seed 1 is only {unrelated:.2e} away"
    assert moved > 30 * TOLERANCE, f"steps 2..{K} moved the parameters by only {moved:.2e}"
    for step in range(1, K + 1):
        want = torch.load(ref / f"rank0_step{step}.pt")
        ranks = [torch.load(got / f"rank{rank}_step{step}.pt") for rank in range(WORKERS)]
        assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0]), f"step {step}: the ranks differ"
        for rank, have in enumerate(ranks):
            d = distance(have, want)
            assert d < TOLERANCE, (f"rank {rank} after step {step}: {d:.2e} from the one-process steps "
                                   f"(seed 1: {unrelated:.2e}; steps 2..{K} moved {moved:.2e}); "
                                   f"largest in {largest_difference(have, want)}")
    first, last = torch.load(got / "rank0_step1.pt"), torch.load(got / f"rank0_step{K}.pt")
    for part in {k.split(".")[0] for k in last}:  # classifier, and generator and teacher: every part trained
        assert any(not torch.equal(first[k], last[k]) for k in last if k.startswith(part + ".")), part
