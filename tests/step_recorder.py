"""``Recorder``: what a learned-mix step (AdAutoMix, AutoMix) drew and generated in its last steps,
for the tests that recompute its losses by hand."""
from __future__ import annotations

import torch

from adautomix.methods.learned_mix import LearnedMixStep


class Recorder:
    """Records the step's draws (λ of both branches, their partner permutations) and every mask
    its generator (AdAutoMix's generator, AutoMix's Mix Block) returns."""

    def __init__(self, step: LearnedMixStep):
        self.masks: list[torch.Tensor] = []
        self.draws = None
        original = step.draw

        def draw(*args):
            self.draws = original(*args)
            return self.draws

        step.draw = draw
        step.generator.register_forward_hook(lambda m, i, out: self.masks.append(out.detach().clone()))
