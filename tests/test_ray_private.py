"""Specifications of the Ray internals this project relies on (adautomix.platform.ray_private):
each test fails when a Ray upgrade moves, renames or changes one. No cluster is started."""
from __future__ import annotations

import logging
import os
import subprocess
import sys

from adautomix.platform import ray_private


class Records(logging.Handler):
    """The records a logger emits, caught on the logger itself (Ray's loggers do not propagate
    to the root logger, so pytest's caplog never sees them)."""

    def __init__(self, name: str):
        super().__init__(logging.DEBUG)
        self.logger, self.records = logging.getLogger(name), []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> Records:
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        self.logger.removeHandler(self)


def test_ray_trains_worker_traceback_is_logged_where_the_filter_sits():
    from ray.train.v2._internal import util

    assert util.logger.name == ray_private.TRAIN_ERROR_LOGGER
    with Records(ray_private.TRAIN_ERROR_LOGGER) as caught:
        try:
            raise ValueError("bad data")
        except ValueError as err:
            util.construct_user_exception_with_traceback(err)
    (record,) = caught.records
    assert record.getMessage().startswith(ray_private.TRAIN_ERROR_PREFIX)


def test_the_token_notice_comes_from_the_muted_logger():
    from ray._private.authentication import authentication_token_setup as setup

    assert setup.logger.name == ray_private.TOKEN_NOTICE_LOGGER
    with Records(ray_private.TOKEN_NOTICE_LOGGER) as caught:
        setup._warn_token_auth_enabled()
        with ray_private.token_notice_muted():
            setup._warn_token_auth_enabled()
    (record,) = caught.records  # the first notice only
    assert "Token authentication is enabled" in record.getMessage()


def test_an_imported_ray_rereads_the_auth_mode():
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH_")}
    code = ("import os, ray\n"
            "from ray._raylet import AuthenticationMode, get_authentication_mode\n"
            "from adautomix.platform.ray_private import refresh_auth_mode\n"
            "before = get_authentication_mode() == AuthenticationMode.TOKEN\n"
            "os.environ['RAY_AUTH_MODE'] = 'token'\n"
            "refresh_auth_mode()\n"
            "print(before, get_authentication_mode() == AuthenticationMode.TOKEN)\n")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["False", "True"], done.stdout + done.stderr[-2000:]


def test_the_autoscaler_probe_is_ray_trains_own_call():
    import inspect

    from ray._private.state import state
    from ray.train.v2._internal.execution.worker_group import worker_group

    assert callable(state.get_max_resources_from_cluster_config)
    assert "get_max_resources_from_cluster_config()" in inspect.getsource(worker_group)


def test_a_start_timeout_is_recognised_inside_ray_trains_controller_error():
    import ray.train
    from ray.train.v2._internal.exceptions import WorkerGroupStartupTimeoutError

    failure = WorkerGroupStartupTimeoutError(num_workers=2)
    assert ray_private.is_start_timeout(ray.train.ControllerError(failure).controller_failure)
    assert not ray_private.is_start_timeout(RuntimeError("other"))
    assert not ray_private.is_start_timeout(None)
