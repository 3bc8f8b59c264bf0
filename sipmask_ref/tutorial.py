"""Helpers the notebooks share: where the repository is, the synthetic data, a trained small model.

Not a paper section. Every notebook trains or loads the same `cpu_tiny` model through
`trained_model()`, so that the first notebook that needs it pays for training once and the others
reuse the checkpoint in outputs/tutorial/.

`SIPMASK_FAST=1` in the environment shrinks training (CI runs the notebooks that way under nbval);
unset, the notebooks do the full run whose outputs are committed.
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
from .model import SipMask

FAST_ENV = "SIPMASK_FAST"
FAST_ITERS = 60  # iterations of cpu_tiny in fast mode: enough to exercise every code path


def fast_mode() -> bool:
    """True when SIPMASK_FAST is set to anything but '', '0' or 'false'."""
    return os.environ.get(FAST_ENV, "").strip().lower() not in ("", "0", "false")


def repo_root() -> Path:
    """The repository root (the folder that holds pyproject.toml), found from this file."""
    return Path(__file__).resolve().parent.parent


def repo_relative(path: str | os.PathLike) -> str:
    """`path` relative to the repository root when it lies inside it (for records that are committed
    and must not name one machine's folders), else as given."""
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(repo_root()).as_posix()
    except ValueError:
        return str(path)


def synthetic_data(quiet: bool = True) -> dict[str, Path]:
    """Generate the synthetic benchmark under <repo>/data if missing; return its paths.

    Keys: train_ann, train_images, val_ann, val_images (image benchmark), video_train_ann,
    video_train_dir, video_val_ann, video_val_dir (video benchmark).
    """
    root = repo_root() / "data"
    make_data(root=root, progress=not quiet, verbose=not quiet)
    image_root, video_root = root / "synthetic", root / "synthetic_video"
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


def synthetic_dataset(split: str = "val") -> CocoInstances:
    """The synthetic image benchmark's train or val split as a `CocoInstances` dataset."""
    paths = synthetic_data()
    return CocoInstances(paths[f"{split}_ann"], paths[f"{split}_images"])


def model_dir(name: str) -> Path:
    """outputs/tutorial/<name>, or <name>_fast in fast mode (so neither run overwrites the other)."""
    return repo_root() / "outputs" / "tutorial" / (name + ("_fast" if fast_mode() else ""))


def trained_checkpoint(
    config: SipMaskConfig | None = None, name: str = "cpu_tiny", iters: int | None = None
) -> Path:
    """The checkpoint of a SipMask trained on the synthetic train split, in model_dir(name).

    The first call trains (`config`, default the cpu_tiny preset; `iters`, default the preset's
    max_iters, or FAST_ITERS in fast mode) and writes the checkpoint; later calls only return its
    path. A cached checkpoint trained with another config or iteration count (say, after a preset
    changed) is trained again. Training runs with gradients on even where the caller switched them off.
    """
    train_set = synthetic_dataset("train")
    config = dataclasses.replace(config or preset("cpu_tiny"), num_classes=len(train_set.class_names))
    steps = iters if iters is not None else (FAST_ITERS if fast_mode() else config.max_iters)
    out = model_dir(name)
    checkpoint = out / checkpoints.CHECKPOINT_NAME
    if checkpoint.is_file():
        state = checkpoints.read_checkpoint(checkpoint)
        if state.get("config") != dataclasses.asdict(config) or state.get("iteration") != steps:
            print(f"{checkpoint}: trained with another config or length; training again")
            checkpoint.unlink()
    if not checkpoint.is_file():
        engine.seed_everything(config.seed)
        from .model import SipMask

        with torch.enable_grad():
            engine.train(
                SipMask(config),
                config,
                train_set,
                out,
                iters=steps,
                device="cpu",
                checkpoint_every=max(steps, 1),
                log_every=max(steps // 10, 1),
            )
    return checkpoint


def trained_model(
    config: SipMaskConfig | None = None, name: str = "cpu_tiny", iters: int | None = None
) -> tuple[torch.nn.Module, SipMaskConfig]:
    """The model of `trained_checkpoint(config, name, iters)`, in eval mode on the CPU, and its config."""
    model, config = engine.load_checkpoint(trained_checkpoint(config, name, iters), "cpu")
    return model.eval(), config


def adjacent_example(
    model: SipMask, dataset: CocoInstances, max_images: int = 50, min_iou: float = 0.5
) -> dict | None:
    """An instance beside a same-class neighbour, and the model's detection of it (for paper Fig. 4).

    Scans the first `max_images` images for ground-truth instances that are *adjacent* (at least
    10% of their box covered by another instance of the same class, `synthetic.adjacency_flags`)
    and returns the one whose best-matching detection of the right class has the highest score,
    with that detection's IoU >= min_iou. Returns None if there is none.

    Returns a dict: image [3, H, W] (the network input, unnormalised), detection (one entry of
    `model.forward_intermediates(...)["detections"]`), index (the detection j), image_id, iou.
    """
    from .data.synthetic import adjacency_flags
    from .geometry import paired_box_iou

    model.eval()
    best = None
    for k in range(min(max_images, len(dataset))):
        image, target = dataset[k]
        flags = adjacency_flags(target["masks"].bool().numpy(), target["labels"].tolist())
        if not flags.any():
            continue
        with torch.no_grad():
            found = model.forward_intermediates([image])
        detection = found["detections"][0]
        sx, sy = found["scale_factors"][0]  # original -> input pixels
        to_basis = torch.tensor([sx, sy, sx, sy]) / 2  # input -> basis-map pixels (stride 2)
        for g in flags.nonzero()[0].tolist():
            gt_box = target["boxes"][g] * to_basis  # [4] in basis-map pixels
            same = (detection["labels"] == target["labels"][g]).nonzero().squeeze(1)
            if same.numel() == 0:
                continue
            ious = paired_box_iou(detection["boxes"][same], gt_box.expand(same.numel(), 4))
            j = int(same[ious.argmax()])
            iou, score = float(ious.max()), float(detection["scores"][j])
            if iou >= min_iou and (best is None or score > best["score"]):
                h, w = found["image_sizes"][0]
                image_in = torch.nn.functional.interpolate(
                    image[None], size=(h, w), mode="bilinear", align_corners=False
                )[0]
                best = {
                    "image": image_in,
                    "detection": detection,
                    "index": j,
                    "score": score,
                    "image_id": target["image_id"],
                    "iou": iou,
                }
    return best
