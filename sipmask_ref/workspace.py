"""The notebooks' workspace: the repository's data/ and outputs/tutorial/, and fast mode. Not a paper section.

The notebooks run with the working directory notebooks/ and share one synthetic benchmark (data/) and
one set of trained models (outputs/tutorial/) at the repository root. This module finds that root and
trains or reuses those models; tutorial.py (what the notebooks import) re-exports it, and
video.trained_vis_model (the notebooks' video model) uses it. The rest of the package never looks for
the repository: it is handed paths, with defaults relative to the working directory (the command line
runs from the repository root).

    repo_root          $SIPMASK_REPO, else the nearest folder at or above the working directory that
                       holds pyproject.toml and notebooks/ (never found from this file's location, so a
                       non-editable install works the same)
    repo_relative      a path relative to that root, for records that are committed
    fast_mode          SIPMASK_FAST=1: the notebooks' training runs shrink (CI runs them so)
    training_device    where the notebooks' models train: $SIPMASK_DEVICE, else CUDA when available,
                       else the CPU (the cached checkpoint does not depend on it)
    synthetic_data     the synthetic benchmark under <root>/data (generated if missing) -> its paths
    synthetic_dataset  one split of it as a CocoInstances dataset
    model_dir          <root>/outputs/tutorial/<name>, or <name>_fast in fast mode
    trained_checkpoint a SipMask trained once into model_dir(name) and reused while its config and
                       length stay the same (on whichever device trained it)
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from . import checkpoints, engine
from .config import SipMaskConfig, preset
from .data.coco import CocoInstances
from .data.synthetic import make_data
from .files import relative_path
from .model import SipMask

REPO_ENV = "SIPMASK_REPO"  # the repository root, when the working directory is not inside it
FAST_ENV = "SIPMASK_FAST"
DEVICE_ENV = "SIPMASK_DEVICE"  # where the notebooks' models train, e.g. cpu or cuda:1 (default: automatic)
FAST_ITERS = 60  # iterations of cpu_tiny in fast mode: enough to exercise every code path


def fast_mode() -> bool:
    """True when SIPMASK_FAST is set to anything but '', '0' or 'false'."""
    return os.environ.get(FAST_ENV, "").strip().lower() not in ("", "0", "false")


def training_device() -> torch.device:
    """Where trained_checkpoint (and video.trained_vis_model) train: $SIPMASK_DEVICE when set (cpu,
    cuda, cuda:N), else CUDA when this machine has it, else the CPU.

    On the CPU the run is the one it always was (same seed, same code path). The cache does not
    record the device: a checkpoint trained on a GPU is reused on a machine without one (on a GPU the
    weights differ from a CPU run in the last digits, as the kernels differ). Raises ValueError naming
    SIPMASK_DEVICE when it asks for a device this machine lacks.
    """
    name = os.environ.get(DEVICE_ENV, "").strip()
    if not name:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"{DEVICE_ENV}={name!r}: unknown device (use cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{DEVICE_ENV}={name}: CUDA is not available on this machine (unset it or use cpu)")
    return device


def repo_root() -> Path:
    """The repository root: $SIPMASK_REPO if set, else the nearest folder at or above the working
    directory that holds both pyproject.toml and notebooks/.

    Raises FileNotFoundError saying how to set SIPMASK_REPO when there is none (e.g. a notebook
    opened from a copy outside the repository).
    """
    given = os.environ.get(REPO_ENV, "").strip()
    if given:
        root = Path(given).expanduser().resolve()
        if not root.is_dir():
            raise FileNotFoundError(f"{REPO_ENV}={given}: no such folder")
        return root
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "notebooks").is_dir():
            return folder
    raise FileNotFoundError(
        f"cannot find the sipmask_ref repository (a folder holding pyproject.toml and notebooks/) at or "
        f"above the working directory {here}; run from inside the repository, or set {REPO_ENV}, "
        f"e.g. `export {REPO_ENV}=/path/to/sipmask_ref` (os.environ['{REPO_ENV}'] = ... in a notebook)"
    )


def repo_relative(path: str | os.PathLike[str]) -> str:
    """`path` relative to the repository root when it lies inside it (for records that are committed
    and must not name one machine's folders), else as given."""
    return relative_path(path, repo_root()) or str(path)


def synthetic_data(quiet: bool = True, root: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """Generate the synthetic benchmark under <root>/data if missing (root: default repo_root()); its paths.

    Keys: train_ann, train_images, val_ann, val_images (image benchmark), video_train_ann,
    video_train_dir, video_val_ann, video_val_dir (video benchmark).
    """
    data = (repo_root() if root is None else Path(root)) / "data"
    make_data(root=data, progress=not quiet, verbose=not quiet)
    image_root, video_root = data / "synthetic", data / "synthetic_video"
    return {
        "train_ann": image_root / "annotations" / "instances_train.json",
        "train_images": image_root / "images" / "train",
        "val_ann": image_root / "annotations" / "instances_val.json",
        "val_images": image_root / "images" / "val",
        "video_train_ann": video_root / "annotations" / "train.json",
        "video_train_dir": video_root / "videos" / "train",
        "video_val_ann": video_root / "annotations" / "val.json",
        "video_val_dir": video_root / "videos" / "val",
    }


def synthetic_dataset(
    split: str = "val", root: str | os.PathLike[str] | None = None, cache: bool = False
) -> CocoInstances:
    """The synthetic image benchmark's train or val split (under <root>/data) as a `CocoInstances`
    (cache: keep the items in memory once read, CocoInstances' `cache`)."""
    paths = synthetic_data(root=root)
    return CocoInstances(paths[f"{split}_ann"], paths[f"{split}_images"], cache=cache)


def model_dir(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    """<root>/outputs/tutorial/<name>, or <name>_fast in fast mode (so neither run overwrites the other)."""
    base = repo_root() if root is None else Path(root)
    return base / "outputs" / "tutorial" / (name + ("_fast" if fast_mode() else ""))


def trained_checkpoint(
    config: SipMaskConfig | None = None,
    name: str = "cpu_tiny",
    iters: int | None = None,
    *,
    root: str | os.PathLike[str] | None = None,
    train_set: CocoInstances | None = None,
) -> Path:
    """The checkpoint of a SipMask trained on the synthetic train split, in model_dir(name, root).

    The first call trains (`config`, default the cpu_tiny preset; `iters`, default the preset's
    max_iters, or FAST_ITERS in fast mode) and writes the checkpoint; later calls only return its
    path. A cached checkpoint trained with another config or iteration count (say, after a preset
    changed) is trained again. Training runs with gradients on even where the caller switched them off,
    on training_device() (CUDA when available; the checkpoint holds no device, so any machine reuses it).
    root: the folder holding data/ and outputs/ (default repo_root()); train_set: the data to train on
    (default the synthetic train split under <root>/data).
    """
    if train_set is None:
        train_set = synthetic_dataset("train", root, cache=True)  # read ~8 times each: decoded once
    config = dataclasses.replace(config or preset("cpu_tiny"), num_classes=len(train_set.class_names))
    steps = iters if iters is not None else (FAST_ITERS if fast_mode() else config.max_iters)
    out = model_dir(name, root)
    checkpoint = out / checkpoints.CHECKPOINT_NAME
    if checkpoint.is_file():
        state = checkpoints.read_checkpoint(checkpoint)
        if state.get("config") != dataclasses.asdict(config) or state.get("iteration") != steps:
            print(f"{checkpoint}: trained with another config or length; training again")
            checkpoint.unlink()
    if not checkpoint.is_file():
        engine.seed_everything(config.seed)
        with torch.enable_grad():
            engine.train(
                SipMask(config),
                config,
                train_set,
                out,
                iters=steps,
                device=training_device(),
                checkpoint_every=max(steps, 1),
                log_every=max(min(20, steps // 10), 1),  # notebook 07 draws the loss curves from the log
            )
    return checkpoint
