"""The paper-style extras of a report, on the rows of ``report.build``: which keys name a row,
the per-type corruption table, occlusion curves and reliability diagrams.

The layout of the AdAutoMix paper's figures (Qin et al., ICLR 2024: Table 4 corruption,
Figure 4 calibration, Figure 5 occlusion). The main table and its statistics are
``report.py``'s; nothing here imports MLflow: ``platform/mlflow_report.py`` turns MLflow runs
into the records (each with ``"eval"``: the run's eval.json or None).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from .report import best_mean, cell

# the keys that tell runs apart besides the seed (a study's swept keys come on top)
SETTING_KEYS = ("method.name", "data.name", "model.arch", "model.width", "train.epochs")


def setting_keys(records: list[dict], swept: list[str] = ()) -> list[str]:
    """The keys whose values differ between ``records`` among ``swept`` and ``SETTING_KEYS``
    (the method alone when none differs): a report's row columns."""
    keys = list(dict.fromkeys([*swept, *SETTING_KEYS]))
    varying = [k for k in keys if len({json.dumps(r["setting"].get(k), default=str) for r in records}) > 1]
    return varying or ["method.name"]


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
    bests = {n: best_mean(rows, prefix + n, "max") for n in names}
    for r in rows:
        lines.append("| " + " | ".join([r["label"]] + [cell(r, prefix + n, bests[n]) for n in names]) + " |")
    return "\n".join(lines)


def occlusion_curves(rows: list[dict]) -> tuple[dict[str, dict], dict[str, list]]:
    """Per row: the mean top-1 over seeds at each occlusion ratio, and its std (0 for one seed)."""
    curves, errors = {}, {}
    for r in rows:
        keys = sorted(m for m in r["stats"] if m.startswith("eval_occlusion_top1_") and m[-3:].isdigit())
        if not keys:
            continue
        curves[r["label"]] = {"ratios": [int(k[-3:]) / 100 for k in keys], "top1": [r["stats"][k].mean for k in keys]}
        errors[r["label"]] = [0.0 if math.isnan(r["stats"][k].std) else r["stats"][k].std for k in keys]
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
        ece = r["stats"].get("eval_ece")
        plot_reliability(ax, bins, r["label"], None if ece is None else ece.mean / 100)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def write_report(out: Path, name: str, source: str, table) -> tuple[str, list[Path]]:
    """``adautomix report``'s files in ``out``: ``report.md`` (``source`` says where the runs came
    from), ``report.csv``, ``curves.png``, and ``occlusion.png`` / ``reliability.png`` when the
    rows have them. Returns the Markdown and the files written."""
    from . import figures
    from .report import markdown, write_csv

    out.mkdir(parents=True, exist_ok=True)
    files = [write_csv(out / "report.csv", table), figures.save(out / "curves.png", table, name)]
    curves, errors = occlusion_curves(table.rows)
    if curves:
        from .suite import save_occlusion_curve

        files.append(save_occlusion_curve(out / "occlusion.png", curves, errors))
    reliability = save_reliability_grid(out / "reliability.png", table.rows)
    files += [reliability] if reliability else []
    text = [f"# {name}", "", source, "", markdown(table), "", "![curves](curves.png)"]
    per_type = corruption_table(table.rows)
    if per_type:
        text += ["", "Corruption top-1 per type (mean over severities 1-5; * synthetic frost texture, "
                 "see docs/evaluation.md):", "", per_type]
    (out / "report.md").write_text("\n".join(text) + "\n")
    return "\n".join(text), [out / "report.md", *files]
