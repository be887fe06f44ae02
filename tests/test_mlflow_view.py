"""The MLflow view a study prints, checked as a user sees it: a real study, `mlflow ui` on its
store, the printed URL opened in headless Chromium (Debian's package, driven by Playwright;
nothing downloads a browser), no clicks. Only 127.0.0.1 is reached: the browser's other requests
are refused. The screenshot is kept in the test's folder and, when set, in
``$ADAUTOMIX_TEST_ARTIFACTS``.
"""
from __future__ import annotations

import csv
import importlib.util
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from conftest import BIN, REPO, cluster_env, free_port, stop_process_group

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-proxy-server"]
METHODS, SEEDS, EPOCHS = ["vanilla", "mixup"], [0, 1], 2
UI_WAIT_S = 240  # `mlflow ui` takes a minute to start on a busy 2-core machine
PAGE_WAIT_S = 120  # the page, its runs and its charts
# Skipped on a developer's machine without the browser; never in CI (CI=true), where .ci/run
# installs it: there a missing browser fails the test instead of hiding it.
needs_browser = pytest.mark.skipif(
    os.environ.get("CI") != "true"
    and (not Path(CHROMIUM).exists() or importlib.util.find_spec("playwright") is None),
    reason=f"needs Debian's chromium ({CHROMIUM}; .ci/run installs it) and playwright (the test extra)")


def test_study_url_opens_the_studys_shared_view_on_the_chart_tab_without_credentials():
    from adautomix.platform.mlflow_view import study_url

    view = "runs?workflowType=machine_learning&viewStateShareKey=0a1b&compareRunsMode=CHART"
    assert study_url("sqlite:////tmp/mlflow.db", "3", "0a1b") == f"http://127.0.0.1:5000/#/experiments/3/{view}"
    assert study_url("http://alice:secret@mlflow.example:8080/", "7", "0a1b") == \
        f"http://mlflow.example:8080/#/experiments/7/{view}"


def test_summary_metrics_are_each_settings_numbers_about_the_headline_metric(tmp_path):
    from adautomix.platform.mlflow_view import summary_metrics

    rows = csv.DictReader(["method.name,model.mix_alpha,n,top1_mean,top1_std,top1_ci_low,delta,p,verdict,loss_mean",
                           "vanilla,1.0,3,57.5,2.5,51.29,,,reference,0.9",
                           "mixup,0.2,1,35.0,,,-22.5,0.01,worse,1.1"])  # rows as results.csv holds them
    assert summary_metrics(list(rows), ["method.name", "model.mix_alpha"], "top1") == {
        "method vanilla mix_alpha 1.0/n": 3.0, "method vanilla mix_alpha 1.0/top1_mean": 57.5,
        "method vanilla mix_alpha 1.0/top1_std": 2.5, "method vanilla mix_alpha 1.0/top1_ci_low": 51.29,
        "method mixup mix_alpha 0.2/n": 1.0, "method mixup mix_alpha 0.2/top1_mean": 35.0,
        "method mixup mix_alpha 0.2/delta": -22.5, "method mixup mix_alpha 0.2/p": 0.01}


def _study_file(folder: Path) -> Path:
    study = {"name": "view", "description": "the MLflow view's browser test",
             "base": {"data": {"name": "digits", "limit_train": 256, "limit_test": 128},
                      "model": {"width": 0.125},
                      "train": {"epochs": EPOCHS, "batch_size": 32, "threads": 1},
                      "mlflow": {"log_model": False}},
             "space": {"method.name": METHODS}, "searcher": "grid", "seeds": SEEDS,
             "metric": "top1", "mode": "max", "resources": {"workers": 1, "cpus_per_worker": 1},
             "max_concurrent": 2}
    path = folder / "view.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


class MlflowUi:
    """`mlflow ui` on 127.0.0.1 in its own process group (stopped with its workers)."""

    def __init__(self, uri: str, folder: Path):
        self.port, self.log = free_port(), folder / "mlflow-ui.log"
        with self.log.open("w") as fh:
            self.proc = subprocess.Popen(
                [str(BIN / "mlflow"), "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
                 "--port", str(self.port), "--workers", "1"],
                cwd=folder, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + UI_WAIT_S
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2).status == 200:
                    return
            except OSError:
                time.sleep(1)
        self.stop()
        pytest.fail(f"mlflow ui not up after {UI_WAIT_S} s:\n{self.log.read_text()}")

    def stop(self) -> None:
        stop_process_group(self.proc, grace=20)  # the UI and its workers


def _keep(screenshot: Path) -> None:
    folder = os.environ.get("ADAUTOMIX_TEST_ARTIFACTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, Path(folder) / screenshot.name)


@pytest.mark.mlflow
@pytest.mark.e2e
@needs_browser
def test_printed_url_shows_every_trial_and_its_top1_curve_without_clicks(tmp_path, ray_cluster):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = subprocess.run([sys.executable, str(REPO / "tune" / "run_ablation.py"), _study_file(tmp_path),
                           "--address", ray_cluster.address, "--tracking-uri", uri,
                           "--out", tmp_path / "study"],
                          cwd=tmp_path, env=cluster_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    printed = re.search(r"then open (\S+)", done.stdout)
    assert printed, done.stdout[-2000:]
    url = printed.group(1)

    # the parent run is the study's summary: each setting's mean top1 over its seeds
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("ablation-view")
    runs = client.search_runs([exp.experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    names = [f"method={m} seed={s}" for m in METHODS for s in SEEDS]
    assert sorted(r.info.run_name for r in trials) == sorted(names)
    for m in METHODS:
        top1 = [r.data.metrics["top1"] for r in trials if r.info.run_name.startswith(f"method={m} ")]
        assert parent.data.metrics[f"method {m}/top1_mean"] == pytest.approx(statistics.fmean(top1), abs=1e-3)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"results.md", "results.csv", "results.png"} <= artifacts

    legend = _show(uri, url, names, EPOCHS, tmp_path, "mlflow_view.png")
    for name in names:  # the line chart's legend names every trial
        assert f"{name} (top1)" in legend, legend


@pytest.mark.mlflow
@pytest.mark.e2e
@needs_browser
def test_the_view_draws_every_trial_of_a_study_of_more_than_ten(tmp_path):
    # MLflow's runs page draws the first 10 runs unless told otherwise: 12 trials (one seed of 12
    # settings, 3 epochs each), logged with MLflow's client as a study logs them
    from mlflow import MlflowClient

    from adautomix.platform.mlflow_view import publish, study_url

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("ablation-many", tags={"mlflow.experimentKind": "custom_model_development"})
    parent = client.create_run(exp, run_name="study many", tags={"adautomix.role": "study"}).info.run_id
    names = [f"method=m{i:02d} seed=0" for i in range(12)]
    for i, name in enumerate(names):
        run = client.create_run(exp, run_name=name, tags={
            "mlflow.parentRunId": parent, "adautomix.swept.method.name": f"m{i:02d}"}).info.run_id
        for epoch in (1, 2, 3):
            client.log_metric(run, "top1", 50.0 + i + 10 * epoch, step=epoch)
        client.set_terminated(run)
    client.set_terminated(parent)
    publish(client, exp, parent, "top1", "max", ["method.name"])
    _show(uri, study_url(uri, exp, parent), names, 3, tmp_path, "mlflow_view_12_trials.png")


def _show(uri: str, url: str, names: list[str], epochs: int, folder: Path, picture: str) -> str:
    """Open ``url`` (printed for ``mlflow ui`` on its default port) on `mlflow ui` serving
    ``uri``; wait, without a click, for every name in ``names`` in the runs list and for a chart
    with ``epochs`` points of each; keep a screenshot; return that chart's text."""
    from playwright.sync_api import sync_playwright

    assert url.startswith("http://127.0.0.1:5000/#/experiments/"), url
    ui = MlflowUi(uri, folder)
    screenshot = folder / picture
    try:
        url = url.replace("http://127.0.0.1:5000", f"http://127.0.0.1:{ui.port}", 1)
        with sync_playwright() as p:
            browser = p.chromium.launch_persistent_context(
                str(folder / "chromium-profile"), executable_path=CHROMIUM, headless=True,
                args=CHROMIUM_ARGS, viewport={"width": 1600, "height": 1000})
            try:
                browser.route("**/*", lambda route: route.continue_()
                              if urlsplit(route.request.url).hostname == "127.0.0.1" else route.abort())
                page = browser.new_page()
                page.set_default_timeout(PAGE_WAIT_S * 1000)
                page.goto(url)
                for name in names:  # every trial in the runs list
                    page.get_by_text(name, exact=True).first.wait_for(state="visible")
                # a line chart of top1 against the epoch: every trial's points
                page.wait_for_function(
                    """n => [...document.querySelectorAll('.js-plotly-plot')].some(
                           p => p.querySelectorAll('.scatterlayer .point').length >= n)""",
                    arg=len(names) * epochs)
                curve = page.locator("[data-testid=experiment-view-compare-runs-card]").filter(
                    has=page.locator(".scatterlayer .point")).first
                text = curve.inner_text()
                assert "top1" in text and "Step" in text, text
                page.wait_for_timeout(1000)  # let the plots settle before the picture
                page.screenshot(path=str(screenshot))
                return text
            finally:
                browser.close()
    finally:
        ui.stop()
        if screenshot.exists():
            _keep(screenshot)
