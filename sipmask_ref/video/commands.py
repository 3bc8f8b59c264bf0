"""The video commands: `train --task vis`, `evaluate --task vis`, `predict --video`, `reproduce-video`.

commands/image.py hands `--task vis` and `predict --video` to these handlers, and cli.py registers
`reproduce-video` on its parser; each checks its input (a missing file, an unknown tracker, an image
checkpoint where a video one is needed, ...) and raises cli_common.UsageError with one line, then
calls training.py, tracks.py, drawing.py or reproduction.py. Read top to bottom:

    cmd_train_vis        `train --task vis`: the image stage (unless --init-from), then train_vis
    cmd_evaluate_vis     `evaluate --task vis`: video AP and identity switches of a checkpoint
    video_frame_paths    the frames of `predict --video` (a folder or a list of image files)
    cmd_predict_video    `predict --video`: a frame strip (PNG), a GIF and the identities (JSON)
    add_reproduce_arguments, cmd_reproduce_video   `reproduce-video` (reproduction.reproduce)
    main                 the old entry point, `python -m sipmask_ref.video reproduce` (__main__.py)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .. import checkpoints, engine
from ..cli_common import (
    UsageError,
    checked_checkpoint,
    checked_device,
    checked_paths,
    config_for_training,
    same_categories,
    train_target,
)
from ..config import SipMaskConfig
from ..data.image_files import load_rgb_image
from ..data.ytvis import YTVISDataset
from ..dataset_check import scanned_video_sets
from ..eval.coco import save_metrics
from ..eval.ytvis import format_table
from ..geometry import encode_mask
from ..video_model import SipMaskVIS
from .drawing import draw_video_strip, save_video_gif
from .reproduction import REPRODUCE_COMMAND, reproduce
from .tracks import SWITCHES, TRACKERS, detect_frames, evaluate_vis, make_tracker, track_frames
from .training import (
    IMAGE_STAGE_DIR,
    IMAGE_STAGE_PRESETS,
    image_stage_config,
    synthetic_video_paths,
    train_image_stage,
    train_vis,
)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")  # the frame files `predict --video FOLDER` reads


# ----------------------------------------------------------------------------------------------------
# command-line handlers (called by commands/image.py for --task vis and predict --video)
# ----------------------------------------------------------------------------------------------------


def _video_dataset(
    ann: str | os.PathLike | None, video_dir: str | os.PathLike | None, mode: str, what: str, seed: int = 0
) -> YTVISDataset:
    """A YTVISDataset with both paths checked; bad files become one-line usage errors."""
    ann, video_dir = checked_paths(ann, video_dir, what, ("YouTube-VIS JSON", "video folder"))
    try:
        dataset = YTVISDataset(ann, video_dir, mode=mode, seed=seed)
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(f"{what}: {error}") from None
    if len(dataset.videos) == 0 or (mode == "pairs" and len(dataset) == 0):
        raise UsageError(f"{what}: {ann} holds no {'annotated frames' if mode == 'pairs' else 'videos'}")
    return dataset


def cmd_train_vis(args: argparse.Namespace, config: SipMaskConfig) -> dict[str, Any]:
    """`train --task vis`: frame pairs of a YouTube-VIS set (default: the synthetic videos).

    Without --init-from, an image stage runs first (the authors start from a COCO-trained SipMask):
    train_image_stage trains SipMask on the annotated frames of the same training videos, with the
    schedule of image_stage_config (cpu_tiny_vis: cpu_tiny's 1900 iterations; --image-stage-iters N
    overrides the length), into OUT/image_stage/checkpoint.pt; the fine-tuning then starts from that
    checkpoint as with --init-from. A finished stage of the same config is reused, a shorter one
    continued. --resume continues an image stage that was interrupted (no OUT/checkpoint.pt yet) and
    then starts the fine-tuning, or continues the fine-tuning (its checkpoint holds the weights: the
    stage is not run). --no-image-stage: fine-tune from random weights.
    """
    out = Path(args.out)
    image_stage = args.init_from is None and args.image_stage
    stage_iters = args.image_stage_iters
    if stage_iters is not None and stage_iters < 0:
        raise UsageError(f"--image-stage-iters must be >= 0, got {stage_iters}")
    resume = args.resume
    if (
        resume
        and image_stage
        and not (out / checkpoints.CHECKPOINT_NAME).is_file()
        and (out / IMAGE_STAGE_DIR / checkpoints.CHECKPOINT_NAME).is_file()
    ):
        resume = False  # stopped in the image stage: it is continued below, the fine-tuning starts afresh
    device, out = train_target(argparse.Namespace(**{**vars(args), "resume": resume}))
    if args.init_from is not None and not Path(args.init_from).is_file():
        raise UsageError(f"--init-from: checkpoint not found: {args.init_from}")
    seed = args.seed if args.seed is not None else config.seed
    no_data_args = args.train_ann is None and args.train_images is None
    if no_data_args:
        paths = synthetic_video_paths(args.data_root)
        train_ann, train_dir = paths["train_ann"], paths["train_dir"]
    else:
        train_ann, train_dir = args.train_ann, args.train_images
    train_set = _video_dataset(train_ann, train_dir, "pairs", "training set", seed)
    val_set = None
    if args.val_ann is not None or args.val_images is not None:
        val_set = _video_dataset(args.val_ann, args.val_images, "frames", "validation set")
    elif no_data_args:
        val_set = _video_dataset(paths["val_ann"], paths["val_dir"], "frames", "validation set")
    if val_set is not None:
        same_categories(train_set.label_to_cat_id, val_set.label_to_cat_id, "training and validation sets")
    if args.skip_bad_images:
        raise UsageError(
            "--skip-bad-images is for image training: a video cannot lose a frame (fix the file)"
        )
    if args.scan:  # the frames opened and their sizes checked before the first step (dataset_check.py)
        scanned_video_sets(train_set, val_set, progress=not args.quiet)

    config = config_for_training(config, args, train_set, task="vis")
    num_classes = config.num_classes
    init_from = args.init_from
    train_kwargs = {
        "log_every": args.log_every,
        "checkpoint_every": args.checkpoint_every,
        "grad_clip": args.grad_clip,
        "num_workers": args.num_workers,
    }
    try:
        if image_stage and not resume:
            stage = image_stage_config(config, args.config)
            length = stage.max_iters if stage_iters is None else stage_iters
            print(
                f"no --init-from: training the image model on the {len(train_set)} annotated frames of the "
                f"{len(train_set.videos)} training videos first, as the authors start from a COCO-trained "
                f"SipMask ({length} iterations of {stage.batch_size} images, "
                f"{IMAGE_STAGE_PRESETS.get(args.config, args.config)} schedule, on {device} -> "
                f"{out / IMAGE_STAGE_DIR}; --no-image-stage skips it)"
            )
            init_from = train_image_stage(
                stage,
                train_ann,
                train_dir,
                out,
                device=device,
                iters=length,
                progress=not args.quiet,
                **train_kwargs,
            )
        elif image_stage:
            print(
                f"resuming the fine-tuning: {out / checkpoints.CHECKPOINT_NAME} holds its weights, the image "
                f"stage is not run"
            )
        iters = config.max_iters if args.iters is None else args.iters
        print(
            f"train {args.config} (video): {len(train_set.videos)} videos, {len(train_set)} frame pairs, "
            f"{num_classes} classes, {iters} iterations of {config.batch_size} pairs on {device}"
            + (" (resuming)" if resume else "")
            + f" -> {out}"
        )
        summary = train_vis(
            config,
            train_set,
            out,
            init_from=init_from,
            val_set=val_set,
            iters=args.iters,
            device=device,
            resume=resume,
            progress=not args.quiet,
            eval_every=args.eval_every,
            **train_kwargs,
        )
    except checkpoints.CheckpointError as error:
        raise UsageError(str(error)) from None
    print(
        f"checkpoint: {summary['checkpoint']} (iteration {summary['iteration']}, {summary['seconds']:.0f} s)"
    )
    if summary["metrics"] is not None:
        print(format_table(summary["metrics"]["video segm"]))
        print(f"metrics: {out / engine.METRICS_NAME}")
    return summary


def _vis_model(
    state: dict[str, Any], checkpoint: str, device: torch.device
) -> tuple[SipMaskVIS, SipMaskConfig]:
    """The SipMaskVIS of a checkpoint dict; a UsageError naming `checkpoint` if unusable or an image model."""
    try:
        model, config = engine.model_from_checkpoint(state, device)
    except checkpoints.CheckpointError as error:
        raise UsageError(f"{checkpoint}: {error}") from None
    if not isinstance(model, SipMaskVIS):
        raise UsageError(
            f"{checkpoint} is an image model (task 'image'): it has no tracking branch; "
            f"train one with --task vis"
        )
    return model, config


def cmd_evaluate_vis(args: argparse.Namespace, state: dict[str, Any]) -> dict[str, Any]:
    """`evaluate --task vis`: video AP (and ID switches) of a checkpoint; OUT/results.json, metrics.json."""
    device = checked_device(args.device)
    if args.ann is None and args.images is None:
        paths = synthetic_video_paths(args.data_root)
        dataset = _video_dataset(paths["val_ann"], paths["val_dir"], "frames", "evaluation set")
    else:
        dataset = _video_dataset(args.ann, args.images, "frames", "evaluation set")
    trained_on = state.get("dataset", {}).get("label_to_cat_id")
    if trained_on is not None:
        same_categories(
            trained_on, dataset.label_to_cat_id, f"checkpoint {args.checkpoint} and {dataset.ann_file}"
        )
    model, _config = _vis_model(state, args.checkpoint, device)
    if args.tracker not in TRACKERS:
        raise UsageError(f"unknown tracker {args.tracker!r}; choose one of {', '.join(TRACKERS)}")
    annotated = bool(dataset.data.get("annotations"))  # a test JSON has none: nothing to count
    found = evaluate_vis(
        model, dataset, device, (args.tracker,), count_switches=annotated, progress=not args.quiet
    )[args.tracker]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(found["results"]))
    metrics = {
        "video segm": found["metrics"],
        "tracker": args.tracker,
        **{key: found[key] for key in SWITCHES},
    }
    save_metrics(metrics, out / engine.METRICS_NAME)
    print(
        f"{args.checkpoint} (iteration {state['iteration']}) on {dataset.ann_file}: {len(dataset.videos)} "
        f"videos, {len(found['results'])} predicted tracks, tracker {args.tracker}"
    )
    print(format_table(found["metrics"]))
    if annotated:
        print(
            f"identity switches: {found['id_switches']} ({found['id_switches_crossing']} on crossing "
            f"objects); with ground-truth boxes: {found['gt_box_id_switches']} "
            f"({found['gt_box_id_switches_crossing']})"
        )
    print(f"results: {out / 'results.json'}\nmetrics: {out / engine.METRICS_NAME}")
    return metrics


def video_frame_paths(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """One folder (its image files, sorted by name) or a list of image files, in order."""
    paths = [Path(p) for p in inputs]
    if len(paths) == 1 and paths[0].is_dir():
        files = sorted(p for p in paths[0].iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {paths[0]}")
        return files
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"video frame not found: {path}")
    return paths


def cmd_predict_video(args: argparse.Namespace) -> list[Path]:
    """`predict --video DIR_OR_FILES --out DIR`: OUT/<name>_strip.png, <name>.gif, <name>.json."""
    device = checked_device(args.device)
    if args.tracker not in TRACKERS:
        raise UsageError(f"unknown tracker {args.tracker!r}; choose one of {', '.join(TRACKERS)}")
    try:
        paths = video_frame_paths(args.video)
    except FileNotFoundError as error:
        raise UsageError(str(error)) from None
    state = checked_checkpoint(args.checkpoint)
    model, config = _vis_model(state, args.checkpoint, device)
    meta = state.get("dataset", {})
    class_names = meta.get("class_names")
    frames = []
    for path in paths:
        try:
            frames.append(load_rgb_image(path, None, str(path)))
        except OSError as error:
            raise UsageError(str(error)) from None
    sizes = {tuple(f.shape[-2:]) for f in frames}
    if len(sizes) > 1:
        raise UsageError(f"the frames of a video must share one size, got {sorted(sizes)}")
    detections = detect_frames(model, frames, device)
    for found in detections:  # keep what the tracker should see: the score threshold of the command
        if found is None:  # (no frame is missing here: all were read above)
            continue
        keep = found.scores >= args.score_threshold
        for field in dataclasses.fields(found):
            setattr(found, field.name, getattr(found, field.name)[keep])
    ids = track_frames(detections, make_tracker(args.tracker, config))
    name = paths[0].parent.name if len(args.video) == 1 and Path(args.video[0]).is_dir() else "video"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    figure = draw_video_strip(frames, detections, ids, class_names, title=f"{name}: tracker {args.tracker}")
    strip = out / f"{name}_strip.png"
    figure.savefig(strip, format="png")
    gif = save_video_gif(frames, detections, ids, out / f"{name}.gif", class_names)
    tracks: dict[int, dict[str, Any]] = {}
    for t, (found, frame_ids) in enumerate(zip(detections, ids, strict=True)):
        if found is None or frame_ids is None:
            continue
        for k, identity in enumerate(frame_ids.tolist()):
            if identity < 0:
                continue
            label = int(found.labels[k])
            track = tracks.setdefault(identity, {"id": identity, "frames": []})
            track["frames"].append(
                {
                    "frame": t,
                    "file": str(paths[t]),
                    "label": label,
                    "class_name": class_names[label - 1] if class_names else str(label),
                    "score": round(float(found.scores[k]), 4),
                    "box": [round(float(v), 2) for v in found.boxes[k]],
                    "mask": encode_mask(found.masks[k]),
                }
            )
    record = {
        "frames": [str(p) for p in paths],
        "tracker": args.tracker,
        "score_threshold": args.score_threshold,
        "mask_threshold": config.mask_threshold,
        "identities": [tracks[i] for i in sorted(tracks)],
    }
    (out / f"{name}.json").write_text(json.dumps(record, indent=1))
    print(
        f"{len(paths)} frames, {len(tracks)} identities (score >= {args.score_threshold}) -> {strip}, {gif}, "
        f"{out / f'{name}.json'}"
    )
    return [strip, gif, out / f"{name}.json"]


# ----------------------------------------------------------------------------------------------------
# python -m sipmask_ref reproduce-video (cli.py registers these two)
# ----------------------------------------------------------------------------------------------------
def add_reproduce_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `reproduce-video` (cli.py's parser, and the old entry point's below)."""
    p.add_argument("--out", default="results/video", help="where reproduce.json and README.md go")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--iters", type=int, help="fine-tuning iterations per seed (default: cpu_tiny_vis's)")
    p.add_argument("--data-root", default="data", help="where the synthetic benchmark lives (default: data)")
    p.add_argument(
        "--image-checkpoint",
        help="image SipMask checkpoint to start from (default: the "
        "notebooks' cpu_tiny model in outputs/tutorial/, trained if missing)",
    )
    p.add_argument(
        "--work-dir",
        default="outputs/video_reproduce",
        help="training runs (default: outputs/video_reproduce)",
    )
    p.add_argument("--num-val-videos", type=int, default=40, help="validation videos (default: 40)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true")


def cmd_reproduce_video(args: argparse.Namespace) -> dict[str, Any]:
    """`reproduce-video`: the synthetic video benchmark table -> results/video/ (see `reproduce`)."""
    if args.iters is not None and args.iters < 0:
        raise UsageError(f"--iters must be >= 0, got {args.iters}")
    return reproduce(
        args.out,
        args.seeds,
        args.iters,
        args.data_root,
        args.image_checkpoint,
        args.work_dir,
        args.num_val_videos,
        args.device,
        progress=not args.quiet,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """The old entry point, `python -m sipmask_ref.video reproduce ...`: says the new command and runs it.

    Kept because notebook 11 (whose text is not edited) names it; the command is `REPRODUCE_COMMAND`.
    """
    old = "python -m sipmask_ref.video"
    parser = argparse.ArgumentParser(prog=old, description=f"Now: {REPRODUCE_COMMAND}")
    commands = parser.add_subparsers(dest="command", required=True)
    add_reproduce_arguments(commands.add_parser("reproduce", help=f"the same as {REPRODUCE_COMMAND}"))
    args = parser.parse_args(argv)
    print(f"`{old} reproduce` is now `{REPRODUCE_COMMAND}`; running it", file=sys.stderr)
    try:
        cmd_reproduce_video(args)
    except UsageError as error:
        parser.error(str(error))
    return 0
