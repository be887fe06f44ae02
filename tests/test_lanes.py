"""The test lanes (conftest.lanes_of): a test is in `ray`, `mlflow` or `e2e` by the fixtures it
uses and by what its code and the test helpers it calls do. The functions below are specimens
that are never run; the patterns are read from their source."""
from __future__ import annotations

import subprocess
import sys

from conftest import lanes_of


def run_the_cli(*args):
    return subprocess.run([sys.executable, "-m", "adautomix", *args], capture_output=True, text=True)


def through_a_helper_of_a_helper():
    return run_the_cli("train", "--dry-run")


def specimen_cli_test():
    assert through_a_helper_of_a_helper().returncode == 0


def specimen_pure_test():
    """Mentions subprocess.run and `import mlflow` only here, in its docstring."""
    assert 1 + 1 == 2  # and train_with_ray( only in a comment


def specimen_tracking_test(tmp_path):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'm.db'}")


def specimen_in_process_ray_test(cfg):
    from adautomix.platform.ray_train import train_with_ray

    train_with_ray(cfg, quiet=True)


def test_a_test_that_runs_the_cli_through_helpers_is_e2e():
    assert lanes_of([specimen_cli_test], ["tmp_path"]) == {"e2e"}


def test_docstrings_and_comments_put_no_test_in_a_lane():
    assert lanes_of([specimen_pure_test], []) == set()


def test_mlflow_and_ray_by_code_and_by_fixture():
    assert lanes_of([specimen_tracking_test], ["tmp_path"]) == {"mlflow"}
    assert lanes_of([specimen_in_process_ray_test], []) == {"ray"}
    assert lanes_of([specimen_pure_test], ["ray_connected", "ray_cluster"]) == {"ray"}
    assert lanes_of([specimen_pure_test], ["mlflow_server", "tmp_path"]) == {"mlflow"}
