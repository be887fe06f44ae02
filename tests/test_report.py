"""The results table (evaluation/report.py) and its figure (evaluation/figures.py) from hand-made
records: the numbers, the columns of the Markdown and the CSV, and what the figure shows.

Expected means, deviations, intervals and tests are computed here with numpy and scipy.stats,
not with the modules under test.
"""
from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from PIL import Image
from scipy import stats as sp

from adautomix.evaluation import figures
from adautomix.evaluation.report import build, columns, markdown, write_csv

ORDER = [{"method.name": m} for m in ("vanilla", "mixup", "adautomix")]
TOP1 = {"vanilla": [90.0, 94.0, 92.0], "mixup": [82.0, 85.0, 82.5], "adautomix": [95.0, 96.5, 94.0]}


def record(method: str, seed: int, top1: float, loss: float = 1.0, status: str = "finished", **extra):
    history = [{"epoch": e, "top1": top1 * e / 4} for e in range(1, 5)]  # reaches top1 at epoch 4
    return {"setting": {"method.name": method}, "seed": seed, "status": status, "epochs_done": 4,
            "metrics": {"top1": top1, "loss": loss, "train_img_per_s": 100.0 + seed, "epoch": 4, **extra},
            "history": history}


RECORDS = [record(m, s, v) for m, values in TOP1.items() for s, v in enumerate(values)]


def t_interval(values):
    mean, sd = np.mean(values), np.std(values, ddof=1)
    half = sp.t.ppf(0.975, len(values) - 1) * sd / math.sqrt(len(values))
    return mean - half, mean + half


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip("|").split("|")]


def test_a_row_holds_mean_sample_std_n_and_the_t_interval_of_each_metric():
    table = build(RECORDS, "top1", order=ORDER, keys=["method.name"])
    vanilla = table.rows[0]
    assert vanilla["setting"] == {"method.name": "vanilla"} and vanilla["seeds"] == [0, 1, 2]
    s = vanilla["stats"]["top1"]
    assert (s.mean, s.n) == (92.0, 3) and s.std == pytest.approx(np.std(TOP1["vanilla"], ddof=1))
    assert s.ci == pytest.approx(t_interval(TOP1["vanilla"]))
    assert vanilla["stats"]["train_img_per_s"].mean == pytest.approx(101.0)


def test_each_setting_is_compared_with_the_first_paired_by_seed_with_holm_over_two():
    table = build(RECORDS, "top1", order=ORDER, keys=["method.name"])
    assert table.reference is table.rows[0] and table.holm == 2
    raw = {m: sp.ttest_rel(TOP1[m], TOP1["vanilla"]) for m in ("mixup", "adautomix")}
    smaller, larger = sorted(raw, key=lambda m: raw[m].pvalue)
    holm = {smaller: min(1, 2 * raw[smaller].pvalue)}
    holm[larger] = max(holm[smaller], min(1, raw[larger].pvalue))
    for row in table.rows[1:]:
        m = row["label"]
        assert row["diff"].test == "paired" and row["diff"].p == pytest.approx(raw[m].pvalue)
        assert row["diff"].ci == pytest.approx(tuple(raw[m].confidence_interval(0.95)))
        assert row["p"] == pytest.approx(holm[m])
    assert [r["verdict"] for r in table.rows] == ["", "worse", "within noise"]


def test_the_markdown_has_the_statistics_columns_and_says_how_to_read_them():
    table = build(RECORDS, "top1", order=ORDER, keys=["method.name"])
    text = markdown(table)
    lines = text.splitlines()
    assert cells(lines[0]) == ["method", "n", "top1 ★", "95 % CI", "Δ vs vanilla [95 % CI]", "p (Holm)",
                               "verdict", "loss", "img/s"]
    lo, hi = t_interval(TOP1["vanilla"])
    assert cells(lines[2])[:7] == ["vanilla", "3", f"92.00 ± {np.std(TOP1['vanilla'], ddof=1):.2f}",
                                   f"[{lo:.2f}, {hi:.2f}]", "reference", "", ""]
    mixup = sp.ttest_rel(TOP1["mixup"], TOP1["vanilla"]).confidence_interval(0.95)
    assert cells(lines[3])[4] == f"{np.mean(TOP1['mixup']) - 92:+.2f} [{mixup.low:.2f}, {mixup.high:.2f}]"
    assert cells(lines[3])[6] == "worse" and cells(lines[4])[2].startswith("**95.17")  # best in bold
    assert "Student t with n − 1 degrees of freedom" in text and "paired t test by seed" in text
    assert "Holm's correction over the 2 comparisons" in text


def test_two_settings_need_no_correction_and_other_seeds_use_welch():
    recs = [r for r in RECORDS if r["setting"]["method.name"] != "adautomix"]
    recs = [r for r in recs if not (r["setting"]["method.name"] == "mixup" and r["seed"] == 2)]
    table = build(recs, "top1", order=ORDER, keys=["method.name"])
    mixup = table.rows[1]
    ref = sp.ttest_ind(TOP1["mixup"][:2], TOP1["vanilla"], equal_var=False)
    assert table.holm == 0 and mixup["diff"].test == "welch" and mixup["p"] == pytest.approx(ref.pvalue)
    text = markdown(table)
    assert "| p |" in text and "Holm" not in text and "Welch's t test" in text


def test_the_reference_can_be_any_setting_and_lower_is_better_in_mode_min():
    recs = [record(m, s, 90.0, eval_ece=e) for m, values in
            {"vanilla": [6.0, 6.5, 5.5], "mixup": [4.0, 4.4, 3.9], "adautomix": [6.1, 6.4, 5.6]}.items()
            for s, e in enumerate(values)]
    table = build(recs, "eval_ece", "min", ["method.name"], reference={"method.name": "adautomix"}, order=ORDER)
    assert table.reference["label"] == "adautomix"
    assert {r["label"]: r["verdict"] for r in table.rows} == {"vanilla": "within noise", "mixup": "better",
                                                              "adautomix": ""}
    assert cells(markdown(table).splitlines()[0])[2:5] == ["ECE ↓ ★", "95 % CI", "Δ vs adautomix [95 % CI]"]


def test_one_seed_gives_no_interval_and_no_test_and_says_so():
    recs = [record("vanilla", 0, 90.0), record("mixup", 0, 85.0)]
    table = build(recs, "top1", order=ORDER, keys=["method.name"])
    assert table.rows[1]["diff"].ci is None and table.rows[1]["verdict"] == "n = 1: no test"
    text = markdown(table)
    lines = text.splitlines()
    assert cells(lines[2])[3] == "— (n = 1)"
    assert cells(lines[3])[3:7] == ["— (n = 1)", "-5.00 (n = 1: no CI)", "", "n = 1: no test"]
    assert "n = 1: no CI (one seed has no spread)" in text


def test_equal_values_are_within_noise():
    recs = [record(m, s, 90.0) for m in ("vanilla", "mixup") for s in range(3)]
    table = build(recs, "top1", order=ORDER, keys=["method.name"])
    assert table.rows[1]["verdict"] == "within noise" and table.rows[1]["diff"].ci == (0.0, 0.0)
    assert "[90.00, 90.00]" in markdown(table)


def test_stopped_early_trials_are_counted_and_heads_appear_where_reported():
    recs = RECORDS + [record("mixup", 3, 81.0, status="stopped_early", top1_one_k=70.0)]
    table = build(recs, "top1", order=ORDER, keys=["method.name"])
    assert table.rows[1]["stopped_early"] == 1 and "top1_one_k" in columns(table)
    assert cells(markdown(table).splitlines()[3])[1] == "4 (1 stopped early)"


def test_csv_has_the_same_statistics_one_line_per_setting(tmp_path):
    table = build(RECORDS, "top1", order=ORDER, keys=["method.name"])
    with write_csv(tmp_path / "r.csv", table).open() as fh:
        lines = list(csv.DictReader(fh))
    assert [t["method.name"] for t in lines] == ["vanilla", "mixup", "adautomix"]
    mixup = lines[1]
    assert float(mixup["top1_mean"]) == pytest.approx(np.mean(TOP1["mixup"]), rel=1e-5)
    assert float(mixup["top1_std"]) == pytest.approx(np.std(TOP1["mixup"], ddof=1), rel=1e-5)
    ci = float(mixup["top1_ci_low"]), float(mixup["top1_ci_high"])
    assert ci == pytest.approx(t_interval(TOP1["mixup"]), rel=1e-5)
    ref = sp.ttest_rel(TOP1["mixup"], TOP1["vanilla"])
    assert float(mixup["p"]) == pytest.approx(ref.pvalue, rel=1e-5) and mixup["test"] == "paired"
    assert float(mixup["delta_ci_low"]) == pytest.approx(ref.confidence_interval(0.95).low, rel=1e-5)
    assert float(mixup["p_holm"]) == pytest.approx(min(1, 2 * ref.pvalue), rel=1e-5)  # the smaller of two p
    assert mixup["verdict"] == "worse" and lines[0]["test"] == "reference" and lines[0]["n"] == "3"


def test_a_search_ranks_its_settings_and_shows_the_best_ten():
    recs = [{"setting": {"train.lr": 0.01 * (i + 1)}, "seed": 0, "metrics": {"top1": 50.0 + i}} for i in range(12)]
    recs += [{"setting": {"train.lr": 0.12}, "seed": 1, "metrics": {"top1": 63.0}}]  # a repeated setting
    table = build(recs, "top1", "max", ["train.lr"], search=True)
    assert [r["setting"]["train.lr"] for r in table.rows[:3]] == [0.12, 0.11, 0.1] and table.reference is None
    text = markdown(table)
    body = [line for line in text.splitlines() if line.startswith("| ")][1:]
    assert len(body) == 10 and cells(body[0])[:3] == ["0.12", "2", "**62.00 ± 1.41**"]
    assert "Δ" not in text and "TPE search: the 10 best of 12 settings by top1" in text


# ------------------------------------------------------------------------------ the figure
def test_the_figure_has_a_curve_and_band_per_setting_and_the_final_values(tmp_path):
    table = build(RECORDS, "top1", order=ORDER, keys=["method.name"])
    fig = figures.figure(table, "default")
    curves, final = fig.axes
    assert [line.get_label() for line in curves.lines] == ["vanilla", "mixup", "adautomix"]
    assert list(curves.lines[0].get_xdata()) == [1, 2, 3, 4]
    assert list(curves.lines[0].get_ydata()) == pytest.approx([92.0 * e / 4 for e in range(1, 5)])
    assert len(curves.collections) == 3  # one 95 % band per setting
    band = curves.collections[1].get_paths()[0].vertices  # mixup's band
    assert sorted(set(band[band[:, 0] == 4, 1])) == pytest.approx(t_interval(TOP1["mixup"]))  # last epoch
    assert curves.get_xlabel() == "epoch" and final.get_ylabel() == "final top1 (%)"
    assert [t.get_text() for t in final.get_xticklabels()] == ["vanilla", "mixup", "adautomix"]
    path = figures.save(tmp_path / "results.png", table, "default")
    with Image.open(path) as image:
        assert image.size == (1575, 600)  # two panels at 150 dpi


def test_a_numeric_factor_is_on_the_x_axis_as_in_the_papers_figure_6():
    recs = [{**r, "setting": {"method.n_mix": {"vanilla": 2, "mixup": 3, "adautomix": 4}[r["setting"]["method.name"]]}}
            for r in RECORDS]
    table = build(recs, "top1", keys=["method.n_mix"])
    final = figures.figure(table, "n_mix").axes[1]
    assert final.get_xlabel() == "N (method.n_mix)"
    line = final.lines[0]
    assert list(line.get_xdata()) == [2, 3, 4]
    assert list(line.get_ydata()) == pytest.approx([np.mean(TOP1[m]) for m in ("vanilla", "mixup", "adautomix")])


def test_without_histories_only_the_final_panel_is_drawn_and_a_search_scatters():
    recs = [{**r, "history": []} for r in RECORDS]
    assert len(figures.figure(build(recs, "top1", keys=["method.name"]), "x").axes) == 1
    search = [{"setting": {"train.lr": 0.1 * i, "method.alpha": 0.2}, "seed": 0, "metrics": {"top1": 50.0 + i}}
              for i in range(1, 4)]
    fig = figures.figure(build(search, "top1", keys=["train.lr", "method.alpha"], search=True), "hpo", ("train.lr",))
    assert [ax.get_xlabel() for ax in fig.axes] == ["train.lr", "method.alpha"] and fig.axes[0].get_xscale() == "log"
