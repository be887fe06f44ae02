"""Pictures of generated mixed samples (the paper's Figures 12-14)."""
from __future__ import annotations

from pathlib import Path

import torch
from torchvision.utils import save_image


def save_mixed_samples(step, x: torch.Tensor, y: torch.Tensor, spec, path: Path) -> Path:
    """One PNG grid: a row per source image, a row per mask (white = 1), then the mixed images.

    Args:
        step: an ``AdAutoMixStep`` (uses its ``mixed_samples``).
        x: B x 3 x H x W normalised images (a few test images); y: B labels.
        spec: the data set's ``DataSpec`` (mean and std to undo the normalisation).
        path: the PNG to write.
    """
    was_training = step.training
    step.eval()
    try:
        sources, masks, mixed, _ = step.mixed_samples(x, y)
    finally:
        step.train(was_training)
    mean = torch.tensor(spec.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, device=x.device).view(1, 3, 1, 1)

    def denorm(images: torch.Tensor) -> torch.Tensor:
        return (images.float() * std + mean).clamp(0, 1)

    n = sources.shape[1]
    rows = [denorm(sources[:, i]) for i in range(n)]
    rows += [masks[:, i:i + 1].float().expand(-1, 3, -1, -1) for i in range(n)]
    rows.append(denorm(mixed))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(torch.cat(rows).cpu(), path, nrow=len(x), padding=2, pad_value=1.0)
    return path
