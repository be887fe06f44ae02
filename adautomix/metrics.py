"""Accuracy counting and the progress output: a line per epoch, and progress within long epochs."""
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
    """One line per epoch: loss, lr, top-1 per head, img/s and ETA; and, within an epoch that has
    run for ``quiet_seconds``, progress: on a terminal a bar redrawn in place (at most every
    ``redraw_seconds``) with img/s and the epoch's time left, otherwise a line each time another
    ``every_percent`` of the epoch's batches is done. Short epochs (digits, CIFAR on a GPU) print
    only their epoch line.

    Args:
        epochs: the run's number of epochs.
        enabled: print at all (rank 0 of a run that is not quiet).
        stream: where to print (default: stdout); a terminal when its ``isatty()`` is true.
        clock: seconds, monotonic (``time.perf_counter``; tests pass their own).
    """

    def __init__(self, epochs: int, enabled: bool = True, stream=None, clock=time.perf_counter,
                 quiet_seconds: float = 10.0, every_percent: int = 5, redraw_seconds: float = 0.5):
        self.epochs, self.enabled = epochs, enabled
        self.stream = stream or sys.stdout
        self.clock = clock
        self.quiet_seconds, self.every_percent, self.redraw_seconds = quiet_seconds, every_percent, redraw_seconds
        self.start = clock()
        self.first_epoch: int | None = None
        self._bar = False  # a bar is drawn on the current terminal line

    def note(self, line: str) -> None:
        if self.enabled:
            print(line, file=self.stream, flush=True)

    def start_epoch(self, epoch: int, batches: int, batch_size: int) -> None:
        """Epoch ``epoch`` (1-based) of ``batches`` batches of ``batch_size`` images begins."""
        self._epoch, self._batches, self._batch_size = epoch, batches, batch_size
        self._epoch_start = self._last_draw = self.clock()
        self._percent_shown = 0

    def batch(self, done: int) -> None:
        """``done`` batches of the current epoch are finished."""
        if not self.enabled or done >= self._batches:
            return
        now = self.clock()
        elapsed = now - self._epoch_start
        if elapsed < self.quiet_seconds:
            return
        percent = 100 * done // self._batches
        terminal = getattr(self.stream, "isatty", lambda: False)()
        if terminal and now - self._last_draw < self.redraw_seconds:
            return
        if not terminal and percent < self._percent_shown + self.every_percent:
            return
        rate = done * self._batch_size / elapsed
        left = _clock(elapsed / done * (self._batches - done))
        if terminal:
            filled = percent * 30 // 100
            print(f"\repoch {self._epoch:>3}/{self.epochs} [{'#' * filled}{'.' * (30 - filled)}] {percent:3d}%  "
                  f"{done}/{self._batches}  {rate:.0f} img/s  left {left}\033[K", end="", file=self.stream, flush=True)
            self._bar, self._last_draw = True, now
        else:
            print(f"epoch {self._epoch:>3}/{self.epochs}  {percent:3d}% ({done}/{self._batches} batches)  "
                  f"{rate:.0f} img/s  epoch time left {left}", file=self.stream, flush=True)
            self._percent_shown = percent - percent % self.every_percent

    def epoch(self, record: dict) -> None:
        if not self.enabled:
            return
        if self._bar:  # the epoch line replaces the bar
            print("\r\033[K", end="", file=self.stream)
            self._bar = False
        if self.first_epoch is None:
            self.first_epoch = record["epoch"] - 1
        done = record["epoch"] - self.first_epoch
        eta = (self.clock() - self.start) / done * (self.epochs - record["epoch"])
        heads = " ".join(f"{k[5:]} {v:5.2f}" for k, v in record.items()
                         if k.startswith("top1_") and k != "top1_median_last10")
        print(f"epoch {record['epoch']:>3}/{self.epochs}  loss {record['loss']:.4f}  "
              f"lr {record['lr']:.4g}  top1[{heads}]  {record['train_img_per_s']:.0f} img/s  "
              f"eta {_clock(eta)}", file=self.stream, flush=True)

    def done(self, summary: dict) -> None:
        if self.enabled:
            print(f"done: top1 {summary['top1']:.2f}  median(last {min(10, summary['epochs_done'])}) "
                  f"{summary['top1_median_last10']:.2f}  in {_clock(self.clock() - self.start)}",
                  file=self.stream, flush=True)
