"""The ablation platform: study files, `tune/run_ablation.py`, and what lands in MLflow.

Everything is real: Ray Tune + Optuna on the session's Ray cluster (conftest.py, `ray start` on
127.0.0.1 with token authentication) or on a local cluster the runner starts itself, trials that
train in their own process or launch Ray Train runs, MLflow stores on SQLite or behind a real
`mlflow server` on 127.0.0.1, and `kill -9` of the study's driver. Studies are tiny (ResNet-18 at
1/8 width, a few hundred digits, 2-6 epochs): most of a test's time is Ray and MLflow starting up.
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
from pathlib import Path

import pytest
import yaml

from adautomix.config import Config, flatten, load_config, to_dict
from adautomix.evaluation.report import format_value
from adautomix.study import StudyError, load_study

from conftest import REPO, SESSION_DIR, cluster_env

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
    """A trial's run: nested under the parent, every resolved config value, each epoch's metrics
    once, tags, artifacts."""
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
    # MLflow 3's UI opens a model-training experiment on its runs (not the GenAI overview)
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


def quiet_end(done) -> None:
    """A study that went well prints no warning and no traceback (Ray's shutdown included)."""
    for text in ("Traceback", "Exception ignored", "SystemExit", "WARNING", "Warning"):
        assert text not in done.stderr, output(done)


# ------------------------------------------------------------------------------ study files
EXPECTED_TRIALS = {"default": 15, "n_mix": 12, "alpha": 15, "beta": 15, "lambda": 15,
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
    assert [t.setting["method.n_mix"] for t in study.trials()] == [2, 3, 4, 5]
    cfg = study.trials()[0].resolve()
    assert (cfg.train.epochs, cfg.data.limit_train, cfg.model.width) == (2, 256, 0.125)
    assert cfg.method.name == "adautomix"


def test_overrides_reach_the_base_config_of_every_trial():
    study = load_study(REPO / "ablations" / "n_mix.yaml",
                       ["data.name=cifar100", "data.root=/data", "train.epochs=800", "train.workers=4",
                        "train.use_gpu=true"])
    for trial in study.trials():
        cfg = trial.resolve()
        assert (cfg.data.name, cfg.data.root, cfg.train.epochs, cfg.train.workers, cfg.train.use_gpu) \
            == ("cifar100", "/data", 800, 4, True)
        assert cfg.method.n_mix == trial.setting["method.n_mix"] and cfg.seed == trial.seed
        assert cfg.out_dir == f"trials/{trial.key}"


def test_each_trial_carries_its_own_resolved_config_and_defaults_come_from_config():
    study = load_study(REPO / "ablations" / "default.yaml")
    configs = [t.resolve() for t in study.trials()]
    assert len({id(c) for c in configs}) == 15, "no config object is shared between trials"
    assert [(c.method.name, c.seed) for c in configs] == \
        [(m, s) for m in ("vanilla", "mixup", "adautomix") for s in range(5)]
    assert study.trial({"method.name": "mixup"}, 1) is study.trials()[6]
    # one worker trains inside the trial process, with the trial's CPUs as torch threads
    assert all((c.train.workers, c.train.threads) == (0, 1) for c in configs)
    # a key the study file leaves out keeps the Config default (not a guess of the runner)
    assert configs[0].train.max_failures == Config().train.max_failures
    assert configs[5].method.mix_lambda == 1.0  # mixup's λ from the method registry


def test_ray_train_runs_one_worker_when_asked_and_tpe_settings_are_explicit(tmp_path):
    study = load_study(write_study(tmp_path, resources={"workers": 1, "cpus_per_worker": 2, "in_trial": False}))
    cfg = study.trials()[0].resolve()
    assert (cfg.train.workers, cfg.train.resources_per_worker) == (1, {"CPU": 2})
    tpe = load_study(write_study(tmp_path, searcher="tpe", seeds=[0], num_samples=3, tpe={"n_startup_trials": 2},
                                 space={"train.lr": {"loguniform": [0.01, 0.4]}}))
    assert tpe.tpe == {"seed": 0, "n_startup_trials": 2, "multivariate": False, "constant_liar": True}
    trial = tpe.trial({"train.lr": 0.05}, 0)
    assert (trial.resolve().train.lr, trial.resolve().seed) == (0.05, 0)


def test_epochs_for_early_stopping_come_from_the_trials_configs(tmp_path):
    base = {k: v for k, v in TINY_BASE.items() if k != "train"}  # no train.epochs: Config's default
    study = load_study(write_study(tmp_path, base=base, scheduler={"name": "asha"}))
    assert study.max_epochs() == Config().train.epochs
    swept = load_study(write_study(tmp_path, base=base, space={"train.epochs": [3, 7]}))
    assert swept.max_epochs() == 7


def test_the_reference_setting_is_the_first_unless_the_study_names_one(tmp_path):
    assert load_study(write_study(tmp_path)).reference == {"method.name": "mixup"}
    assert load_study(write_study(tmp_path, reference="adautomix")).reference == {"method.name": "adautomix"}
    two = {"method.name": ["mixup", "adautomix"], "method.n_mix": [2, 3]}
    assert load_study(write_study(tmp_path, space=two, reference={"method.name": "adautomix", "method.n_mix": 3})
                      ).reference == {"method.name": "adautomix", "method.n_mix": 3}


def test_module_variants_switch_the_paper_modules():
    study = load_study(REPO / "ablations" / "modules.yaml")
    switches = {}
    for trial in study.trials():
        m = trial.resolve().method
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
    "GPU fraction above 1": ({"resources": {"gpus_per_worker": 1.5}},
                             "resources.gpus_per_worker: 1.5 is not allowed: a fraction between 0 and 1"),
    "GPU fraction for a multi-worker run": ({"resources": {"workers": 2, "gpus_per_worker": 0.5}},
                                            "workers of one run cannot share a GPU"),
    "reference not swept": ({"reference": "cutmix"}, "reference.method.name: 'cutmix' is not one of the swept"),
    "reference of a search": ({"searcher": "tpe", "seeds": [0], "reference": 0.1,
                               "space": {"train.lr": {"uniform": [0.1, 0.2]}}}, "reference: only for searcher: grid"),
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


def test_a_study_folder_held_by_another_driver_is_refused_with_one_line(tmp_path):
    from adautomix.runlock import RunLock

    path, folder = write_study(tmp_path), tmp_path / "study"
    with RunLock(folder, "study folder"):  # this process stands for the first driver
        done = subprocess.run([sys.executable, str(RUNNER), str(path), "--out", str(folder)], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
        assert sorted(p.name for p in folder.iterdir()) == [".adautomix.lock", ".adautomix.lock.json"]
    assert done.returncode == 2, output(done)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"run_ablation.py: error: study folder {folder} is in use by PID {os.getpid()} on "), output(done)


def test_override_of_a_swept_key_is_refused(tmp_path):
    with pytest.raises(StudyError, match="space.method.name: swept by the study"):
        load_study(write_study(tmp_path), ["method.name=vanilla"])


def test_resuming_a_study_with_a_changed_file_or_overrides_is_refused(tmp_path):
    from adautomix.platform.ablation import run_study
    from adautomix.study_folder import STATE

    path = write_study(tmp_path, base={**TINY_BASE, "train": {**TINY_BASE["train"], "epochs": 3}})
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / STATE).write_text(json.dumps({"fingerprint": load_study(path).fingerprint(),
                                            "tracking_uri": None}))
    for changed in (load_study(path, ["train.lr=0.05"]), load_study(path, smoke=True)):
        with pytest.raises(StudyError, match="different study file, overrides or --smoke"):
            run_study(changed, study_dir=folder, resume=True)
    # the same trials, however written, are the same study
    assert load_study(path, ["train.epochs=3"]).fingerprint() == load_study(path).fingerprint()


def test_a_grid_trial_carries_its_overrides_and_resolves_its_config_where_it_runs(tmp_path, monkeypatch):
    import adautomix.study
    from adautomix.study import describe

    study = load_study(REPO / "ablations" / "default.yaml")
    builds = []
    monkeypatch.setattr(adautomix.study, "load_config", lambda **kw: builds.append(kw) or load_config(**kw))
    describe(study), study.max_epochs(), study.fingerprint(), study.trials(), study.params()
    assert builds == [], "the driver builds no trial's config"
    trial = study.trial({"method.name": "adautomix"}, 2)
    assert (trial.overrides["method.name"], trial.overrides["seed"], trial.epochs) == ("adautomix", 2, 10)
    cfg = trial.resolve(tmp_path / "study")  # what the trial process does, once
    assert len(builds) == 1
    assert cfg.out_dir == str(tmp_path / "study" / "trials" / trial.key)
    assert (cfg.method.name, cfg.seed, cfg.train.epochs, cfg.model.width) == ("adautomix", 2, 10, 0.125)


def test_study_overrides_go_through_the_configs_parser(tmp_path):
    with pytest.raises(StudyError, match=r"override 'train\.epochs': expected key=value"):
        load_study(write_study(tmp_path), ["train.epochs"])
    study = load_study(write_study(tmp_path), ["train.lr=0.05", "train.nesterov=yes"])
    cfg = study.trials()[0].resolve()  # the values are YAML text, read as on the command line
    assert (cfg.train.lr, cfg.train.nesterov) == (0.05, True)


# ------------------------------------------------------------------------------ tracking
def test_dead_tracking_server_warns_once_and_keeps_what_it_could_not_log(tmp_path, capfd):
    from adautomix.platform.mlflow_store import mask
    from adautomix.platform.tracking import StudyTracker

    uri = f"http://alice:s3cret@127.0.0.1:{free_port()}"  # nothing listens there
    tracker = StudyTracker(uri, "1", "0" * 32, where=str(tmp_path / "study"))
    tracker.trial_started("abc", "method=mixup seed=0", {})
    tracker.trial_epoch("abc", {"epoch": 1, "top1": 50.0}, tmp_path)
    tracker.trial_ended("abc", "FINISHED", tmp_path)
    tracker.flush()  # the tracker logs on its own thread
    err = capfd.readouterr().err
    assert err.count("WARNING: MLflow tracking failed") == 1, err
    assert mask(uri) in err and "s3cret" not in err  # the password is never printed
    assert "training continues" in err and str(tmp_path / "study") in err
    assert tracker.failed and len(tracker.outbox.pending) == 3  # kept, to be sent when it answers


def test_a_password_in_the_tracking_uri_is_masked_everywhere_it_is_shown_or_pickled():
    import pickle

    from adautomix.platform.mlflow_store import mask, runs_url, ui_command
    from adautomix.platform.tracking import StudyTracker

    uri = "http://alice:s3cret@mlflow.example:5000"
    assert mask(uri) == "http://alice:***@mlflow.example:5000"
    assert mask("http://mlflow.example:5000") == "http://mlflow.example:5000"
    assert mask("sqlite:////tmp/m.db") == "sqlite:////tmp/m.db"
    assert ui_command(uri) == "mlflow ui --backend-store-uri http://alice:***@mlflow.example:5000"
    assert runs_url(uri, "3").startswith("http://mlflow.example:5000/#/experiments/3/")
    tracker = StudyTracker(uri, "1", "abc")
    blob = pickle.dumps(tracker)  # what Tune writes into its experiment state
    assert b"s3cret" not in blob
    assert pickle.loads(blob).uri == uri  # unpickled by the driver that holds the URI


def test_tracker_is_picklable_without_its_client(tmp_path):
    import pickle

    from adautomix.platform.mlflow_store import resolve_tracking_uri
    from adautomix.platform.tracking import StudyTracker

    uri = resolve_tracking_uri(f"sqlite:///{tmp_path / 'm.db'}")
    tracker = StudyTracker(uri, "1", "abc")
    tracker.outbox._client = object()  # an open client never travels
    clone = pickle.loads(pickle.dumps(tracker))
    assert (clone.uri, clone.experiment_id, clone.parent_run_id, clone.outbox._client) == (uri, "1", "abc", None)


def test_the_printed_url_opens_the_experiments_training_runs():
    from adautomix.platform.mlflow_store import runs_url

    # checked by hand in headless Chromium against `mlflow server` 3.17: the Runs list of the
    # experiment, with the UI on its "Model training" side (see docs/mlflow.md)
    view = "runs?workflowType=machine_learning"
    assert runs_url("sqlite:////tmp/mlflow.db", "3") == f"http://127.0.0.1:5000/#/experiments/3/{view}"
    assert runs_url("http://10.0.0.1:8080/", "7") == f"http://10.0.0.1:8080/#/experiments/7/{view}"


# ------------------------------------------------------------------------------ whole studies
def test_smoke_study_logs_one_parent_and_a_child_per_trial(tmp_path, ray_cluster):
    # the trials also run evaluation suites after their last epoch (train.final_eval)
    base = {**TINY_BASE, "train": {**TINY_BASE["train"], "final_eval": ["calibration", "fgsm", "occlusion"]}}
    path = write_study(tmp_path, base=base)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = run_cli([path, "--smoke", "--address", ray_cluster.address, "--tracking-uri", uri], tmp_path)
    assert done.returncode == 0, output(done)
    quiet_end(done)  # a grid study ends without a warning
    assert f"mlflow ui --backend-store-uri sqlite:///{tmp_path / 'mlflow.db'}" in done.stdout
    assert "| mixup | 1 |" in done.stdout and "| adautomix | 1 |" in done.stdout
    assert "ECE ↓" in done.stdout and "FGSM top-1" in done.stdout  # the results table's columns
    check_results(done.stdout)
    client, parents, children = study_runs(uri, "tiny")
    assert f"http://127.0.0.1:5000/#/experiments/{parents[0].info.experiment_id}/runs?" in done.stdout
    assert len(parents) == 1 and len(children) == 2
    for run in children:
        check_child(client, run, parents[0].info.run_id, epochs=2)
    assert sorted(r.data.params["method.name"] for r in children) == ["adautomix", "mixup"]
    check_parent_artifacts(client, parents[0])
    # the logged classifier loads back and predicts
    import mlflow.pytorch
    import torch

    run = next(r for r in children if r.data.params["method.name"] == "adautomix")
    assert run.data.tags["adautomix.model_head"] == "one_k"  # the EMA teacher's one-hot head
    mlflow.set_tracking_uri(uri)
    model = mlflow.pytorch.load_model(run.data.tags["adautomix.model_uri"])
    assert model(torch.zeros(3, 3, 32, 32)).shape == (3, 10)
    check_champion(client, uri, "tiny", children)
    check_final_eval(client, children)
    check_report(tmp_path, uri)


def check_results(stdout: str) -> None:
    """The study's results: the table with its statistics columns (one seed: no CI, said so),
    results.md linking the figure, and the figure's two panels (curves, final values)."""
    from PIL import Image

    header = next(line for line in stdout.splitlines() if line.startswith("| method | n |"))
    assert "95 % CI" in header and "Δ vs mixup [95 % CI]" in header and "verdict" in header
    assert "n = 1: no CI (one seed has no spread)" in stdout
    folder = Path(re.search(r"results: (\S+)/results\.md", stdout).group(1))
    assert "![results](results.png)" in (folder / "results.md").read_text()
    assert "delta_ci_low" in (folder / "results.csv").read_text().splitlines()[0]
    with Image.open(folder / "results.png") as image:
        assert image.size == (1575, 600)  # two panels: the curves had per-epoch history


def check_final_eval(client, children) -> None:
    """Each trial's run holds the final evaluation: its numbers at the last epoch's step, eval.json
    and the pictures."""
    for run in children:
        metrics = run.data.metrics
        assert {"eval_ece", "eval_fgsm_top1", "eval_occlusion_top1_000", "eval_occlusion_top1_100"} <= set(metrics)
        assert [m.step for m in client.get_metric_history(run.info.run_id, "eval_ece")] == [2]
        assert "eval.json" in {a.path for a in client.list_artifacts(run.info.run_id)}
        pictures = {a.path for a in client.list_artifacts(run.info.run_id, "pictures")}
        assert {"pictures/reliability.png", "pictures/occlusion.png"} <= pictures


def check_report(folder: Path, uri: str) -> None:
    """`adautomix report` of the study: a row per method, the eval columns, CSV and plots."""
    done = subprocess.run([str(BIN / "adautomix"), "report", "tiny", "--tracking-uri", uri, "--out",
                           str(folder / "report")], cwd=folder, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, output(done)
    rows = [line for line in done.stdout.splitlines() if line.startswith(("| mixup |", "| adautomix |"))]
    assert len(rows) == 2, done.stdout
    header = next(line for line in done.stdout.splitlines() if line.startswith("| method | n |"))
    assert "ECE ↓" in header and "FGSM top-1" in header and "occlusion top-1" in header
    assert "95 % CI" in header and "Δ vs mixup [95 % CI]" in header and "verdict" in header  # the study's reference
    assert sum(row.count("**") for row in rows) >= 2 * 5  # every column has one best (5 columns)
    for name in ("report.md", "report.csv", "curves.png", "occlusion.png", "reliability.png"):
        assert (folder / "report" / name).exists(), name


def check_champion(client, uri: str, name: str, children) -> None:
    """The best trial's model is registered as ``name`` with the alias ``champion``, saved in
    the pickle-free pt2 format with a signature and an input example, and loads back to predict."""
    import mlflow
    import numpy as np

    best = max(children, key=lambda r: r.data.metrics["top1"])
    version = client.get_model_version_by_alias(name, "champion")
    assert version.run_id == best.info.run_id
    mlflow.set_tracking_uri(uri)
    info = mlflow.models.get_model_info(f"models:/{name}@champion")
    files = {p.relative_to(folder).as_posix() for folder in
             [Path(mlflow.artifacts.download_artifacts(f"models:/{name}@champion"))] for p in folder.rglob("*")}
    assert "data/model.pt2" in files and not any(f.endswith(".pth") for f in files)  # torch.export, no pickle
    assert [s.shape for s in info.signature.inputs.inputs] == [(-1, 3, 32, 32)]
    assert info.saved_input_example_info is not None
    x = np.random.default_rng(0).standard_normal((5, 3, 32, 32)).astype("float32")
    logits = mlflow.pyfunc.load_model(f"models:/{name}@champion").predict(x)
    assert np.asarray(logits).shape == (5, 10)


def test_smoke_study_against_a_real_mlflow_server(tmp_path, ray_cluster, mlflow_server):
    mlflow_server = mlflow_server.url
    path = write_study(tmp_path)
    done = run_cli([path, "--smoke", "--address", ray_cluster.address], tmp_path,
                   env={**cluster_env(), "MLFLOW_TRACKING_URI": mlflow_server})
    assert done.returncode == 0, output(done)
    assert f"mlflow ui --backend-store-uri {mlflow_server}" in done.stdout
    client, parents, children = study_runs(mlflow_server, "tiny")
    assert f"{mlflow_server}/#/experiments/{parents[0].info.experiment_id}/runs?" in done.stdout
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


def test_tracking_server_that_goes_away_and_comes_back_gets_every_epoch(tmp_path, ray_cluster, mlflow_server):
    """The server is stopped after the trial's first epoch and started again (same port, same
    store): logging resumes, the missed epochs are back-filled, the run ends
    FINISHED with its model registered as the champion; the password in the URI is never
    printed nor written (state.json, Tune's experiment state)."""
    epochs = 8
    path = write_study(tmp_path, space={"method.name": ["adautomix"]},
                       base={**TINY_BASE, "train": {**TINY_BASE["train"], "epochs": epochs}})
    uri = mlflow_server.url.replace("http://", "http://alice:s3cret@")
    study = tmp_path / "study"
    with (tmp_path / "out.txt").open("w") as out, (tmp_path / "err.txt").open("w") as err:
        proc = subprocess.Popen([sys.executable, str(RUNNER), str(path), "--address", ray_cluster.address,
                                 "--out", str(study)], cwd=tmp_path, stdout=out, stderr=err,
                                env={**cluster_env(), "MLFLOW_TRACKING_URI": uri})
    try:
        def wait_for_epoch(n: int) -> None:
            deadline = time.monotonic() + 300
            while not any(len(epochs_of(d)) >= n for d in study.glob("trials/*/")):
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "err.txt").read_text()
                time.sleep(0.2)

        wait_for_epoch(1)
        mlflow_server.stop()
        wait_for_epoch(2)  # an epoch that arrives while the server is away
        mlflow_server.start()
        assert proc.wait(timeout=600) == 0, (tmp_path / "err.txt").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    stdout, stderr = (tmp_path / "out.txt").read_text(), (tmp_path / "err.txt").read_text()
    assert stderr.count("WARNING: MLflow tracking failed") == 1, stderr
    assert "http://alice:***@127.0.0.1" in stderr and "logging resumed" in stderr
    assert "s3cret" not in stdout + stderr
    assert json.loads((study / "state.json").read_text())["tracking_uri"] == mlflow_server.url.replace(
        "http://", "http://alice:***@")
    leaked = [p for p in study.rglob("*") if p.is_file() and b"s3cret" in p.read_bytes()]
    assert not leaked, leaked
    assert "MLflow: mlflow ui --backend-store-uri http://alice:***@" in stdout
    client, parents, children = study_runs(mlflow_server.url, "tiny")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED" and len(children) == 1
    check_child(client, children[0], parents[0].info.run_id, epochs=epochs)  # every epoch, once
    check_champion(client, mlflow_server.url, "tiny", children)


def test_a_trial_whose_process_dies_leaves_no_run_running(tmp_path, ray_cluster):
    """The trial's process is killed (SIGKILL) in its second epoch: Tune reports the trial
    errored, and its MLflow run is closed FAILED (the parent too: a trial failed)."""
    base = {**TINY_BASE, "train": {**TINY_BASE["train"], "epochs": 6}, "mlflow": {"log_model": False}}
    path = write_study(tmp_path, space={"method.name": ["vanilla"]}, base=base)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    study = tmp_path / "study"
    proc = subprocess.Popen([sys.executable, str(RUNNER), str(path), "--address", ray_cluster.address,
                             "--tracking-uri", uri, "--out", str(study)], cwd=tmp_path, env=cluster_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        trial = None
        while trial is None:
            assert proc.poll() is None and time.monotonic() < deadline, "the study ended before the kill"
            trial = next((d for d in study.glob("trials/*/") if len(epochs_of(d)) >= 1), None)
            time.sleep(0.2)
        # the trial's process: Tune runs it in a working folder named like the trial's, under
        # this session's Ray temp dir (so no other Ray cluster's process can match)
        pids = [int(p.parent.name) for p in Path("/proc").glob("[0-9]*/cwd")
                if (cwd := _cwd(p)) and cwd.name == trial.name and SESSION_DIR in cwd.parents]
        assert pids, f"no process runs in {trial}"
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        assert proc.wait(timeout=300) == 1  # the study reports the failed trial
    finally:
        if proc.poll() is None:
            proc.kill()
    client, parents, children = study_runs(uri, "tiny")
    assert [r.info.status for r in children] == ["FAILED"]
    assert parents[0].info.status == "FAILED"


def _cwd(link: Path) -> Path | None:
    try:
        return Path(os.readlink(link))
    except OSError:
        return None


def epochs_of(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def checkpoint_of(run_dir: Path, in_trial: bool) -> int:
    """The last epoch whose checkpoint Ray has recorded for the trial: Tune's (the experiment
    state is written after each trial checkpoint) or Ray Train's run snapshot."""
    if in_trial:  # checkpoint_000000 holds epoch 1 (the epochs are reported one by one)
        return max((int(p.name.split("_")[1]) + 1 for p in run_dir.glob("checkpoint_0*")), default=0)
    snapshot = run_dir / "ray" / "train" / "checkpoint_manager_snapshot.json"
    names = re.findall(r"epoch_(\d{5})", snapshot.read_text()) if snapshot.exists() else []
    return max(map(int, names), default=0)


@pytest.mark.parametrize("kind", ["ray-train", "tpe"])
def test_killed_driver_resumes_the_cut_trial_from_its_last_checkpoint(tmp_path, ray_cluster, kind):
    # two trials, one at a time, six epochs each: the driver is killed (kill -9) once the first
    # has finished and the second has its epoch-2 checkpoint, i.e. in the second's epoch 3.
    # ray-train: a grid whose trials each launch a one-worker Ray Train run; tpe: an Optuna
    # search of two settings whose trials train in their own process (Tune's checkpoints; the
    # same restore path as a grid's in-trial trials, plus Optuna's journal)
    in_trial = kind != "ray-train"
    base = {**TINY_BASE, "data": {"name": "digits", "limit_train": 512, "limit_test": 64},
            "train": {**TINY_BASE["train"], "epochs": 6}, "mlflow": {"log_model": False}}
    search = dict(searcher="tpe", seeds=[0], num_samples=2, space={"train.lr": {"loguniform": [0.01, 0.2]}}) \
        if kind == "tpe" else dict(space={"method.name": ["vanilla", "mixup"]})
    path = write_study(tmp_path, base=base, resources={"workers": 1, "cpus_per_worker": 1, "in_trial": in_trial},
                       max_concurrent=1, **search)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [path, "--address", ray_cluster.address, "--tracking-uri", uri, "--out", tmp_path / "study"]
    trials = tmp_path / "study" / "trials"
    proc = subprocess.Popen([sys.executable, str(RUNNER), *map(str, args)], cwd=tmp_path,
                            env=cluster_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finished = cut = None
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline and proc.poll() is None and cut is None:
        runs = [d for d in trials.glob("*") if (d / "config.yaml").exists()] if trials.exists() else []
        finished = next((d for d in runs if (d / "metrics.json").exists()), None)
        for d in runs:
            if d != finished and finished is not None and checkpoint_of(d, in_trial) >= 2:
                cut = d
        time.sleep(0.1)
    assert proc.poll() is None and cut is not None, "the study ended before it could be killed"
    if in_trial:  # Tune writes its experiment state right after recording a trial's checkpoint
        state = max(trials.glob("experiment_state-*.json"), key=lambda p: p.stat().st_mtime)
        while state.stat().st_mtime < max(p.stat().st_mtime for p in cut.glob("checkpoint_0*")):
            assert time.monotonic() < deadline, "Tune never wrote its state after the trial's checkpoint"
            time.sleep(0.05)
    kept = checkpoint_of(cut, in_trial)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    before = epochs_of(cut)
    assert kept >= 2 and len(before) < 6, f"killed after epoch {len(before)} (checkpoint {kept})"
    client, parents, children = study_runs(uri, "tiny")
    run_id = {r.data.tags["adautomix.trial_key"]: r.info.run_id for r in children}
    own = ["config.yaml", "metrics.jsonl", "metrics.json", "checkpoints/last.pt"]
    finished_files = {name: (finished / name).stat().st_mtime for name in own}

    done = run_cli([*args, "--resume"], tmp_path)
    assert done.returncode == 0, output(done)
    assert "1 finished before" in done.stdout, output(done)
    after = epochs_of(cut)
    assert [r["epoch"] for r in after] == [1, 2, 3, 4, 5, 6]
    # epochs up to the kept checkpoint are the ones trained before the kill, not trained again
    assert after[:kept] == before[:kept]
    client, parents, children = study_runs(uri, "tiny")
    assert len(parents) == 1, "the resumed study keeps its parent run"
    assert sorted(r.data.tags["adautomix.trial_key"] for r in children) == sorted(run_id), "no duplicates"
    for run in children:  # each trial kept its run; its metrics hold each epoch once
        assert run.info.run_id == run_id[run.data.tags["adautomix.trial_key"]]
        check_child(client, run, parents[0].info.run_id, epochs=6)
    # the finished trial did not run again: nothing in its folder changed
    assert {name: (finished / name).stat().st_mtime for name in own} == finished_files
    check_parent_artifacts(client, parents[0])
    if kind == "tpe":  # the Optuna study went on: two trials, the cut one with its own setting
        import optuna
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        storage = JournalStorage(JournalFileBackend(str(tmp_path / "study" / "optuna.log")))
        trials = optuna.load_study(study_name="tiny", storage=storage).trials
        assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
        cut_lr = yaml.safe_load((cut / "config.yaml").read_text())["train"]["lr"]
        assert cut_lr in [t.params["train.lr"] for t in trials]


def test_asha_without_train_epochs_trains_to_the_configured_epochs_unless_stopped_on_a_rung(tmp_path):
    # the study file sets no train.epochs: trials train Config's default (10) unless ASHA stops
    # them at a rung (1, 2, 4, 8 epochs); a TPE search on a local cluster the runner starts itself
    base = {"data": {"name": "digits", "limit_train": 64, "limit_test": 64}, "model": {"width": 0.125},
            "method": {"name": "vanilla"}, "train": {"batch_size": 32}}
    path = write_study(tmp_path, searcher="tpe", num_samples=4, seeds=[0], tpe={"n_startup_trials": 2},
                       space={"train.lr": {"loguniform": [0.001, 0.4]}}, base=base, max_concurrent=2,
                       scheduler={"name": "asha", "grace_period": 1, "reduction_factor": 2})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = run_cli([path, "--tracking-uri", uri, "--out", tmp_path / "study"], tmp_path)
    assert done.returncode == 0, output(done)
    quiet_end(done)
    assert (tmp_path / "study" / "optuna.log").exists()  # the Optuna study is on disk
    client, parents, children = study_runs(uri, "tiny")
    assert len(parents) == 1 and len(children) == 4
    epochs = Config().train.epochs
    finished = 0
    for run in children:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "top1")]
        if run.info.status == "FINISHED":
            finished += 1
            check_child(client, run, parents[0].info.run_id, epochs=epochs)
        else:
            assert run.info.status == "KILLED" and "adautomix.stopped_early" in run.data.tags
            assert steps == list(range(1, len(steps) + 1)) and len(steps) in (1, 2, 4, 8)
    assert finished >= 1


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


@pytest.mark.parametrize("signum, code, name", [(signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")],
                         ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_stops_a_study_with_one_line_and_resume_finishes_it(tmp_path, ray_cluster, signum,
                                                                              code, name):
    """SIGINT to the driver's process group (what Ctrl-C in a terminal sends), or SIGTERM to the
    driver (what Kubernetes, Slurm and `timeout` send), once the first trial has a checkpoint: Tune
    stops the trials and saves its state; the runner ends with one line naming the --resume
    command and exit code 130 / 143; that command finishes the study."""
    base = {**TINY_BASE, "data": {"name": "digits", "limit_train": 256, "limit_test": 64},
            "train": {**TINY_BASE["train"], "epochs": 4}, "mlflow": {"log_model": False}}
    path = write_study(tmp_path, base=base, space={"method.name": ["vanilla", "mixup"]}, max_concurrent=1)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [path, "--address", ray_cluster.address, "--tracking-uri", uri, "--out", tmp_path / "study"]
    trials = tmp_path / "study" / "trials"
    proc = subprocess.Popen([sys.executable, str(RUNNER), *map(str, args)], cwd=tmp_path, env=cluster_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if trials.exists() and any(checkpoint_of(d, True) >= 1 for d in trials.iterdir() if d.is_dir()):
            break
        time.sleep(0.1)
    assert proc.poll() is None, "the study ended before the signal"
    if signum == signal.SIGINT:
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=180)
    done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert proc.returncode == code, output(done)
    # MLflow's two lines about creating its SQLite tables come at the start; the stop is one line
    lines = [line for line in stderr.splitlines() if line.strip() and "mlflow.store.db.utils" not in line]
    assert len(lines) == 1 and lines[0].startswith(f"study tiny stopped ({name})"), output(done)
    assert lines[0].endswith(f"--resume --out {tmp_path / 'study'}"), output(done)
    client, parents, _ = study_runs(uri, "tiny")
    assert parents[0].info.status == "KILLED"

    done = run_cli([*args, "--resume"], tmp_path)
    assert done.returncode == 0, output(done)
    client, parents, children = study_runs(uri, "tiny")
    assert len(parents) == 1 and len(children) == 2
    for run in children:
        check_child(client, run, parents[0].info.run_id, epochs=4)
    for d in (d for d in trials.iterdir() if (d / "config.yaml").exists()):
        assert [r["epoch"] for r in epochs_of(d)] == [1, 2, 3, 4]
