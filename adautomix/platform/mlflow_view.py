"""The MLflow page a study's URL opens with no clicks: MLflow's own shared view (what the UI's *Share* button
stores as the experiment tag ``mlflow.sharedViewState.<key>``), written when the study ends, keyed by its parent
run's id. What it shows, and why it groups by setting instead of nesting: docs/mlflow.md. ``c``: an MlflowClient."""
from __future__ import annotations

import json
import math
import re
import time
from urllib.parse import quote

from ..evaluation.report import short_key
from .mlflow_store import runs_url

STUDY_RUN_TAG = "adautomix.study_run"  # the parent run id, on the parent and each trial
SWEPT_TAG_PREFIX = "adautomix.swept."  # a trial's swept values (ablation.py sets them)
SHARED_VIEW_TAG_PREFIX = "mlflow.sharedViewState."  # MLflow UI: a shared view's experiment tag
PRIMARY_METRIC_TAG = "mlflow.experiment.primaryMetric.name"  # MLflow UI: the first chart
SECTION = "adautomix"  # the uuid of the view's chart section
_NAME_UNSAFE = re.compile(r"[^\w.\- /]")  # metric names: MLflow allows [/\w.\- ] everywhere


def study_url(uri: str, experiment_id: str, parent_run_id: str) -> str:
    """The URL of the study's view: the experiment's runs page in the state ``publish`` stored, on its chart tab."""
    return f"{runs_url(uri, experiment_id)}&viewStateShareKey={quote(parent_run_id)}&compareRunsMode=CHART"


def view_state(parent_run_id: str, metric: str, mode: str, swept: list[str], n_trials: int) -> dict:
    """The runs page's state as the UI's *Share* button stores it (MLflow UI 3.x: the search facets and the
    ``ExperimentPageUIState`` keys; a shared view leaves out which rows are expanded, pinned or hidden).
    ``metric``/``mode``: the study's headline metric and direction; ``swept``: the swept config keys;
    ``n_trials``: how many trials the charts must show (MLflow draws 10 runs per chart otherwise)."""
    metric_col = f"metrics.`{metric}`"
    group_keys = [{"mode": "tag", "groupByData": SWEPT_TAG_PREFIX + k} for k in swept]
    shown = max(n_trials, 10)
    chart = {"metricSectionId": SECTION, "deleted": False, "isGenerated": False, "metricKey": metric}
    line = {"uuid": f"{SECTION}-{metric}-curve", "type": "LINE", **chart, "selectedMetricKeys": [metric],
            "runsCountToCompare": shown, "lineSmoothness": 0, "xAxisKey": "step", "xAxisScaleType": "linear",
            "scaleType": "linear", "selectedXAxisMetricKey": "", "yAxisKey": "metric", "yAxisExpressions": [],
            "range": {}, "ignoreOutliers": False, "useGlobalXaxisKey": False, "useGlobalLineSmoothing": False,
            "displayPoints": True}
    bars = {"uuid": f"{SECTION}-{metric}-last", "type": "BAR", **chart, "runsCountToCompare": shown}
    return {
        # search facets: this study's runs, best first
        "searchFilter": f"tags.`{STUDY_RUN_TAG}` = '{parent_run_id}'",
        "orderByKey": metric_col, "orderByAsc": mode == "min",
        # the page: grouped by setting, every trial in the charts, the headline columns
        "groupBy": {"aggregateFunction": "average", "groupByKeys": group_keys} if swept else None,
        "groupsExpanded": {",".join(f"tag.{g['groupByData']}" for g in group_keys): True},
        "useGroupedValuesInCharts": False, "runsHiddenMode": "SHOW_ALL",
        "selectedColumns": [metric_col, *(f"tags.`{SWEPT_TAG_PREFIX}{k}`" for k in swept)],
        "compareRunCharts": [line, bars],
        "compareRunSections": [{"uuid": SECTION, "name": f"{metric} of each trial", "display": True,
                                "isReordered": False}],
        "isAccordionReordered": False, "hideEmptyCharts": True, "viewMaximized": False, "runListHidden": False,
        # the headline metric's charts only (MLflow adds one per metric logged): a case-blind regular expression
        "chartsSearchFilter": f"^{re.escape(metric)}$",
        "globalLineChartConfig": {"xAxisKey": "step", "lineSmoothness": 0, "selectedXAxisMetricKey": ""},
    }


def publish(c, experiment_id: str, parent_run_id: str, metric: str, mode: str, swept: list[str]) -> None:
    """Tag the study's runs (``adautomix.study_run``) and store its view on the experiment."""
    children = c.search_runs([experiment_id], max_results=5000,
                             filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'")
    for run_id in [parent_run_id, *(r.info.run_id for r in children)]:
        c.set_tag(run_id, STUDY_RUN_TAG, parent_run_id)
    c.set_experiment_tag(experiment_id, PRIMARY_METRIC_TAG, metric)
    state = view_state(parent_run_id, metric, mode, swept, len(children))
    c.set_experiment_tag(experiment_id, SHARED_VIEW_TAG_PREFIX + parent_run_id,
                         json.dumps(state, separators=(",", ":")))


def summary_metrics(rows: list[dict], swept: list[str], metric: str) -> dict[str, float]:
    """The per-setting aggregates (``evaluation.report.csv_rows``, as in ``results.csv``) as metrics
    ``<setting>/<column>``: the number of seeds and every numeric column about ``metric`` (mean, std, CI, Δ, p),
    e.g. ``method mixup/top1_mean``."""
    out = {}
    for row in rows:
        label = " ".join(f"{short_key(k)} {row[k]}" for k in swept) or "all"
        for col, text in row.items():
            about = col.startswith(metric + "_") or col in ("n", "n_seeds") or col.split("_")[0] in ("delta", "p")
            if col in swept or not about:
                continue
            try:
                value = float(text)
            except (TypeError, ValueError):
                continue  # a verdict, a test's name, an empty cell
            if math.isfinite(value):
                out[_NAME_UNSAFE.sub("_", f"{label}/{col}")] = value
    return out


def finish(c, experiment_id: str, parent_run_id: str, *, rows: list[dict], metric: str, mode: str,
           swept: list[str]) -> None:
    """At the end of a study: the per-setting aggregates ``rows`` as the parent run's metrics (``log_batch``
    splits them into calls of MLflow's batch limit), then the study's view (``study_url``)."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    c.log_batch(parent_run_id, metrics=[Metric(k, v, now, 0) for k, v in summary_metrics(rows, swept, metric).items()])
    publish(c, experiment_id, parent_run_id, metric, mode, swept)
