"""The ablation platform: study files, `tune/run_ablation.py`, and what lands in MLflow.

Everything is real: Ray Tune + Optuna on the session's Ray cluster (conftest.py, `ray start` on
127.0.0.1 with token authentication) or on a local cluster the runner starts itself, Ray Train
runs inside the trials, MLflow stores on SQLite or behind a real `mlflow server` on 127.0.0.1.
Studies are tiny (ResNet-18 at 1/8 width, 256 digits, 2 epochs): most of a test's time is Ray
and MLflow starting up.
"""
from __future__ import annotations

import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from adautomix.config import Config, flatten, load_config, to_dict
from adautomix.platform.study import StudyError, format_value, load_study

from conftest import REPO, cluster_env

RUNNER = REPO / "tune" / "run_ablation.py"
STUDIES = sorted((REPO / "ablations").glob("*.yaml"))
BIN = Path(sys.executable).parent
TINY_BASE = {
    "data": {"name": "digits", "limit_train": 256, "limit_test": 128},
    "model": {"width": 0.125},
    "train": {"epochs": 2, "batch_size": 32, "threads": 1},
    "mlflow": {"log_model": True},
}


# ------------------------------------------------------------------------------ helpers
def write_study(folder: Path, name: str = "tiny", **fields) -> Path:
    study = {"name": name, "base": TINY_BASE, "space": {"method.name": ["mixup", "adautomix"]},
             "searcher": "grid", "seeds": 1, "metric": "top1", "mode": "max",
             "resources": {"workers": 1, "cpus_per_worker": 1}, "max_concurrent": 2, **fields}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def run_cli(args: list, cwd: Path, timeout: float = 600, env: dict | None = None):
    return subprocess.run([sys.executable, str(RUNNER), *map(str, args)], cwd=cwd, env=env or cluster_env(),
                          capture_output=True, text=True, timeout=timeout)


def output(done) -> str:
    return f"rc={done.returncode}\n--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def study_runs(uri: str, study: str):
    """(parent runs, child runs) of experiment ``ablation-<study>``, active ones only."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(f"ablation-{study}")
    assert exp is not None, f"no experiment ablation-{study} in {uri}"
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def check_child(client, run, parent_id: str, epochs: int) -> None:
    """A trial's run: nested under the parent, every resolved config value, per-epoch metrics,
    tags, artifacts."""
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.parentRunId"] == parent_id
    params = run.data.params
    assert set(params) == set(flatten(to_dict(Config()))), "every config value is a param"
    assert (params["train.epochs"], params["model.width"], params["data.name"]) == (str(epochs), "0.125", "digits")
    tags = run.data.tags
    assert tags["adautomix.study"] and tags["adautomix.trial_key"]
    assert tags["adautomix.method"] == params["method.name"]
    assert tags["adautomix.seed"] == params["seed"]
    assert tags["adautomix.dataset"] == "digits"
    assert len(tags["adautomix.git_commit"]) >= 7
    for metric in ("loss", "lr", "top1", "train_img_per_s"):
        steps = [m.step for m in client.get_metric_history(run.info.run_id, metric)]
        assert steps == list(range(1, epochs + 1)), (metric, steps)
    assert "top1_median_last10" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "metrics.jsonl", "metrics.json"} <= artifacts
    if params["method.name"] == "adautomix":
        heads = {"top1_one_k", "top1_mix_k", "top1_one_q", "top1_mix_q", "momentum", "loss_gen"}
        assert heads <= set(run.data.metrics)
        pictures = [a.path for a in client.list_artifacts(run.info.run_id, "pictures")]
        assert pictures and all(p.endswith(".png") for p in pictures)


def check_parent_artifacts(client, parent) -> None:
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"study.yaml", "results.csv", "results.md", "results.png"} <= artifacts
    assert parent.info.status == "FINISHED"


# ------------------------------------------------------------------------------ study files
EXPECTED_TRIALS = {"default": 9, "n_mix": 12, "alpha": 15, "beta": 15, "lambda": 15,
                   "modules": 12, "adversarial": 6, "methods": 36, "hpo": 24}


def test_every_paper_study_ships():
    assert {p.stem for p in STUDIES} >= set(EXPECTED_TRIALS)


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_dry_run_lists_every_trial_of_each_shipped_study(path, capsys):
    sys.path.insert(0, str(RUNNER.parent))
    try:
        from run_ablation import main
    finally:
        sys.path.remove(str(RUNNER.parent))
    assert main([str(path), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    raw = yaml.safe_load(path.read_text())
    study = load_study(path)
    assert study.total_trials() == EXPECTED_TRIALS[path.stem]
    assert f"{EXPECTED_TRIALS[path.stem]} trials" in printed
    if raw.get("searcher", "grid") == "grid":
        rows = [ln.split() for ln in printed.splitlines()]
        lines = [r[2:] for r in rows if len(r) > 2 and r[0].isdigit() and re.fullmatch("[0-9a-f]{12}", r[1])]
        assert len(lines) == EXPECTED_TRIALS[path.stem]
        seeds = list(range(raw["seeds"])) if isinstance(raw["seeds"], int) else raw["seeds"]
        space = {k: (list(v) if k == "variant" else v) for k, v in raw["space"].items()}
        short = {k: k.split(".")[-2] if k.endswith(".name") else k.split(".")[-1] for k in space}
        want = []
        for point in itertools.product(*space.values()):
            for seed in seeds:
                want.append([f"{short[k]}={format_value(v)}" for k, v in zip(space, point)]
                            + [f"seed={seed}"])
        assert lines == want
    else:
        for key in raw["space"]:
            assert key in printed


def test_smoke_keeps_the_study_but_shrinks_each_trial():
    study = load_study(REPO / "ablations" / "n_mix.yaml", smoke=True)
    assert [t.setting["method.n_mix"] for t in study.grid_trials()] == [2, 3, 4, 5]
    cfg = study.config_for(study.grid_trials()[0])
    assert (cfg.train.epochs, cfg.data.limit_train, cfg.model.width) == (2, 256, 0.125)
    assert cfg.method.name == "adautomix"


def test_overrides_reach_the_base_config_of_every_trial():
    study = load_study(REPO / "ablations" / "n_mix.yaml",
                       ["data.name=cifar100", "data.root=/data", "train.epochs=800", "train.workers=4",
                        "train.use_gpu=true"])
    for trial in study.grid_trials():
        cfg = study.config_for(trial)
        assert (cfg.data.name, cfg.data.root, cfg.train.epochs, cfg.train.workers, cfg.train.use_gpu) \
            == ("cifar100", "/data", 800, 4, True)
        assert cfg.method.n_mix == trial.setting["method.n_mix"] and cfg.seed == trial.seed


def test_module_variants_switch_the_paper_modules():
    study = load_study(REPO / "ablations" / "modules.yaml")
    switches = {}
    for trial in study.grid_trials():
        m = study.config_for(trial).method
        switches[trial.setting["variant"]] = (m.use_ce, m.use_mce, m.use_cos, m.use_ema)
    assert switches == {"basic": (False, False, False, False), "+ce+mce": (True, True, False, False),
                        "+cos": (True, True, True, False), "+ema": (True, True, True, True)}


BAD_STUDIES = {
    "unknown key": ({"spaces": {"method.n_mix": [2, 3]}}, "spaces: unknown key"),
    "empty space": ({"space": {}}, "space: empty"),
    "empty values": ({"space": {"method.n_mix": []}}, "space.method.n_mix: empty list"),
    "unknown method": ({"space": {"method.name": ["mixup", "automagic"]}}, "method.name='automagic'"),
    "N < 2": ({"space": {"method.n_mix": [1, 2, 3]}}, "method.n_mix=1"),
    "unknown config key": ({"space": {"method.n_mixes": [2, 3]}}, "method.n_mixes: unknown key"),
    "bad base": ({"base": {"train": {"epochz": 3}}}, "train.epochz: unknown key"),
    "bad searcher": ({"searcher": "random"}, "searcher"),
    "bad scheduler": ({"scheduler": {"name": "pbt"}}, "scheduler.name"),
    "tpe needs a distribution": ({"searcher": "tpe", "space": {"train.lr": {"uniform": [0.2, 0.1]}}},
                                 "space.train.lr"),
}


@pytest.mark.parametrize("case", list(BAD_STUDIES), ids=list(BAD_STUDIES))
def test_bad_study_file_names_the_key(case, tmp_path):
    fields, message = BAD_STUDIES[case]
    path = write_study(tmp_path, **fields)
    with pytest.raises(StudyError) as err:
        load_study(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_bad_study_file_exits_2_before_ray_starts(tmp_path):
    path = write_study(tmp_path, space={"method.n_mix": [1, 2]})
    code = (f"import runpy, sys\nsys.argv = [{str(RUNNER)!r}, {str(path)!r}]\n"
            "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
            "except SystemExit:\n    print('ray imported:', 'ray' in sys.modules)\n    raise\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2, output(done)
    assert "method.n_mix=1 is not allowed" in done.stderr and str(path) in done.stderr
    assert "ray imported: False" in done.stdout
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlflow.db").exists()


def test_override_of_a_swept_key_is_refused(tmp_path):
    with pytest.raises(StudyError, match="space.method.name: swept by the study"):
        load_study(write_study(tmp_path), ["method.name=vanilla"])


# ------------------------------------------------------------------------------ tracking
def test_dead_tracking_server_never_stops_training(tmp_path, capfd):
    from adautomix.engine import train
    from adautomix.platform.tracking import MlflowTracker

    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    cfg = load_config(overrides={**flatten(TINY_BASE), "method.name": "mixup",
                                 "out_dir": str(tmp_path / "run")})
    summary = train(cfg, callbacks=[MlflowTracker(uri, "0" * 32, log_model=True, out_dir=cfg.out_dir)], quiet=True)
    assert summary["epochs_done"] == 2
    err = capfd.readouterr().err
    assert err.count("WARNING: MLflow tracking failed") == 1 and uri in err
    assert "training continues" in err and str(tmp_path / "run") in err
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 2


def test_tracker_is_picklable_without_its_client(tmp_path):
    import pickle

    from adautomix.platform.tracking import MlflowTracker, resolve_tracking_uri

    uri = resolve_tracking_uri(f"sqlite:///{tmp_path / 'm.db'}")
    tracker = MlflowTracker(uri, "abc")
    tracker._client = object()  # an open client never travels
    clone = pickle.loads(pickle.dumps(tracker))
    assert (clone.tracking_uri, clone.run_id, clone._client) == (uri, "abc", None)


# ------------------------------------------------------------------------------ whole studies
def test_smoke_study_logs_one_parent_and_a_child_per_trial(tmp_path, ray_cluster):
    path = write_study(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = run_cli([path, "--smoke", "--address", ray_cluster.address, "--tracking-uri", uri], tmp_path)
    assert done.returncode == 0, output(done)
    assert f"mlflow ui --backend-store-uri sqlite:///{tmp_path / 'mlflow.db'}" in done.stdout
    assert "| mixup | 1 |" in done.stdout and "| adautomix | 1 |" in done.stdout
    client, parents, children = study_runs(uri, "tiny")
    assert len(parents) == 1 and len(children) == 2
    for run in children:
        check_child(client, run, parents[0].info.run_id, epochs=2)
    assert sorted(r.data.params["method.name"] for r in children) == ["adautomix", "mixup"]
    check_parent_artifacts(client, parents[0])
    # the logged classifier loads back and predicts
    import mlflow.pytorch
    import torch

    run = next(r for r in children if r.data.params["method.name"] == "adautomix")
    mlflow.set_tracking_uri(uri)
    model = mlflow.pytorch.load_model(run.data.tags["adautomix.model_uri"])
    assert model(torch.zeros(3, 3, 32, 32)).shape == (3, 10)


@pytest.fixture()
def mlflow_server(tmp_path):
    """A real `mlflow server` on 127.0.0.1 (SQLite backend, served artifacts), stopped after."""
    port = free_port()
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts")],
        cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, (tmp_path / "server.log").read_text()
        try:
            if urllib.request.urlopen(f"{url}/health", timeout=2).status == 200:
                break
        except OSError:
            time.sleep(1)
    else:
        pytest.fail("mlflow server did not start:\n" + (tmp_path / "server.log").read_text())
    yield url
    # the server's process group (its own session): the server and its job-queue consumers
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # consumers that outlived the server
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)
    log.close()


@pytest.mark.slow
def test_smoke_study_against_a_real_mlflow_server(tmp_path, ray_cluster, mlflow_server):
    path = write_study(tmp_path)
    done = run_cli([path, "--smoke", "--address", ray_cluster.address], tmp_path,
                   env={**cluster_env(), "MLFLOW_TRACKING_URI": mlflow_server})
    assert done.returncode == 0, output(done)
    assert f"mlflow ui --backend-store-uri {mlflow_server}" in done.stdout
    client, parents, children = study_runs(mlflow_server, "tiny")
    assert len(parents) == 1 and len(children) == 2
    for run in children:
        check_child(client, run, parents[0].info.run_id, epochs=2)
    check_parent_artifacts(client, parents[0])
    assert not (tmp_path / "mlflow.db").exists()  # nothing went to the local default store


def test_study_with_the_tracking_server_down_still_trains(tmp_path, ray_cluster):
    path = write_study(tmp_path, space={"method.name": ["vanilla"]}, seeds=2)
    uri = f"http://127.0.0.1:{free_port()}"
    done = run_cli([path, "--smoke", "--address", ray_cluster.address, "--tracking-uri", uri,
                    "--out", tmp_path / "study"], tmp_path)
    assert done.returncode == 0, output(done)
    assert "WARNING: MLflow tracking failed" in done.stderr and uri in done.stderr
    assert "| vanilla | 1 |" in done.stdout  # smoke: one seed
    metrics = list((tmp_path / "study" / "trials").glob("*/metrics.json"))
    assert len(metrics) == 1 and json.loads(metrics[0].read_text())["epochs_done"] == 2


@pytest.mark.slow
def test_resume_after_kill_9_runs_only_the_missing_trials(tmp_path, ray_cluster):
    # four trials, one at a time: the kill lands while one is finished and the next is running
    path = write_study(tmp_path, space={"method.name": ["vanilla", "mixup"]}, seeds=2,
                       resources={"workers": 1, "cpus_per_worker": 1}, max_concurrent=1)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [path, "--address", ray_cluster.address, "--tracking-uri", uri, "--out", tmp_path / "study"]
    records = tmp_path / "study" / "trials.jsonl"
    proc = subprocess.Popen([sys.executable, str(RUNNER), *map(str, args)], cwd=tmp_path,
                            env=cluster_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline and proc.poll() is None:
        if records.exists() and len(records.read_text().splitlines()) >= 1:
            break
        time.sleep(0.5)
    assert proc.poll() is None, "the study ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    before = {json.loads(ln)["key"]: json.loads(ln) for ln in records.read_text().splitlines()}
    assert 1 <= len(before) < 4
    kept_mtime = {k: (tmp_path / "study" / "trials" / k / "metrics.json").stat().st_mtime for k in before}

    done = run_cli([*args, "--resume"], tmp_path)
    assert done.returncode == 0, output(done)
    assert f"{len(before)} finished before, {4 - len(before)} to run" in done.stdout
    client, parents, children = study_runs(uri, "tiny")
    assert len(parents) == 1, "the resumed study keeps its parent run"
    keys = [r.data.tags["adautomix.trial_key"] for r in children]
    assert len(children) == 4 and len(set(keys)) == 4, "one run per trial, no duplicates"
    for run in children:
        check_child(client, run, parents[0].info.run_id, epochs=2)
    for key, rec in before.items():  # finished trials were neither rerun nor logged again
        assert rec["mlflow_run_id"] in {r.info.run_id for r in children}
        assert (tmp_path / "study" / "trials" / key / "metrics.json").stat().st_mtime == kept_mtime[key]
    lines = records.read_text().splitlines()
    assert len(lines) == 4 and len({json.loads(ln)["key"] for ln in lines}) == 4
    check_parent_artifacts(client, parents[0])


@pytest.mark.slow
def test_ray_job_submit_of_a_smoke_study_logs_to_the_tracking_store(tmp_path, ray_cluster):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    submit = [str(BIN / "ray"), "job", "submit", "--address", ray_cluster.dashboard_url,
              "--working-dir", ".", "--", "python", "tune/run_ablation.py", "--smoke",
              "--tracking-uri", uri, "--out", str(tmp_path / "study")]
    done = subprocess.run(submit, cwd=REPO, env=cluster_env(), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, output(done)
    assert "mlflow ui --backend-store-uri" in done.stdout
    client, parents, children = study_runs(uri, "default")
    assert len(parents) == 1 and len(children) == 3  # --smoke: one seed of each method
    for run in children:
        check_child(client, run, parents[0].info.run_id, epochs=2)
    check_parent_artifacts(client, parents[0])


@pytest.mark.slow
def test_asha_search_closes_every_trial_run_finished_or_stopped_early(tmp_path):
    # a TPE search with ASHA on a local cluster the runner starts itself (the bare-command path)
    path = write_study(tmp_path, searcher="tpe", num_samples=4, seeds=[0], max_concurrent=2,
                       space={"train.lr": {"loguniform": [0.001, 0.4]}},
                       base={**TINY_BASE, "method": {"name": "vanilla"}, "mlflow": {"log_model": False},
                             "train": {**TINY_BASE["train"], "epochs": 4}},
                       scheduler={"name": "asha", "grace_period": 1, "reduction_factor": 2})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = cluster_env()
    done = run_cli([path, "--tracking-uri", uri, "--out", tmp_path / "study"], tmp_path, env=env)
    assert done.returncode == 0, output(done)
    client, parents, children = study_runs(uri, "tiny")
    assert len(parents) == 1 and len(children) == 4
    records = [json.loads(ln) for ln in (tmp_path / "study" / "trials.jsonl").read_text().splitlines()]
    assert len(records) == 4
    for run in children:
        rec = next(r for r in records if r["mlflow_run_id"] == run.info.run_id)
        epochs = [m.step for m in client.get_metric_history(run.info.run_id, "top1")]
        if rec["status"] == "stopped_early":
            assert run.info.status == "KILLED" and "adautomix.stopped_early" in run.data.tags
            assert epochs == list(range(1, rec["epochs_done"] + 1)) and rec["epochs_done"] < 4
        else:
            check_child(client, run, parents[0].info.run_id, epochs=4)
