"""``adautomix report``: a study's (or any experiment's) finished runs from MLflow, for ``evaluation``'s tables."""
from __future__ import annotations

import json
import os
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
        if (exp := c.get_experiment_by_name(candidate)) is not None:
            return exp
    names = sorted(e.name for e in c.search_experiments(max_results=200))
    raise ReportError(f"no study or experiment {name!r} in the tracking store (looked for "
                      f"ablation-{name} and {name}); experiments there: {', '.join(names) or 'none'}")


def records(c, exp) -> tuple[list[dict], list[str], str, dict]:
    """Records of the finished runs (the latest study run's, if any), swept keys, what was read, how to rank them."""
    parents = c.search_runs([exp.experiment_id], filter_string="tags.`adautomix.role` = 'study'",
                            order_by=["attributes.start_time DESC"], max_results=1)
    params = parents[0].data.params if parents else {}
    headline = {"metric": params.get("study.metric", "top1"), "mode": params.get("study.mode", "max"),
                "reference": json.loads(params["study.reference"]) if params.get("study.reference") else None}
    parent = parents[0].info if parents else None
    where = (f"tags.`mlflow.parentRunId` = '{parent.run_id}' and " if parent else "") + "attributes.status = 'FINISHED'"
    what = (f"study run {parent.run_name} ({parent.run_id[:8]}) of " if parent else "") + f"experiment {exp.name}"
    runs = c.search_runs([exp.experiment_id], max_results=5000, filter_string=where,
                         order_by=["attributes.start_time ASC"])  # a grid's trials start in the study file's order
    swept: dict[str, None] = {}  # the swept keys in the order first seen
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in runs:
            tags = run.data.tags
            swept.update(dict.fromkeys(k.removeprefix("adautomix.swept.") for k in tags
                                       if k.startswith("adautomix.swept.")))
            setting = {k: _value(v) for k, v in run.data.params.items()}
            seed = setting.get("seed", _value(tags.get("adautomix.seed", "0")))
            out.append({"setting": setting, "seed": int(seed) if isinstance(seed, int) else 0,
                        "metrics": dict(run.data.metrics), "eval": _eval_json(c, run, Path(tmp)),
                        "history": _history(c, run, headline["metric"]), "run_id": run.info.run_id})
    return out, [s for s in swept if s != "variant"], what, headline


def _history(c, run, headline: str) -> list[dict]:
    """The run's per-epoch values of ``headline`` and ``top1`` (MLflow's step is the epoch)."""
    epochs: dict[int, dict] = {}
    for metric in sorted({headline, "top1"}):
        for m in c.get_metric_history(run.info.run_id, metric):
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
    """Write the report of study or experiment ``name`` to ``out`` (the files: docs/evaluation.md); print it."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bar per eval.json
    uri = resolve_tracking_uri(tracking_uri)
    c = client(uri)
    try:
        recs, swept, what, headline = records(c, find_experiment(c, name))
    except ReportError:
        raise
    except Exception as err:  # noqa: BLE001 - the store cannot be read
        raise ReportError(f"cannot read the tracking store {mask(uri)}: {error_line(err, uri)}") from None
    if not recs:
        raise ReportError(f"{what}: no finished runs to report")
    reference = headline["reference"]  # its row first; the others in the order they started
    table = tables.build(recs, headline["metric"], headline["mode"], comparison.setting_keys(recs, swept),
                         reference, [reference] if reference else None)
    text, files = comparison.write_report(Path(out or Path("runs") / "reports" / name), name,
                                          f"From {what} at {mask(uri)}: {len(recs)} finished runs.", table)
    print(text, f"\nwrote {', '.join(str(p) for p in files)}", sep="\n", file=stream, flush=True)  # None: stdout
    return files[0]
