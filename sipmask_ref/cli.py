"""Command line: `python -m sipmask_ref {make-data, train, evaluate, predict, demo, ...} ...`.

    make-data   generate the synthetic benchmark (data/synthetic, data/synthetic_video), print its
                statistics and draw sample figures
    train       train a preset on a COCO-format dataset (default: the synthetic benchmark);
                writes OUT/checkpoint.pt, OUT/train_log.jsonl and, with a val set, OUT/metrics.json
    evaluate    COCO box + mask AP of a checkpoint: OUT/results.json, OUT/metrics.json
    predict     overlays (PNG) and detections (JSON, RLE masks) for image files; with --video, a
                tracked video: a frame strip (PNG) and an animated GIF, one colour per identity
    demo        make-data, train cpu_tiny, evaluate, draw predictions into outputs/demo/
    reproduce   the ablation tables of §4.3 (Tables 2-5) on the synthetic benchmark, several seeds
                each, into results/ablations.json and results/ablations.md (see reproduce.py)
    compare     Table 1 on this machine: SipMask, the YOLACT-like baseline and torchvision's Mask
                R-CNN trained for the same CPU budget, box / mask AP and ms per image, into
                results/speed_accuracy.json and results/speed_accuracy.md (see compare.py)
    reproduce-video  the tracker comparison of §3.5 on the synthetic videos, several seeds, into
                results/video/ (video.reproduce; `python -m sipmask_ref.video reproduce` forwards here)
    check-data  read every image and annotation of a COCO-format set as training would and describe its
                classes as the preset's FCOS assignment sees them: report and gallery (dataset_check.py)
    export      the network of an image checkpoint to ONNX (export.py), checked against the eager
                model with ONNX Runtime on a few images (needs the `export` extra)

`train --task vis` / `evaluate --task vis` (§3.5, video instance segmentation, handled in video/commands.py)
train SipMaskVIS on frame pairs of a YouTube-VIS set (default: the synthetic videos) and report
video AP; the presets paper_vis_r50 and cpu_tiny_vis select the task by themselves.

Mistakes a user can make (a missing file, an unknown preset, --resume without a checkpoint,
--device cuda without CUDA, a file that is not a checkpoint) print one line on stderr and exit with
code 2; a diverging run (NaN loss) exits with code 1.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from . import checkpoints, compare, dataset_check, engine, export, reproduce
from .cli_common import (
    UsageError,
    checked_checkpoint,
    checked_device,
    config_for_training,
    same_categories,
    train_target,
    training_config,
)
from .config import PRESETS, SipMaskConfig, preset
from .data.coco import CocoInstances, load_rgb_image
from .data.synthetic import make_data
from .eval.coco import format_table, per_class_ap, save_metrics, save_results
from .explorer import adjacent_example
from .geometry import encode_masks
from .model import SipMask
from .video import (
    add_reproduce_arguments,
    cmd_evaluate_vis,
    cmd_predict_video,
    cmd_reproduce_video,
    cmd_train_vis,
)
from .viz import draw_instances, plot_spatial_mask_prediction, write_sample_figure

PROG = "sipmask_ref"
PER_CLASS_NAME = "per_class_ap.json"  # evaluate: COCO AP of each category, {iou type: {name: AP}}


# ----------------------------------------------------------------------------------------------------
# shared helpers (those video/commands.py needs too are in cli_common.py)
# ----------------------------------------------------------------------------------------------------
def _preset(name: str) -> SipMaskConfig:
    try:
        return preset(name)
    except ValueError as error:
        raise UsageError(str(error)) from None


def _synthetic_split(root: Path, split: str, generate: bool = True) -> tuple[Path, Path]:
    """(annotation JSON, image folder) of a synthetic split, generated (images only) if missing and
    `generate`."""
    ann = root / "synthetic" / "annotations" / f"instances_{split}.json"
    images = root / "synthetic" / "images" / split
    if generate and not ann.is_file():
        print(f"synthetic benchmark not found under {root}; generating it (make-data)")
        make_data(root=root, video=False)
    return ann, images


def _dataset(ann: Path | str | None, images: Path | str | None, what: str) -> CocoInstances:
    """A CocoInstances with both paths checked; bad files become one-line usage errors."""
    if ann is None or images is None:
        raise UsageError(f"{what}: give both the annotation JSON and the image folder")
    ann, images = Path(ann), Path(images)
    if not ann.is_file():
        raise UsageError(f"{what}: annotation file not found: {ann}")
    if not images.is_dir():
        raise UsageError(f"{what}: image folder not found: {images}")
    try:
        dataset = CocoInstances(ann, images)
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(f"{what}: {error}") from None
    if len(dataset) == 0:
        raise UsageError(f"{what}: {ann} holds no images")
    return dataset


# ----------------------------------------------------------------------------------------------------
# make-data
# ----------------------------------------------------------------------------------------------------
# make_data's own defaults, shown and used by the make-data command (one home: the generator)
_MAKE_DATA_DEFAULTS = {
    name: parameter.default for name, parameter in inspect.signature(make_data).parameters.items()
}


def cmd_make_data(args: argparse.Namespace) -> dict[str, Any]:
    """`make-data`: make_synthetic_data with the command's options."""
    return make_synthetic_data(
        args.root,
        seed=args.seed,
        image_size=args.image_size,
        num_train=args.num_train,
        num_val=args.num_val,
        video=args.video,
        force=args.force,
        quiet=args.quiet,
    )


def make_synthetic_data(root: str | Path, *, quiet: bool = False, **options: Any) -> dict[str, Any]:
    """Generate the synthetic benchmark, print statistics, write samples.png next to each dataset.

    `options` go to data.synthetic.make_data (seed, image_size, num_train, num_val, video, force), whose
    defaults are the only ones: make-data's parser reads them from there (_MAKE_DATA_DEFAULTS)."""
    made = make_data(root=root, **options, verbose=not quiet, progress=not quiet)
    for entry in made.values():
        figure = write_sample_figure(entry["root"], Path(entry["root"]) / "samples.png")
        if not quiet:
            print(f"sample figure: {figure}")
    return made


# ----------------------------------------------------------------------------------------------------
# train
# ----------------------------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    """Train a preset; see `python -m sipmask_ref train --help`."""
    config = _preset(args.config)
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
        train_ann, train_images = _synthetic_split(root, "train")
    else:
        train_ann, train_images = args.train_ann, args.train_images
    train_set = _dataset(train_ann, train_images, "training set")
    val_set = None
    if args.val_ann is not None or args.val_images is not None:
        val_set = _dataset(args.val_ann, args.val_images, "validation set")
    elif no_data_args:
        val_set = _dataset(*_synthetic_split(root, "val"), "validation set")
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
        dataset = _dataset(*_synthetic_split(Path(args.data_root), "val"), "evaluation set")
    else:
        dataset = _dataset(args.ann, args.images, "evaluation set")
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


def _keep(detection: dict[str, torch.Tensor], score_threshold: float) -> dict[str, torch.Tensor]:
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
        detection = _keep(engine.predict_images(model, [image], device)[0], args.score_threshold)
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
# demo
# ----------------------------------------------------------------------------------------------------
def write_prediction_grid(
    model: torch.nn.Module,
    dataset: CocoInstances,
    path: Path,
    device: torch.device,
    num_images: int = 6,
    score_threshold: float = 0.2,
    mask_threshold: float = 0.4,
) -> Path:
    """Ground truth (top row) and predictions (bottom row) of the first images of a dataset, one PNG."""
    count = min(num_images, len(dataset))
    figure = Figure(figsize=(2.6 * count, 5.6), dpi=100)
    FigureCanvasAgg(figure)
    for k in range(count):
        image, target = dataset[k]
        found = _keep(engine.predict_images(model, [image], device)[0], score_threshold)
        draw_instances(
            figure.add_subplot(2, count, k + 1),
            image,
            boxes=target["boxes"],
            masks=target["masks"],
            labels=target["labels"],
            class_names=dataset.class_names,
            title=f"image {target['image_id']}: ground truth",
        )
        draw_instances(
            figure.add_subplot(2, count, count + k + 1),
            image,
            boxes=found["boxes"],
            masks=found["masks"],
            labels=found["labels"],
            scores=found["scores"],
            class_names=dataset.class_names,
            threshold=mask_threshold,
            title=f"predictions (score >= {score_threshold})",
        )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def cmd_demo(args: argparse.Namespace) -> dict[str, Any]:
    """make-data -> train cpu_tiny -> evaluate -> figures, all under args.out (outputs/demo)."""
    out, root = Path(args.out), Path(args.data_root)
    train_ann = root / "synthetic" / "annotations" / "instances_train.json"
    make_synthetic_data(root, quiet=train_ann.is_file())
    checkpoint = out / checkpoints.CHECKPOINT_NAME
    resume = checkpoint.is_file() and not args.fresh
    if resume:
        print(f"demo: continuing from {checkpoint} (use --fresh to start over)")
    if args.iters is not None and args.iters < 0:
        raise UsageError(f"--iters must be >= 0, got {args.iters}")
    device = checked_device(args.device)
    train_set = _dataset(train_ann, root / "synthetic" / "images" / "train", "training set")
    config = training_config(preset("cpu_tiny"), "cpu_tiny", train_set, task="image")
    train_image_model(config, "cpu_tiny", train_set, None, out, device, iters=args.iters, resume=resume)

    val_set = _dataset(*_synthetic_split(root, "val"), "validation set")
    metrics = evaluate_checkpoint(checked_checkpoint(str(checkpoint)), str(checkpoint), val_set, out, device)
    print(
        f"demo: box AP {100 * metrics['bbox']['AP']:.1f}, mask AP {100 * metrics['segm']['AP']:.1f} "
        f"(COCO AP on the synthetic val split)"
    )
    mask_per_class = metrics["per_class"]["segm"]
    weakest = min(mask_per_class, key=mask_per_class.get)
    print(
        "demo: mask AP per class: "
        + ", ".join(f"{name} {100 * ap:.1f}" for name, ap in mask_per_class.items())
        + f" (lowest: {weakest})"
    )

    model, config = engine.load_checkpoint(checkpoint, device)
    figure = write_prediction_grid(
        model, val_set, out / "predictions.png", device, mask_threshold=config.mask_threshold
    )
    print(f"figure: {figure}")
    example = adjacent_example(model.cpu(), val_set)
    if example is None:
        print(
            "demo: no detected instance beside a same-class neighbour in the first val images; "
            "no Fig. 4 figure"
        )
    else:
        fig4 = plot_spatial_mask_prediction(
            example["image"],
            example["detection"],
            example["index"],
            config.sub_regions,
            config.mask_threshold,
            title=f"Fig. 4 analogue: val image {example['image_id']}, an instance beside a same-class "
            f"neighbour (score {example['score']:.2f}, box IoU {example['iou']:.2f})",
        )
        fig4.savefig(out / "spatial_mask_prediction.png")
        print(
            f"figure: {out / 'spatial_mask_prediction.png'} (its {config.sub_regions[0]}x"
            f"{config.sub_regions[1]} sub-region maps, the pruned sum and the final mask)"
        )
    return metrics


# ----------------------------------------------------------------------------------------------------
# argument parsing
# ----------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("make-data", help="generate the synthetic benchmark")
    p.add_argument(
        "--root", default="data", help="folder for synthetic/ and synthetic_video/ (default: data)"
    )
    defaults = _MAKE_DATA_DEFAULTS
    p.add_argument("--seed", type=int, default=defaults["seed"])
    p.add_argument("--image-size", type=int, default=defaults["image_size"])
    p.add_argument("--num-train", type=int, default=defaults["num_train"], help="training images")
    p.add_argument("--num-val", type=int, default=defaults["num_val"], help="validation images")
    p.add_argument("--no-video", dest="video", action="store_false", help="skip the video benchmark")
    p.add_argument("--force", action="store_true", help="regenerate even when up to date")
    p.add_argument("--quiet", action="store_true", help="no statistics, no progress bars")
    p.set_defaults(func=cmd_make_data)

    p = commands.add_parser("train", help="train a preset (default data: the synthetic benchmark)")
    p.add_argument("--config", required=True, metavar="NAME", help="preset: " + ", ".join(PRESETS))
    p.add_argument("--train-ann", help="COCO instances JSON of the training set")
    p.add_argument("--train-images", help="image folder of the training set")
    p.add_argument("--val-ann", help="COCO instances JSON of the validation set")
    p.add_argument("--val-images", help="image folder of the validation set")
    p.add_argument("--data-root", default="data", help="where the synthetic benchmark lives (default: data)")
    p.add_argument(
        "--out", required=True, help="output folder (checkpoint.pt, train_log.jsonl, metrics.json)"
    )
    p.add_argument(
        "--iters",
        type=int,
        help="stop after this many iterations (default: the preset's max_iters; "
        "the lr steps stay where the preset puts them)",
    )
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--batch-size", type=int, help="images per iteration (per process under torchrun)")
    p.add_argument("--lr", type=float, help="base learning rate (default: the preset's)")
    p.add_argument("--seed", type=int, help="random seed (default: the preset's)")
    p.add_argument("--log-every", type=int, default=20, help="iterations between log records")
    p.add_argument("--checkpoint-every", type=int, default=500, help="iterations between checkpoints")
    p.add_argument("--eval-every", type=int, help="also evaluate every this many iterations")
    p.add_argument("--grad-clip", type=float, help="clip the gradient L2 norm (default: no clipping)")
    p.add_argument(
        "--num-workers",
        type=int,
        default=0,
        help="data-loading processes (the data order does not depend on it)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--no-scan",
        dest="scan",
        action="store_false",
        help="do not open every image before the first step (for huge sets; a bad file then stops the run "
        "when it is loaded)",
    )
    p.add_argument(
        "--skip-bad-images",
        action="store_true",
        help="train (and validate) without the images the scan cannot use, one warning each, instead of "
        "stopping (image task only)",
    )
    p.add_argument(
        "--task",
        choices=("image", "vis"),
        help="'vis': SipMaskVIS on frame pairs of a YouTube-VIS "
        "set (--train-ann JSON, --train-images video folder; default: the synthetic videos). "
        "Default: the preset's task",
    )
    p.add_argument(
        "--init-from",
        metavar="CHECKPOINT",
        help="--task vis: copy an image checkpoint's weights "
        "where shapes match (the authors start from COCO)",
    )
    p.add_argument(
        "--no-image-stage",
        dest="image_stage",
        action="store_false",
        help="--task vis without "
        "--init-from: fine-tune from random weights instead of first training the image model on "
        "the training videos' annotated frames (OUT/image_stage/)",
    )
    p.add_argument(
        "--image-stage-iters",
        type=int,
        metavar="N",
        help="--task vis without --init-from: "
        "iterations of the image stage (default: its schedule's max_iters, e.g. cpu_tiny's "
        "for cpu_tiny_vis)",
    )
    p.set_defaults(func=cmd_train)

    p = commands.add_parser("evaluate", help="COCO box and mask AP of a checkpoint")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--ann", help="COCO instances JSON (default: the synthetic val split)")
    p.add_argument("--images", help="image folder of --ann")
    p.add_argument("--data-root", default="data", help="where the synthetic benchmark lives (default: data)")
    p.add_argument("--out", required=True, help="output folder (results.json, metrics.json)")
    p.add_argument("--device")
    p.add_argument("--batch-size", type=int, help="images per forward pass (default: the checkpoint's)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--task",
        choices=("image", "vis"),
        help="'vis': video AP on a YouTube-VIS set (--ann "
        "JSON, --images video folder; default: the synthetic val videos). Default: the checkpoint's",
    )
    p.add_argument(
        "--tracker",
        default="sipmask",
        help="--task vis: sipmask (default), iou_greedy, or an "
        "ablation (no_embedding, no_score, no_iou, no_label, embedding_only)",
    )
    p.set_defaults(func=cmd_evaluate)

    p = commands.add_parser("predict", help="overlays and detections for image files")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("images", nargs="*", metavar="IMAGE")
    p.add_argument(
        "--video",
        nargs="+",
        metavar="DIR_OR_FRAMES",
        help="a folder of frames (sorted by name) or "
        "frame files in order: track through them (needs a --task vis checkpoint)",
    )
    p.add_argument("--tracker", default="sipmask", help="--video: sipmask (default) or iou_greedy")
    p.add_argument("--out", required=True, help="output folder (<name>.png, <name>.json per image)")
    p.add_argument(
        "--score-threshold",
        type=float,
        default=0.3,
        help="keep detections scoring at least this (default: 0.3)",
    )
    p.add_argument("--device")
    p.set_defaults(func=cmd_predict)

    p = commands.add_parser("demo", help="make-data, train cpu_tiny, evaluate, draw (outputs/demo)")
    p.add_argument("--data-root", default="data")
    p.add_argument("--out", default="outputs/demo")
    p.add_argument("--iters", type=int, help="training iterations (default: the cpu_tiny preset's)")
    p.add_argument("--device")
    p.add_argument("--fresh", action="store_true", help="train from scratch even if OUT/checkpoint.pt exists")
    p.set_defaults(func=cmd_demo)

    p = commands.add_parser("reproduce", help="ablation tables 2-5 on the synthetic benchmark (results/)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per configuration (default: 3)")
    p.add_argument(
        "--out", default="results", help="folder for ablations.json / ablations.md (default: results)"
    )
    p.add_argument(
        "--iters", type=int, help="training iterations per run (default: reproduce.ABLATION_ITERS)"
    )
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel, one process each (default: 2)")
    p.add_argument("--threads", type=int, help="torch threads per run (default: CPU cores // jobs)")
    p.add_argument(
        "--work-dir",
        default="outputs/ablations",
        help="run records and checkpoints; finished "
        "runs found there are skipped (default: outputs/ablations)",
    )
    p.add_argument("--data-root", help="folder holding synthetic/ (default: data, generated if missing)")
    p.add_argument("--only", nargs="+", metavar="VARIANT", help="train only these variant keys")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: write the tables of the runs already finished in --work-dir",
    )
    p.set_defaults(func=cmd_reproduce)

    p = commands.add_parser(
        "reproduce-video", help="the tracker comparison on the synthetic videos (§3.5, results/video/)"
    )
    add_reproduce_arguments(p)
    p.set_defaults(func=cmd_reproduce_video)

    p = commands.add_parser(
        "compare",
        help="speed vs accuracy (Table 1): SipMask, YOLACT-like baseline, "
        "Mask R-CNN for the same CPU budget (results/)",
    )
    p.add_argument("--budget-s", type=float, default=290.0, help="training seconds per model (default: 290)")
    p.add_argument(
        "--threads",
        type=int,
        default=2,
        help="torch threads for training, timing and evaluation (default: 2)",
    )
    p.add_argument("--out", default="results", help="folder for speed_accuracy.json / .md (default: results)")
    p.add_argument(
        "--work-dir",
        default="outputs/compare",
        help="records, calibrations and checkpoints; "
        "finished models found there are skipped (default: outputs/compare)",
    )
    p.add_argument("--data-root", default="data", help="where the synthetic benchmark lives (default: data)")
    p.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        help="run only these models (sipmask, "
        "yolact_baseline, mask_rcnn); finished records of the others are still reported",
    )
    p.add_argument(
        "--lr",
        nargs="+",
        metavar="NAME=LR",
        default=[],
        help="learning rate of a model, e.g. "
        "mask_rcnn=1e-3 (default: the preset's for sipmask and yolact_baseline, "
        "compare.MASK_RCNN_LR for mask_rcnn)",
    )
    p.set_defaults(func=cmd_compare)

    p = commands.add_parser(
        "check-data", help="check a COCO-format dataset before training: report and ground-truth gallery"
    )
    p.add_argument("--ann", required=True, help="COCO instances JSON")
    p.add_argument("--images", required=True, help="image folder of --ann")
    p.add_argument(
        "--config",
        default="paper_r50_800",
        metavar="NAME",
        help="preset whose input size, strides, regress ranges and centre sampling are applied "
        "(default: paper_r50_800; give the one you will train)",
    )
    p.add_argument(
        "--out",
        help="folder for report.json, report.txt, gallery.png (default: outputs/check_data/<ann name>)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_check_data)

    p = commands.add_parser("export", help="the image model's network to ONNX, checked with ONNX Runtime")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", default="model.onnx", help="the .onnx file to write (default: model.onnx)")
    p.add_argument(
        "--check-ann",
        help="COCO instances JSON of the parity-check images (default: the synthetic val split, if present)",
    )
    p.add_argument("--check-images", help="image folder of --check-ann")
    p.add_argument("--check-count", type=int, default=4, help="images to check (default: 4; 0: no check)")
    p.add_argument("--data-root", default="data", help="where the synthetic benchmark lives (default: data)")
    p.set_defaults(func=cmd_export)
    return parser


def cmd_check_data(args: argparse.Namespace) -> dict[str, Any]:
    """`check-data`: dataset_check.check_dataset on --ann / --images with the preset --config; prints the
    summary, writes report.json, report.txt and gallery.png, and exits with code 2 (one line on stderr)
    when an image cannot be used or an annotation has a problem."""
    config = _preset(args.config)
    if not Path(args.ann).is_file():
        raise UsageError(f"annotation file not found: {args.ann}")
    if not Path(args.images).is_dir():
        raise UsageError(f"image folder not found: {args.images}")
    try:
        report, gallery = dataset_check.check_dataset(
            args.ann, args.images, config, preset_name=args.config, progress=not args.quiet
        )
    except ValueError as error:  # the annotation file itself is broken (not COCO, unknown ids, ...)
        raise UsageError(str(error)) from None
    out = Path(args.out) if args.out is not None else dataset_check.default_out_dir(args.ann)
    paths = dataset_check.write_check(report, gallery, out)
    print(dataset_check.format_report(report))
    print("written: " + ", ".join(str(path) for path in paths.values()))
    if not report["ok"]:
        raise UsageError(f"{dataset_check.summary_line(report)} (details: {paths['text']})")
    return report


def cmd_reproduce(args: argparse.Namespace) -> dict[str, Any]:
    """Train the unique ablation variants x seeds (resumable) and write the tables with verdicts."""
    iters = reproduce.ABLATION_ITERS if args.iters is None else args.iters
    if args.seeds < 1 or args.jobs < 1 or iters < 1:
        raise UsageError(f"--seeds, --jobs and --iters must be >= 1 (got {args.seeds}, {args.jobs}, {iters})")
    try:
        report = reproduce.reproduce(
            out=args.out,
            seeds=args.seeds,
            iters=iters,
            jobs=args.jobs,
            work_dir=args.work_dir,
            data_root=args.data_root,
            only=args.only,
            threads=args.threads,
            report_only=args.report_only,
        )
    except ValueError as error:
        raise UsageError(str(error)) from None
    print(reproduce.to_markdown(report))
    return report


def _learning_rates(pairs: Sequence[str]) -> dict[str, float]:
    """['mask_rcnn=1e-3', ...] -> {'mask_rcnn': 0.001, ...}."""
    rates = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        try:
            rates[name] = float(value)
        except ValueError:
            raise UsageError(f"--lr: expected NAME=LR (e.g. mask_rcnn=1e-3), got {pair!r}") from None
    return rates


def cmd_compare(args: argparse.Namespace) -> dict[str, Any]:
    """Train SipMask, the YOLACT-like baseline and Mask R-CNN for one budget each (resumable); write the
    speed / accuracy table."""
    if not args.budget_s > 0 or args.threads < 1:
        raise UsageError(f"--budget-s must be > 0 and --threads >= 1 (got {args.budget_s}, {args.threads})")
    lrs = _learning_rates(args.lr)
    root = Path(args.data_root)
    _synthetic_split(root, "train")  # generated if missing
    try:
        report = compare.compare(
            out=args.out,
            budget_s=args.budget_s,
            threads=args.threads,
            work_dir=args.work_dir,
            data_root=root,
            only=args.only,
            lrs=lrs,
        )
    except ValueError as error:
        raise UsageError(str(error)) from None
    print(compare.to_markdown(report))
    return report


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
        ann, images = _synthetic_split(Path(args.data_root), "val", generate=False)
        if not ann.is_file():
            print(f"no parity check: no synthetic val split under {args.data_root} (see --check-ann)")
            return None
    dataset = _dataset(ann, images, "parity-check set")
    count = min(args.check_count, len(dataset))
    report = export.check_parity(model, export.OnnxSipMask(path), [dataset[k][0] for k in range(count)])
    print(report.summary())
    if not report.ok:
        raise UsageError("parity check failed: " + "; ".join(report.problems[:5]))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m sipmask_ref` and the `sipmask-ref` script; returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # argparse has printed the usage and the problem (or --help)
        return int(exit_.code or 0)
    try:
        args.func(args)
    except (UsageError, FileNotFoundError, checkpoints.CheckpointError) as error:
        print(f"{PROG} {args.command}: error: {error}", file=sys.stderr)
        return 2
    except engine.NonFiniteLossError as error:
        print(f"{PROG} {args.command}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            f"{PROG} {args.command}: interrupted"
            + (" (continue with --resume)" if args.command == "train" else ""),
            file=sys.stderr,
        )
        return 130
    return 0
