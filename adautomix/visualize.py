"""Pictures of generated mixed samples, laid out like the paper's Figures 12-14."""
from __future__ import annotations

from pathlib import Path

import torch

TILE_INCHES, DPI = 1.5, 100  # 150-pixel tiles
COLUMNS = 8  # mixed samples per picture
MASK_MEASURES = {"mask_std": "spatial std {:.3g}", "mask_major": "one source > 0.5 on {:.1%} of pixels",
                 "mask_lam_gap": "|M - λ| {:.3g}"}


def one_per_class(batches, k: int = COLUMNS) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to ``k`` images of different classes, in the order the batches give them (a test
    loader's first batch can hold a single class); topped up with further images when the data
    has fewer than ``k`` classes.

    Args:
        batches: iterable of (B x 3 x H x W images, B labels).

    Returns:
        (k' x 3 x H x W, k' labels), k' <= k.
    """
    chosen, spare = [], []
    seen: set[int] = set()
    for x, y in batches:
        for image, label in zip(x, y):
            (spare if int(label) in seen else chosen).append((image, label))
            seen.add(int(label))
            if len(chosen) == k:
                break
        if len(chosen) == k:
            break
    picked = chosen + spare[:k - len(chosen)]
    return torch.stack([p[0] for p in picked]), torch.stack([p[1] for p in picked])


def measures_line(stats: dict[str, float]) -> str:
    """The mask measures (``learned_mix.mask_stats``) as the picture's second title line."""
    shown = [fmt.format(float(stats[k])) for k, fmt in MASK_MEASURES.items() if k in stats]
    return "masks: " + ", ".join(shown) if shown else ""


def save_mixed_samples(step, x: torch.Tensor, y: torch.Tensor, spec, path: Path, epoch: int,
                       title: str = "AdAutoMix", stats: dict[str, float] | None = None) -> Path:
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
        stats: the epoch's mask measures (``mask_std``, ``mask_major``, ``mask_lam_gap``: training
            means, how far the masks are from plain mixup), shown under the title; None: the
            measures of the masks drawn here.
    """
    import matplotlib

    from .methods.learned_mix import mask_stats

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
    if stats is None:
        stats = {k: float(v) for k, v in mask_stats(masks, lam).items()}
        where = "these samples"
    else:
        where = "epoch mean"
    fig.suptitle(f"{title} mixed samples, epoch {epoch}, N = {n}\n{measures_line(stats)} ({where})",
                 fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
