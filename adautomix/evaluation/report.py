"""Results of several runs as a table, a CSV and a plot, from plain records.

A record is one run: ``{"setting": {swept key: value}, "seed": int, "status": "finished" |
"stopped_early", "epochs_done": int, "metrics": {name: value}}``. Rows group the records of one
setting and hold the mean and the standard deviation over its seeds of every metric, as the
paper reports its ablations (Adversarial AutoMixup, Qin et al., ICLR 2024, Figure 6: mean over
runs with error bars). Nothing here imports Ray, Optuna or MLflow: a study builds its records
from Ray Tune's results, and anything else (a folder of run directories) can build them too.
"""
from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path
from typing import Any

# the metrics a table shows besides the per-head top1_<head> columns, in this order
SUMMARY_METRICS = ("top1", "top1_median_last10", "loss", "train_img_per_s")
# train.final_eval's numbers (evaluation/suite.py) a table shows, when the trials have them
EVAL_METRICS = ("eval_ece", "eval_corruption_top1", "eval_fgsm_top1", "eval_occlusion_top1_mean")


def short_key(key: str) -> str:
    """``method.n_mix`` -> ``n_mix``, ``method.name`` -> ``method`` (the part that names the knob)."""
    parts = key.split(".")
    return parts[-2] if parts[-1] == "name" and len(parts) > 1 else parts[-1]


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _setting_id(setting: dict) -> str:
    return json.dumps(setting, sort_keys=True)


def aggregate(records: list[dict], metric: str, mode: str = "max",
              order: list[dict] | None = None) -> list[dict]:
    """One row per setting: ``{"setting", "seeds", "stats": {metric: (mean, std, n)},
    "stopped_early"}``; ``std`` is NaN for a single seed.

    Args:
        records: finished (or stopped early) runs.
        metric, mode: what ranks the rows when ``order`` is None (best first).
        order: settings in the order the rows should follow (a grid's order); settings not in
            it come after, in the order met.
    """
    groups: dict[str, list[dict]] = {}
    for rec in records:
        groups.setdefault(_setting_id(rec["setting"]), []).append(rec)
    wanted = [i for i in dict.fromkeys(map(_setting_id, order or [])) if i in groups]
    keys = wanted + [k for k in groups if k not in wanted]
    rows = []
    for k in keys:
        recs = sorted(groups[k], key=lambda r: r["seed"])
        names = sorted({m for r in recs for m in r["metrics"]
                        if m in SUMMARY_METRICS or m in EVAL_METRICS or m.startswith("top1_")})
        stats = {}
        for m in names:
            values = [float(r["metrics"][m]) for r in recs if m in r["metrics"]]
            std = statistics.stdev(values) if len(values) > 1 else float("nan")
            stats[m] = (statistics.fmean(values), std, len(values))
        rows.append({"setting": recs[0]["setting"], "seeds": [r["seed"] for r in recs],
                     "stats": stats,
                     "stopped_early": sum(r["status"] == "stopped_early" for r in recs)})
    if order is None:
        sign = -1 if mode == "max" else 1
        rows.sort(key=lambda r: sign * r["stats"][metric][0] if metric in r["stats"] else math.inf)
    return rows


def columns(rows: list[dict], metric: str) -> list[str]:
    """The metric columns: the ranked metric first, then top1, the median, each head, the final
    evaluation's numbers, loss, img/s."""
    present = {m for r in rows for m in r["stats"]}
    first = [metric] + [m for m in ("top1", "top1_median_last10") if m != metric]
    heads = sorted(m for m in present if m.startswith("top1_") and m != "top1_median_last10")
    return list(dict.fromkeys(m for m in first + heads + list(EVAL_METRICS) + ["loss", "train_img_per_s"]
                              if m in present))


def _fmt(mean: float, std: float, digits: int) -> str:
    return f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown_table(rows: list[dict], swept: list[str], metric: str) -> str:
    """The results table (Markdown): one row per setting, mean ± std over seeds; ★ marks
    ``metric``."""
    cols = columns(rows, metric)
    header = [short_key(k) for k in swept] + ["seeds"] + \
        [c.replace("train_img_per_s", "img/s") + (" ★" if c == metric else "") for c in cols]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        cells = [format_value(r["setting"][k]) for k in swept]
        cells.append(str(len(r["seeds"])) + (f" ({r['stopped_early']} stopped early)"
                                             if r["stopped_early"] else ""))
        for c in cols:
            if c in r["stats"]:
                mean, std, _ = r["stats"][c]
                cells.append(_fmt(mean, std, 0 if c == "train_img_per_s" else 3 if c == "loss" else 2))
            else:
                cells.append("")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(path: Path, rows: list[dict], swept: list[str], metric: str) -> Path:
    """One line per setting: the swept values, the number of seeds, mean and std of each metric."""
    cols = columns(rows, metric)
    with Path(path).open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(list(swept) + ["n_seeds"] + [f"{c}_{s}" for c in cols for s in ("mean", "std")])
        for r in rows:
            values = []
            for c in cols:
                mean, std, _ = r["stats"].get(c, (float("nan"), float("nan"), 0))
                values += [f"{mean:.6g}", "" if math.isnan(std) else f"{std:.6g}"]
            w.writerow([r["setting"][k] for k in swept] + [len(r["seeds"])] + values)
    return Path(path)


def plot(path: Path, rows: list[dict], swept: list[str], metric: str, title: str,
         search: bool = False, log_keys: tuple[str, ...] = ()) -> Path:
    """The metric against the swept knob with error bars over seeds (the paper's Figure 6
    style); a heat map for two knobs; for a search (``search=True``) one scatter per knob."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if metric in r["stats"]]
    if not search and len(swept) == 2:
        xs = list(dict.fromkeys(r["setting"][swept[0]] for r in rows))
        ys = list(dict.fromkeys(r["setting"][swept[1]] for r in rows))
        grid = [[float("nan")] * len(xs) for _ in ys]
        for r in rows:
            grid[ys.index(r["setting"][swept[1]])][xs.index(r["setting"][swept[0]])] = r["stats"][metric][0]
        fig, ax = plt.subplots(figsize=(1.2 * len(xs) + 3, 0.8 * len(ys) + 2.5))
        im = ax.imshow(grid, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(xs)), [format_value(x) for x in xs])
        ax.set_yticks(range(len(ys)), [format_value(y) for y in ys])
        ax.set_xlabel(swept[0])
        ax.set_ylabel(swept[1])
        for i, line in enumerate(grid):
            for j, v in enumerate(line):
                if not math.isnan(v):
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="w")
        fig.colorbar(im, ax=ax, label=f"{metric} (mean over seeds)")
    elif not search:
        fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(rows) + 2), 3.6))
        labels = [", ".join(format_value(r["setting"][k]) for k in swept) for r in rows]
        means = [r["stats"][metric][0] for r in rows]
        stds = [0.0 if math.isnan(r["stats"][metric][1]) else r["stats"][metric][1] for r in rows]
        numeric = all(isinstance(r["setting"][k], (int, float)) and not isinstance(r["setting"][k], bool)
                      for r in rows for k in swept)
        ax.errorbar(range(len(rows)), means, yerr=stds, fmt="o-" if numeric else "o", capsize=4,
                    color="tab:red")
        ax.set_xticks(range(len(rows)), labels)
        ax.set_xlabel(", ".join(swept))
        ax.set_ylabel(f"{metric} (%)")
        ax.grid(alpha=0.3)
    else:
        fig, axes = plt.subplots(1, len(swept), figsize=(3.4 * len(swept), 3.2), squeeze=False)
        for ax, key in zip(axes[0], swept):
            ax.scatter([r["setting"][key] for r in rows], [r["stats"][metric][0] for r in rows])
            if key in log_keys:
                ax.set_xscale("log")
            ax.set_xlabel(key)
            ax.set_ylabel(metric)
            ax.grid(alpha=0.3)
    n_seeds = max((len(r["seeds"]) for r in rows), default=0)
    fig.suptitle(f"{title}: {metric}, mean ± std over {n_seeds} seed(s)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
