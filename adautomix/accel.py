"""The GPU switches of a run: bf16 autocast, channels-last memory format, ``torch.compile``.

Each is ``train.<switch>``: ``true``, ``false`` or ``auto`` (the default), which turns it on for a
CUDA device and off for the CPU. Set to ``true`` on the CPU they run there as well (slowly: for
tests). What ``compile`` compiles:

- AdAutoMix (``compile_whole``): the whole device side of the step, every network pass, mix and
  loss of SPEC.md steps 3-7, as one function; only the draws from the CPU generator and the
  teacher's BatchNorm replay stay in Python.
- Every other method: its networks (the classifier's backbone; AutoMix also its Mix Block and
  the teacher's backbone), each in place. Their steps draw from a CPU generator between network passes
  and some (PuzzleMix)
  run NumPy and graph cuts in the middle, where a whole-step graph would break anyway.

Compiling in place (``nn.Module.compile``, or a compiled method on the step) leaves the module
tree and its state dict as they were: checkpoints hold no ``_orig_mod.`` prefixes, and a
checkpoint of a compiled run loads into an uncompiled one and back.
"""
from __future__ import annotations

import torch
import torch.nn as nn

SWITCHES = ("bf16", "channels_last", "compile")
COMPILE_OPTIONS: dict = {}  # torch.compile keyword arguments (the tests run the aot_eager backend)


def resolve(train_cfg, device: torch.device) -> dict[str, bool]:
    """``{switch: on}`` for ``cfg.train``'s bf16, channels_last and compile on ``device``."""
    return {name: device.type == "cuda" if getattr(train_cfg, name) == "auto" else bool(getattr(train_cfg, name))
            for name in SWITCHES}


def networks(step: nn.Module) -> list[nn.Module]:
    """The networks of a step module: the classifier's backbone, the generator (or Mix Block)
    and the teacher's backbone (steps call backbones directly as well as through the heads)."""
    teacher = getattr(step, "teacher", None)
    found = [step.classifier.backbone, getattr(step, "generator", None),
             teacher.model.backbone if teacher is not None else None]
    return [m for m in found if m is not None]


def compile_step(step: nn.Module, **options) -> str:
    """Compile ``step`` in place (see the module docstring); returns what was compiled."""
    options = {**COMPILE_OPTIONS, **options}
    if hasattr(step, "compile_whole"):
        step.compile_whole(**options)
        return "the whole step"
    for module in networks(step):
        module.compile(**options)
    return "the networks"


def describe(switches: dict[str, bool], compiled: str | None, device_loader: bool) -> str:
    """One line for the start of training, e.g. ``GPU path: data on the device, bf16 on, ...``."""
    parts = [f"data {'on the device' if device_loader else 'through the CPU pipeline'}",
             f"bf16 autocast {'on' if switches['bf16'] else 'off'}",
             f"channels-last {'on' if switches['channels_last'] else 'off'}",
             f"torch.compile {'on (' + compiled + ')' if compiled else 'off'}"]
    return "GPU path: " + ", ".join(parts)
