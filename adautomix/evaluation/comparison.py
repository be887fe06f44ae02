"""Paper-style comparison tables (methods x metrics) and plots from plain run records.

The layout of the AdAutoMix paper's tables (Qin et al., ICLR 2024: Table 1 top-1, Figure 4 ECE,
Table 4 corruption and FGSM, Figure 5 occlusion): one row per method (or per setting of a study),
mean ± std over seeds, the best value of each column in bold; beside a number whose setting
matches one of the paper's (``paper.py``) the paper's value and the difference. Nothing here
imports MLflow: ``platform/mlflow_report.py`` turns MLflow runs into the records.

A record is one run: ``{"setting": {dotted config key: value}, "seed": int, "metrics":
{name: value}, "eval": the run's eval.json or None}``.
"""
from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path
from typing import Any

from .paper import paper_value

# (metric, column title, better): the columns a table shows, when some run has them
METRICS = (
    ("top1", "top-1", "max"),
    ("top1_median_last10", "top-1 (median of last 10)", "max"),
    ("eval_ece", "ECE ↓", "min"),
    ("eval_corruption_top1", "corruption top-1", "max"),
    ("eval_corruption_top1_without_synthetic", "corruption top-1 (18 types)", "max"),
    ("eval_fgsm_top1", "FGSM top-1", "max"),
    ("eval_occlusion_top1_mean", "occlusion top-1 (mean 0-100 %)", "max"),
)
# the keys that tell runs apart besides the seed (a study's swept keys come on top)
SETTING_KEYS = ("method.name", "data.name", "model.arch", "model.width", "train.epochs")


def _label(setting: dict, keys: list[str]) -> str:
    from .report import format_value, short_key

    if keys == ["method.name"]:
        return str(setting["method.name"])
    return ", ".join(f"{short_key(k)}={format_value(setting.get(k))}" for k in keys)


def group(records: list[dict], swept: list[str] = ()) -> list[dict]:
    """One row per setting (``SETTING_KEYS`` and ``swept``): ``{"label", "setting", "seeds",
    "stats": {metric: (mean, std, n)}, "records"}``, in the order first met. The label names
    the keys whose values differ between rows (the method alone when only it differs)."""
    keys = list(dict.fromkeys([*swept, *SETTING_KEYS]))
    groups: dict[str, list[dict]] = {}
    for rec in records:
        ident = json.dumps({k: rec["setting"].get(k) for k in keys}, sort_keys=True, default=str)
        groups.setdefault(ident, []).append(rec)
    varying = [k for k in keys if len({json.dumps(r["setting"].get(k), default=str) for r in records}) > 1]
    label_keys = varying or ["method.name"]
    rows = []
    for recs in groups.values():
        recs = sorted(recs, key=lambda r: r["seed"])
        names = {m for r in recs for m in r["metrics"]}
        stats = {}
        for m in names:
            values = [float(r["metrics"][m]) for r in recs if m in r["metrics"]]
            std = statistics.stdev(values) if len(values) > 1 else float("nan")
            stats[m] = (statistics.fmean(values), std, len(values))
        rows.append({"label": _label(recs[0]["setting"], label_keys), "setting": recs[0]["setting"],
                     "seeds": [r["seed"] for r in recs], "stats": stats, "records": recs})
    return rows


def table_columns(rows: list[dict]) -> list[tuple[str, str, str]]:
    """The ``METRICS`` some row has."""
    present = {m for r in rows for m in r["stats"]}
    return [c for c in METRICS if c[0] in present]


def best(rows: list[dict], metric: str, better: str) -> float | None:
    """The best mean of ``metric`` over the rows (None when no row has it)."""
    means = [r["stats"][metric][0] for r in rows if metric in r["stats"]]
    return (max if better == "max" else min)(means) if means else None


def cell(row: dict, metric: str, best_mean: float | None, markdown: bool = True) -> str:
    """``mean ± std`` (bold when it is the column's best), then ``(paper P, ±D)`` when the row's
    setting matches one of the paper's."""
    if metric not in row["stats"]:
        return ""
    mean, std, _ = row["stats"][metric]
    text = f"{mean:.2f}" if math.isnan(std) else f"{mean:.2f} ± {std:.2f}"
    if markdown and best_mean is not None and mean == best_mean:
        text = f"**{text}**"
    ref = paper_value(metric, row["setting"])
    if ref is not None:
        text += f" (paper {ref['value']:.2f}, {mean - ref['value']:+.2f})"
    return text


def markdown_table(rows: list[dict]) -> str:
    """Rows x ``METRICS``: mean ± std over seeds, the best of each column in bold."""
    cols = table_columns(rows)
    header = ["", "seeds"] + [title for _, title, _ in cols]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    bests = {m: best(rows, m, b) for m, _, b in cols}
    for r in rows:
        cells = [r["label"], str(len(r["seeds"]))] + [cell(r, m, bests[m]) for m, _, _ in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def corruption_table(rows: list[dict]) -> str:
    """Rows x the 19 corruption types (top-1 averaged over severities and seeds), or "" when no
    run measured them."""
    from .corruptions import CORRUPTIONS, SYNTHETIC

    prefix = "eval_corruption_top1_"
    names = [n for n in CORRUPTIONS if any(prefix + n in r["stats"] for r in rows)]
    if not names:
        return ""
    header = ["", *(n + ("*" if n in SYNTHETIC else "") for n in names)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    bests = {n: best(rows, prefix + n, "max") for n in names}
    for r in rows:
        lines.append("| " + " | ".join([r["label"]] + [cell(r, prefix + n, bests[n]) for n in names]) + " |")
    return "\n".join(lines)


def write_csv(path: Path, rows: list[dict]) -> Path:
    """One line per row: label, seeds, then mean, std, paper value and difference per metric
    (every ``eval_*`` metric included)."""
    present = {m for r in rows for m in r["stats"]}
    metrics = [m for m, _, _ in METRICS if m in present]
    metrics += sorted(m for m in present if m.startswith("eval_") and m not in metrics)
    with Path(path).open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["row", "n_seeds"] + [f"{m}_{s}" for m in metrics for s in ("mean", "std", "paper", "diff")])
        for r in rows:
            values: list[Any] = []
            for m in metrics:
                mean, std, _ = r["stats"].get(m, (float("nan"), float("nan"), 0))
                ref = paper_value(m, r["setting"])
                values += ["" if math.isnan(mean) else f"{mean:.6g}", "" if math.isnan(std) else f"{std:.6g}",
                           "" if ref is None else ref["value"],
                           "" if ref is None or math.isnan(mean) else f"{mean - ref['value']:.6g}"]
            w.writerow([r["label"], len(r["seeds"])] + values)
    return Path(path)


def occlusion_curves(rows: list[dict]) -> tuple[dict[str, dict], dict[str, list]]:
    """Per row: the mean top-1 over seeds at each occlusion ratio, and its std (0 for one seed)."""
    curves, errors = {}, {}
    for r in rows:
        keys = sorted(m for m in r["stats"] if m.startswith("eval_occlusion_top1_") and m[-3:].isdigit())
        if not keys:
            continue
        curves[r["label"]] = {"ratios": [int(k[-3:]) / 100 for k in keys], "top1": [r["stats"][k][0] for k in keys]}
        errors[r["label"]] = [0.0 if math.isnan(r["stats"][k][1]) else r["stats"][k][1] for k in keys]
    return curves, errors


def pooled_bins(records: list[dict]) -> dict | None:
    """The reliability bins of several runs (seeds) pooled: counts added, confidence and
    accuracy averaged with the counts as weights. None when no run has them."""
    all_bins = [r["eval"]["calibration"]["bins"] for r in records
                if r.get("eval") and "calibration" in r["eval"]]
    if not all_bins:
        return None
    n = len(all_bins[0]["count"])
    count = [sum(b["count"][i] for b in all_bins) for i in range(n)]

    def weighted(key: str) -> list[float]:
        return [sum(b[key][i] * b["count"][i] for b in all_bins) / count[i] if count[i] else 0.0 for i in range(n)]

    return {"edges": all_bins[0]["edges"], "count": count, "confidence": weighted("confidence"),
            "accuracy": weighted("accuracy")}


def save_reliability_grid(path: Path, rows: list[dict]) -> Path | None:
    """The rows' reliability diagrams side by side (bins pooled over seeds; mean ECE in the
    title). None when no run has calibration results."""
    panels = [(r, pooled_bins(r["records"])) for r in rows]
    panels = [(r, b) for r, b in panels if b is not None]
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .calibration import plot_reliability

    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4), squeeze=False)
    for ax, (r, bins) in zip(axes[0], panels):
        ece = r["stats"].get("eval_ece", (None,))[0]
        plot_reliability(ax, bins, r["label"], None if ece is None else ece / 100)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
