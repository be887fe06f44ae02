"""``results.png``: the figure of a results table (``report.Table``), as a paper would show it.

- Left: the headline metric against the epoch, one line per setting: the mean over seeds with
  its 95 % Student-t band (``stats.summarize`` at each epoch; no band where one seed reached it).
- Right: the final values with their 95 % CIs. A study over one numeric factor (N, α, β, λ, or
  any numeric key) plots the metric against the factor, as the paper's Figure 6 does
  (Adversarial AutoMixup, Qin et al., ICLR 2024); other studies get one point per setting.
- A TPE search: the metric against each searched key, one point per setting.

The curves come from each record's ``history`` (one entry per epoch); without any, only the
right panel is drawn.
"""
from __future__ import annotations

import math
from pathlib import Path

from . import stats
from .report import Table, format_value, short_key

# the paper's symbols of its ablated factors (Figure 6)
SYMBOLS = {"method.n_mix": "N", "method.alpha": "α", "method.beta": "β", "method.mix_lambda": "λ"}


def curve_metric(table: Table) -> str | None:
    """The metric the curves show: the headline when the histories have it, else top1."""
    for metric in (table.metric, "top1"):
        if any(metric in h for r in table.rows for rec in r["records"] for h in rec.get("history") or []):
            return metric
    return None


def curves(table: Table, metric: str) -> dict[str, dict[str, list[float]]]:
    """Per row label: ``{"epoch", "mean", "low", "high"}`` over the seeds at each epoch (low and
    high NaN where fewer than two seeds reached it)."""
    out = {}
    for r in table.rows:
        by_epoch: dict[int, list[float]] = {}
        for rec in r["records"]:
            for h in rec.get("history") or []:
                if metric in h and "epoch" in h:
                    by_epoch.setdefault(int(h["epoch"]), []).append(float(h[metric]))
        if not by_epoch:
            continue
        epochs = sorted(by_epoch)
        summaries = [stats.summarize(by_epoch[e]) for e in epochs]
        out[r["label"]] = {"epoch": epochs, "mean": [s.mean for s in summaries],
                           "low": [s.ci[0] if s.ci else math.nan for s in summaries],
                           "high": [s.ci[1] if s.ci else math.nan for s in summaries]}
    return out


def numeric_factor(table: Table) -> str | None:
    """The one swept key when all its values are numbers (the x axis of Figure 6), else None."""
    if len(table.keys) != 1:
        return None
    key = table.keys[0]
    values = [r["setting"].get(key) for r in table.rows]
    return key if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) else None


def figure(table: Table, title: str, log_keys: tuple[str, ...] = ()):
    """The matplotlib figure of ``table`` (see the module docstring)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    m = table.metric
    rows = [r for r in table.rows if m in r["stats"]]
    if table.search:
        return _search_figure(plt, table, rows, title, log_keys)
    metric = curve_metric(table)
    lines = curves(table, metric) if metric else {}
    fig, axes = plt.subplots(1, 2 if lines else 1, figsize=(10.5 if lines else 5.5, 4.0), squeeze=False)
    colors = {r["label"]: f"C{i % 10}" for i, r in enumerate(table.rows)}
    if lines:
        ax = axes[0][0]
        for name, c in lines.items():
            ax.plot(c["epoch"], c["mean"], color=colors[name], label=name, lw=1.6)
            ax.fill_between(c["epoch"], c["low"], c["high"], color=colors[name], alpha=0.2, lw=0)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(f"{metric} (%)" if metric.startswith("top1") else metric)
        ax.set_title(f"{metric} per epoch: mean and 95 % CI over seeds", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, frameon=False)
    _final_panel(axes[0][-1], table, rows, colors)
    n = max((len(r["seeds"]) for r in rows), default=0)
    fig.suptitle(f"{title}: {m}, {n} seed(s) per setting" + ("; one seed has no CI" if n < 2 else ""),
                 fontsize=10)
    fig.tight_layout()
    return fig


def _final_panel(ax, table: Table, rows: list[dict], colors: dict[str, str]) -> None:
    """The final values with their 95 % CIs: against the numeric factor, or one point per row."""
    m = table.metric
    factor = numeric_factor(table)
    means = [r["stats"][m].mean for r in rows]
    errors = [[0.0 if r["stats"][m].ci is None else r["stats"][m].mean - r["stats"][m].ci[0] for r in rows],
              [0.0 if r["stats"][m].ci is None else r["stats"][m].ci[1] - r["stats"][m].mean for r in rows]]
    if factor:
        xs = [r["setting"][factor] for r in rows]
        ax.errorbar(xs, means, yerr=errors, fmt="o-", color="tab:red", capsize=4)
        ax.set_xticks(xs, [format_value(x) for x in xs])
        ax.set_xlabel(SYMBOLS.get(factor, short_key(factor)) + f" ({factor})")
    else:
        for i, (r, mean) in enumerate(zip(rows, means)):
            ax.errorbar([i], [mean], yerr=[[errors[0][i]], [errors[1][i]]], fmt="o", capsize=4,
                        color=colors[r["label"]])
        ax.set_xticks(range(len(rows)), [r["label"] for r in rows], rotation=20 if len(rows) > 4 else 0)
        ax.set_xlim(-0.5, len(rows) - 0.5)
        ax.set_xlabel(", ".join(short_key(k) for k in table.keys))
    ax.set_ylabel(f"final {m} (%)" if m.startswith(("top1", "eval_")) else f"final {m}")
    ax.set_title("final value: mean and 95 % CI over seeds", fontsize=9)
    ax.grid(alpha=0.3)


def _search_figure(plt, table: Table, rows: list[dict], title: str, log_keys: tuple[str, ...]):
    """A TPE search: the metric against each searched key (one point per setting)."""
    fig, axes = plt.subplots(1, len(table.keys), figsize=(3.4 * len(table.keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], table.keys):
        ax.scatter([r["setting"][key] for r in rows], [r["stats"][table.metric].mean for r in rows])
        if key in log_keys:
            ax.set_xscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel(table.metric)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{title}: {table.metric} of {len(rows)} settings (TPE)", fontsize=10)
    fig.tight_layout()
    return fig


def save(path: Path, table: Table, title: str, log_keys: tuple[str, ...] = ()) -> Path:
    """Draw ``table`` (``figure``) and write it to ``path`` as a PNG."""
    fig = figure(table, title, log_keys)  # selects matplotlib's file-only backend first
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=150)
    plt.close(fig)
    return Path(path)
