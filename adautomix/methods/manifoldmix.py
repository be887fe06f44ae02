"""Manifold Mixup: mixup of the hidden states at a stage drawn at random each step.

Verma et al., "Manifold Mixup: Better Representations by Interpolating Hidden States", ICML 2019,
https://arxiv.org/abs/1806.05236

Each step draws λ ~ Beta(α, α), a partner permutation π of the batch and a layer k uniformly from
the eligible set S. The network runs on the clean batch up to h_k, the hidden state entering stage
k+1 (h_0 = the images), replaces it with

    h̃_k = λ·h_k + (1-λ)·h_k[π]

and runs the rest of the network on h̃_k; the labels are mixed with the same λ: (y, y[π]) with
weights (λ, 1-λ). With S = {0} this is input mixup, draw for draw.

For the CIFAR ResNets the paper (and the authors' code, and OpenMixup's CIFAR configs) draws k
from S = {0, 1, 2}: the input, the output of the first residual stage (stem + layer1), the output
of the second; α = 2.0 (the AdAutoMix paper's table: Beta(2, 2)). ``method.manifold_layers`` sets
S (any of 0..3; 3 = the input of the last stage).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from .mixing import MixStep, Targets, _pair_targets, mixed_cross_entropy, sample_beta

LAYERS = (0, 1, 2)  # S: the paper's CIFAR setting (0 = the input)


def manifold_mixup(classifier: nn.Module, x: torch.Tensor, y: torch.Tensor, rng: torch.Generator,
                   mix_lambda: float = 2.0, layers: Sequence[int] = LAYERS
                   ) -> tuple[torch.Tensor, Targets, int]:
    """One Manifold Mixup forward pass.

    Args:
        classifier: a ``Classifier`` (``classifier(x, mix_at=k, mix_fn=f)`` mixes h_k).
        x: B x C x H x W images; y: B labels.
        rng: CPU generator for λ, π and k, drawn in that order (λ and π as ``mixing.mixup``
            draws them, so k = 0 is exactly input mixup).
        mix_lambda: α of Beta(α, α).
        layers: S, the layers k eligible for mixing; k is drawn uniformly from them.

    Returns:
        ``(logits, targets, k)``: logits B x num_classes, targets with labels (y, y[π]) and
        weights (λ, 1-λ), and the layer mixed.
    """
    lam = sample_beta(mix_lambda, rng)
    perm = torch.randperm(len(y), generator=rng).to(x.device, non_blocking=True)
    k = layers[int(torch.randint(len(layers), (1,), generator=rng))]
    logits = classifier(x, mix_at=k, mix_fn=lambda h: lam * h + (1 - lam) * h[perm])
    return logits, _pair_targets(y, perm, lam), k


class ManifoldMixStep(MixStep):
    """One training step of Manifold Mixup: mixed forward pass, mixed cross-entropy.

    Args:
        classifier: the model trained (its ``one`` head); a ``Classifier`` on any backbone of
            ``models/`` (each mixes at the input of its stage k: ``forward(x, mix_at=k, mix_fn=f)``).
        mix_lambda: α of Beta(α, α).
        manifold_layers: S, the eligible layers (0 = the input, k = the output of stage k).
    """

    def __init__(self, classifier: nn.Module, mix_lambda: float = 2.0,
                 manifold_layers: Sequence[int] = LAYERS):
        super().__init__(classifier, manifold_mixup,
                         {"mix_lambda": mix_lambda, "layers": tuple(manifold_layers)})

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits, targets, _ = self.mix(self.classifier, x, y, self.rng, **self.params)
        loss = mixed_cross_entropy(logits, targets)
        return loss, {"loss_ce": loss.detach()}
