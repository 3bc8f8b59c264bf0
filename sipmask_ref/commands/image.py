"""The image-model commands: `train`, `evaluate`, `predict` and `export` (cli.py registers them).

Each handler checks its input (cli_common.py: one-line usage errors) and calls the library:
engine.train, engine.evaluate, engine.predict_images, export.py. `train --task vis`, `evaluate --task
vis` and `predict --video` are handed to video/commands.py. Read top to bottom:

    cmd_train            `train`: the datasets (default: the synthetic benchmark), the image scan, then
    train_image_model    seed, SipMask(config) and engine.train, printing what runs and what came out
    cmd_evaluate         `evaluate`: the evaluation set (default: the synthetic val split), then
    evaluate_checkpoint  COCO AP of a checkpoint: results.json, metrics.json, per_class_ap.json
    write_overlay        one image with its detections (masks, boxes, 'class score') as a PNG
    keep_scores          the detections scoring at least a threshold
    cmd_predict          `predict`: OUT/<name>.png and OUT/<name>.json per image file
    cmd_export           `export`: the network of an image checkpoint to ONNX, checked with ONNX Runtime
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .. import checkpoints, dataset_check, engine, export
from ..cli_common import (
    UsageError,
    checked_checkpoint,
    checked_dataset,
    checked_device,
    checked_preset,
    config_for_training,
    same_categories,
    synthetic_split,
    train_target,
)
from ..config import SipMaskConfig
from ..data.coco import CocoInstances, load_rgb_image
from ..eval.coco import format_table, per_class_ap, save_metrics, save_results
from ..geometry import encode_masks
from ..model import SipMask
from ..video import cmd_evaluate_vis, cmd_predict_video, cmd_train_vis
from ..viz import draw_instances

PER_CLASS_NAME = "per_class_ap.json"  # evaluate: COCO AP of each category, {iou type: {name: AP}}


# ----------------------------------------------------------------------------------------------------
# train
# ----------------------------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    """Train a preset; see `python -m sipmask_ref train --help`."""
    config = checked_preset(args.config)
    if (args.task or config.task) == "vis":
        return cmd_train_vis(args, config)
    if args.init_from is not None:
        raise UsageError(
            "--init-from initialises a video model from an image checkpoint: use it with --task vis"
        )
    device, out = train_target(args)

    root = Path(args.data_root)
    no_data_args = args.train_ann is None and args.train_images is None
    if no_data_args:
        train_ann, train_images = synthetic_split(root, "train")
    else:
        train_ann, train_images = args.train_ann, args.train_images
    train_set = checked_dataset(train_ann, train_images, "training set", cache=args.cache_images)
    val_set = None
    if args.val_ann is not None or args.val_images is not None:
        val_set = checked_dataset(args.val_ann, args.val_images, "validation set")
    elif no_data_args:
        val_set = checked_dataset(*synthetic_split(root, "val"), "validation set")
    if val_set is not None:
        same_categories(train_set.label_to_cat_id, val_set.label_to_cat_id, "training and validation sets")
    if args.scan:  # every image opened and its size checked before the first step (dataset_check.py)
        train_set, val_set = dataset_check.scanned_image_sets(
            train_set, val_set, skip_bad=args.skip_bad_images, progress=not args.quiet
        )

    config = config_for_training(config, args, train_set, task="image")
    return train_image_model(
        config,
        args.config,
        train_set,
        val_set,
        out,
        device,
        iters=args.iters,
        resume=args.resume,
        progress=not args.quiet,
        log_every=args.log_every,
        checkpoint_every=args.checkpoint_every,
        eval_every=args.eval_every,
        grad_clip=args.grad_clip,
        num_workers=args.num_workers,
    )


def train_image_model(
    config: SipMaskConfig,
    name: str,
    train_set: CocoInstances,
    val_set: CocoInstances | None,
    out: Path,
    device: torch.device,
    *,
    iters: int | None = None,
    resume: bool = False,
    progress: bool = True,
    **options: Any,
) -> dict[str, Any]:
    """Seed, build SipMask(config) and engine.train it (options: engine.train's log_every,
    checkpoint_every, eval_every, grad_clip, num_workers), printing what runs and what came out.
    name: the preset's, for the message."""
    engine.seed_everything(config.seed)  # the initial weights depend on the seed only
    model = SipMask(config)
    steps = config.max_iters if iters is None else iters
    print(
        f"train {name}: {len(train_set)} images, {config.num_classes} classes, {steps} iterations of "
        f"{config.batch_size} images on {device}" + (" (resuming)" if resume else "") + f" -> {out}"
    )
    summary = engine.train(
        model,
        config,
        train_set,
        out,
        val_dataset=val_set,
        iters=iters,
        device=device,
        resume=resume,
        progress=progress,
        **options,
    )
    print(
        f"checkpoint: {summary['checkpoint']} (iteration {summary['iteration']}, {summary['seconds']:.0f} s)"
    )
    if summary["metrics"] is not None:
        print(format_table(summary["metrics"]))
        print(f"metrics: {out / engine.METRICS_NAME}")
    return summary


# ----------------------------------------------------------------------------------------------------
# evaluate
# ----------------------------------------------------------------------------------------------------
def cmd_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """COCO evaluation of a checkpoint; writes OUT/results.json and OUT/metrics.json."""
    device = checked_device(args.device)
    state = checked_checkpoint(args.checkpoint)
    if (args.task or state["config"].get("task", "image")) == "vis":
        return cmd_evaluate_vis(args, state)
    if args.ann is None and args.images is None:
        dataset = checked_dataset(*synthetic_split(Path(args.data_root), "val"), "evaluation set")
    else:
        dataset = checked_dataset(args.ann, args.images, "evaluation set")
    return evaluate_checkpoint(
        state, args.checkpoint, dataset, Path(args.out), device, args.batch_size, progress=not args.quiet
    )


def evaluate_checkpoint(
    state: dict[str, Any],
    checkpoint: str,
    dataset: CocoInstances,
    out: Path,
    device: torch.device,
    batch_size: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """COCO evaluation of a checkpoint dict (read from path `checkpoint`) on `dataset`: writes
    OUT/results.json, OUT/metrics.json and OUT/per_class_ap.json, prints the tables; returns the
    metrics with 'per_class'. batch_size: default the checkpoint config's."""
    trained_on = state.get("dataset", {}).get("label_to_cat_id")
    if trained_on is not None:
        same_categories(
            trained_on, dataset.label_to_cat_id, f"checkpoint {checkpoint} and {dataset.ann_file}"
        )
    try:
        model, config = engine.model_from_checkpoint(state, device)
    except checkpoints.CheckpointError as error:
        raise UsageError(f"{checkpoint}: {error}") from None

    results, metrics = engine.evaluate(
        model, dataset, device, batch_size or config.batch_size, progress=progress
    )
    results_path = save_results(results, out / "results.json")
    metrics_path = save_metrics(metrics, out / engine.METRICS_NAME)
    per_class = per_class_ap(dataset.coco, results)
    per_class_path = save_metrics(per_class, out / PER_CLASS_NAME)
    print(
        f"{checkpoint} (iteration {state['iteration']}) on {dataset.ann_file}: "
        f"{len(dataset)} images, {len(results)} detections"
    )
    print(format_table(metrics))
    print("AP per class:")
    print(format_table(per_class))
    print(f"results: {results_path}\nmetrics: {metrics_path}\nper class: {per_class_path}")
    return metrics | {"per_class": per_class}


# ----------------------------------------------------------------------------------------------------
# predict
# ----------------------------------------------------------------------------------------------------
def _output_names(paths: Sequence[Path]) -> list[str]:
    """A distinct file stem per input image (a.png, a.jpg -> a, a_1)."""
    names, seen = [], set()
    for path in paths:
        name, k = path.stem, 0
        while name in seen:
            k += 1
            name = f"{path.stem}_{k}"
        seen.add(name)
        names.append(name)
    return names


def write_overlay(
    image: torch.Tensor,
    detection: dict[str, torch.Tensor],
    class_names: Sequence[str] | None,
    mask_threshold: float,
    path: Path,
    title: str | None = None,
) -> Path:
    """Draw one image with its detections (masks, boxes, 'class score') into a PNG."""
    height, width = image.shape[-2:]
    scale = max(1.0, 512 / max(height, width))  # small images are drawn larger, so the text is legible
    figure = Figure(figsize=(width * scale / 100, height * scale / 100 + (0.3 if title else 0)), dpi=100)
    FigureCanvasAgg(figure)
    ax = figure.add_axes((0, 0, 1, height / (height + (30 / scale if title else 0))))
    draw_instances(
        ax,
        image,
        boxes=detection["boxes"],
        masks=detection["masks"],
        labels=detection["labels"],
        scores=detection["scores"],
        class_names=class_names,
        threshold=mask_threshold,
        title=title,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def keep_scores(detection: dict[str, torch.Tensor], score_threshold: float) -> dict[str, torch.Tensor]:
    """The detections (every field) whose score is at least `score_threshold`."""
    keep = detection["scores"] >= score_threshold
    return {k: v[keep] for k, v in detection.items()}


def cmd_predict(args: argparse.Namespace) -> list[Path]:
    """Detections of image files: OUT/<name>.png (overlay) and OUT/<name>.json per image."""
    if args.video:
        if args.images:
            raise UsageError("predict: give image files or --video, not both")
        return cmd_predict_video(args)
    if not args.images:
        raise UsageError("predict: give image files, or --video DIR_OR_FRAMES")
    device = checked_device(args.device)
    paths = [Path(p) for p in args.images]
    for path in paths:
        if not path.is_file():
            raise UsageError(f"image not found: {path}")
    state = checked_checkpoint(args.checkpoint)
    try:
        model, config = engine.model_from_checkpoint(state, device)
    except checkpoints.CheckpointError as error:
        raise UsageError(f"{args.checkpoint}: {error}") from None
    meta = state.get("dataset", {})
    class_names = meta.get("class_names")
    label_to_cat_id = meta.get("label_to_cat_id", {})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path, name in zip(paths, _output_names(paths), strict=True):
        try:
            image = load_rgb_image(path, None, str(path))
        except OSError as error:
            raise UsageError(str(error)) from None
        detection = keep_scores(engine.predict_images(model, [image], device)[0], args.score_threshold)
        rles = encode_masks(detection["masks"], config.mask_threshold)
        detections = []
        for k in range(len(detection["scores"])):
            label = int(detection["labels"][k])
            entry = {
                "box": [round(float(v), 2) for v in detection["boxes"][k]],  # x1, y1, x2, y2 pixels
                "label": label,
                "class_name": class_names[label - 1] if class_names else str(label),
                "score": round(float(detection["scores"][k]), 4),
                "mask": rles[k],  # COCO RLE, binarised at config.mask_threshold
            }
            if label in label_to_cat_id:
                entry["category_id"] = label_to_cat_id[label]
            detections.append(entry)
        record = {
            "image": str(path),
            "width": int(image.shape[-1]),
            "height": int(image.shape[-2]),
            "mask_threshold": config.mask_threshold,
            "score_threshold": args.score_threshold,
            "detections": detections,
        }
        (out / f"{name}.json").write_text(json.dumps(record, indent=1))
        write_overlay(image, detection, class_names, config.mask_threshold, out / f"{name}.png")
        written += [out / f"{name}.png", out / f"{name}.json"]
        print(
            f"{path}: {len(detections)} detections (score >= {args.score_threshold}) "
            f"-> {out / name}.png/.json"
        )
    return written


# ----------------------------------------------------------------------------------------------------
# export
# ----------------------------------------------------------------------------------------------------
def cmd_export(args: argparse.Namespace) -> export.ParityReport | None:
    """Write the network of an image checkpoint to ONNX (export.py), then check it against the eager
    model on the first --check-count images of --check-ann (default: the synthetic val split when it
    exists, not generated; no check without it). A disagreement is an error (exit code 2)."""
    state = checked_checkpoint(args.checkpoint)
    if state["config"].get("task", "image") != "image":
        raise UsageError(
            f"export: {args.checkpoint} is a video (vis) checkpoint; export handles image models"
        )
    try:
        model, config = engine.model_from_checkpoint(state, "cpu")
        path = export.export_onnx(model, args.out)
    except (checkpoints.CheckpointError, ValueError, ImportError) as error:
        raise UsageError(f"export {args.checkpoint}: {error}") from None
    shape = "x".join(str(n) for n in export.input_shape(config))
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB): the network, fixed input {shape}")
    ann, images = args.check_ann, args.check_images
    if args.check_count <= 0:
        return None
    if ann is None and images is None:
        ann, images = synthetic_split(Path(args.data_root), "val", generate=False)
        if not ann.is_file():
            print(f"no parity check: no synthetic val split under {args.data_root} (see --check-ann)")
            return None
    dataset = checked_dataset(ann, images, "parity-check set")
    count = min(args.check_count, len(dataset))
    report = export.check_parity(model, export.OnnxSipMask(path), [dataset[k][0] for k in range(count)])
    print(report.summary())
    if not report.ok:
        raise UsageError("parity check failed: " + "; ".join(report.problems[:5]))
    return report
