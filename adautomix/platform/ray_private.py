"""The only place this project touches Ray's private names: each one below has no public
counterpart in Ray 2.60.0, the version they were checked against. ``tests/test_ray_private.py``
fails when a Ray upgrade moves or renames one (``import ray`` happens inside each function, so
importing this module loads no Ray).
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

# ray._private.authentication.authentication_token_setup: warns on every start of a local
# cluster with token authentication that it is on (module logger, logging.getLogger(__name__))
TOKEN_NOTICE_LOGGER = "ray._private.authentication.authentication_token_setup"
# ray.train.v2._internal.util: logs a worker's traceback as "Error in training function:\n..."
# before Ray Train raises the worker's error on the driver
TRAIN_ERROR_LOGGER = "ray.train.v2._internal.util"
TRAIN_ERROR_PREFIX = "Error in training function"


def refresh_auth_mode() -> None:
    """Make an already imported Ray re-read ``RAY_AUTH_MODE`` (Ray caches its config at import);
    what Ray's own ``_enable_token_auth`` does: ``ray._raylet.Config.initialize("")``."""
    from ray._raylet import Config

    Config.initialize("")


@contextmanager
def token_notice_muted() -> Iterator[None]:
    """Drop Ray's "token authentication is enabled" notice while the block runs (errors pass)."""
    notice = logging.getLogger(TOKEN_NOTICE_LOGGER)
    level = notice.level
    notice.setLevel(logging.ERROR)
    try:
        yield
    finally:
        notice.setLevel(level)


def mute_worker_tracebacks() -> None:
    """Stop Ray Train from logging this worker's traceback (the driver prints its one line)."""
    logging.getLogger(TRAIN_ERROR_LOGGER).addFilter(
        lambda record: not record.getMessage().startswith(TRAIN_ERROR_PREFIX))


def has_autoscaler() -> bool:
    """Whether the connected cluster has an autoscaler: the call Ray Train makes itself before it
    places workers (``ray._private.state.state.get_max_resources_from_cluster_config``)."""
    try:
        from ray._private.state import state

        return bool(state.get_max_resources_from_cluster_config())
    except (ImportError, AttributeError):  # another Ray: check the nodes that are up instead
        return False


def is_start_timeout(failure: BaseException | None) -> bool:
    """Whether Ray Train's controller failure is its worker group's start timing out
    (``ray.train.v2._internal.exceptions.WorkerGroupStartupTimeoutError``; the public
    ``ControllerError`` only wraps it)."""
    from ray.train.v2._internal.exceptions import WorkerGroupStartupTimeoutError

    return isinstance(failure, WorkerGroupStartupTimeoutError)
