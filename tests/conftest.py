"""Shared fixtures: one real Ray cluster per test session, on 127.0.0.1, with token authentication.

``ray_cluster`` starts a head node with ``ray start --head`` (as a user would) and stops it at
the end of the session; ``ray_second_node`` joins a second node to it with its own custom
resource; ``ray_connected`` connects this test process as a driver; ``mlflow_server`` is a real
`mlflow server` for one test. Nothing listens beyond 127.0.0.1.

Token authentication: the test session uses its own token file (``RAY_AUTH_TOKEN_PATH``), so it
never reads or writes ``~/.ray/auth_token``. Ray reads ``RAY_AUTH_MODE`` once, when it is first
imported, so both variables are set here, before any test module imports ray.
"""
from __future__ import annotations

import ast
import inspect
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

# In-process tests run tiny models: one thread is as fast, and two threads on a busy 2-core
# machine spin against each other (seen here: 15 s instead of 0.3 s for one AdAutoMix step).
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's bin: ray, adautomix
RAY = str(BIN / "ray")
HOST = "127.0.0.1"
HEAD_CPUS = 4  # logical CPUs: room for two 1-CPU workers next to another test's driver
NODE_B_CPUS = 2

# Short: Ray's unix-socket paths live under the temp dir and must stay under 108 characters.
SESSION_DIR = Path(tempfile.mkdtemp(prefix="adx-ray-", dir="/tmp"))
TOKEN_FILE = SESSION_DIR / "auth_token"
TOKEN_FILE.write_text(secrets.token_hex(32))
TOKEN_FILE.chmod(0o600)
os.environ["RAY_AUTH_MODE"] = "token"
os.environ["RAY_AUTH_TOKEN_PATH"] = str(TOKEN_FILE)
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(autouse=True)
def no_tracking_uri_from_outside(monkeypatch):
    """Each test starts without $MLFLOW_TRACKING_URI (a user's, or one that ``mlflow.set_tracking_uri``
    in an earlier test left in os.environ): a command run with it would log to that server."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")


# Test lanes (markers registered in pyproject.toml). A test joins a lane by the fixtures it uses,
# or by what its code, its fixtures' code and the test-module helpers it calls do: the patterns
# below. An explicit ``@pytest.mark.<lane>`` adds a test to a lane the patterns miss.
LANE_FIXTURES = {"ray_cluster": "ray", "ray_second_node": "ray", "ray_connected": "ray",
                 "mlflow_server": "mlflow"}
LANE_PATTERNS = {
    # a process started from the test: the CLI, the study runner, `ray job submit`, a probe
    "e2e": re.compile(r"\bsubprocess\.(run|Popen|check_call|check_output)\b"),
    # a Ray instance started in this process (the CLI and the study runner start theirs: e2e)
    "ray": re.compile(r"\b(train_with_ray|ray\.init|run_study)\("),
    # an MLflow tracking store written or read
    "mlflow": re.compile(r"\bimport mlflow\b|\bmlflow\.(set_tracking_uri|MlflowClient|search_runs)|"
                         r"--tracking-uri|\bStudyTracker\(|\bRunLogger\(|\btracking_uri=f?[\"']"),
}


def lanes_of(functions: list, fixturenames: list[str]) -> set[str]:
    """The lanes of a test: by the fixtures it uses (``fixturenames``, all of them, conftest's
    included), and by the code of ``functions`` (the test and its test-module fixtures) and of the
    helpers under tests/ that they call, followed to any depth, without docstrings and comments:
    a helper that runs the CLI puts its callers in e2e."""
    lanes = {LANE_FIXTURES[f] for f in fixturenames if f in LANE_FIXTURES}
    code = _code_of(functions)
    return lanes | {lane for lane, pattern in LANE_PATTERNS.items() if pattern.search(code)}


def _in_tests(func) -> bool:
    path = inspect.getsourcefile(func)
    return path is not None and Path(path).parent == Path(__file__).parent


def _code_of(functions: list) -> str:
    todo, seen, parts = list(functions), set(), []
    while todo:
        func = inspect.unwrap(todo.pop())
        if func in seen or not inspect.isfunction(func) or not _in_tests(func):
            continue
        seen.add(func)
        try:
            code = _without_docs(inspect.getsource(func))
        except (OSError, SyntaxError):
            continue
        parts.append(code)
        names = set(re.findall(r"\b([A-Za-z_]\w*)\(", code))
        todo += [v for n, v in func.__globals__.items() if n in names and inspect.isfunction(v)]
    return "\n".join(parts)


def _without_docs(code: str) -> str:
    """``code`` (one function's source) without its comments and docstrings."""
    tree = ast.parse(textwrap.dedent(code))
    drop = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            drop.update(range(body[0].lineno, body[0].end_lineno + 1))
    lines = [line for n, line in enumerate(code.splitlines(), 1) if n not in drop]
    return "\n".join(line.split(" #")[0] if "#" in line else line for line in lines)


def pytest_collection_modifyitems(config, items):
    """Puts each test in its lanes (above); skips tests marked ``cuda`` without a CUDA device."""
    for item in items:
        fixtures = [d.func for defs in item._fixtureinfo.name2fixturedefs.values() for d in defs
                    if Path(inspect.getsourcefile(d.func) or "").name != "conftest.py"]  # conftest's: by name
        for lane in sorted(lanes_of([item.function, *fixtures], item.fixturenames) - set(item.keywords)):
            item.add_marker(lane)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def pytest_unconfigure(config):
    shutil.rmtree(SESSION_DIR, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def stop_process_group(proc: subprocess.Popen, grace: float) -> None:
    """Stop the process group ``proc`` leads (started with ``start_new_session=True``): SIGTERM to
    every process in it, SIGKILL to what is left after ``grace`` seconds. Unlike ``ray stop`` or
    ``pkill``, nothing outside the group (other sessions' servers and nodes) is touched."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:  # the whole group is gone
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            if sig == signal.SIGKILL:
                raise


def cluster_env() -> dict[str, str]:
    """Environment for Ray CLI calls: token auth on, the venv first on PATH (as when activated)."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.pop("RAY_ADDRESS", None)
    return env


@dataclass
class RayNode:
    """A ``ray start --block`` process; stopping it stops the node's Ray processes."""

    process: subprocess.Popen
    log: Path
    temp_dir: Path

    def stop(self) -> None:
        stop_process_group(self.process, grace=5)  # the node's processes, not other sessions' nodes


@dataclass
class RayCluster:
    address: str  # GCS address for `ray start --address` and `ray.init(address=...)`
    dashboard_url: str  # HTTP address for `ray job submit --address`
    head: RayNode
    nodes: list[RayNode] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return cluster_env()

    def node_resources(self) -> list[dict]:
        """Alive nodes as ``{"node_id", "resources"}``, from Ray's state API (authenticated)."""
        from ray.util.state import list_nodes

        nodes = list_nodes(address=self.dashboard_url, filters=[("state", "=", "ALIVE")],
                           timeout=10, raise_on_missing_output=False)
        return [{"node_id": n.node_id, "resources": dict(n.resources_total)} for n in nodes]


def _start_node(args: list[str], name: str, ready: callable, timeout: float = 120) -> RayNode:
    temp_dir = SESSION_DIR / name
    log = SESSION_DIR / f"{name}.log"
    cmd = [RAY, "start", "--block", "--disable-usage-stats", "--node-ip-address", HOST,
           "--temp-dir", str(temp_dir), "--dashboard-agent-listen-port", str(free_port()),
           "--metrics-export-port", str(free_port()), "--runtime-env-agent-port", str(free_port()),
           *args]
    with log.open("w") as fh:
        process = subprocess.Popen(cmd, env=cluster_env(), stdout=fh, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    node = RayNode(process, log, temp_dir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"`{' '.join(cmd)}` exited with {process.returncode}:\n{log.read_text()}")
        if ready():
            return node
        time.sleep(1)
    node.stop()
    raise RuntimeError(f"Ray node {name} not ready after {timeout:.0f} s:\n{log.read_text()}")


@pytest.fixture(scope="session")
def ray_cluster():
    """A real Ray head node on 127.0.0.1 for the whole session (token authentication on)."""
    port, dashboard_port = free_port(), free_port()
    cluster_holder: list[RayCluster] = []

    def ready() -> bool:
        try:
            return len(cluster_holder[0].node_resources()) > 0
        except Exception:  # noqa: BLE001 - the dashboard is not up yet (a refused or failed request)
            return False

    dashboard_url = f"http://{HOST}:{dashboard_port}"
    cluster_holder.append(RayCluster(f"{HOST}:{port}", dashboard_url, head=None))
    head = _start_node(["--head", "--port", str(port), "--dashboard-host", HOST,
                        "--dashboard-port", str(dashboard_port), "--include-dashboard", "true",
                        "--ray-client-server-port", str(free_port()), "--num-cpus", str(HEAD_CPUS),
                        "--num-gpus", "0", "--resources", json.dumps({"worker_slot": 1})],
                       "head", ready)
    cluster = cluster_holder[0]
    cluster.head = head
    yield cluster
    for node in reversed(cluster.nodes):
        node.stop()
    head.stop()


@pytest.fixture(scope="session")
def ray_second_node(ray_cluster):
    """A second node joined to ``ray_cluster``, tagged with the custom resource ``node_b``.

    Both nodes hold one ``worker_slot``: a worker asking for one lands on a node of its own
    (on CPUs, what one GPU per worker does on a GPU cluster). Returns the node's Ray id.
    """
    def node_b() -> str | None:
        for node in ray_cluster.node_resources():
            if node["resources"].get("node_b"):
                return node["node_id"]
        return None

    node = _start_node(["--address", ray_cluster.address, "--num-cpus", str(NODE_B_CPUS),
                        "--num-gpus", "0", "--resources", json.dumps({"node_b": 1, "worker_slot": 1})],
                       "node_b", lambda: node_b() is not None)
    ray_cluster.nodes.append(node)
    return node_b()


@pytest.fixture(scope="session")
def ray_connected(ray_cluster):
    """This test process connected to ``ray_cluster`` as a Ray driver (quiet logs)."""
    import logging

    import ray

    if ray.is_initialized():
        ray.shutdown()
    # RAY_ADDRESS for the job's actors, as ray_train.connect sets it: Ray Train's placement-group
    # cleaner finds the cluster's state API by it when other Ray instances run on the machine
    ray.init(address=ray_cluster.address, logging_level=logging.WARNING, log_to_driver=True,
             logging_config=ray.LoggingConfig(encoding="TEXT", log_level="WARNING"),
             runtime_env={"env_vars": {"RAY_ADDRESS": ray_cluster.address}})
    yield ray_cluster
    ray.shutdown()


class MlflowServer:
    """A real `mlflow server` on 127.0.0.1 (SQLite backend, served artifacts) that a test can
    stop and start again on the same port and store."""

    def __init__(self, folder: Path):
        self.folder, self.port = folder, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self) -> None:
        log = (self.folder / "server.log").open("a")
        self.proc = subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{self.folder / 'server.db'}",
             "--artifacts-destination", str(self.folder / "server-artifacts")],
            cwd=self.folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.folder / "server.log").read_text()
            try:
                if urllib.request.urlopen(f"{self.url}/health", timeout=2).status == 200:
                    return
            except OSError:
                time.sleep(0.5)
        pytest.fail("mlflow server did not start:\n" + (self.folder / "server.log").read_text())

    def stop(self) -> None:
        stop_process_group(self.proc, grace=5)  # the server and its job-queue consumers


@pytest.fixture()
def mlflow_server(tmp_path):
    server = MlflowServer(tmp_path)
    server.start()
    yield server
    if server.proc.poll() is None:
        server.stop()
