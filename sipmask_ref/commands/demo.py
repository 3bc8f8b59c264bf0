"""The `demo` command: make-data, train cpu_tiny, evaluate, draw, all under outputs/demo/.

It runs the other commands' functions in order (cli.py registers it):

    write_prediction_grid   ground truth (top row) and predictions (bottom row) of the first images
    cmd_demo                make_synthetic_data -> train_image_model -> evaluate_checkpoint -> the
                            prediction grid and, when the val images hold one, the Fig. 4 analogue
                            (explorer.adjacent_example, viz.plot_spatial_mask_prediction)
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .. import checkpoints, engine
from ..cli_common import (
    UsageError,
    checked_checkpoint,
    checked_dataset,
    checked_device,
    synthetic_split,
    training_config,
)
from ..config import preset
from ..data.coco import CocoInstances
from ..explorer import adjacent_example
from ..viz import draw_instances, plot_spatial_mask_prediction
from .data import make_synthetic_data
from .image import evaluate_checkpoint, keep_scores, train_image_model


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
        found = keep_scores(engine.predict_images(model, [image], device)[0], score_threshold)
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
    # The 2000 training images are read ~8 times each: kept in memory after the first (about 0.5 GB).
    train_set = checked_dataset(
        train_ann, root / "synthetic" / "images" / "train", "training set", cache=True
    )
    config = training_config(preset("cpu_tiny"), "cpu_tiny", train_set, task="image")
    train_image_model(config, "cpu_tiny", train_set, None, out, device, iters=args.iters, resume=resume)

    val_set = checked_dataset(*synthetic_split(root, "val"), "validation set")
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
