"""One writer per run directory (and per study folder): an advisory lock held for the whole run;
and, for a run whose workers are other processes on other nodes, the launch id that proves each
worker sees the driver's run directory (``write_launch_id``, ``check_launch_id``).

The lock is ``filelock``'s (https://py-filelock.readthedocs.io): ``flock`` on the file
``.adautomix.lock`` in the folder. The kernel drops it when the holding process ends, however it
ends, so a lock left by a killed process is free again; the holder's PID, host and start time are
written beside it (``.adautomix.lock.json``) so that a second process can name it, and so that a
takeover from a dead process is reported.

Shared file systems: ``flock`` is honoured across nodes on NFSv4 and on NFSv3 with ``lockd``
(Linux maps it onto POSIX byte-range locks there), on CephFS and on Lustre mounted with
``-o flock``. Where the file system refuses ``flock`` (Lustre without it, some FUSE and
object-store mounts), ``filelock`` falls back to its soft lock: the lock file's existence. A lock
lost with its node (an NFS client that died) is released by the server's lease expiry (NFSv4:
about 90 s).
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
import uuid
from pathlib import Path

from .config import ConfigError

LOCK = ".adautomix.lock"
HOLDER = ".adautomix.lock.json"
LAUNCH_ID = "ray/launch.id"  # in the run directory, written by the driver at each launch
_HELD: set[Path] = set()  # folders this process holds: a nested RunLock on one of them is a no-op


class LockedError(RuntimeError):
    """The folder is held by another process (the message names it)."""


class RunDirNotShared(ConfigError):
    """A worker cannot see the run directory the driver wrote (out_dir is not shared storage)."""


def write_launch_id(out: Path) -> str:
    """A new launch id, written into the run directory ``out`` (``LAUNCH_ID``) by the driver."""
    launch = uuid.uuid4().hex
    (out / LAUNCH_ID).parent.mkdir(parents=True, exist_ok=True)
    (out / LAUNCH_ID).write_text(launch + "\n")
    return launch


def check_launch_id(out: Path, launch: str) -> None:
    """Raise ``RunDirNotShared`` unless this worker reads the id of the driver's ``launch`` in ``out``."""
    try:
        seen = (out / LAUNCH_ID).read_text().strip()
    except OSError:
        seen = None
    if seen != launch:
        raise RunDirNotShared(
            f"out_dir {out} is not the driver's run directory on node {socket.gethostname()}: "
            f"{out / LAUNCH_ID} is {'missing' if seen is None else 'from another launch'}. With several nodes, "
            "out_dir must be on storage every node sees at the same path (NFS, EFS, ...)")


def _missing_ancestors(folder: Path) -> list[Path]:
    """``folder`` and its parents that do not exist yet, innermost first."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    return missing


class RunLock:
    """Context manager: hold ``folder``'s lock, or raise ``LockedError`` naming its holder.

    Args:
        folder: the run directory or study folder (created if missing; removed again on exit
            when it was created here and nothing but the lock was written into it).
        what: how the folder is named in the messages (``out_dir``, ``study folder``).
    """

    def __init__(self, folder: str | Path, what: str = "out_dir"):
        self.folder, self.what = Path(folder).expanduser().resolve(), what
        self.created: list[Path] = []
        self.lock = None

    def __enter__(self) -> RunLock:
        from filelock import FileLock, Timeout

        if self.folder in _HELD:
            return self
        self.created = _missing_ancestors(self.folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.lock = FileLock(self.folder / LOCK)
            self.lock.acquire(timeout=0)
        except Timeout:
            self.lock = None
            raise LockedError(f"{self.what} {self.folder} is in use by {self._holder()}; "
                              "wait for it to end or choose another folder") from None
        except OSError as err:  # e.g. no permission to create the folder or the lock file
            self.lock = None
            raise LockedError(f"{self.what} {self.folder}: cannot lock {LOCK} ({err.strerror or err}); "
                              "choose a folder this process can write") from None
        previous = self._read_holder()
        if previous and previous.get("pid") != os.getpid():
            here = previous.get("host") == socket.gethostname()
            state = "no longer running" if here and not _alive(previous["pid"]) else "its lock was released"
            print(f"adautomix: warning: {self.what} {self.folder}: taking over the lock of "
                  f"{_describe(previous)} ({state})", file=sys.stderr, flush=True)
        (self.folder / HOLDER).write_text(json.dumps(
            {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}))
        _HELD.add(self.folder)
        return self

    def __exit__(self, *exc) -> None:
        if self.lock is None:
            return
        _HELD.discard(self.folder)
        (self.folder / HOLDER).unlink(missing_ok=True)
        leftover = {p.name for p in self.folder.iterdir()} <= {LOCK}
        self.lock.release()
        if self.created and leftover:  # nothing written: leave no trace of this launch
            (self.folder / LOCK).unlink(missing_ok=True)
            for folder in self.created:
                try:
                    folder.rmdir()
                except OSError:
                    break

    def _read_holder(self) -> dict | None:
        try:
            return json.loads((self.folder / HOLDER).read_text())
        except (OSError, ValueError):
            return None

    def _holder(self) -> str:
        holder = self._read_holder()
        return _describe(holder) if holder else "another process (its holder file is not written yet)"


def _describe(holder: dict) -> str:
    return f"PID {holder.get('pid')} on {holder.get('host')} (started {holder.get('started')})"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
