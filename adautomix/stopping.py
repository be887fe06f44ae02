"""SIGTERM as a graceful stop: what Slurm's ``scancel`` and preemption, Kubernetes' eviction,
``ray job stop`` and ``timeout`` send before they kill.

``on_sigterm(grace_s, message)`` makes SIGTERM set a flag instead of ending the process. The
training loop looks at it after every step (``requested()``): it saves a checkpoint there and
raises ``Stopped``, which takes the path of a Ctrl-C (``Stopped`` is a ``KeyboardInterrupt``:
MLflow marks the run KILLED, the command prints the ``--resume`` line) and exits 143. If that has
not happened ``grace_s`` seconds after the signal (a step, an evaluation or a save that takes too
long), the process prints ``message()`` and exits 143 at once: the newest checkpoint on disk is
whole, since every write is atomic.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable

SIGTERM_EXIT = 128 + signal.SIGTERM  # 143, as a shell reports a command ended by SIGTERM

_requested = threading.Event()
_handler = None  # the SIGTERM handler this process chose (``reinstall``)


class Stopped(KeyboardInterrupt):
    """Raised by the training loop after it saved the checkpoint of a requested stop."""


def requested() -> bool:
    """Whether a SIGTERM arrived (always False unless ``on_sigterm`` was called)."""
    return _requested.is_set()


def on_sigterm(grace_s: float, message: Callable[[], str]) -> None:
    """From now on SIGTERM requests a stop (main thread only; see the module docstring)."""

    def expire() -> None:
        print(f"\n{message()}", file=sys.stderr, flush=True)
        os._exit(SIGTERM_EXIT)

    def handler(signum, frame) -> None:
        if _requested.is_set():
            return
        _requested.set()
        timer = threading.Timer(grace_s, expire)
        timer.daemon = True
        timer.start()

    _install(handler)


def forward_sigterm_as_sigint() -> None:
    """SIGTERM takes the path of Ctrl-C (for a process whose Ctrl-C handling belongs to a library:
    Ray Train's and Ray Tune's drivers stop their workers and save their state on SIGINT);
    ``requested()`` tells afterwards which signal it was."""

    def handler(signum, frame) -> None:
        _requested.set()
        os.kill(os.getpid(), signal.SIGINT)

    _install(handler)


def reinstall() -> None:
    """Put back the handler chosen here: ``ray.init`` replaces it (with ``sys.exit``, and Ray's
    core worker with a crash reporter), so the Ray edge calls this after connecting."""
    if _handler is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _handler)


def _install(handler) -> None:
    global _handler
    _handler = handler
    signal.signal(signal.SIGTERM, handler)
