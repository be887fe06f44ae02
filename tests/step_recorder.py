"""``Recorder``: what a learned-mix step (AdAutoMix, AutoMix) drew and generated in its last steps,
for the tests that recompute its losses by hand; ``tiny_adautomix_step``: a small step for them."""
from __future__ import annotations

import torch

from adautomix.methods.adautomix import AdAutoMixStep
from adautomix.methods.generator import MixGenerator
from adautomix.methods.learned_mix import LearnedMixStep
from adautomix.models.cifar_resnet import build_classifier


def tiny_adautomix_step(num_classes: int, seed: int = 0, **kwargs) -> AdAutoMixStep:
    """A 1/8-width ResNet-18 AdAutoMix step with non-trivial weights and masks far from uniform,
    its draws from a generator seeded ``seed + 1``; ``kwargs`` go to ``AdAutoMixStep``."""
    torch.manual_seed(seed)
    classifier = build_classifier("resnet18", 0.125, num_classes, heads=("one", "mix"))
    with torch.no_grad():  # zero_init_residual leaves γ = 0: give every block a non-trivial path
        for p in classifier.parameters():
            p.add_(0.05 * torch.randn_like(p))
    generator = MixGenerator(classifier.backbone.stage3_channels)
    for conv in (generator.conv_q.conv, generator.conv_k.conv, generator.conv_v):
        torch.nn.init.normal_(conv.weight, 0, 0.2)  # masks far from uniform
    step = AdAutoMixStep(classifier, generator, **kwargs)
    step.rng = torch.Generator().manual_seed(seed + 1)
    return step.train()


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
