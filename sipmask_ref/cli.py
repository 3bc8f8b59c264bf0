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
                each, into results/ablations.json and results/ablations.md (see reproduce/)
    compare     Table 1 on this machine: SipMask, the YOLACT-like baseline and torchvision's Mask
                R-CNN trained for the same CPU budget, box / mask AP and ms per image, into
                results/speed_accuracy.json and results/speed_accuracy.md (see compare/)
    leak        §3.3 measured: how much the masks of the reproduction's 1x1 and 2x2 runs (Table 4) lie
                on same-class neighbours, per seed, into results/leak.json and results/leak.md
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

# This file is the entry point: the parser (build_parser) and main, which reports mistakes in one line.
# The docstring above is `--help`'s text. The handlers of the image commands live in commands/ (data.py,
# image.py, demo.py, experiments.py), those of `--task vis`, `predict --video` and `reproduce-video`
# in video/commands.py.

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import checkpoints, engine
from .cli_common import UsageError
from .commands import (
    MAKE_DATA_DEFAULTS,
    cmd_check_data,
    cmd_compare,
    cmd_demo,
    cmd_evaluate,
    cmd_export,
    cmd_leak,
    cmd_make_data,
    cmd_predict,
    cmd_reproduce,
    cmd_train,
)
from .config import PRESETS
from .video import add_reproduce_arguments, cmd_reproduce_video

PROG = "sipmask_ref"


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
    defaults = MAKE_DATA_DEFAULTS
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
    p.add_argument(
        "--cache-images",
        action="store_true",
        help="keep every training image and its masks in memory once read (small datasets: the "
        "synthetic training split takes about 0.5 GB), so that later epochs skip the decoding",
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
    p.add_argument(
        "--pretrain-iters",
        type=int,
        help="iterations of the body's pretraining, which every run starts from; 0: every run from "
        "scratch (default: reproduce.PRETRAIN_ITERS)",
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
        "leak", help="the leak of the Table 4 runs' masks onto same-class neighbours (results/leak.*)"
    )
    p.add_argument("--seeds", type=int, default=3, help="seeds of each row to measure (default: 3)")
    p.add_argument("--out", default="results", help="folder for leak.json / leak.md (default: results)")
    p.add_argument(
        "--work-dir",
        default="outputs/ablations",
        help="the reproduction's runs (default: outputs/ablations)",
    )
    p.add_argument("--data-root", default="data", help="where the synthetic benchmark lives (default: data)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_leak)

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
