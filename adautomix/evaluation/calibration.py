"""Calibration: expected calibration error (ECE) and the reliability diagram.

Guo, Pleiss, Sun & Weinberger, "On Calibration of Modern Neural Networks", ICML 2017,
https://arxiv.org/abs/1706.04599. With M equal-width confidence bins B_m,

    ECE = Σ_m |B_m| / n · |acc(B_m) − conf(B_m)|

where conf is a sample's top softmax probability and acc whether its top class is right. The
AdAutoMix paper reports it on CIFAR-100 with M = 15 (its Figure 4: AdAutoMix 3.2 %). The number
comes from torchmetrics' ``multiclass_calibration_error`` (``norm="l1"``); ``reliability_bins``
gives the per-bin numbers the diagram draws. torchmetrics' bins are [m/M, (m+1)/M), with a
confidence of exactly 1.0 counted in a bin of its own; ``reliability_bins`` puts 1.0 in the last
bin (Guo et al.'s bins are right-closed), so the two differ only by such ties.
"""
from __future__ import annotations

from pathlib import Path

import torch

N_BINS = 15


def expected_calibration_error(logits: torch.Tensor, labels: torch.Tensor, n_bins: int = N_BINS) -> float:
    """ECE in [0, 1] of ``logits`` (``N x classes``) against ``labels`` (``N``), ``n_bins``
    equal-width bins (torchmetrics, L1 norm)."""
    from torchmetrics.functional.classification import multiclass_calibration_error

    probs = torch.softmax(logits.double(), dim=1)
    return float(multiclass_calibration_error(probs, labels, num_classes=logits.shape[1], n_bins=n_bins,
                                              norm="l1"))


def reliability_bins(logits: torch.Tensor, labels: torch.Tensor, n_bins: int = N_BINS) -> dict[str, list]:
    """Per-bin ``count``, mean ``confidence`` and ``accuracy`` (0 where empty) and the bin
    ``edges`` (n_bins + 1 values from 0 to 1)."""
    probs = torch.softmax(logits.double(), dim=1)
    confidence, predicted = probs.max(dim=1)
    correct = (predicted == labels).double()
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    index = (torch.bucketize(confidence, edges, right=True) - 1).clamp(0, n_bins - 1)
    count = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, index, torch.ones_like(confidence))
    conf_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, index, confidence)
    acc_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, index, correct)
    safe = count.clamp(min=1)
    return {"edges": edges.tolist(), "count": count.long().tolist(),
            "confidence": (conf_sum / safe).tolist(), "accuracy": (acc_sum / safe).tolist()}


def plot_reliability(ax, bins: dict, title: str, ece: float | None = None) -> None:
    """Draw one reliability diagram on a matplotlib ``ax``: accuracy per confidence bin (bars),
    the gap to the bin's mean confidence (hatched), the diagonal of perfect calibration."""
    edges = bins["edges"]
    left = edges[:-1]
    width = edges[1] - edges[0]
    filled = [c > 0 for c in bins["count"]]
    acc = [a if f else 0.0 for a, f in zip(bins["accuracy"], filled)]
    conf = [c if f else 0.0 for c, f in zip(bins["confidence"], filled)]
    ax.bar(left, acc, width=width, align="edge", color="tab:blue", edgecolor="black", label="accuracy")
    ax.bar(left, [c - a for c, a in zip(conf, acc)], bottom=acc, width=width, align="edge",
           facecolor="none", hatch="//", edgecolor="tab:red", linewidth=0.8, label="gap to confidence")
    ax.plot([0, 1], [0, 1], "--", color="gray")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(title + ("" if ece is None else f"\nECE {100 * ece:.2f} %"), fontsize=9)


def save_reliability_diagram(path: Path, bins: dict, title: str, ece: float | None = None) -> Path:
    """One reliability diagram as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3.6, 3.6))
    plot_reliability(ax, bins, title, ece)
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
