"""Checkpoint files: the format marker, atomic writing, validated reading. Not a paper section.

A checkpoint is a dict saved with torch.save: 'format' (CHECKPOINT_FORMAT), 'iteration', 'model' (the
trained state dict), 'config' (dataclasses.asdict of the SipMaskConfig), and from engine.train also
'ema', 'optimizer', 'scheduler', 'scaler', 'rng' and 'dataset' (class names, label -> category id).
This module knows the file, not the model: it imports no model code, so that the model files
(video_model.load_image_weights) and the engine can both read checkpoints. Building a model from a
checkpoint is engine.model_from_checkpoint / engine.load_checkpoint.

    save_checkpoint      torch.save through files.write_atomic (temporary file, fsync, os.replace)
    read_checkpoint      load on the CPU with weights_only=True, checking the marker and the keys
    config_from_dict     the SipMaskConfig of a checkpoint (unknown fields dropped with a warning)
    evaluation_weights   the weights a checkpoint is evaluated with (its weight average if any)
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .config import SipMaskConfig
from .files import write_atomic

CHECKPOINT_FORMAT = "sipmask_ref.checkpoint/1"  # the marker every checkpoint carries
CHECKPOINT_NAME = "checkpoint.pt"


class CheckpointError(ValueError):
    """A file that is not a (usable) sipmask_ref checkpoint."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """torch.save `state` to `path` atomically: a crash mid-write leaves the previous file intact.

    files.write_atomic with durable=True: a temporary file in the same folder, fsynced, then
    os.replace()d over `path` (atomic on POSIX and Windows); the temporary file is removed if anything
    fails.
    """
    return write_atomic(path, lambda f: torch.save(state, f), durable=True)


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint dict (on CPU), checking that it is a sipmask_ref checkpoint.

    Raises FileNotFoundError when the file is missing and CheckpointError when it is not a
    sipmask_ref checkpoint. Loaded with weights_only=True: no code in the file is executed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch.load raises many types for a non-checkpoint
        reason = type(error).__name__  # torch's own message is pages long for a non-checkpoint
        raise CheckpointError(f"{path} is not a sipmask_ref checkpoint (torch.load: {reason})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a sipmask_ref checkpoint (no '{CHECKPOINT_FORMAT}' marker)")
    missing = {"model", "config", "iteration"} - set(state)
    if missing:
        raise CheckpointError(f"{path}: sipmask_ref checkpoint lacks {sorted(missing)}")
    return state


def config_from_dict(values: dict[str, Any], source: str = "checkpoint") -> SipMaskConfig:
    """A SipMaskConfig from `dataclasses.asdict` output; unknown keys are dropped with a warning."""
    known = {f.name for f in dataclasses.fields(SipMaskConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        warnings.warn(f"{source}: ignoring config fields unknown to this version: {unknown}", stacklevel=2)
    try:
        return SipMaskConfig(**{k: v for k, v in values.items() if k in known})
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{source}: invalid config: {error}") from None


def evaluation_weights(state: dict[str, Any]) -> dict[str, Tensor]:
    """The state dict a checkpoint's model is evaluated with: the weight average (config.ema_decay)
    when the run kept one, else the trained weights themselves."""
    weights: dict[str, Tensor] = state["ema"] if state.get("ema") is not None else state["model"]
    return weights
