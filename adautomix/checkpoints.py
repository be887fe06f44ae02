"""A run's checkpoint files: written atomically and read back, the last K kept, loaded newest
readable first.

``checkpoints/last.pt`` is always the newest; older ones are ``last.1.pt``, ``last.2.pt``, ...
(``train.keep_checkpoints`` in all). A new checkpoint is written to ``last.tmp``, flushed to the
disk, read back in full (a copy that does not load is never installed), then the older files move
one place down and ``last.tmp`` is renamed to ``last.pt``. Each rename is atomic, so a kill at any
point leaves every installed file whole; between two renames ``last.pt`` may be missing for a
moment, and the readers take the newest file that exists (``history``).

A damaged file (cut short by a copy between nodes, overwritten) is skipped with a warning naming
it, and the next older one is loaded (``newest_readable``).
"""
from __future__ import annotations

import os
import pickle
import re
import sys
from pathlib import Path

import torch

CHECKPOINT = "checkpoints/last.pt"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded: damaged, not a torch file, or refused by
    ``torch.load(weights_only=True)`` because it would run pickled code."""


def older(path: Path, i: int) -> Path:
    """The ``i``-th older checkpoint beside ``path`` (``i == 0``: ``path`` itself)."""
    return path if i == 0 else path.with_name(f"{path.stem}.{i}{path.suffix}")


def _indexed(path: Path) -> dict[int, Path]:
    found = {0: path} if path.exists() else {}
    for f in path.parent.glob(f"{path.stem}.*{path.suffix}"):
        index = f.name[len(path.stem) + 1:-len(path.suffix)]
        if index.isdigit():
            found[int(index)] = f
    return found


def history(path: Path) -> list[Path]:
    """The checkpoint files of ``path``'s run that exist, newest first."""
    found = _indexed(path)
    return [found[i] for i in sorted(found)]


def write(state: dict, path: Path, keep: int) -> None:
    """Install ``state`` as ``path``, keeping ``keep`` checkpoints in all (see the module
    docstring). Raises ``OSError`` / ``RuntimeError`` from the write, or ``CheckpointError`` when
    the written copy does not read back; the installed files are then untouched."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    try:
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())  # on the disk before it replaces anything
        back = read(tmp)
        if (back.get("epoch"), back.get("iteration")) != (state.get("epoch"), state.get("iteration")):
            raise CheckpointError(f"checkpoint {tmp}: read back a different state than was written")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    for i, f in _indexed(path).items():
        if i >= keep:  # left by a run with a larger train.keep_checkpoints
            f.unlink(missing_ok=True)
    for i in range(keep - 1, 0, -1):
        if older(path, i - 1).exists():
            os.replace(older(path, i - 1), older(path, i))
    os.replace(tmp, path)


def read(path: Path, device: torch.device | str = "cpu") -> dict:
    """A checkpoint's state, loaded without unpickling code; ``CheckpointError`` saying why a file
    cannot be loaded (damaged, not a torch file, or holding a pickled Python object)."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL (\S+)", str(err))  # the object torch refused
        if not found and "Unsupported operand" in str(err):  # no pickle at all (a text file, ...)
            raise CheckpointError(f"checkpoint {path}: not a readable torch checkpoint") from None
        raise CheckpointError(
            f"checkpoint {path}: refused: it holds a pickled Python object"
            f"{f' ({found.group(1)})' if found else ''} that loading would have to run; "
            "adautomix checkpoints hold only tensors and plain values (torch.load weights_only=True)"
        ) from None
    except (OSError, RuntimeError, EOFError, ValueError, KeyError) as err:  # cut short, overwritten
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"checkpoint {path}: damaged, cannot be read ({reason})") from None


def newest_readable(path: Path, device: torch.device | str = "cpu") -> tuple[Path, dict]:
    """``(file, state)`` of the newest of ``path``'s checkpoints that loads; each newer one that
    does not is named in a warning on stderr. ``CheckpointError`` (one line naming every file)
    when none loads or none exists."""
    skipped = []
    for f in history(path):
        try:
            state = read(f, device)
        except CheckpointError as err:
            skipped.append(str(err).removeprefix("checkpoint "))
            continue
        for line in skipped:
            print(f"adautomix: warning: skipped checkpoint {line}; using {f}", file=sys.stderr, flush=True)
        return f, state
    if not skipped:
        raise CheckpointError(f"no checkpoint at {path}")
    raise CheckpointError(f"no readable checkpoint in {path.parent}: {'; '.join(skipped)}")


def position(path: Path) -> tuple[int, int]:
    """``(epoch, iteration)`` of a checkpoint, read without loading its tensors."""
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return int(state["epoch"]), int(state["iteration"])
