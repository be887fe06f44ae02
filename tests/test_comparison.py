"""Paper-style reports (evaluation/report.py's table with paper.py's values beside, and
evaluation/comparison.py's extras) from hand-made records; expected means, deviations and
differences are computed here with plain arithmetic."""
from __future__ import annotations

import csv
import math

from adautomix.evaluation import comparison, report
from adautomix.evaluation.paper import paper_value

CIFAR = {"data.name": "cifar100", "model.arch": "resnet18", "model.width": 1.0, "train.epochs": 800}


def record(method: str, seed: int, top1: float, ece: float, setting: dict = CIFAR, **metrics):
    return {"setting": {**setting, "method.name": method, "seed": seed}, "seed": seed, "eval": None,
            "metrics": {"top1": top1, "eval_ece": ece, **metrics}}


RECORDS = [record("adautomix", 0, 82.0, 3.0), record("mixup", 0, 79.5, 6.0),
           record("adautomix", 1, 82.4, 3.6), record("mixup", 1, 78.5, 5.0)]


def group(records, swept=()):
    """What `adautomix report` builds: rows named by the keys that differ, top1 the headline."""
    return report.build(records, "top1", "max", comparison.setting_keys(records, swept))


def test_rows_hold_mean_and_sample_std_over_seeds_labelled_by_method():
    rows = group(RECORDS).rows
    assert [r["label"] for r in rows] == ["adautomix", "mixup"] and rows[0]["seeds"] == [0, 1]
    s = rows[1]["stats"]["top1"]
    assert (s.mean, s.n) == (79.0, 2) and math.isclose(s.std, math.sqrt(((79.5 - 79) ** 2 + (78.5 - 79) ** 2) / 1))


def test_best_of_each_column_is_bold_lower_ece_is_better_and_the_paper_value_stands_beside():
    table = report.markdown(group(RECORDS)).splitlines()
    assert table[0] == "| method | n | top1 ★ | 95 % CI | Δ vs adautomix [95 % CI] | p | verdict | ECE ↓ |"
    adautomix, mixup = table[2], table[3]
    assert adautomix.startswith("| adautomix | 2 | **82.20 ± 0.28** (paper 82.32, -0.12) | ")
    assert adautomix.endswith(" | reference |  |  | **3.30 ± 0.42** (paper 3.20, +0.10) |")
    assert mixup.startswith("| mixup | 2 | 79.00 ± 0.71 (paper 79.12, -0.12) | ")
    assert mixup.endswith(" | 5.50 ± 0.71 |")
    assert "(paper P, ±D): the paper's value" in "\n".join(table)


def test_paper_values_only_beside_matching_settings():
    assert paper_value("top1", {**CIFAR, "method.name": "automix"})["value"] == 82.04
    rx50 = {**CIFAR, "model.arch": "resnext50", "method.name": "adautomix"}
    assert paper_value("top1_median_last10", rx50)["value"] == 84.22
    assert paper_value("top1", {**CIFAR, "train.epochs": 200, "method.name": "adautomix"}) is None
    assert paper_value("top1", {**CIFAR, "model.width": 0.5, "method.name": "adautomix"}) is None
    assert paper_value("top1", {**CIFAR, "data.name": "cifar10", "method.name": "adautomix"}) is None
    assert paper_value("eval_ece", {**CIFAR, "train.epochs": 200, "method.name": "adautomix"})["value"] == 3.2
    tiny = {**CIFAR, "data.name": "tinyimagenet", "train.epochs": 400, "model.arch": "resnext50"}
    assert paper_value("top1", {**tiny, "method.name": "automix"})["value"] == 70.72
    assert paper_value("top1", {**tiny, "method.name": "mixup"}) is None  # not in the paper's table
    imagenet = {**CIFAR, "data.name": "imagenet", "train.epochs": 100, "method.name": "adautomix"}
    assert paper_value("top1", {**imagenet, "model.arch": "resnet50"})["value"] == 78.04
    assert paper_value("top1", {**imagenet, "model.arch": "resnet18"}) is None
    digits = [record("vanilla", 0, 90.0, 2.0, setting={**CIFAR, "data.name": "digits"})]
    assert "paper" not in report.markdown(group(digits))


def test_rows_of_a_sweep_are_labelled_by_what_differs(tmp_path):
    recs = [record("adautomix", 0, 80.0, 3.0, setting={**CIFAR, "method.n_mix": n}) for n in (2, 3)]
    table = group(recs, swept=["method.n_mix"])
    assert [r["label"] for r in table.rows] == ["n_mix=2", "n_mix=3"] and table.keys == ["method.n_mix"]
    with report.write_csv(tmp_path / "r.csv", group(RECORDS)).open() as fh:
        lines = list(csv.DictReader(fh))
    assert lines[0]["method.name"] == "adautomix" and float(lines[0]["top1_mean"]) == 82.2
    assert float(lines[0]["top1_paper"]) == 82.32 and math.isclose(float(lines[0]["top1_diff"]), -0.12, abs_tol=1e-9)
    assert lines[1]["eval_ece_paper"] == ""


def test_occlusion_curves_and_pooled_reliability_bins(tmp_path):
    recs = [record("mixup", s, 80.0, 4.0, eval_occlusion_top1_000=80.0 + s, eval_occlusion_top1_100=10.0,
                   eval_occlusion_top1_mean=45.0) for s in (0, 1)]
    for s, rec in enumerate(recs):
        rec["eval"] = {"calibration": {"bins": {"edges": [0, 0.5, 1], "count": [1, 3 - s],
                                                "confidence": [0.4, 0.9], "accuracy": [0.0, 1.0 - s]}}}
    rows = group(recs).rows
    curves, errors = comparison.occlusion_curves(rows)
    assert curves["mixup"] == {"ratios": [0.0, 1.0], "top1": [80.5, 10.0]}
    assert math.isclose(errors["mixup"][0], math.sqrt(0.5)) and errors["mixup"][1] == 0
    pooled = comparison.pooled_bins(recs)
    assert pooled["count"] == [2, 5] and math.isclose(pooled["accuracy"][1], (3 * 1.0 + 2 * 0.0) / 5)
    assert comparison.save_reliability_grid(tmp_path / "r.png", rows).read_bytes()[:4] == b"\x89PNG"
