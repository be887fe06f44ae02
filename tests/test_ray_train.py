"""Ray Train: data-parallel workers give the one-process result (one worker bit for bit here; two
workers, parameter for parameter, in test_ray_train_equivalence.py), survive a killed worker, span
two nodes, run as a `ray job submit` job, and refuse what the cluster cannot place.

All runs are real: a Ray cluster started with `ray start` on 127.0.0.1 (conftest.py), CPU
workers, gloo. The models are tiny so that each run is a few seconds of training; most of a
test's time is Ray starting its worker processes.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Callbacks below are defined in this module, which Ray's workers cannot import: ship by value.
import ray.cloudpickle  # noqa: E402
import torch

from adautomix.config import ConfigError, load_config
from adautomix.data.datasets import build_loaders
from adautomix.engine import Callback, train
from adautomix.platform import ray_train
from adautomix.platform.ray_train import RayTrainError, train_with_ray
from adautomix.runlock import RunDirNotShared

from conftest import REPO, _start_node, cluster_env

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

TINY = ["data.name=digits", "model.width=0.125", "data.limit_train=256", "data.limit_test=128",
        "train.batch_size=32", "train.threads=1", "train.epochs=2"]


def tiny(tmp_path: Path, *overrides: str, name: str = "run"):
    return load_config(overrides=[*TINY, f"out_dir={tmp_path / name}", *overrides])


def step_records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def epochs_in(run: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------------------------------
# callbacks run on the workers (picklable; `setup` is called on every rank)


class SaveTeacher(Callback):
    """Each rank writes its teacher's parameters after every epoch."""

    def __init__(self, folder: Path):
        self.folder = folder

    def on_epoch_end(self, trainer, checkpoint):
        teacher = trainer.step.teacher.model
        params = {k: v.detach().cpu().clone() for k, v in teacher.named_parameters()}
        torch.save(params, self.folder / f"teacher_rank{trainer.rank}_epoch{trainer.epoch}.pt")


class RecordWhere(Callback):
    """Each rank records the Ray node it runs on."""

    def __init__(self, folder: Path):
        self.folder = folder

    def setup(self, trainer):
        import ray

        (self.folder / f"rank{trainer.rank}.node").write_text(ray.get_runtime_context().get_node_id())


class RecordEnv(Callback):
    """Each rank records the variables named ``names`` as its process sees them."""

    def __init__(self, folder: Path, names: list[str]):
        self.folder, self.names = folder, names

    def setup(self, trainer):
        seen = {k: os.environ.get(k) for k in self.names}
        (self.folder / f"rank{trainer.rank}.env").write_text(json.dumps(seen))


class KillRankOnceAfterFirstCheckpoint(Callback):
    """On the first attempt only, rank 1 is SIGKILLed once Ray Train has registered the epoch-1
    checkpoint (its manager's snapshot names it); every start and every epoch is logged."""

    def __init__(self, folder: Path, run: Path):
        self.folder, self.run = folder, run

    def setup(self, trainer):
        with (self.folder / "starts.txt").open("a") as fh:
            fh.write(f"{trainer.rank} {trainer.epoch} {os.getpid()}\n")

    def on_epoch(self, record):  # rank 0
        with (self.folder / "epochs.txt").open("a") as fh:
            fh.write(f"{record['epoch']}\n")

    def on_epoch_end(self, trainer, checkpoint):
        marker = self.folder / "killed"
        if trainer.rank != 1 or trainer.epoch != 1 or marker.exists():
            return
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            snapshots = self.run.glob("ray/*/checkpoint_manager_snapshot.json")
            if any("epoch_00001" in p.read_text() for p in snapshots):
                break
            time.sleep(0.2)
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)


# --------------------------------------------------------------------------------------------


def test_rank_shards_of_a_global_batch_reassemble_the_one_process_batch():
    """Rank r takes elements r, r+W, ... of every global batch, augmentation included."""
    cfg = load_config(overrides=[*TINY, "train.workers=2", "out_dir=/tmp/unused"])
    cpu = torch.device("cpu")
    whole, _, _ = build_loaders(cfg, cpu, 0, 1)
    shards = [build_loaders(cfg, cpu, r, 2)[0] for r in range(2)]
    for loader in (whole, *shards):
        loader.set_epoch(3)
    for (x, y), (x0, y0), (x1, y1) in zip(whole, *shards):
        assert x0.shape[0] == x1.shape[0] == x.shape[0] // 2
        assert torch.equal(x[0::2], x0) and torch.equal(x[1::2], x1)
        assert torch.equal(y[0::2], y0) and torch.equal(y[1::2], y1)


def test_one_worker_reproduces_the_in_process_run_bit_for_bit(tmp_path, ray_connected):
    """Same config and threads: Ray Train with one worker (DDP over one rank) changes nothing."""
    common = ["method.name=mixup", "data.limit_train=128", "data.limit_test=64"]
    train(tiny(tmp_path, *common, name="in-process"), quiet=True)
    train_with_ray(tiny(tmp_path, *common, "train.workers=1", name="one-worker"), quiet=True)
    keys = ("epoch", "loss", "lr", "top1")
    ref = [{k: r[k] for k in keys} for r in step_records(tmp_path / "in-process")]
    got = [{k: r[k] for k in keys} for r in step_records(tmp_path / "one-worker")]
    assert got == ref and len(ref) == 2


@pytest.mark.parametrize("method", ["saliencymix", "fmix"])
def test_hand_crafted_baselines_train_on_two_workers(tmp_path, ray_connected, method):
    """The baselines mix inside the step, each rank on its own shard, as Mixup does. Two of them
    here (each Ray Train start costs seconds): SaliencyMix, whose boxes come from the rank's own
    images (a spectral saliency map of the batch), and FMix, a Fourier-noise mask; ResizeMix,
    GridMix and SmoothMix draw their masks from the step's generator as CutMix does (every method
    trains on digits in test_baselines.py)."""
    summary = train_with_ray(tiny(tmp_path, f"method.name={method}", "data.limit_train=64", "train.epochs=1",
                                  "train.workers=2"), quiet=True)
    assert summary["epochs_done"] == 1 and summary["final_loss"] == summary["final_loss"]  # not NaN
    assert [r["epoch"] for r in step_records(tmp_path / "run")] == [1]


def test_sync_bn_on_cpu_workers_is_refused_before_starting(tmp_path):
    with pytest.raises(ConfigError, match="train.sync_bn"):  # by the config, before Ray is asked
        tiny(tmp_path, "train.workers=2", "train.sync_bn=true")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("override, key", [
    ('train.env_vars=["NCCL DEBUG"]', "train.env_vars[0]"), ("train.env_vars=[\"*\"]", "train.env_vars[0]"),
    ("train.worker_start_timeout_s=0", "train.worker_start_timeout_s"),
    ("train.controller_failure_limit=-2", "train.controller_failure_limit"),
    ("train.max_preemption_failures=-2", "train.max_preemption_failures")])
def test_bad_fault_and_environment_keys_are_refused(tmp_path, override, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        tiny(tmp_path, "train.workers=1", override)


def test_ema_teacher_stays_identical_on_every_rank(tmp_path, ray_connected):
    """AdAutoMix on two workers: after 4 and 8 steps both ranks hold the same teacher weights,
    without the teacher ever being broadcast (it follows identical classifier weights)."""
    folder = tmp_path / "teachers"
    folder.mkdir()
    cfg = tiny(tmp_path, "method.name=adautomix", "data.limit_train=128", "train.workers=2")
    train_with_ray(cfg, callbacks=[SaveTeacher(folder)], quiet=True)
    for epoch in (1, 2):
        rank0 = torch.load(folder / f"teacher_rank0_epoch{epoch}.pt")
        rank1 = torch.load(folder / f"teacher_rank1_epoch{epoch}.pt")
        assert rank0.keys() == rank1.keys() and rank0
        for name in rank0:
            assert torch.equal(rank0[name], rank1[name]), f"epoch {epoch}: {name} differs"
    first = torch.load(folder / "teacher_rank0_epoch1.pt")
    last = torch.load(folder / "teacher_rank0_epoch2.pt")
    assert any(not torch.equal(first[k], last[k]) for k in first)  # the teacher did move


def test_killed_worker_restarts_from_the_checkpoint_and_logs_each_epoch_once(tmp_path, ray_connected):
    folder = tmp_path / "log"
    folder.mkdir()
    cfg = tiny(tmp_path, "method.name=adautomix", "data.limit_train=128", "train.epochs=3",
               "train.workers=2", "train.max_failures=1")
    run = Path(cfg.out_dir)
    summary = train_with_ray(cfg, callbacks=[KillRankOnceAfterFirstCheckpoint(folder, run)],
                             quiet=True)
    assert (folder / "killed").exists()
    starts = [tuple(map(int, line.split())) for line in (folder / "starts.txt").read_text().splitlines()]
    assert sorted((rank, epoch) for rank, epoch, _ in starts) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert (folder / "epochs.txt").read_text().split() == ["1", "2", "3"]  # epoch 1 not redone
    assert epochs_in(run) == [1, 2, 3]
    assert summary["epochs_done"] == 3
    assert json.loads((run / "metrics.json").read_text())["epochs_done"] == 3
    assert torch.load(run / "checkpoints/last.pt", weights_only=False)["epoch"] == 3


def test_resume_continues_a_run_stopped_by_a_dead_worker(tmp_path, ray_connected):
    """No restarts allowed: the run stops with a hint, and `--resume` carries on from epoch 1."""
    folder = tmp_path / "log"
    folder.mkdir()
    cfg = tiny(tmp_path, "method.name=mixup", "train.epochs=3", "train.workers=2",
               "train.max_failures=0")
    run = Path(cfg.out_dir)
    with pytest.raises(RayTrainError, match="holds the last checkpoint, continue with: .* --resume"):
        train_with_ray(cfg, callbacks=[KillRankOnceAfterFirstCheckpoint(folder, run)], quiet=True)
    assert epochs_in(run) == [1]
    resumed = tiny(tmp_path, "method.name=mixup", "train.epochs=3", "train.workers=2",
                   "train.resume=true")
    summary = train_with_ray(resumed, callbacks=[KillRankOnceAfterFirstCheckpoint(folder, run)],
                             quiet=True)
    assert summary["epochs_done"] == 3
    assert epochs_in(run) == [1, 2, 3]
    assert (folder / "epochs.txt").read_text().split() == ["1", "2", "3"]
    assert not (run / "ray").exists()  # Ray's copy of the checkpoints goes once the run is done


def test_two_workers_land_one_on_each_node(tmp_path, ray_connected, ray_second_node):
    """Head and second node hold one `worker_slot` each; two workers asking for one slot each
    run one on each node (the second node is the one tagged `node_b`)."""
    folder = tmp_path / "where"
    folder.mkdir()
    cfg = tiny(tmp_path, "method.name=mixup", "train.workers=2",
               'train.resources_per_worker={"CPU": 1, "worker_slot": 1}')
    train_with_ray(cfg, callbacks=[RecordWhere(folder)], quiet=True)
    nodes = {(folder / f"rank{r}.node").read_text() for r in range(2)}
    assert ray_second_node in nodes
    assert len(nodes) == 2
    assert epochs_in(Path(cfg.out_dir)) == [1, 2]


def test_more_workers_than_the_cluster_can_place_fail_fast(tmp_path, ray_connected):
    cfg = tiny(tmp_path, "train.workers=16")  # the session cluster holds 4 + 2 CPUs
    with pytest.raises(RayTrainError, match=r"train.workers=16 cannot be placed"):
        train_with_ray(cfg, quiet=True)
    gpu = tiny(tmp_path, "train.workers=1", "train.use_gpu=true", name="gpu")
    with pytest.raises(RayTrainError, match="GPU"):
        train_with_ray(gpu, quiet=True)


def test_ray_job_submit_with_token_auth_trains_a_run(tmp_path, ray_cluster):
    run = tmp_path / "job-run"
    args = [*TINY, "method.name=mixup", "train.workers=2", f"out_dir={run}"]
    submit = [str(Path(sys.executable).parent / "ray"), "job", "submit",
              "--address", ray_cluster.dashboard_url, "--working-dir", ".", "--",
              "python", "-m", "adautomix", "train", *args]
    done = subprocess.run(submit, cwd=REPO, env=cluster_env(), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "epoch   2/2" in done.stdout  # rank 0's progress reaches the submitter
    assert epochs_in(run) == [1, 2]
    assert json.loads((run / "metrics.json").read_text())["epochs_done"] == 2


def test_job_submission_without_the_token_is_refused(tmp_path, ray_cluster):
    env = cluster_env()
    env.pop("RAY_AUTH_TOKEN_PATH")
    env["RAY_AUTH_TOKEN"] = "0" * 64
    submit = [str(Path(sys.executable).parent / "ray"), "job", "submit", "--address",
              ray_cluster.dashboard_url, "--", "python", "-c", "print('should not run')"]
    done = subprocess.run(submit, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    said = done.stdout + done.stderr
    assert done.returncode != 0
    # the dashboard's answer to a wrong token (HTTP 403), as Ray's job client reports it
    assert "AuthenticationError" in said and "Forbidden: Invalid authentication token" in said, said[-3000:]
    assert "should not run" not in done.stdout


# --------------------------------------------------------------------------------------------
# faults of a cluster: what reaches the workers, what they cannot see, what cannot be placed


FORWARDED = {"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": "s3cret",
             "MLFLOW_TRACKING_TOKEN": "tok", "MLFLOW_TRACKING_URI": "http://127.0.0.1:1",
             "NCCL_DEBUG": "INFO", "NCCL_SOCKET_IFNAME": "lo", "ADX_NAMED": "yes"}


def test_mlflow_credentials_and_named_variables_reach_every_worker(tmp_path, ray_connected,
                                                                   ray_second_node, monkeypatch):
    """Set in the driver only (the nodes were started without them): both workers, one on each
    node, see MLflow's credentials and what train.env_vars names; nothing else is sent."""
    for k, v in {**FORWARDED, "ADX_NOT_NAMED": "no"}.items():
        monkeypatch.setenv(k, v)
    folder = tmp_path / "env"
    folder.mkdir()
    cfg = tiny(tmp_path, "method.name=vanilla", "data.limit_train=64", "train.epochs=1", "train.workers=2",
               'train.resources_per_worker={"CPU": 1, "worker_slot": 1}', 'train.env_vars=["NCCL_*", "ADX_NAMED"]')
    train_with_ray(cfg, callbacks=[RecordEnv(folder, [*FORWARDED, "ADX_NOT_NAMED"]),
                                   RecordWhere(folder)], quiet=True)
    assert len({(folder / f"rank{r}.node").read_text() for r in range(2)}) == 2
    for rank in range(2):
        assert json.loads((folder / f"rank{rank}.env").read_text()) == {**FORWARDED, "ADX_NOT_NAMED": None}


def test_a_worker_that_cannot_see_the_run_directory_stops_the_run_at_once(tmp_path, ray_connected,
                                                                          monkeypatch):
    """The driver's launch id is written where only it looks (as out_dir on a node's local disk
    would be): the worker refuses before training, with one line naming out_dir."""
    def elsewhere(out: Path) -> str:
        (tmp_path / "driver-only").mkdir()
        (tmp_path / "driver-only" / "launch.id").write_text("abc\n")
        return "abc"

    monkeypatch.setattr(ray_train, "write_launch_id", elsewhere)
    cfg = tiny(tmp_path, "train.workers=1", "train.epochs=1")
    with pytest.raises(RunDirNotShared) as err:
        train_with_ray(cfg, quiet=True)
    message = str(err.value)
    assert "\n" not in message and f"out_dir {cfg.out_dir} is not the driver's run directory" in message
    assert "storage every node sees" in message
    assert not (Path(cfg.out_dir) / "metrics.jsonl").exists()


def stderr_lines(text: str) -> list[str]:
    """Non-empty stderr lines, less the one Ray core prints when Ray Train starts its preemption
    watcher (kept on for its preemption handling; https://github.com/ray-project/ray/issues/53727)."""
    return [line for line in text.splitlines()
            if line.strip() and not ("core_worker.cc" in line and "'PreemptionWatcher'" in line)]


def run_cli(args: list[str], timeout: float = 300, **popen):
    return subprocess.run([sys.executable, "-m", "adautomix", "train", *args], cwd=REPO, env=cluster_env(),
                          capture_output=True, text=True, timeout=timeout, **popen)


def test_bad_data_path_on_a_worker_is_one_line_and_exit_2(tmp_path, ray_cluster):
    missing = tmp_path / "no-data"
    done = run_cli([*TINY, "data.name=cifar10", f"data.root={missing}", "train.workers=1",
                    f"out_dir={tmp_path / 'run'}", "--address", ray_cluster.address])
    errors = stderr_lines(done.stderr)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-3000:]
    assert len(errors) == 1, done.stderr[-12000:]
    assert errors[0].startswith("adautomix: error:") and str(missing) in errors[0], done.stderr[-12000:]
    assert not (tmp_path / "run").exists()  # nothing of the launch is left behind


def test_a_local_tracking_store_is_refused_on_a_cluster_of_several_nodes(tmp_path, ray_cluster, ray_second_node):
    """Rank 0 logs `adautomix train --tracking-uri` runs and may land on either node: a SQLite
    file of the driver's disk is refused before anything is written."""
    done = run_cli([*TINY, "train.workers=1", f"out_dir={tmp_path / 'run'}", "--address", ray_cluster.address,
                    "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"])
    errors = stderr_lines(done.stderr)
    assert done.returncode == 2, done.stderr[-3000:]
    assert len(errors) == 1 and "is a store on this machine's disk, and the Ray cluster has 2 nodes" in errors[0]
    assert "--tracking-uri http://" in errors[0]
    assert not (tmp_path / "run").exists() and not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize("signum, code, name", [(signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")],
                         ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_stops_a_ray_train_run_and_resume_continues_its_mlflow_run(
        tmp_path, ray_cluster, mlflow_server, signum, code, name):
    """SIGINT (Ctrl-C) or SIGTERM (Kubernetes, Slurm, `ray job stop`, `timeout`) to the driver
    after the first checkpoint: exit 130 / 143, one line with the resume command, the MLflow run
    closed KILLED; `--resume` trains the rest into the same run, every epoch logged. (A real
    tracking server: the cluster may have a second node, where a local store is refused.)"""
    from mlflow import MlflowClient

    run, uri = tmp_path / "run", mlflow_server.url
    args = [*TINY, "train.epochs=8", "train.workers=1", f"out_dir={run}", "--address", ray_cluster.address,
            "--tracking-uri", uri]
    proc = subprocess.Popen([sys.executable, "-m", "adautomix", "train", *args], cwd=REPO,
                            env=cluster_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (run / "checkpoints/last.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stdout[-2000:] + stderr[-3000:]
    last = stderr_lines(stderr)[-1]
    assert last.startswith(f"adautomix: stopped ({name})") and last.endswith(
        f"--config {run / 'config.yaml'} --resume --address {ray_cluster.address}"), stderr[-3000:]
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("train-digits")
    (killed,) = client.search_runs([exp.experiment_id])
    assert killed.info.status == "KILLED"
    stopped_at = max(epochs_in(run))
    assert stopped_at < 8, "the run finished before the signal"

    done = run_cli(["--config", str(run / "config.yaml"), "--resume", "--address", ray_cluster.address,
                    "--tracking-uri", uri])
    assert done.returncode == 0, done.stderr[-3000:]
    (finished,) = client.search_runs([exp.experiment_id])
    assert finished.info.run_id == killed.info.run_id and finished.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(finished.info.run_id, "top1")]
    # at most the epoch in progress at Ctrl-C is logged twice (trained again after its checkpoint)
    assert sorted(set(steps)) == list(range(1, 9)) and len(steps) <= 9, steps
    assert epochs_in(run) == list(range(1, 9))
    print(f"Ctrl-C after epoch {stopped_at}; top1 logged at steps {steps}")


def test_a_restart_that_cannot_be_placed_ends_with_one_line_and_the_resume_command(tmp_path, ray_cluster):
    """The only node with `node_c` goes away after the first checkpoint; no autoscaler brings it
    back. Ray Train's restart waits train.worker_start_timeout_s per start, for at most
    train.controller_failure_limit + 1 starts, then the command ends."""
    node = _start_node(["--address", ray_cluster.address, "--num-cpus", "1", "--num-gpus", "0",
                        "--resources", json.dumps({"node_c": 1})], "node_c",
                       lambda: any(n["resources"].get("node_c") for n in ray_cluster.node_resources()))
    run = tmp_path / "run"
    args = [*TINY, "method.name=vanilla", "train.epochs=30", "train.workers=1", "train.max_failures=1",
            'train.resources_per_worker={"CPU": 1, "node_c": 1}', "train.worker_start_timeout_s=3",
            "train.controller_failure_limit=1", f"out_dir={run}", "--address", ray_cluster.address]
    proc = subprocess.Popen([sys.executable, "-m", "adautomix", "train", *args], cwd=REPO, env=cluster_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (run / "checkpoints/last.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None and (run / "checkpoints/last.pt").exists(), "the run ended before the node went"
    finally:
        node.stop()
    lost = time.monotonic()
    stdout, stderr = proc.communicate(timeout=240)
    waited = time.monotonic() - lost
    # Ray Train's own log of the lost workers and the failed starts comes first (it says what
    # happened on the cluster); the command's last line says what it means and what to do
    assert proc.returncode == 2, stdout[-2000:] + stderr[-4000:]
    last = stderr_lines(stderr)[-1]
    assert [line for line in stderr.splitlines() if line.startswith("adautomix: error:")] == [last]
    assert "the worker group could not be placed: 2 starts waited" in last, stderr[-4000:]
    assert last.endswith(f"--config {run / 'config.yaml'} --resume --address {ray_cluster.address}")
    assert torch.load(run / "checkpoints/last.pt", weights_only=False)["epoch"] >= 1
    print(f"node lost -> command ended in {waited:.1f} s")


# --------------------------------------------------------------------------------------------
# token authentication


def test_an_existing_token_file_is_made_owner_only(tmp_path, monkeypatch):
    token = tmp_path / "auth_token"
    token.write_text("0" * 64)
    token.chmod(0o644)
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token))
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    assert ray_train.secure_token_file(create=False) == token
    assert token.stat().st_mode & 0o777 == 0o600 and token.read_text() == "0" * 64


def test_a_local_cluster_starts_with_token_auth_and_an_owner_only_token(tmp_path):
    """A fresh home without a token and without RAY_AUTH_MODE: the local cluster the command
    starts uses token authentication, and the token file Ray reads is readable by its owner only."""
    env = {k: v for k, v in cluster_env().items() if not k.startswith("RAY_AUTH_")}
    env["HOME"] = str(tmp_path)
    code = ("import os, stat\n"
            "from adautomix.platform.ray_train import connect\n"
            "assert connect(None)\n"
            "import ray\n"
            "from ray._raylet import AuthenticationMode, get_authentication_mode\n"
            "token = os.path.expanduser('~/.ray/auth_token')\n"
            "print('mode', oct(stat.S_IMODE(os.stat(token).st_mode)), os.environ['RAY_AUTH_MODE'],\n"
            "      get_authentication_mode() == AuthenticationMode.TOKEN, len(open(token).read()))\n"
            "print('task', ray.get(ray.remote(lambda: os.environ.get('RAY_AUTH_MODE')).remote()))\n"
            "ray.shutdown()\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "mode 0o600 token True 64" in done.stdout and "task token" in done.stdout, done.stdout


def test_token_auth_is_set_even_when_ray_was_imported_first():
    """Ray reads RAY_AUTH_MODE when it is imported; the run sets it later (e.g. a study driver
    imports Ray before it connects), so Ray's cached setting must follow."""
    env = {k: v for k, v in cluster_env().items() if not k.startswith("RAY_AUTH_")}
    code = ("import ray\n"
            "from ray._raylet import AuthenticationMode, get_authentication_mode\n"
            "from adautomix.platform.ray_train import use_token_auth\n"
            "before = get_authentication_mode() == AuthenticationMode.TOKEN\n"
            "use_token_auth()\n"
            "print(before, get_authentication_mode() == AuthenticationMode.TOKEN)\n")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["False", "True"], done.stdout + done.stderr[-2000:]
