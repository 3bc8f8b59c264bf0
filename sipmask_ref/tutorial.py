"""What the notebooks import: the workspace (data/, outputs/tutorial/, fast mode) and a trained small model.

Not a paper section, and the top of the package's layering: it may import any module, and no module
imports it. Every notebook trains or loads the same `cpu_tiny` model through `trained_model()`, so that
the first notebook that needs it pays for training once and the others reuse the checkpoint in
outputs/tutorial/.

The repository root, the synthetic data and the cached checkpoints live in workspace.py (video/training.py's
trained_vis_model needs them too); the Fig. 4 example finder lives in explorer.py (the `demo` command
uses it). Their names are re-exported here, so `tutorial.repo_root()`, `tutorial.trained_checkpoint()`,
`tutorial.adjacent_example(...)` keep working.

`SIPMASK_FAST=1` in the environment shrinks training (CI runs the notebooks that way under nbval);
unset, the notebooks do the full run whose outputs are committed. Training runs on CUDA when this
machine has it (`SIPMASK_DEVICE=cpu` forces the CPU); the models come back on the CPU either way. The
notebooks find the repository from their working directory (notebooks/); elsewhere, set `SIPMASK_REPO`
to the repository root.
"""

from __future__ import annotations

import os

import torch

from . import engine
from .config import SipMaskConfig
from .data.coco import CocoInstances

# Re-exported: each has one home (workspace.py, explorer.py); tutorial is where the notebooks find them.
from .explorer import adjacent_example
from .workspace import (
    DEVICE_ENV,
    FAST_ENV,
    FAST_ITERS,
    REPO_ENV,
    fast_mode,
    model_dir,
    repo_relative,
    repo_root,
    synthetic_data,
    synthetic_dataset,
    trained_checkpoint,
    training_device,
)

__all__ = [
    "DEVICE_ENV",
    "FAST_ENV",
    "FAST_ITERS",
    "REPO_ENV",
    "adjacent_example",
    "fast_mode",
    "model_dir",
    "repo_relative",
    "repo_root",
    "synthetic_data",
    "synthetic_dataset",
    "trained_checkpoint",
    "trained_model",
    "training_device",
]


def trained_model(
    config: SipMaskConfig | None = None,
    name: str = "cpu_tiny",
    iters: int | None = None,
    *,
    root: str | os.PathLike[str] | None = None,
    train_set: CocoInstances | None = None,
) -> tuple[torch.nn.Module, SipMaskConfig]:
    """The model of `trained_checkpoint(config, name, iters, root=root, train_set=train_set)`, in eval
    mode on the CPU (wherever it trained: training_device()), and its config."""
    checkpoint = trained_checkpoint(config, name, iters, root=root, train_set=train_set)
    model, config = engine.load_checkpoint(checkpoint, "cpu")
    return model.eval(), config
