"""What a run trains and what its checkpoint holds: start (a fresh seed or a resume) and save.

Run             the model, optimizer, lr schedule, AMP scaler and weight average of a run;
                Run.start (resume or seed), Run.save (the checkpoint of a step)
seed_everything torch, numpy and Python's random, before a model is built
rng states      every global generator's state, saved and restored with the checkpoint
"""

from __future__ import annotations

import dataclasses
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..checkpoints import CHECKPOINT_FORMAT, read_checkpoint, save_checkpoint
from ..config import SipMaskConfig
from .samples import SizedDataset
from .schedule import WeightAverage, build_optimizer, lr_factor


class Run:
    """What a run trains and a checkpoint holds: the model (never the DDP wrapper), its optimizer,
    the lr schedule, the AMP scaler (enabled when config.amp and the device is CUDA) and the weight
    average (config.ema_decay > 0; made by `start`, after the weights are final); and where the
    checkpoint goes, with the step of the one on disk (`last_saved`, None before the first)."""

    def __init__(
        self, model: nn.Module, config: SipMaskConfig, device: torch.device, checkpoint_path: Path
    ) -> None:
        self.config, self.device, self.checkpoint_path = config, device, checkpoint_path
        self.last_saved: int | None = None
        self.model = model.to(device)
        self.optimizer = build_optimizer(model, config)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda it: lr_factor(it, config))
        self.use_amp = config.amp and device.type == "cuda"
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.use_amp)
        self.average: WeightAverage | None = None

    def start(self, resume: bool, warn: bool) -> int:
        """Resume from self.checkpoint_path, or seed a fresh run with config.seed; the step to start from.

        Resume restores the weights, optimizer, scheduler, scaler, RNG states and weight average
        (FileNotFoundError without a checkpoint; a config that differs from the saved one is used,
        with a warning). A fresh run warns (when `warn`) that it overwrites an existing checkpoint.
        """
        state: dict[str, Any] = {}
        checkpoint_path = self.checkpoint_path
        if resume:
            if not checkpoint_path.is_file():
                raise FileNotFoundError(f"--resume: no checkpoint to resume from at {checkpoint_path}")
            state = read_checkpoint(checkpoint_path)
            changed = _config_differences(state["config"], self.config)
            if changed:
                warnings.warn(
                    f"resuming {checkpoint_path} with a config that differs in {changed}; "
                    f"using the new values",
                    stacklevel=3,
                )
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            if state["scaler"]:  # empty when saved without AMP (e.g. on CPU)
                self.scaler.load_state_dict(state["scaler"])
            _set_rng_states(state["rng"])
        else:
            if checkpoint_path.is_file() and warn:
                warnings.warn(
                    f"{checkpoint_path} exists and will be overwritten by this fresh run "
                    f"(resume=True continues it instead)",
                    stacklevel=3,
                )
            seed_everything(self.config.seed)
        if self.config.ema_decay > 0:
            self.average = WeightAverage(self.model, self.config.ema_decay)
            if state.get("ema") is not None:
                self.average.state = {k: v.to(self.device) for k, v in state["ema"].items()}
        if not resume:
            return 0
        self.last_saved = int(state["iteration"])  # the checkpoint on disk is the one resumed from
        return self.last_saved

    def save(self, iteration: int, dataset: SizedDataset) -> None:
        """Write the checkpoint of step `iteration` (atomically, see checkpoints.py); rank 0 only."""
        save_checkpoint(
            {
                "format": CHECKPOINT_FORMAT,
                "iteration": iteration,
                "model": self.model.state_dict(),
                "ema": self.average.state if self.average is not None else None,  # the weights to evaluate
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "config": dataclasses.asdict(self.config),
                "rng": _rng_states(),
                "dataset": _dataset_meta(dataset),
            },
            self.checkpoint_path,
        )
        self.last_saved = iteration


def _config_differences(saved: dict[str, Any], config: SipMaskConfig) -> list[str]:
    current = dataclasses.asdict(config)
    ignored = {"max_iters"}  # resuming to a later end point is what --resume --iters is for
    return sorted(k for k in current if k not in ignored and k in saved and saved[k] != current[k])


def _rng_states() -> dict[str, Any]:
    """Every global generator's state, in a form torch.load(weights_only=True) accepts."""
    # NPY002: numpy's legacy global generator is exactly what is saved, restored and seeded here
    state = np.random.get_state(legacy=True)  # noqa: NPY002
    assert isinstance(state, tuple)  # legacy=True: a tuple, as the global generator is an MT19937
    kind, keys, pos, has_gauss, cached = state
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))  # noqa: NPY002
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and Python's random. Call before building the model."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - the legacy global generator, for code that uses it
    random.seed(seed)


def _dataset_meta(dataset: SizedDataset) -> dict[str, Any]:
    """Class names and label -> category id map of a dataset, for predict / evaluate later."""
    meta: dict[str, Any] = {}
    if hasattr(dataset, "class_names"):
        meta["class_names"] = list(dataset.class_names)
    if hasattr(dataset, "label_to_cat_id"):
        meta["label_to_cat_id"] = {int(k): int(v) for k, v in dataset.label_to_cat_id.items()}
    return meta
