"""Accuracy counting and the per-epoch progress line."""
from __future__ import annotations

import sys
import time

import torch


def top1_counts(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Number of samples whose arg-max class is the label. logits: B x K, y: B."""
    return (logits.argmax(dim=1) == y).sum()


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class ProgressPrinter:
    """One line per epoch: loss, lr, top-1 per head, img/s and ETA."""

    def __init__(self, epochs: int, enabled: bool = True, stream=None):
        self.epochs, self.enabled = epochs, enabled
        self.stream = stream or sys.stdout
        self.start = time.perf_counter()
        self.first_epoch: int | None = None

    def note(self, line: str) -> None:
        if self.enabled:
            print(line, file=self.stream, flush=True)

    def epoch(self, record: dict) -> None:
        if not self.enabled:
            return
        if self.first_epoch is None:
            self.first_epoch = record["epoch"] - 1
        done = record["epoch"] - self.first_epoch
        eta = (time.perf_counter() - self.start) / done * (self.epochs - record["epoch"])
        heads = " ".join(f"{k[5:]} {v:5.2f}" for k, v in record.items()
                         if k.startswith("top1_") and k != "top1_median_last10")
        print(f"epoch {record['epoch']:>3}/{self.epochs}  loss {record['loss']:.4f}  "
              f"lr {record['lr']:.4g}  top1[{heads}]  {record['train_img_per_s']:.0f} img/s  "
              f"eta {_clock(eta)}", file=self.stream, flush=True)

    def done(self, summary: dict) -> None:
        if self.enabled:
            print(f"done: top1 {summary['top1']:.2f}  median(last {min(10, summary['epochs_done'])}) "
                  f"{summary['top1_median_last10']:.2f}  in {_clock(time.perf_counter() - self.start)}",
                  file=self.stream, flush=True)
