"""The EMA teacher k of AdAutoMix and its momentum schedule (SPEC.md steps 7 and 9).

θ_k ← m·θ_k + (1−m)·θ_q after every optimizer step, for the backbone and both heads. The
teacher's BatchNorm statistics are not copied: they come from its own train-mode forward passes.
The schedule is the published ``CosineScheduleHook`` (OpenMixup): m stays at ``start`` for
iterations t < ⌊warmup·T⌋, then follows m(t) = end − (end − start)·(cos(π·t/T) + 1)/2, with T the
run's number of iterations.

``scaled_schedule`` gives the default (start, end): the published 0.999 → 0.999999 for runs as
long as the published ones, and proportionally faster ones for shorter runs (README, "EMA
schedule").
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn

PUBLISHED_MOMENTUM = (0.999, 0.999999)  # start, end of the published CIFAR configs
# The shortest published AdAutoMix run that uses PUBLISHED_MOMENTUM's start: CUB-200, 200 epochs of
# 375 iterations (batch 16). CIFAR-100 runs are 100,000 (200 epochs) to 400,000 iterations.
PUBLISHED_ITERATIONS = 75_000


def scaled_schedule(total_iterations: int, schedule: str = "scaled") -> tuple[float, float]:
    """The EMA momentum (start, end) for a run of ``total_iterations`` optimizer steps.

    ``"published"``, or a run of at least ``PUBLISHED_ITERATIONS``: exactly (0.999, 0.999999).
    Shorter runs (``"scaled"``) keep the published ratio of the teacher's time constant
    1/(1−m) to the run's length: 1−m is multiplied by PUBLISHED_ITERATIONS / total_iterations
    (capped at m = 0, a teacher that copies the classifier), so the teacher follows the
    classifier through any run as it does through the published ones.
    """
    start, end = PUBLISHED_MOMENTUM
    if schedule == "published" or total_iterations >= PUBLISHED_ITERATIONS:
        return start, end
    speedup = PUBLISHED_ITERATIONS / max(total_iterations, 1)
    return max(0.0, 1 - (1 - start) * speedup), max(0.0, 1 - (1 - end) * speedup)


def ema_momentum(t: int, total: int, start: float = 0.999, end: float = 0.999999,
                 warmup: float = 0.1) -> float:
    """Momentum m used after optimizer step ``t`` (0-based) of a run of ``total`` steps."""
    if t < int(warmup * total):
        return start
    return end - (end - start) * (math.cos(math.pi * t / total) + 1) / 2


def has_drop_path(model: nn.Module) -> bool:
    """Whether ``model`` holds stochastic depth with a drop rate > 0 (torchvision's
    ``StochasticDepth`` in Swin-T and ConvNeXt-T, or a timm-style ``DropPath``)."""
    return any(type(m).__name__ in ("StochasticDepth", "DropPath")
               and float(getattr(m, "p", getattr(m, "drop_prob", 0.0)) or 0.0) > 0 for m in model.modules())


class EMATeacher(nn.Module):
    """An exact copy of ``student`` that never receives gradients and follows it by EMA."""

    def __init__(self, student: nn.Module, start: float = 0.999, end: float = 0.999999,
                 warmup: float = 0.1):
        super().__init__()
        self.model = copy.deepcopy(student).requires_grad_(False)
        self.start, self.end, self.warmup = start, end, warmup

    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)

    @torch.no_grad()
    def update(self, student: nn.Module, t: int, total: int) -> float:
        """EMA step after optimizer step ``t`` of ``total``; returns the momentum used."""
        m = ema_momentum(t, total, self.start, self.end, self.warmup)
        teacher_params = list(self.model.parameters())
        student_params = [p.detach() for p in student.parameters()]
        torch._foreach_lerp_(teacher_params, student_params, 1.0 - m)  # θ_k + (1-m)(θ_q - θ_k)
        return m


class BatchNormRecorder:
    """Records the batch statistics each BatchNorm layer of ``model`` sees in one train-mode pass
    (between ``start()`` and ``stop()``), and replays them as further running-statistic updates.

    The published step runs the teacher N more times on permutations of the clean batch; a
    permutation has the clean batch's statistics, and in train mode BatchNorm normalises with
    batch statistics, so those N passes only apply the clean batch's statistics N more times
    to the running estimates: r ← (1−μ)·r + μ·s, N times (μ: the layer's momentum). ``replay``
    does exactly that without the passes.

    The hooks stay on the layers (idle outside ``start()``/``stop()``), so that a compiled step
    traces them once instead of seeing hooks come and go; a layer replaced after construction
    (``SyncBatchNorm`` conversion) is hooked at the next ``start()``.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.stats: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}
        self.recording = False
        self.layers: list[nn.Module] = []
        self._attach()

    def _batchnorms(self) -> list[nn.Module]:
        return [m for m in self.model.modules()
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]

    def _attach(self) -> None:
        self.layers = self._batchnorms()
        for layer in self.layers:
            if not any(getattr(h, "__self__", None) is self for h in layer._forward_pre_hooks.values()):
                layer.register_forward_pre_hook(self._record)

    def _record(self, layer: nn.Module, inputs) -> None:
        if self.recording and layer.training:
            x = inputs[0].detach().float()
            dims = [0] + list(range(2, x.dim()))
            var, mean = torch.var_mean(x, dim=dims, correction=1)  # running_var is unbiased
            if layer in self.stats:
                raise RuntimeError("BatchNormRecorder: record exactly one train-mode forward")
            self.stats[layer] = (mean, var)

    def start(self) -> None:
        """Record the next train-mode pass of ``model``."""
        if self._batchnorms() != self.layers:
            self._attach()
        self.stats = {}
        self.recording = True

    def stop(self) -> None:
        self.recording = False

    @torch.no_grad()
    def replay(self, times: int) -> None:
        """Apply the recorded statistics ``times`` more times to every layer's running estimates."""
        if times <= 0 or not self.stats:
            return
        for layer, (mean, var) in self.stats.items():
            # through .data: the generated-mix pass still holds these buffers for its backward,
            # which in train mode does not read them; a tracked in-place update would fail it
            running_mean, running_var = layer.running_mean.data, layer.running_var.data
            for _ in range(times):
                layer.num_batches_tracked.add_(1)
                # momentum None: BatchNorm's cumulative average
                rate = layer.momentum if layer.momentum is not None else 1.0 / float(layer.num_batches_tracked)
                running_mean.lerp_(mean.to(running_mean.dtype), rate)
                running_var.lerp_(var.to(running_var.dtype), rate)
