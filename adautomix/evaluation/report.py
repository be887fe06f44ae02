"""The results table of several runs, from plain records: one builder for every table.

A study's printed table, its ``results.md`` / ``results.csv`` and ``adautomix report``'s
``report.md`` / ``report.csv`` all come from ``build`` and the two writers here. A record is one
run::

    {"setting": {dotted key: value}, "seed": int, "metrics": {name: value},
     "status": "finished" | "stopped_early" (optional), "history": [{"epoch": e, name: value}]
     (optional, per epoch: the curves), "eval": the run's eval.json or None (optional)}

Rows group the records of one setting (the values of ``keys``); each metric gets its mean, std,
n and 95 % Student-t interval over the seeds, as the paper reports its ablations with error bars
over runs (Adversarial AutoMixup, Qin et al., ICLR 2024, Figure 6). The headline metric of every
row is compared with the reference setting's: Δ, its 95 % CI, the t test's p-value (paired by
seed, else Welch; Holm-adjusted when several settings are compared) and a verdict
(``stats.py``). A TPE search ranks its settings instead. Beside a number whose setting matches
one of the paper's (``paper.py``) stand the paper's value and the difference.
Nothing here imports Ray, Optuna or MLflow: a study builds its records from Ray Tune's
``ResultGrid``, ``adautomix report`` from MLflow runs.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import stats
from .paper import paper_value

# (metric, column title, better: "max" | "min" | None = never bold); the columns in this order
METRICS = (
    ("top1", "top1", "max"),
    ("top1_median_last10", "top1_median_last10", "max"),
    ("eval_ece", "ECE ↓", "min"),
    ("eval_corruption_top1", "corruption top-1", "max"),
    ("eval_corruption_top1_without_synthetic", "corruption top-1 (18 types)", "max"),
    ("eval_fgsm_top1", "FGSM top-1", "max"),
    ("eval_occlusion_top1_mean", "occlusion top-1 (mean 0-100 %)", "max"),
    ("loss", "loss", None),
    ("train_img_per_s", "img/s", None),
)
TITLES = {m: title for m, title, _ in METRICS}
BETTER = {m: better for m, _, better in METRICS}
SEARCH_ROWS = 10  # a TPE search's table shows its best settings only (the CSV has them all)


def short_key(key: str) -> str:
    """``method.n_mix`` -> ``n_mix``, ``method.name`` -> ``method`` (the part that names the knob)."""
    parts = key.split(".")
    return parts[-2] if parts[-1] == "name" and len(parts) > 1 else parts[-1]


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def label(setting: dict, keys: list[str]) -> str:
    """A row's name: the method alone, else ``n_mix=3, alpha=0.5``."""
    if list(keys) == ["method.name"]:
        return str(setting.get("method.name"))
    return ", ".join(f"{short_key(k)}={format_value(setting.get(k))}" for k in keys)


@dataclass
class Table:
    """Rows of settings with their statistics; what the writers print."""

    rows: list[dict]  # {"setting", "label", "seeds", "records", "stats": {metric: Summary},
    #                    "stopped_early", "diff": Difference | None, "p": adjusted p, "verdict"}
    keys: list[str]  # the setting's keys, one column each
    metric: str  # the headline metric (★)
    mode: str  # "max" | "min": which way the headline metric is better
    reference: dict | None  # the reference row (None: a search, one row, or no reference data)
    holm: int  # comparisons Holm's correction ran over (0: none, one comparison or fewer)
    search: bool  # a TPE search: rows ranked best first, no reference
    runs: int  # records in the table


def _ident(setting: dict, keys: list[str]) -> str:
    return json.dumps({k: setting.get(k) for k in keys}, sort_keys=True, default=str)


def _row(recs: list[dict], keys: list[str]) -> dict:
    recs = sorted(recs, key=lambda r: r["seed"])
    names = dict.fromkeys(m for r in recs for m, v in r["metrics"].items()
                          if isinstance(v, (int, float)) and not isinstance(v, bool))
    summaries = {m: stats.summarize([float(r["metrics"][m]) for r in recs if m in r["metrics"]])
                 for m in names}
    return {"setting": recs[0]["setting"], "label": label(recs[0]["setting"], keys),
            "seeds": [r["seed"] for r in recs], "records": recs, "stats": summaries,
            "stopped_early": sum(r.get("status") == "stopped_early" for r in recs),
            "diff": None, "p": None, "verdict": ""}


def build(records: list[dict], metric: str, mode: str = "max", keys: list[str] | None = None,
          reference: dict | None = None, order: list[dict] | None = None, search: bool = False) -> Table:
    """Group ``records`` into one row per setting and compare each with the reference.

    Args:
        records: the runs (see the module docstring).
        metric, mode: the headline metric and which way is better.
        keys: what tells settings apart (default: every key of the records' settings).
        reference: the setting the others are compared with, by the keys it names (default:
            the first row); when no row has it, no row is compared.
        order: settings in the order the rows should follow (a grid's); settings not in it
            come after, in the order met. Ignored for a ``search``, whose rows are ranked.
        search: a TPE search: rows ranked by ``metric``, best first; no reference.
    """
    keys = list(keys) if keys is not None else list(dict.fromkeys(k for r in records for k in r["setting"]))
    groups: dict[str, list[dict]] = {}
    for rec in records:
        groups.setdefault(_ident(rec["setting"], keys), []).append(rec)
    wanted = [i for i in dict.fromkeys(_ident(s, keys) for s in order or []) if i in groups]
    rows = [_row(groups[k], keys) for k in wanted + [k for k in groups if k not in wanted]]
    if search:
        sign = -1 if mode == "max" else 1
        rows.sort(key=lambda r: sign * r["stats"][metric].mean if metric in r["stats"] else math.inf)
        return Table(rows, keys, metric, mode, None, 0, True, len(records))
    ref = next((r for r in rows if all(r["setting"].get(k) == v for k, v in reference.items())), None) \
        if reference is not None else rows[0] if rows else None
    if ref is None or metric not in ref["stats"] or len(rows) < 2:
        return Table(rows, keys, metric, mode, None, 0, False, len(records))
    compared = [r for r in rows if r is not ref and metric in r["stats"]]
    for r in compared:
        r["diff"] = stats.difference(*_paired_values(r, ref, metric))
    raw = [r["diff"].p for r in compared]
    tested = sum(p is not None for p in raw)
    adjusted = stats.holm(raw) if tested > 1 else raw
    for r, p in zip(compared, adjusted):
        r["p"], r["verdict"] = p, stats.verdict(r["diff"], p, mode)
    return Table(rows, keys, metric, mode, ref, tested if tested > 1 else 0, False, len(records))


def _paired_values(row: dict, ref: dict, metric: str) -> tuple[list[float], list[float], bool]:
    """The two rows' values of ``metric`` (in seed order) and whether they pair: the same
    seeds, each once."""
    a = [(r["seed"], float(r["metrics"][metric])) for r in row["records"] if metric in r["metrics"]]
    b = [(r["seed"], float(r["metrics"][metric])) for r in ref["records"] if metric in r["metrics"]]
    seeds = [s for s, _ in a]
    paired = seeds == [s for s, _ in b] and len(set(seeds)) == len(seeds)
    return [v for _, v in a], [v for _, v in b], paired


# ------------------------------------------------------------------------------ the writers
def columns(table: Table) -> list[str]:
    """The metric columns after the headline: top1 and the median, each head, the final
    evaluation's numbers, loss, img/s (those some row has)."""
    present = {m for r in table.rows for m in r["stats"]}
    heads = sorted(m for m in present if m.startswith("top1_") and m not in TITLES)
    order = ["top1", "top1_median_last10", *heads, *(m for m, _, _ in METRICS[2:])]
    return [m for m in order if m in present and m != table.metric]


def _digits(metric: str) -> int:
    return 0 if metric == "train_img_per_s" else 3 if metric == "loss" else 2


def _interval(ci: tuple[float, float] | None, digits: int = 2) -> str:
    return "" if ci is None else f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def best_mean(rows: list[dict], metric: str, better: str | None) -> float | None:
    """The best mean of ``metric`` over the rows (None when no row has it or ``better`` is None)."""
    means = [r["stats"][metric].mean for r in rows if metric in r["stats"]]
    return (max if better == "max" else min)(means) if means and better else None


def best_key(records: list[dict], metric: str, mode: str) -> str | None:
    """The ``key`` of the finished record with the best ``metric`` (a study's champion)."""
    scored = [r for r in records if r["status"] == "finished" and metric in r["metrics"]]
    return (max if mode == "max" else min)(scored, key=lambda r: r["metrics"][metric])["key"] if scored else None


def _best(table: Table, metric: str) -> float | None:
    better = table.mode if metric == table.metric else BETTER.get(metric, "max" if metric.startswith("top1") else None)
    return best_mean(table.rows, metric, better)


def cell(row: dict, metric: str, best: float | None = None, markdown: bool = True) -> str:
    """``mean ± std`` (bold when it is the column's best), then ``(paper P, ±D)`` when the row's
    setting matches one of the paper's."""
    if metric not in row["stats"]:
        return ""
    s, d = row["stats"][metric], _digits(metric)
    text = f"{s.mean:.{d}f}" if s.n < 2 else f"{s.mean:.{d}f} ± {s.std:.{d}f}"
    if markdown and best is not None and s.mean == best:
        text = f"**{text}**"
    ref = paper_value(metric, row["setting"])
    if ref is not None:
        text += f" (paper {ref['value']:.2f}, {s.mean - ref['value']:+.2f})"
    return text


def _delta_cells(table: Table, row: dict) -> list[str]:
    """Δ with its CI, p and the verdict of one row."""
    if row is table.reference:
        return ["reference", "", ""]
    diff = row["diff"]
    if diff is None:
        return ["", "", ""]
    ci = _interval(diff.ci) if diff.ci else "(n = 1: no CI)"
    return [f"{diff.delta:+.2f} {ci}", "" if row["p"] is None else f"{row['p']:.3g}", row["verdict"]]


def markdown(table: Table) -> str:
    """The table in Markdown, then the lines that say how to read it."""
    m, cols = table.metric, columns(table)
    compare = table.reference is not None
    header = [short_key(k) for k in table.keys] + ["n", f"{TITLES.get(m, m)} ★", "95 % CI"]
    if compare:
        header += [f"Δ vs {table.reference['label']} [95 % CI]", "p (Holm)" if table.holm else "p", "verdict"]
    header += [TITLES.get(c, c) for c in cols]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    bests = {c: _best(table, c) for c in [m, *cols]}
    rows = table.rows[:SEARCH_ROWS] if table.search else table.rows
    for r in rows:
        s = r["stats"].get(m)
        cells = [format_value(r["setting"].get(k)) for k in table.keys]
        cells.append(str(len(r["seeds"])) + (f" ({r['stopped_early']} stopped early)" if r["stopped_early"] else ""))
        cells += [cell(r, m, bests[m]), "" if s is None else _interval(s.ci) or "— (n = 1)"]
        cells += _delta_cells(table, r) if compare else []
        cells += [cell(r, c, bests[c]) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + [""] + notes(table, rows))


def notes(table: Table, shown: list[dict]) -> list[str]:
    """What the columns mean, said under the table."""
    m, better = table.metric, "higher" if table.mode == "max" else "lower"
    out = [f"★ {m} ({better} is better): mean ± std over n seeds; 95 % CI of the mean: Student t with "
           "n − 1 degrees of freedom" + ("; n = 1: no CI (one seed has no spread)"
                                          if any(len(r["seeds"]) < 2 for r in shown) else "") + "."]
    if table.reference is not None:
        tests = {r["diff"].test for r in table.rows if r["diff"] is not None}
        how = " and ".join(t for t in (("paired t test by seed" if "paired" in tests else ""),
                                       ("Welch's t test (seeds differ)" if "welch" in tests else "")) if t)
        out.append(f"Δ: {m} minus the reference's ({table.reference['label']}), with its 95 % CI"
                   + (f"; {how}" if how else "") + "; verdict: better / worse when p < 0.05, else within noise.")
        if table.holm:
            out.append(f"p: Holm's correction over the {table.holm} comparisons with the reference "
                       "(the CIs are not adjusted).")
    if table.search:
        out.append(f"TPE search: the {len(shown)} best of {len(table.rows)} settings by {m}, best first"
                   "; n > 1 where a setting ran with several seeds.")
    if any(paper_value(c, r["setting"]) for r in shown for c in r["stats"]):
        out.append("(paper P, ±D): the paper's value where the setting matches one of its tables, and the difference.")
    out.append("Best of each top-1 / evaluation column in **bold**.")
    return out


def write_csv(path: Path, table: Table) -> Path:
    """``csv_rows(table)`` as a CSV file (``results.csv``, ``report.csv``)."""
    header, rows = csv_rows(table)
    with Path(path).open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows([row[k] for k in header] for row in rows)
    return Path(path)


def csv_rows(table: Table) -> tuple[list[str], list[dict[str, Any]]]:
    """The header and one row per setting: its keys, n, the headline metric's mean, std, CI, Δ,
    its CI, the test, p, p after Holm's correction (empty without it) and the verdict, then mean,
    std and CI of every other metric (every ``eval_*`` one included) and, where the paper has one,
    its value and the difference."""
    m, cols = table.metric, columns(table)
    present = {c for r in table.rows for c in r["stats"]}
    cols += sorted(c for c in present if c.startswith("eval_") and c not in cols and c != m)
    papered = {c for r in table.rows for c in [m, *cols] if paper_value(c, r["setting"])}
    header = [*table.keys, "n", "stopped_early", f"{m}_mean", f"{m}_std", f"{m}_ci_low", f"{m}_ci_high"]
    header += ["delta", "delta_ci_low", "delta_ci_high", "test", "p", "p_holm", "verdict"]
    header += [f"{m}_paper", f"{m}_diff"] if m in papered else []
    for c in cols:
        header += [f"{c}_{s}" for s in ("mean", "std", "ci_low", "ci_high")]
        header += [f"{c}_paper", f"{c}_diff"] if c in papered else []
    rows = []
    for r in table.rows:
        line: list[Any] = [r["setting"].get(k) for k in table.keys] + [len(r["seeds"]), r["stopped_early"]]
        line += _summary_fields(r, m, m in papered)[:4]
        d = r["diff"]
        line += ["", "", "", "reference" if r is table.reference else "", "", "", ""] if d is None else [
            _num(d.delta), *(_num(x) for x in d.ci or ("", "")), d.test, _num(d.p),
            _num(r["p"]) if table.holm else "", r["verdict"]]
        line += _summary_fields(r, m, m in papered)[4:]
        for c in cols:
            line += _summary_fields(r, c, c in papered)
        rows.append(dict(zip(header, line, strict=True)))
    return header, rows


def _num(x: Any) -> str:
    return "" if x is None or x == "" or isinstance(x, float) and math.isnan(x) else f"{x:.6g}"


def _summary_fields(row: dict, metric: str, papered: bool) -> list[str]:
    s = row["stats"].get(metric)
    if s is None:
        return ["", "", "", ""] + (["", ""] if papered else [])
    out = [_num(s.mean), _num(s.std), *(_num(x) for x in s.ci or (None, None))]
    if papered:
        ref = paper_value(metric, row["setting"])
        out += ["", ""] if ref is None else [_num(float(ref["value"])), _num(s.mean - ref["value"])]
    return out
