"""``model.init``: start a backbone from trained weights on local disk (nothing is downloaded).

Two kinds of file, both read with ``torch.load(weights_only=True)``, which runs no pickled code:

- a checkpoint of this project (``checkpoints/last.pt``, or the run directory holding it): the
  backbone of the model that scored the run's ``top1`` (the EMA teacher for AdAutoMix and AutoMix,
  else the classifier); its config must name the same ``model.arch`` and ``model.stem``;
- a torchvision state dict (``torch.save(model.state_dict(), path)`` of a torchvision ResNet,
  ResNeXt, ConvNeXt-T or Swin-T, e.g. the ImageNet weights the fine-grained protocol starts from),
  possibly under ``"state_dict"`` or ``"model"`` and with DDP's ``module.`` prefix; its 1000-way
  classifier is left out. It fits the torchvision backbones (``model.stem=imagenet``,
  ``convnext_t``, ``swin_t``).

Only the backbone is loaded, every one of its tensors (strict); the heads keep their fresh
initialisation for the new number of classes (the transfer protocol of the paper's Table 3), and
a generator starts afresh.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch
import torch.nn as nn

from .backbones import HEAD_KEYS, TORCHVISION_RESNETS

CHECKPOINT = "checkpoints/last.pt"


class InitError(RuntimeError):
    """``model.init`` names a file that cannot initialise the backbone; the message says why."""


def _file(path: Path) -> Path:
    """The checkpoint file of ``path``: a run directory's newest readable one (a damaged newer one
    is named in a warning), else ``path``."""
    if not path.is_dir():
        return path
    from ..checkpoints import CheckpointError, newest_readable  # the engine's files, read by name

    try:
        return newest_readable(path / CHECKPOINT)[0]
    except CheckpointError as err:
        if not str(err).startswith("no checkpoint at"):
            raise InitError(f"model.init={path}: {err}") from None
        return path / CHECKPOINT


def _read(path: Path) -> tuple[Path, dict]:
    file = _file(path)
    if not file.is_file():
        raise InitError(f"model.init={path}: no such file (expected a run directory holding {CHECKPOINT}, "
                        "an adautomix checkpoint or a torchvision state-dict file)")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL (\S+)", str(err))
        raise InitError(f"model.init={file}: refused: it holds a pickled Python object"
                        f"{f' ({found.group(1)})' if found else ''} that loading would have to run; "
                        "save the weights as a state dict (torch.save(model.state_dict(), path))") from None
    except Exception as err:  # noqa: BLE001 - a truncated or foreign file: the same problem for the user
        raise InitError(f"model.init={file}: unreadable ({type(err).__name__}: {str(err).splitlines()[0]})") from None
    if not isinstance(state, dict):
        raise InitError(f"model.init={file}: expected a dict of tensors, got {type(state).__name__}")
    return file, state


def _project_backbone(state: dict, file: str, arch: str, stem: str) -> dict[str, torch.Tensor]:
    """The headline model's backbone weights from an adautomix checkpoint."""
    model = state["config"].get("model", {}) if isinstance(state["config"], dict) else {}
    theirs = (model.get("arch"), model.get("stem", "cifar"))  # runs before model.stem had the CIFAR stem
    if theirs != (arch, stem):
        raise InitError(f"model.init={file}: a checkpoint of model.arch={theirs[0]} model.stem={theirs[1]}, "
                        f"but this run builds model.arch={arch} model.stem={stem}")
    weights = state["step"]
    for prefix in ("teacher.model.backbone.", "classifier.backbone."):
        found = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
        if found:
            return found
    raise InitError(f"model.init={file}: an adautomix checkpoint without classifier or teacher backbone weights")


def _torchvision_weights(state: dict, arch: str) -> dict[str, torch.Tensor]:
    """A torchvision state dict without its classifier (and without DDP's ``module.`` prefix)."""
    for key in ("state_dict", "model"):
        if isinstance(state.get(key), dict):
            state = state[key]
            break
    heads = HEAD_KEYS["resnet" if arch in TORCHVISION_RESNETS else arch]
    return {k.removeprefix("module."): v for k, v in state.items() if not k.removeprefix("module.").startswith(heads)}


def load_init(backbone: nn.Module, path: str | Path, arch: str, stem: str) -> str:
    """Load the backbone weights of ``path`` (see the module docstring) into ``backbone``.

    Returns one line saying what was loaded; raises ``InitError`` naming the file and the problem
    (unreadable, unsafe, another architecture, missing / unexpected / mis-shaped tensors).
    """
    path = Path(path).expanduser()
    file, state = _read(path)
    file = str(file)
    if "step" in state and "config" in state:
        weights, kind = _project_backbone(state, file, arch, stem), "adautomix checkpoint"
    else:
        weights, kind = _torchvision_weights(state, arch), "torchvision state dict"
    if not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise InitError(f"model.init={file}: expected a dict of tensors (a state dict)")
    own = backbone.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    shapes = [f"{k} {tuple(weights[k].shape)} != {tuple(v.shape)}" for k, v in own.items()
              if k in weights and weights[k].shape != v.shape]
    if missing or unexpected or shapes:
        hint = ""
        if kind == "torchvision state dict" and stem == "cifar":
            hint = "; a torchvision state dict fits the ImageNet stem (model.stem=imagenet)"
        problems = [f"{len(missing)} missing ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})"
                    if missing else "",
                    f"{len(unexpected)} unexpected ({', '.join(unexpected[:3])}"
                    f"{', ...' if len(unexpected) > 3 else ''})"
                    if unexpected else "",
                    f"{len(shapes)} of another shape ({', '.join(shapes[:2])})" if shapes else ""]
        raise InitError(f"model.init={file}: a {kind} that does not fit model.arch={arch} model.stem={stem}: "
                        f"{'; '.join(p for p in problems if p)} tensors{hint}")
    backbone.load_state_dict(weights, strict=True)
    return f"model.init: backbone loaded from {file} ({kind}, {len(weights)} tensors); heads start afresh"
