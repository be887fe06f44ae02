"""``adautomix report STUDY_OR_EXPERIMENT``: a study's (or any experiment's) finished runs, read
from MLflow with its client API, as plain records for ``evaluation/report.py``'s table and the
plots of ``evaluation/figures.py`` and ``comparison.py``; what it writes: docs/evaluation.md.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import yaml

from ..evaluation import comparison
from ..evaluation import report as tables
from .mlflow_store import client, error_line, mask, resolve_tracking_uri


class ReportError(ValueError):
    """No such study or experiment, or nothing to report; one line."""


def _value(text: str):
    """A param back to its value (params are strings): ``"800"`` -> 800, ``"1.0"`` -> 1.0."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def find_experiment(c, name: str):
    """The experiment of study ``name`` (``ablation-<name>``), else the experiment ``name``."""
    for candidate in (f"ablation-{name}", name):
        exp = c.get_experiment_by_name(candidate)
        if exp is not None:
            return exp
    names = sorted(e.name for e in c.search_experiments(max_results=200))
    raise ReportError(f"no study or experiment {name!r} in the tracking store (looked for "
                      f"ablation-{name} and {name}); experiments there: {', '.join(names) or 'none'}")


def records(c, exp) -> tuple[list[dict], list[str], str, dict]:
    """Plain records of the experiment's finished runs, the swept keys, what was read, and how
    to rank them (``{"metric", "mode", "reference"}``: the study's, else top1, max, None)."""
    parents = c.search_runs([exp.experiment_id], filter_string="tags.`adautomix.role` = 'study'",
                            order_by=["attributes.start_time DESC"], max_results=1)
    headline = {"metric": "top1", "mode": "max", "reference": None}
    order = ["attributes.start_time ASC"]  # a grid's trials start in the study file's order
    if parents:
        parent = parents[0]
        runs = c.search_runs([exp.experiment_id], max_results=5000, order_by=order, filter_string=(
            f"tags.`mlflow.parentRunId` = '{parent.info.run_id}' and attributes.status = 'FINISHED'"))
        what = f"study run {parent.info.run_name} ({parent.info.run_id[:8]}) of experiment {exp.name}"
        params = parent.data.params
        headline = {"metric": params.get("study.metric", "top1"), "mode": params.get("study.mode", "max"),
                    "reference": json.loads(params["study.reference"]) if params.get("study.reference") else None}
    else:
        runs = c.search_runs([exp.experiment_id], max_results=5000, order_by=order,
                             filter_string="attributes.status = 'FINISHED'")
        what = f"experiment {exp.name}"
    swept: list[str] = []
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in runs:
            tags = run.data.tags
            swept += [k[len("adautomix.swept."):] for k in tags if k.startswith("adautomix.swept.")
                      and k[len("adautomix.swept."):] not in swept]
            setting = {k: _value(v) for k, v in run.data.params.items()}
            seed = setting.get("seed", _value(tags.get("adautomix.seed", "0")))
            out.append({"setting": setting, "seed": int(seed) if isinstance(seed, int) else 0,
                        "metrics": dict(run.data.metrics), "eval": _eval_json(c, run, Path(tmp)),
                        "history": _history(c, run.info.run_id, {headline["metric"], "top1"}),
                        "run_id": run.info.run_id})
    return out, [s for s in swept if s != "variant"], what, headline


def _history(c, run_id: str, metrics: set[str]) -> list[dict]:
    """The run's per-epoch values of ``metrics`` (MLflow's step is the epoch)."""
    epochs: dict[int, dict] = {}
    for metric in sorted(metrics):
        for m in c.get_metric_history(run_id, metric):
            epochs.setdefault(m.step, {"epoch": m.step})[metric] = m.value
    return [epochs[e] for e in sorted(epochs)]


def _eval_json(c, run, tmp: Path) -> dict | None:
    if not any(k.startswith("eval_") for k in run.data.metrics):
        return None
    try:
        local = c.download_artifacts(run.info.run_id, "eval.json", str(tmp / run.info.run_id))
    except Exception:  # noqa: BLE001 - a run without the artifact: its metrics still count
        return None
    return json.loads(Path(local).read_text())


def report(name: str, tracking_uri: str | None = None, out: str | Path | None = None, stream=None) -> Path:
    """Write ``report.md``, ``report.csv``, ``curves.png``, ``occlusion.png`` and
    ``reliability.png`` (the last two when the runs have them) for study or experiment ``name``
    to ``out`` and print the Markdown."""
    import os
    import sys

    stream = stream or sys.stdout
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bar per eval.json
    uri = resolve_tracking_uri(tracking_uri)
    c = client(uri)
    try:
        exp = find_experiment(c, name)
        recs, swept, what, headline = records(c, exp)
    except ReportError:
        raise
    except Exception as err:  # noqa: BLE001 - the store cannot be read
        raise ReportError(f"cannot read the tracking store {mask(uri)}: {error_line(err, uri)}") from None
    if not recs:
        raise ReportError(f"{what}: no finished runs to report")
    keys = comparison.setting_keys(recs, swept)
    reference = headline["reference"]  # its row first; the others in the order they started
    table = tables.build(recs, headline["metric"], headline["mode"], keys, reference,
                         [reference] if reference else None)
    text, files = comparison.write_report(Path(out or Path("runs") / "reports" / name), name,
                                          f"From {what} at {mask(uri)}: {len(recs)} finished runs.", table)
    print(text, file=stream)
    print(f"\nwrote {', '.join(str(p) for p in files)}", file=stream, flush=True)
    return files[0]
