"""Results tables from plain records (evaluation/report.py): hand-made records in, numbers out.

Expected means and standard deviations are computed here with plain arithmetic, not with the
module under test.
"""
from __future__ import annotations

import csv
import math

from adautomix.evaluation.report import aggregate, columns, markdown_table, plot, write_csv


def record(method: str, seed: int, top1: float, loss: float, status: str = "finished", **extra):
    return {"setting": {"method.name": method}, "seed": seed, "status": status, "epochs_done": 6,
            "metrics": {"top1": top1, "loss": loss, "train_img_per_s": 100.0 + seed, "lr": 0.1,
                        "epoch": 6, **extra}}


RECORDS = [
    record("mixup", 1, 80.0, 1.0), record("vanilla", 0, 90.0, 0.5), record("mixup", 0, 84.0, 1.2),
    record("vanilla", 1, 94.0, 0.3), record("vanilla", 2, 92.0, 0.4, status="stopped_early"),
    record("adautomix", 0, 70.0, 4.0, top1_one_k=70.0, top1_one_q=75.0),
]


def sample_std(values):
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def test_a_row_holds_the_mean_and_sample_std_over_seeds_of_each_metric():
    rows = aggregate(RECORDS, "top1", order=[{"method.name": m} for m in ("vanilla", "mixup", "adautomix")])
    vanilla = rows[0]
    assert vanilla["setting"] == {"method.name": "vanilla"} and vanilla["seeds"] == [0, 1, 2]
    mean, std, n = vanilla["stats"]["top1"]
    assert (mean, n) == (92.0, 3) and math.isclose(std, sample_std([90.0, 94.0, 92.0]))
    assert math.isclose(vanilla["stats"]["loss"][0], (0.5 + 0.3 + 0.4) / 3)
    assert vanilla["stopped_early"] == 1
    assert "lr" not in vanilla["stats"] and "epoch" not in vanilla["stats"]


def test_one_seed_has_no_std_and_heads_appear_only_where_reported():
    rows = aggregate(RECORDS, "top1", order=[{"method.name": "adautomix"}])
    adautomix = rows[0]
    assert adautomix["stats"]["top1_one_k"][:1] == (70.0,) and math.isnan(adautomix["stats"]["top1"][1])
    assert "top1_one_k" not in rows[1]["stats"]


def test_rows_follow_the_given_order_else_rank_by_the_metric():
    order = [{"method.name": m} for m in ("adautomix", "mixup", "vanilla")]
    assert [r["setting"]["method.name"] for r in aggregate(RECORDS, "top1", order=order)] == \
        ["adautomix", "mixup", "vanilla"]
    ranked = aggregate(RECORDS, "top1", mode="max")
    assert [r["setting"]["method.name"] for r in ranked] == ["vanilla", "mixup", "adautomix"]
    ranked = aggregate(RECORDS, "loss", mode="min")
    assert [r["setting"]["method.name"] for r in ranked] == ["vanilla", "mixup", "adautomix"]


def test_the_table_marks_the_ranked_metric_and_prints_mean_plus_minus_std():
    rows = aggregate(RECORDS, "top1", order=[{"method.name": m} for m in ("vanilla", "mixup", "adautomix")])
    assert columns(rows, "top1") == ["top1", "top1_one_k", "top1_one_q", "loss", "train_img_per_s"]
    lines = markdown_table(rows, ["method.name"], "top1").splitlines()
    assert lines[0] == "| method | seeds | top1 ★ | top1_one_k | top1_one_q | loss | img/s |"
    assert lines[2].startswith(f"| vanilla | 3 (1 stopped early) | 92.00 ± {sample_std([90, 94, 92]):.2f} |  |  | ")
    assert lines[4] == "| adautomix | 1 | 70.00 | 70.00 | 75.00 | 4.000 | 100 |"


def test_csv_has_one_line_per_setting_with_mean_and_std_columns(tmp_path):
    rows = aggregate(RECORDS, "top1", order=[{"method.name": m} for m in ("vanilla", "mixup", "adautomix")])
    with write_csv(tmp_path / "r.csv", rows, ["method.name"], "top1").open() as fh:
        table = list(csv.DictReader(fh))
    assert [t["method.name"] for t in table] == ["vanilla", "mixup", "adautomix"]
    assert float(table[1]["top1_mean"]) == 82.0
    assert math.isclose(float(table[1]["top1_std"]), sample_std([80.0, 84.0]), rel_tol=1e-5)
    assert table[2]["top1_std"] == "" and table[0]["n_seeds"] == "3"


def test_plots_are_written_for_one_knob_two_knobs_and_a_search(tmp_path):
    one = aggregate(RECORDS, "top1", order=None)
    two = aggregate([{**r, "setting": {"a": r["seed"], "b": r["setting"]["method.name"]}} for r in RECORDS], "top1")
    for name, rows, swept, search in (("one", one, ["method.name"], False), ("two", two, ["a", "b"], False),
                                      ("search", two, ["a"], True)):
        path = plot(tmp_path / f"{name}.png", rows, swept, "top1", name, search=search)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
