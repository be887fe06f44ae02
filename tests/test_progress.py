"""Specifications of the progress output within long epochs (adautomix.metrics.ProgressPrinter)."""
from __future__ import annotations

import io

from adautomix.config import load_config
from adautomix.engine import Trainer
from adautomix.metrics import ProgressPrinter


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run_epoch(printer: ProgressPrinter, clock: Clock, batches: int, seconds_per_batch: float) -> None:
    printer.start_epoch(1, batches, 100)
    for done in range(1, batches + 1):
        clock.now += seconds_per_batch
        printer.batch(done)


def test_a_short_epoch_prints_nothing_within_the_epoch():
    clock, out = Clock(), io.StringIO()
    run_epoch(ProgressPrinter(3, stream=out, clock=clock), clock, batches=200, seconds_per_batch=0.04)  # 8 s
    assert out.getvalue() == ""


def test_a_long_epoch_off_a_terminal_prints_a_line_every_5_percent_after_10_seconds():
    clock, out = Clock(), io.StringIO()
    run_epoch(ProgressPrinter(3, stream=out, clock=clock), clock, batches=400, seconds_per_batch=0.25)  # 100 s
    lines = out.getvalue().splitlines()
    # quiet for the first 10 s (40 batches), then at 10 %, 15 %, ..., 95 %
    assert [line.split()[2] for line in lines] == [f"{p}%" for p in range(10, 100, 5)]
    assert lines[0] == "epoch   1/3   10% (40/400 batches)  400 img/s  epoch time left 0:01:30"


def test_a_long_epoch_on_a_terminal_redraws_one_bar_in_place_then_the_epoch_line_replaces_it():
    clock, out = Clock(), Terminal()
    printer = ProgressPrinter(3, stream=out, clock=clock)
    run_epoch(printer, clock, batches=320, seconds_per_batch=0.0625)  # 20 s: bar from 10 s, every 0.5 s
    text = out.getvalue()
    assert "\n" not in text
    bars = text.split("\r")[1:]
    assert len(bars) == 20  # 10 s of bar at one redraw per 0.5 s
    assert bars[0].startswith("epoch   1/3 [###############...............]  50%  160/320  1600 img/s  left 0:00:10")
    printer.epoch({"epoch": 1, "loss": 1.0, "lr": 0.1, "top1_one": 50.0, "train_img_per_s": 2000.0})
    assert out.getvalue()[len(text):].startswith("\r\033[K" "epoch   1/3  loss 1.0000")


def test_only_rank_0_prints_progress():
    clock, out = Clock(), io.StringIO()
    run_epoch(ProgressPrinter(3, enabled=False, stream=out, clock=clock), clock, batches=400, seconds_per_batch=0.25)
    assert out.getvalue() == ""


def test_the_engine_reports_every_training_batch_to_the_progress_printer(tmp_path):
    cfg = load_config(overrides={"model.width": 0.125, "data.limit_train": 64, "data.limit_test": 16,
                                 "train.batch_size": 16, "train.threads": 1, "out_dir": str(tmp_path)})
    trainer = Trainer(cfg, quiet=True)
    seen = []
    trainer.progress.start_epoch = lambda epoch, batches, batch_size: seen.append((epoch, batches, batch_size))
    trainer.progress.batch = seen.append
    trainer.train_epoch()
    assert seen == [(1, 4, 16), 1, 2, 3, 4]
