"""The EMA teacher k of AdAutoMix and its momentum schedule (SPEC.md step 9).

θ_k ← m·θ_k + (1−m)·θ_q after every optimizer step, for the backbone and both heads. The
teacher's BatchNorm statistics are not copied: they come from its own train-mode forward passes.
m stays at ``start`` for the first ``warmup`` fraction of iterations, then follows
m(t) = end − (end − start)·(cos(π·t/T) + 1)/2, reaching ``end`` at the last iteration T.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn


def ema_momentum(t: int, last: int, start: float = 0.999, end: float = 0.999999,
                 warmup: float = 0.1) -> float:
    """Momentum m at iteration ``t`` (0-based) of a run whose last iteration is ``last``."""
    if last <= 0 or t < warmup * last:
        return start
    return end - (end - start) * (math.cos(math.pi * min(t, last) / last) + 1) / 2


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
        m = ema_momentum(t, total - 1, self.start, self.end, self.warmup)
        teacher_params = list(self.model.parameters())
        student_params = [p.detach() for p in student.parameters()]
        torch._foreach_lerp_(teacher_params, student_params, 1.0 - m)  # θ_k + (1-m)(θ_q - θ_k)
        return m
