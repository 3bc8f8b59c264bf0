"""What the command-line handlers share: the usage error and the checks of devices, files and configs.

Not a paper section. The handlers of commands/ (the image commands, the experiments, the data) and
video/commands.py (`--task vis`, `predict --video`) all handle commands; they import these helpers from
here, so that none imports another's internals (commands/image.py imports video/commands.py's
handlers; the video package imports nothing of commands/ or cli.py).

    UsageError           a mistake in the command line or its files: one line on stderr, exit code 2
    checked_device       the --device argument as a torch.device, checked against this machine
    same_categories      two label -> category id maps must agree (training vs validation set, ...)
    checked_checkpoint   a checkpoint dict, with a missing or foreign file as a UsageError
    checked_preset       a preset by name, an unknown name as a UsageError
    synthetic_split      the annotation file and image folder of a split of the synthetic benchmark
    checked_paths        an annotation file and its folder, both given and present (image or video sets)
    checked_dataset      a CocoInstances with both paths checked, bad files as one-line usage errors
    train_target         the device and output folder of `train`, after checking --resume and --iters
    config_for_training  the preset with the task, the training set's class count and the overrides
                         (training_config: the same from plain values, for `demo`)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
from typing import Any

import torch

from . import checkpoints
from .config import SipMaskConfig, preset
from .data.coco import CocoInstances
from .data.synthetic import make_data


class UsageError(Exception):
    """A mistake in the command line or its files: reported in one line, exit code 2."""


def checked_device(name: str | None) -> torch.device:
    """The requested device, checked; default CUDA when available, else CPU."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown device {name!r} (use cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {name}: MPS is not available on this machine")
    return device


def same_categories(a: dict[int, int], b: dict[int, int], what: str) -> None:
    """A UsageError naming `what` unless the two label -> category id maps are equal."""
    if {int(k): int(v) for k, v in a.items()} != {int(k): int(v) for k, v in b.items()}:
        raise UsageError(f"{what}: the category ids differ (label -> category id {dict(a)} vs {dict(b)})")


def checked_checkpoint(path: str) -> dict[str, Any]:
    """checkpoints.read_checkpoint, with a missing or foreign file as a UsageError."""
    try:
        return checkpoints.read_checkpoint(path)
    except (FileNotFoundError, checkpoints.CheckpointError) as error:
        raise UsageError(str(error)) from None


def checked_preset(name: str) -> SipMaskConfig:
    """preset(name), with an unknown name as a UsageError."""
    try:
        return preset(name)
    except ValueError as error:
        raise UsageError(str(error)) from None


def synthetic_split(root: Path, split: str, generate: bool = True) -> tuple[Path, Path]:
    """(annotation JSON, image folder) of a synthetic split, generated (images only) if missing and
    `generate`."""
    ann = root / "synthetic" / "annotations" / f"instances_{split}.json"
    images = root / "synthetic" / "images" / split
    if generate and not ann.is_file():
        print(f"synthetic benchmark not found under {root}; generating it (make-data)")
        make_data(root=root, video=False)
    return ann, images


def checked_paths(
    ann: os.PathLike[str] | str | None,
    folder: os.PathLike[str] | str | None,
    what: str,
    kinds: tuple[str, str],
) -> tuple[Path, Path]:
    """(annotation file, folder) of a dataset, both given and present, else a one-line UsageError.
    kinds: how to name them, e.g. ('annotation JSON', 'image folder')."""
    if ann is None or folder is None:
        raise UsageError(f"{what}: give both the {kinds[0]} and the {kinds[1]}")
    ann, folder = Path(ann), Path(folder)
    if not ann.is_file():
        raise UsageError(f"{what}: annotation file not found: {ann}")
    if not folder.is_dir():
        raise UsageError(f"{what}: {kinds[1]} not found: {folder}")
    return ann, folder


def checked_dataset(
    ann: Path | str | None, images: Path | str | None, what: str, cache: bool = False
) -> CocoInstances:
    """A CocoInstances with both paths checked; bad files become one-line usage errors.
    cache: keep the items in memory once read (CocoInstances' `cache`)."""
    ann, images = checked_paths(ann, images, what, ("annotation JSON", "image folder"))
    try:
        dataset = CocoInstances(ann, images, cache=cache)
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(f"{what}: {error}") from None
    if len(dataset) == 0:
        raise UsageError(f"{what}: {ann} holds no images")
    return dataset


def train_target(args: argparse.Namespace) -> tuple[torch.device, Path]:
    """The device and output folder of `train`, after checking --resume and --iters."""
    out = Path(args.out)
    if args.resume and not (out / checkpoints.CHECKPOINT_NAME).is_file():
        raise UsageError(f"--resume: no checkpoint to resume from at {out / checkpoints.CHECKPOINT_NAME}")
    if args.iters is not None and args.iters < 0:
        raise UsageError(f"--iters must be >= 0, got {args.iters}")
    return checked_device(args.device), out


def config_for_training(
    config: SipMaskConfig, args: argparse.Namespace, train_set: Any, task: str
) -> SipMaskConfig:
    """The preset with `task`, the training set's class count and --batch-size / --seed / --lr."""
    overrides = {field: getattr(args, field) for field in ("batch_size", "seed", "lr")}
    return training_config(config, args.config, train_set, task, **overrides)


def training_config(
    config: SipMaskConfig, name: str, train_set: Any, task: str, **overrides: Any
) -> SipMaskConfig:
    """Preset `name` (config) with `task`, the training set's class count (a note when it changes the
    preset's) and the overrides that are not None."""
    changes: dict[str, Any] = {"task": task}
    num_classes = len(train_set.class_names)
    if num_classes != config.num_classes:
        print(
            f"note: num_classes = {num_classes} from {train_set.ann_file} "
            f"(preset {name} says {config.num_classes})"
        )
        changes["num_classes"] = num_classes
    changes |= {field: value for field, value in overrides.items() if value is not None}
    try:
        return dataclasses.replace(config, **changes)
    except ValueError as error:
        raise UsageError(str(error)) from None
