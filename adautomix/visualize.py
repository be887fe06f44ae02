"""Pictures of generated mixed samples, laid out like the paper's Figures 12-14."""
from __future__ import annotations

from pathlib import Path

import torch

TILE_INCHES, DPI = 1.5, 100  # 150-pixel tiles


def save_mixed_samples(step, x: torch.Tensor, y: torch.Tensor, spec, path: Path, epoch: int,
                       title: str = "AdAutoMix") -> Path:
    """One PNG: a column per mixed sample; rows: its N sources (class names; λ_i per row), their masks
    (white = 1) and the mixed image, under a title with the epoch and N.

    Args:
        step: a step module with ``mixed_samples(x, y) -> (sources B x N x 3 x H x W,
            masks B x N x H x W, mixed B x 3 x H x W, λ N)`` (AdAutoMix, AutoMix).
        x: B x 3 x H x W normalised images (a few test images); y: B labels.
        spec: the data set's ``DataSpec`` (mean and std to undo the normalisation, class names).
        path: the PNG to write.
        epoch: the epoch shown in the title.
        title: the method's name in the title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    was_training = step.training
    step.eval()
    try:
        sources, masks, mixed, lam, labels = step.mixed_samples(x, y)
    finally:
        step.train(was_training)
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)

    def picture(images: torch.Tensor):  # K x 3 x H x W normalised -> K x H x W x 3 in [0, 1]
        return (images.detach().float().cpu() * std + mean).clamp(0, 1).permute(0, 2, 3, 1).numpy()

    def name(label: int) -> str:
        return spec.class_names[label] if label < len(spec.class_names) else str(label)

    b, n = sources.shape[:2]
    fig, axes = plt.subplots(2 * n + 1, b, figsize=(b * TILE_INCHES, (2 * n + 1) * TILE_INCHES * 1.15),
                             squeeze=False)
    for i in range(n):
        tiles = picture(sources[:, i])
        for j in range(b):
            axes[i, j].imshow(tiles[j], interpolation="nearest")
            axes[i, j].set_title(name(int(labels[j, i])), fontsize=9)
            axes[n + i, j].imshow(masks[j, i].float().cpu().numpy(), cmap="gray", vmin=0, vmax=1,
                                  interpolation="nearest")
        axes[i, 0].set_ylabel(f"source {i + 1}\nλ = {float(lam[i]):.2f}", fontsize=9)
        axes[n + i, 0].set_ylabel(f"mask {i + 1}", fontsize=9)
    tiles = picture(mixed)
    for j in range(b):
        axes[2 * n, j].imshow(tiles[j], interpolation="nearest")
    axes[2 * n, 0].set_ylabel("mixed", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{title} mixed samples, epoch {epoch}, N = {n}", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
