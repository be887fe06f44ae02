"""A trained model as a file that loads without unpickling code: ``torch.export``'s program
(a traced graph and its weights, https://pytorch.org/docs/stable/export.html) and a small input
example beside it. The platform logs both to MLflow (``platform/mlflow_model.py``); nothing here
knows MLflow.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

MODEL_FILE = "model.pt2"  # the exported program
EXAMPLE_FILE = "input_example.npy"  # its input example: float32 (n, C, H, W)


def export_model(model: nn.Module, example: torch.Tensor, folder: Path) -> None:
    """Write ``model`` (a copy, on the CPU, in eval mode) to ``folder/model.pt2``, traced on
    ``example`` (``(n, C, H, W)``) with a dynamic batch size, and ``example`` as float32 to
    ``folder/input_example.npy``."""
    model = copy.deepcopy(model).cpu().eval()
    x = example.detach().float().cpu()
    program = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim.AUTO},))
    torch.export.save(program, Path(folder) / MODEL_FILE)
    np.save(Path(folder) / EXAMPLE_FILE, x.numpy(), allow_pickle=False)


def load_exported(folder: Path) -> tuple[nn.Module, np.ndarray]:
    """The module and the input example that ``export_model`` wrote into ``folder``."""
    module = torch.export.load(Path(folder) / MODEL_FILE).module()
    return module, np.load(Path(folder) / EXAMPLE_FILE, allow_pickle=False)
