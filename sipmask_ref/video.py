"""§3.5 / §4.4 video instance segmentation glue: train on frame pairs, track, evaluate, draw, reproduce.

Not a new equation: this file runs SipMaskVIS (video_model.py) through whole videos and scores it.
Read top to bottom:

    make_tracker         the matcher of §3.5 (TrackMatcher, each term switchable) or the IoU baseline
    detect_frames        the detector, frame by frame: boxes, labels, scores, masks, embeddings
    track_frames         one tracker over the detections of one video -> an identity per detection
    ground_truth_detections  the ground truth as detections (with the model's embeddings): the tracker
                         alone, without detection errors
    evaluate_vis         every video of a YouTube-VIS dataset, one or several trackers on the SAME
                         detections -> YouTube-VIS results, video AP (eval/ytvis.py), identity switches,
                         optionally the per-frame COCO AP of the detector
    draw_video_strip     frames side by side, one colour per identity (paper Fig. 7); save_video_gif
    image_stage_config   the config of the image stage: the VIS model as an image model, with a
                         from-scratch schedule (IMAGE_STAGE_PRESETS: cpu_tiny_vis -> cpu_tiny's)
    train_image_stage    SipMask (image model) on the annotated frames of the training videos
    train_vis            engine.train on frame pairs, optionally starting from an image checkpoint
    trained_vis_model    the notebooks' cached cpu_tiny_vis model (under workspace.repo_root())
    reproduce            the synthetic benchmark of the README: seeds x trackers -> results/video/
    cmd_*                the `--task vis` / `predict --video` / `reproduce-video` command-line handlers
                         (cli.py calls them)

    python -m sipmask_ref reproduce-video [--seeds 0 1 2] [--iters N] [--out results/video]
    (python -m sipmask_ref.video reproduce, the old command, still runs it)

The image stage. The authors always start SipMask-VIS from a COCO-trained image SipMask; a tracking
model fine-tuned from random weights on the short VIS schedule is unusable. So `train --task vis`
without --init-from first trains the image model SipMask (task 'image', the same backbone, channels,
classes and switches as the VIS config) on the annotated frames of the same training videos
(YTVISDataset mode 'images', each frame an independent image), for the schedule of
image_stage_config (cpu_tiny_vis: cpu_tiny's 1700 iterations of 8 images with AdamW; other presets:
their own schedule; --image-stage-iters overrides the length), into OUT/image_stage/checkpoint.pt,
then fine-tunes SipMaskVIS from that checkpoint exactly as --init-from does. A finished stage
(same config and classes) is reused, a shorter one continued; --no-image-stage fine-tunes from
random weights as before.

Decisions where the paper and the authors' code are silent:
- A frame file that cannot be found during evaluation is skipped with a warning: it gets no detections
  (its entries in the results are None) and the tracker's memory is carried over it unchanged.
- Identity switches (tracking.count_id_switches, masks, IoU >= 0.5) are counted over all ground-truth
  objects and over the "crossing" ones: objects whose box overlaps the box of another object of the
  same class in at least one frame (the synthetic benchmark sends same-class objects across each other).
  They are counted twice: on the tracked detections, and with the ground truth given to the tracker as
  its detections (with the model's embeddings at the true boxes), which measures association alone;
  with a weak detector the first count is dominated by detection noise (duplicates under other labels).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torch import Tensor
from torchvision.ops import box_iou
from tqdm.auto import tqdm

from . import checkpoints, engine, workspace
from .cli_common import (
    UsageError,
    checked_checkpoint,
    checked_device,
    config_for_training,
    same_categories,
    train_target,
)
from .config import SipMaskConfig, preset
from .data.coco import load_rgb_image
from .data.synthetic import make_data
from .data.ytvis import YTVISDataset
from .dataset_check import scanned_video_sets
from .eval.coco import evaluate_coco, predictions_to_coco_results, save_metrics
from .eval.ytvis import evaluate_ytvis, format_table
from .files import relative_path
from .geometry import encode_mask
from .model import SipMask
from .tracking import IouTracker, TrackMatcher, VideoResultAccumulator, count_id_switches
from .video_model import SipMaskVIS, load_image_weights
from .viz import draw_instances, instance_colors

# The command that regenerates results/video/ (written into its README.md).
REPRODUCE_COMMAND = "python -m sipmask_ref reproduce-video"

# The trackers compared in the README: the full matcher, the matcher with one term removed, the
# embedding alone, and the IoU-only greedy baseline (no embeddings, previous frame only).
TRACKERS: tuple[str, ...] = (
    "sipmask",
    "no_embedding",
    "no_score",
    "no_iou",
    "no_label",
    "embedding_only",
    "iou_greedy",
)
TRACKER_DESCRIPTIONS: dict[str, str] = {
    "sipmask": "matcher: log-softmax(embedding) + 1.0 log score + 2.0 IoU + 10 same label",
    "no_embedding": "matcher without the embedding term",
    "no_score": "matcher without log score",
    "no_iou": "matcher without the IoU term",
    "no_label": "matcher without the same-label term",
    "embedding_only": "matcher with the embedding term alone",
    "iou_greedy": "IoU-only greedy tracker (previous frame, IoU >= 0.5)",
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
FAST_VIS_ITERS = 10  # fine-tuning iterations of trained_vis_model in fast mode (SIPMASK_FAST=1)


def make_tracker(name: str, config: SipMaskConfig) -> TrackMatcher | IouTracker:
    """A fresh tracker by name (see TRACKERS); the matcher's weights come from the config."""
    weights: dict[str, Any] = {
        "score_weight": config.match_score_weight,
        "iou_weight": config.match_iou_weight,
        "label_weight": config.match_label_weight,
    }
    switches = {
        "sipmask": {},
        "no_embedding": {"use_embedding": False},
        "no_score": {"use_score": False},
        "no_iou": {"use_iou": False},
        "no_label": {"use_label": False},
        "embedding_only": {"use_score": False, "use_iou": False, "use_label": False},
    }
    if name == "iou_greedy":
        return IouTracker(iou_threshold=0.5)
    if name not in switches:
        raise ValueError(f"unknown tracker {name!r}; choose one of {', '.join(TRACKERS)}")
    return TrackMatcher(**weights, **switches[name])


# ----------------------------------------------------------------------------------------------------
# detection and tracking through one video
# ----------------------------------------------------------------------------------------------------


@dataclass
class FrameDetections:
    """The detections of one frame, on the CPU, in original frame pixels (None: the frame is missing).

    boxes [N, 4] xyxy, labels [N] int64 1..C, scores [N], embeds [N, E], masks bool [N, H, W]
    (binarised at config.mask_threshold).
    """

    boxes: Tensor
    labels: Tensor
    scores: Tensor
    embeds: Tensor
    masks: Tensor


@torch.no_grad()
def detect_frames(
    model: SipMaskVIS, frames: Iterable[Tensor | None], device: str | torch.device = "cpu"
) -> list[FrameDetections | None]:
    """Run the detector on each frame [3, H, W] (in [0, 1]); None frames stay None (missing files)."""
    was_training = model.training
    model.eval()
    out: list[FrameDetections | None] = []
    for frame in frames:
        if frame is None:
            out.append(None)
            continue
        found = model([frame.to(device)])[0]
        out.append(
            FrameDetections(
                boxes=found["boxes"].cpu(),
                labels=found["labels"].cpu(),
                scores=found["scores"].cpu(),
                embeds=found["embeds"].cpu(),
                masks=(found["masks"][:, 0] > model.config.mask_threshold).cpu(),
            )
        )
    model.train(was_training)
    return out


def track_frames(
    detections: Sequence[FrameDetections | None], tracker: TrackMatcher | IouTracker
) -> list[Tensor | None]:
    """Identities [N] int64 of each frame's detections (-1: dropped by the matcher), frame by frame.

    The tracker is reset first (frame 0 of a video). A missing frame (None) is skipped: it gets None
    and the tracker's memory is carried over it unchanged.
    """
    tracker.reset()
    return [None if d is None else tracker.match(d.embeds, d.boxes, d.labels, d.scores) for d in detections]


def video_results(
    video_id: int,
    detections: Sequence[FrameDetections | None],
    ids: Sequence[Tensor | None],
    label_to_cat_id: Mapping[int, int],
) -> list[dict]:
    """YouTube-VIS results of one video: one dict per identity (mean score, majority category, RLEs)."""
    accumulator = VideoResultAccumulator(video_id, len(detections), label_to_cat_id)
    for t, (found, frame_ids) in enumerate(zip(detections, ids, strict=True)):
        if found is not None and frame_ids is not None:  # (track_frames: ids where there are detections)
            accumulator.add_frame(t, frame_ids, found.labels, found.scores, found.masks)
    return accumulator.results()


# ----------------------------------------------------------------------------------------------------
# evaluation
# ----------------------------------------------------------------------------------------------------


def crossing_objects(targets: Sequence[dict[str, Any] | None]) -> set[int]:
    """Object ids whose box overlaps the box of another object of the same class in some frame."""
    crossing: set[int] = set()
    for target in targets:
        if target is None or len(target["boxes"]) < 2:
            continue
        overlap = box_iou(target["boxes"], target["boxes"]) > 0  # [G, G]
        same_class = target["labels"][:, None] == target["labels"][None, :]
        overlap &= same_class & ~torch.eye(len(target["boxes"]), dtype=torch.bool)
        crossing.update(int(i) for i in target["obj_ids"][overlap.any(dim=1)].tolist())
    return crossing


def gt_tracks(targets: Sequence[dict[str, Any] | None]) -> dict[int, list[Tensor | None]]:
    """Ground-truth object id -> its mask (bool [H, W]) or None in each frame."""
    tracks: dict[int, list[Tensor | None]] = {}
    for t, target in enumerate(targets):
        if target is None:
            continue
        for k, obj in enumerate(target["obj_ids"].tolist()):
            tracks.setdefault(int(obj), [None] * len(targets))[t] = target["masks"][k].bool()
    return tracks


def _load_video(dataset: YTVISDataset, video_index: int) -> tuple[list[Tensor | None], list[dict | None]]:
    """All frames (None where the file is missing, with a warning) and targets of one video."""
    frames: list[Tensor | None] = []
    targets: list[dict | None] = []
    for f in range(len(dataset.videos[video_index]["file_names"])):
        try:
            image, target = dataset.load_frame(video_index, f)
        except FileNotFoundError as error:
            warnings.warn(f"{error}; the frame is skipped (no detections, tracker unchanged)", stacklevel=3)
            image, target = None, None
        frames.append(image)
        targets.append(target)
    return frames, targets


def predicted_tracks(
    detections: Sequence[FrameDetections | None], ids: Sequence[Tensor | None]
) -> dict[int, list[Tensor | None]]:
    """Identity -> its mask (bool [H, W]) or None in each frame (dropped detections, id -1, left out)."""
    tracks: dict[int, list[Tensor | None]] = {}
    for t, (found, frame_ids) in enumerate(zip(detections, ids, strict=True)):
        if found is None or frame_ids is None:
            continue
        for k, identity in enumerate(frame_ids.tolist()):
            if identity >= 0:
                tracks.setdefault(int(identity), [None] * len(detections))[t] = found.masks[k]
    return tracks


@torch.no_grad()
def ground_truth_detections(
    model: SipMaskVIS,
    frames: Sequence[Tensor | None],
    targets: Sequence[dict[str, Any] | None],
    device: str | torch.device = "cpu",
) -> list[FrameDetections | None]:
    """The ground truth of each frame as detections (score 1), with the model's embeddings at its boxes.

    Fed to a tracker, these isolate association from detection: every identity switch is then the
    tracker's (and the embedding's) doing.
    """
    was_training = model.training
    model.eval()
    out: list[FrameDetections | None] = []
    for frame, target in zip(frames, targets, strict=True):
        if frame is None or target is None:
            out.append(None)
            continue
        if len(target["boxes"]):
            embeds = model.embeddings_at([frame.to(device)], [target["boxes"].to(device)])[0].cpu()  # [G, E]
        else:
            embeds = torch.zeros(0, model.config.embed_dim)
        out.append(
            FrameDetections(
                target["boxes"],
                target["labels"],
                torch.ones(len(target["boxes"])),
                embeds,
                target["masks"].bool(),
            )
        )
    model.train(was_training)
    return out


def frames_as_coco_gt(frames: Sequence[tuple[int, dict[str, Any]]], dataset: YTVISDataset) -> COCO:
    """A pycocotools COCO ground truth with one image per (image_id, target) frame (per-frame AP)."""
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id, target in frames:
        height, width = target["masks"].shape[-2:]
        images.append({"id": image_id, "width": int(width), "height": int(height)})
        for mask, label in zip(target["masks"], target["labels"].tolist(), strict=True):
            rle = encode_mask(mask.bool())
            x, y, w, h = mask_utils.toBbox(rle).tolist()
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "iscrowd": 0,
                    "category_id": dataset.label_to_cat_id[int(label)],
                    "segmentation": rle,
                    "area": float(mask_utils.area(rle)),
                    "bbox": [x, y, w, h],
                }
            )
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations, "categories": dataset.data["categories"]}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints while indexing
        coco.createIndex()
    return coco


def evaluate_vis(
    model: SipMaskVIS,
    dataset: YTVISDataset,
    device: str | torch.device = "cpu",
    trackers: Sequence[str] = ("sipmask",),
    max_videos: int | None = None,
    count_switches: bool = True,
    frame_ap: bool = False,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Detect each video once, run every named tracker on the same detections, score each.

    dataset: a YTVISDataset (any mode; its transforms are not used: frames are read as stored).
    max_videos: evaluate the first videos only (the metrics are restricted to them).
    count_switches: also count identity switches (tracking.count_id_switches, mask IoU >= 0.5), over
    all ground-truth objects and over the crossing ones, twice: on the tracked detections
    ('id_switches*'), and with the ground truth fed to the tracker as detections together with the
    model's embeddings at its boxes ('gt_box_id_switches*': association alone).
    frame_ap: also score the detections frame by frame as COCO images ('frame_metrics': {'bbox':
    {...}, 'segm': {...}}, the same for every tracker): the detector alone, before any tracking.
    Returns {tracker: {'results': YouTube-VIS result dicts (the dataset's own video and category ids),
    'metrics': evaluate_ytvis numbers (AP, AP50, AP75, ..., AR1, AR10; -1 where undefined, e.g. a
    test JSON without annotations), 'id_switches', 'id_switches_crossing', 'gt_box_id_switches',
    'gt_box_id_switches_crossing' (ints; None unless count_switches), 'num_gt_objects',
    'num_crossing_objects' (objects present in the frames that could be read)}}.
    """
    for name in trackers:
        make_tracker(name, model.config)  # unknown names fail before any work
    videos = range(len(dataset.videos) if max_videos is None else min(max_videos, len(dataset.videos)))
    switch_keys = ("id_switches", "id_switches_crossing", "gt_box_id_switches", "gt_box_id_switches_crossing")
    out: dict[str, dict[str, Any]] = {
        name: {"results": [], **dict.fromkeys(switch_keys, 0 if count_switches else None)}
        for name in trackers
    }
    num_objects = num_crossing = 0
    frame_results: list[dict] = []
    frame_targets: list[tuple[int, dict[str, Any]]] = []
    for v in tqdm(videos, desc="evaluate videos", disable=not progress, leave=False):
        video_id = int(dataset.videos[v]["id"])
        frames, targets = _load_video(dataset, v)
        detections = detect_frames(model, frames, device)
        truth = gt_tracks(targets)
        crossing = crossing_objects(targets)
        truth_crossing = {k: truth[k] for k in crossing}
        num_objects += len(truth)
        num_crossing += len(crossing)
        oracle = ground_truth_detections(model, frames, targets, device) if count_switches else None
        if frame_ap:
            for found, target in zip(detections, targets, strict=True):
                if found is None or target is None:  # (a missing frame has neither)
                    continue
                frame_targets.append((int(target["image_id"]), target))
                frame_results += predictions_to_coco_results(
                    [
                        {
                            "boxes": found.boxes,
                            "labels": found.labels,
                            "scores": found.scores,
                            "masks": found.masks[:, None].float(),
                        }
                    ],
                    [int(target["image_id"])],
                    dataset.label_to_cat_id,
                    mask_threshold=0.5,
                )
        for name in trackers:
            ids = track_frames(detections, make_tracker(name, model.config))
            out[name]["results"] += video_results(video_id, detections, ids, dataset.label_to_cat_id)
            if count_switches and oracle is not None:  # (oracle: computed exactly when count_switches)
                tracks = predicted_tracks(detections, ids)
                out[name]["id_switches"] += count_id_switches(truth, tracks)
                out[name]["id_switches_crossing"] += count_id_switches(truth_crossing, tracks)
                tracks = predicted_tracks(oracle, track_frames(oracle, make_tracker(name, model.config)))
                out[name]["gt_box_id_switches"] += count_id_switches(truth, tracks)
                out[name]["gt_box_id_switches_crossing"] += count_id_switches(truth_crossing, tracks)
    video_ids = [int(dataset.videos[v]["id"]) for v in videos]
    for name in trackers:
        out[name]["metrics"] = evaluate_ytvis(dataset.data, out[name]["results"], video_ids=video_ids)
        out[name]["num_gt_objects"] = num_objects
        out[name]["num_crossing_objects"] = num_crossing
    if frame_ap:
        frame_metrics = evaluate_coco(frames_as_coco_gt(frame_targets, dataset), frame_results)
        for name in trackers:
            out[name]["frame_metrics"] = frame_metrics
    return out


# ----------------------------------------------------------------------------------------------------
# figures (paper Fig. 7: the same identity keeps the same colour)
# ----------------------------------------------------------------------------------------------------


def _identity_colours(ids: Sequence[Tensor | None]) -> np.ndarray:
    """One colour per identity of the video, indexed by identity id."""
    largest = max([int(i.max()) for i in ids if i is not None and i.numel()] + [-1])
    return instance_colors(largest + 1)


def _draw_frame(
    ax: Any,
    frame: Tensor | None,
    found: FrameDetections | None,
    frame_ids: Tensor | None,
    palette: np.ndarray,
    class_names: Sequence[str] | None,
    title: str,
) -> None:
    """One frame with its tracked detections; dropped detections (id -1) are not drawn."""
    if frame is None or found is None or frame_ids is None:
        ax.set_title(f"{title} (missing)", fontsize=8)
        ax.set_axis_off()
        return
    keep = frame_ids >= 0
    ids = frame_ids[keep].tolist()
    names = [class_names[int(label) - 1] if class_names else str(int(label)) for label in found.labels[keep]]
    draw_instances(
        ax,
        frame,
        boxes=found.boxes[keep],
        masks=found.masks[keep],
        labels=[f"#{i} {n}" for i, n in zip(ids, names, strict=True)],
        colors=palette[ids] if ids else None,
        title=title,
    )


def draw_video_strip(
    frames: Sequence[Tensor | None],
    detections: Sequence[FrameDetections | None],
    ids: Sequence[Tensor | None],
    class_names: Sequence[str] | None = None,
    max_frames: int = 8,
    title: str | None = None,
    dpi: int = 100,
) -> Figure:
    """The frames side by side (at most max_frames, evenly spread), each identity in its own colour."""
    count = len(frames)
    chosen = (
        sorted(
            {
                round(k * (count - 1) / max(1, min(max_frames, count) - 1))
                for k in range(min(max_frames, count))
            }
        )
        if count
        else []
    )
    figure = Figure(figsize=(2.2 * max(1, len(chosen)), 2.5 + (0.3 if title else 0)), dpi=dpi)
    FigureCanvasAgg(figure)
    palette = _identity_colours(ids)
    for k, t in enumerate(chosen):
        _draw_frame(
            figure.add_subplot(1, len(chosen), k + 1),
            frames[t],
            detections[t],
            ids[t],
            palette,
            class_names,
            f"frame {t}",
        )
    if title:
        figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return figure


def save_video_gif(
    frames: Sequence[Tensor | None],
    detections: Sequence[FrameDetections | None],
    ids: Sequence[Tensor | None],
    path: str | os.PathLike,
    class_names: Sequence[str] | None = None,
    seconds_per_frame: float = 0.5,
) -> Path:
    """An animated GIF of the tracked video (one frame per input frame, identity colours as the strip)."""
    palette = _identity_colours(ids)
    pictures = []
    for t, frame in enumerate(frames):
        height, width = frame.shape[-2:] if frame is not None else (128, 128)
        scale = max(1.0, 320 / max(height, width))
        figure = Figure(figsize=(width * scale / 100, height * scale / 100 + 0.25), dpi=100)
        canvas = FigureCanvasAgg(figure)
        ax = figure.add_axes((0, 0, 1, 1 - 0.25 / (height * scale / 100 + 0.25)))
        _draw_frame(ax, frame, detections[t], ids[t], palette, class_names, f"frame {t}")
        canvas.draw()
        pictures.append(Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3]))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pictures[0].save(
        path, save_all=True, append_images=pictures[1:], duration=int(1000 * seconds_per_frame), loop=0
    )
    return path


# ----------------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------------


def _vis_metrics_fn(device: str | torch.device):
    """engine.train's eval_fn for a video val set: {'video segm': video AP numbers} (sipmask tracker)."""

    def evaluate(model: SipMaskVIS, dataset: YTVISDataset) -> dict[str, Any]:
        found = evaluate_vis(model, dataset, device, ("sipmask",), count_switches=False, progress=False)
        return {"video segm": found["sipmask"]["metrics"]}

    return evaluate


# The image stage (see the module docstring). A VIS preset whose own schedule is a short fine-tuning
# takes its image stage's schedule from the image preset it is meant to start from; the others
# (paper_vis_r50: 12 epochs of YouTube-VIS frames) train the image stage on their own schedule.
IMAGE_STAGE_PRESETS: dict[str, str] = {"cpu_tiny_vis": "cpu_tiny"}
IMAGE_STAGE_DIR = "image_stage"  # OUT/image_stage/checkpoint.pt
# The schedule and optimizer fields an image stage takes from IMAGE_STAGE_PRESETS' preset; those this
# version of SipMaskConfig lacks (ema_decay in older ones) are left out by schedule_fields().
SCHEDULE_FIELDS: tuple[str, ...] = (
    "optimizer",
    "lr",
    "momentum",
    "weight_decay",
    "bias_lr_factor",
    "bias_weight_decay",
    "warmup_method",
    "warmup_iters",
    "warmup_factor",
    "lr_steps",
    "max_iters",
    "batch_size",
    "ema_decay",
)


def schedule_fields() -> tuple[str, ...]:
    """SCHEDULE_FIELDS that SipMaskConfig has."""
    known = {field.name for field in dataclasses.fields(SipMaskConfig)}
    return tuple(name for name in SCHEDULE_FIELDS if name in known)


def image_stage_config(vis_config: SipMaskConfig, preset_name: str) -> SipMaskConfig:
    """The config of the image stage of a `train --task vis` run of preset `preset_name`.

    `vis_config` (after the command line's changes: classes, seed, ...) with task 'image': the same
    model fields (backbone, channels, num_classes, switches, input), so that every image-model tensor
    fits SipMaskVIS. The schedule: for a preset in IMAGE_STAGE_PRESETS, the schedule_fields() of the
    image preset it maps to (cpu_tiny_vis: cpu_tiny's from-scratch AdamW schedule, 1700 iterations of
    8 images; --lr / --batch-size of the command line then apply to the fine-tuning only); for any
    other preset, vis_config's own schedule.
    """
    changes: dict[str, Any] = {"task": "image"}
    if preset_name in IMAGE_STAGE_PRESETS:
        schedule = preset(IMAGE_STAGE_PRESETS[preset_name])
        changes.update({name: getattr(schedule, name) for name in schedule_fields()})
    return dataclasses.replace(vis_config, **changes)


def _reuse_problem(state: dict[str, Any], config: SipMaskConfig, dataset: YTVISDataset) -> str | None:
    """Why an existing image-stage checkpoint cannot be reused for `config` on `dataset` (None: it can).

    The length (max_iters) may differ: a shorter stage is continued, a longer one is used as it is.
    """
    try:
        saved = dataclasses.asdict(checkpoints.config_from_dict(state["config"], "image stage checkpoint"))
    except checkpoints.CheckpointError as error:
        return str(error)
    current = dataclasses.asdict(config)
    changed = sorted(k for k in current if k != "max_iters" and saved.get(k) != current[k])
    if changed:
        return f"its config differs in {changed}"
    trained_on = state.get("dataset", {}).get("label_to_cat_id")
    if trained_on is not None and {int(k): int(v) for k, v in trained_on.items()} != dict(
        dataset.label_to_cat_id
    ):
        return "it was trained on other categories"
    return None


def train_image_stage(
    config: SipMaskConfig,
    train_ann: str | os.PathLike,
    train_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    iters: int | None = None,
    progress: bool = True,
    resume: bool = True,
    **train_kwargs: Any,
) -> Path:
    """Train the image model SipMask on the annotated frames of a YouTube-VIS training set.

    config: the image stage's config (image_stage_config); its task is set to 'image'.
    The data: YTVISDataset(train_ann, train_dir, mode='images'), every frame with at least one object
    as an independent image (the boxes, labels and masks of engine.train's image contract); no
    validation (the video val set scores the fine-tuned model). Runs engine.train for `iters` steps
    (default config.max_iters) into OUT/image_stage/ (checkpoint.pt, train_log.jsonl).
    resume True: an OUT/image_stage/checkpoint.pt of the same config (max_iters aside) and categories
    is reused: skipped when it reached `iters` steps, continued when shorter; a different one is
    trained again from scratch (overwritten). resume False: always trained from scratch.
    Prints one line when an existing checkpoint is skipped, continued or replaced.
    train_kwargs go to engine.train (log_every, checkpoint_every, grad_clip, num_workers).
    Returns the checkpoint path.
    """
    if config.task != "image":
        config = dataclasses.replace(config, task="image")
    out = Path(out_dir) / IMAGE_STAGE_DIR
    checkpoint = out / checkpoints.CHECKPOINT_NAME
    length = config.max_iters if iters is None else int(iters)
    dataset = YTVISDataset(train_ann, train_dir, mode="images", seed=config.seed)
    continue_it = False
    if resume and checkpoint.is_file():
        state = checkpoints.read_checkpoint(checkpoint)
        done = int(state["iteration"])
        problem = _reuse_problem(state, config, dataset)
        if problem is not None:
            print(f"image stage: {checkpoint} is not reusable ({problem}); training it again")
        elif done >= length:
            print(
                f"image stage: {checkpoint} is finished (iteration {done} of {length}, same config); "
                f"skipping it"
            )
            return checkpoint
        else:
            print(f"image stage: continuing {checkpoint} from iteration {done} to {length}")
            continue_it = True
    engine.seed_everything(config.seed)  # the initial weights depend on the seed only
    model = SipMask(config)
    engine.train(
        model,
        config,
        dataset,
        out,
        iters=length,
        device=device,
        resume=continue_it,
        progress=progress,
        **train_kwargs,
    )
    return checkpoint


def _image_weights(init_from: str | os.PathLike) -> dict[str, Tensor]:
    """The weights of an image checkpoint to start from: its weight average when the run kept one
    (the weights it is evaluated with), else its trained weights."""
    return checkpoints.evaluation_weights(checkpoints.read_checkpoint(init_from))


def train_vis(
    config: SipMaskConfig,
    train_set: YTVISDataset,
    out_dir: str | os.PathLike,
    *,
    init_from: str | os.PathLike | None = None,
    val_set: YTVISDataset | None = None,
    iters: int | None = None,
    device: str | torch.device = "cpu",
    resume: bool = False,
    progress: bool = True,
    verbose: bool = True,
    **train_kwargs: Any,
) -> dict[str, Any]:
    """Train SipMaskVIS on the frame pairs of `train_set` (mode 'pairs') with engine.train.

    init_from: an image SipMask checkpoint whose weights are copied where shapes match
    (load_image_weights; its weight average when it kept one; ignored when resuming, the checkpoint
    has them). `train --task vis` without --init-from passes the checkpoint of its image stage
    (train_image_stage: OUT/image_stage/checkpoint.pt). val_set: a YTVISDataset
    scored with evaluate_vis (sipmask tracker) at the end (and every eval_every steps).
    progress: progress bars; verbose: one line on what init_from copied.
    train_kwargs go to engine.train (log_every, checkpoint_every, eval_every, grad_clip, num_workers).
    Returns engine.train's summary plus 'init' (load_image_weights' report, or None).
    """
    if train_set.mode != "pairs":
        raise ValueError(f"train_vis: the training set must be in mode 'pairs', got {train_set.mode!r}")
    if config.task != "vis":
        config = dataclasses.replace(config, task="vis")
    engine.seed_everything(config.seed)  # the initial weights depend on the seed only
    model = SipMaskVIS(config)
    report = None
    if init_from is not None and not resume:
        report = load_image_weights(model, _image_weights(init_from), verbose=False)
        if verbose:
            print(
                f"initialised from {init_from}: {len(report['loaded'])} tensors copied, "
                f"{len(report['not_in_source'])} new (tracking branch"
                + (f"; skipped: {', '.join(report['skipped'])}" if report["skipped"] else "")
                + ")"
            )
    summary = engine.train(
        model,
        config,
        train_set,
        out_dir,
        val_dataset=val_set,
        iters=iters,
        device=device,
        resume=resume,
        eval_fn=_vis_metrics_fn(device),
        progress=progress,
        **train_kwargs,
    )
    summary["init"] = report
    return summary


def synthetic_video_paths(root: str | os.PathLike = "data") -> dict[str, Path]:
    """Paths of the synthetic video benchmark under root (generated with the image one if missing)."""
    root = Path(root)
    video_root = root / "synthetic_video"
    paths = {
        "train_ann": video_root / "annotations" / "train.json",
        "train_dir": video_root / "videos" / "train",
        "val_ann": video_root / "annotations" / "val.json",
        "val_dir": video_root / "videos" / "val",
    }
    if not all(p.exists() for p in paths.values()):
        print(f"synthetic video benchmark not found under {root}; generating it (make-data)")
        make_data(root=root, verbose=False)
    return paths


def trained_vis_model(
    iters: int | None = None,
    *,
    root: str | os.PathLike | None = None,
    image_checkpoint: str | os.PathLike | None = None,
) -> tuple[SipMaskVIS, SipMaskConfig]:
    """The notebooks' SipMaskVIS: cpu_tiny_vis fine-tuned from the notebooks' image model, cached.

    root: the folder holding data/ and outputs/ (default workspace.repo_root(): $SIPMASK_REPO, else
    the repository found from the working directory, as the notebooks run in notebooks/).
    image_checkpoint: the image model to start from (default workspace.trained_checkpoint(root=root),
    the cpu_tiny model of tutorial.trained_model(), trained first if needed).
    Checkpoint: <root>/outputs/tutorial/cpu_tiny_vis[_fast]/; data: the synthetic videos under
    <root>/data. In fast mode (SIPMASK_FAST=1) the image model and the fine-tuning are both short. A
    cached checkpoint older than the image model it starts from (say, the image model was retrained
    after a preset changed) is fine-tuned again. Returns the model in eval mode on the CPU and its config.
    """
    root = workspace.repo_root() if root is None else Path(root)
    out = workspace.model_dir("cpu_tiny_vis", root)
    checkpoint = out / checkpoints.CHECKPOINT_NAME
    if image_checkpoint is None:
        image_checkpoint = workspace.trained_checkpoint(root=root)  # trains the image model first if needed
    image_checkpoint = Path(image_checkpoint)
    if checkpoint.is_file() and checkpoint.stat().st_mtime < image_checkpoint.stat().st_mtime:
        print(f"{checkpoint}: older than the image model {image_checkpoint}; fine-tuning again")
        checkpoint.unlink()
    if not checkpoint.is_file():
        paths = synthetic_video_paths(root / "data")
        config = preset("cpu_tiny_vis")
        train_set = YTVISDataset(paths["train_ann"], paths["train_dir"], mode="pairs", seed=config.seed)
        config = dataclasses.replace(config, num_classes=len(train_set.class_names))
        steps = (
            iters if iters is not None else (FAST_VIS_ITERS if workspace.fast_mode() else config.max_iters)
        )
        with torch.enable_grad():  # even where the caller switched gradients off
            train_vis(
                config,
                train_set,
                out,
                init_from=image_checkpoint,
                iters=steps,
                checkpoint_every=max(steps, 1),
                log_every=max(steps // 10, 1),
            )
    model, config = engine.load_checkpoint(checkpoint, "cpu")
    if not isinstance(model, SipMaskVIS):
        raise checkpoints.CheckpointError(f"{checkpoint} holds an image model, not SipMaskVIS")
    return model.eval(), config


# ----------------------------------------------------------------------------------------------------
# reproduce: the synthetic benchmark table (README / results/video)
# ----------------------------------------------------------------------------------------------------


def _environment(device: str | torch.device) -> dict[str, Any]:
    import pycocotools
    import torchvision

    # the commit of the working directory's repository (the command runs from the repository root)
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
            ).stdout.strip()
            or None
        )
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit, changed = None, ""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "pycocotools": getattr(pycocotools, "__version__", "unknown"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "git_commit": commit,
        "git_uncommitted_changes": bool(changed),
    }


def _mean_spread(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for one value), min and max."""
    values = [float(v) for v in values]
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": spread, "min": min(values), "max": max(values)}


REPORTED = ("AP", "AP50", "AP75", "AR1", "AR10")
SWITCHES = ("id_switches", "id_switches_crossing", "gt_box_id_switches", "gt_box_id_switches_crossing")


def summarize(per_seed: Sequence[dict[str, dict[str, Any]]]) -> dict[str, dict[str, dict[str, float]]]:
    """{tracker: {metric: mean/std/min/max over seeds}} from evaluate_vis outputs (one per seed)."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for name in per_seed[0]:
        rows = {m: [100 * run[name]["metrics"][m] for run in per_seed] for m in REPORTED}
        for key in SWITCHES:
            rows[key] = [run[name][key] for run in per_seed]
        summary[name] = {m: _mean_spread(v) for m, v in rows.items()}
    return summary


def markdown_table(summary: dict[str, dict[str, dict[str, float]]], num_seeds: int) -> str:
    """The README table: mean ± standard deviation over seeds, one row per tracker."""
    header = [
        "tracker",
        *REPORTED,
        "IDSW det. (all)",
        "IDSW det. (crossing)",
        "IDSW GT boxes (all)",
        "IDSW GT boxes (crossing)",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, rows in summary.items():
        cells = [f"{rows[m]['mean']:.1f} ± {rows[m]['std']:.1f}" for m in (*REPORTED, *SWITCHES)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Mean ± sample standard deviation over {num_seeds} seed(s); AP and AR in percent.")
    return "\n".join(lines)


def reproduce(
    out_dir: str | os.PathLike = "results/video",
    seeds: Sequence[int] = (0, 1, 2),
    iters: int | None = None,
    data_root: str | os.PathLike = "data",
    image_checkpoint: str | os.PathLike | None = None,
    work_dir: str | os.PathLike = "outputs/video_reproduce",
    num_val_videos: int = 40,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Train cpu_tiny_vis once per seed on the synthetic videos, evaluate every tracker on it.

    Data: the synthetic video benchmark generated with `num_val_videos` validation videos into
    <data_root>/video_reproduce (its 40 training videos and its first 10 validation videos are the
    default benchmark's; more validation videos make the table less noisy).

    Per seed: SipMaskVIS (cpu_tiny_vis, that seed) starts from ONE image checkpoint (default: the
    notebooks' cpu_tiny model, workspace.trained_checkpoint(root="."), i.e.
    outputs/tutorial/cpu_tiny[_fast]/checkpoint.pt under the working directory, trained once with
    seed 0 on data/ if missing) and is fine-tuned on frame pairs for `iters` steps (default the
    preset's max_iters); the val videos are detected once and every tracker of TRACKERS runs on the
    same detections (the matcher ablations are inference-only). Writes OUT/reproduce.json (per-seed
    numbers, summary, environment, wall time) and OUT/README.md (the table). Runs go to work_dir.
    Every default path is relative to the working directory (run it from the repository root); the
    paths in the record are relative to it too.
    """
    started = time.perf_counter()
    root, work = Path(data_root), Path(work_dir)
    made = make_data(
        root=root / "video_reproduce",
        num_train=1,
        num_val=1,
        num_val_videos=num_val_videos,
        progress=progress,
        verbose=False,
    )["synthetic_video"]  # (1 image each: unused)
    paths = {
        "train_ann": made["train_annotations"],
        "train_dir": made["train_videos"],
        "val_ann": made["val_annotations"],
        "val_dir": made["val_videos"],
    }
    if image_checkpoint is None:
        image_checkpoint = workspace.trained_checkpoint(root=Path.cwd())
    image_state = checkpoints.read_checkpoint(image_checkpoint)
    val_set = YTVISDataset(paths["val_ann"], paths["val_dir"], mode="frames")
    runs = []
    for seed in seeds:
        train_set = YTVISDataset(paths["train_ann"], paths["train_dir"], mode="pairs", seed=int(seed))
        config = dataclasses.replace(
            preset("cpu_tiny_vis"), seed=int(seed), num_classes=len(train_set.class_names)
        )
        seed_start = time.perf_counter()
        summary = train_vis(
            config,
            train_set,
            work / f"seed_{seed}",
            init_from=image_checkpoint,
            iters=iters,
            device=device,
            progress=progress,
            checkpoint_every=10**9,
            log_every=max(1, (iters or config.max_iters) // 10),
        )
        train_seconds = time.perf_counter() - seed_start
        model, _ = engine.load_checkpoint(summary["checkpoint"], device)
        if not isinstance(model, SipMaskVIS):
            raise checkpoints.CheckpointError(f"{summary['checkpoint']} holds an image model, not SipMaskVIS")
        found = evaluate_vis(model, val_set, device, TRACKERS, frame_ap=True, progress=progress)
        runs.append(
            {
                "seed": int(seed),
                "iterations": summary["iteration"],
                "train_seconds": train_seconds,
                "eval_seconds": time.perf_counter() - seed_start - train_seconds,
                "final_losses": summary["losses"],
                "frame_metrics": found["sipmask"]["frame_metrics"],
                "trackers": {
                    name: {k: v for k, v in r.items() if k not in ("results", "frame_metrics")}
                    for name, r in found.items()
                },
            }
        )
        if progress:
            print(
                f"seed {seed}: "
                + ", ".join(f"{n} AP {100 * r['metrics']['AP']:.1f}" for n, r in found.items())
            )
    summary_table = summarize([run["trackers"] for run in runs])
    record = {
        "what": "video AP of SipMask-VIS (cpu_tiny_vis) on the synthetic video val split, per tracker",
        "trackers": {name: TRACKER_DESCRIPTIONS[name] for name in TRACKERS},
        "seeds": [int(s) for s in seeds],
        "config": dataclasses.asdict(
            dataclasses.replace(preset("cpu_tiny_vis"), num_classes=len(val_set.class_names))
        ),
        "iterations": runs[0]["iterations"] if runs else 0,
        "image_checkpoint": {
            "path": _shown(image_checkpoint),
            "iteration": int(image_state["iteration"]),
            "seed": image_state["config"].get("seed"),
        },
        "data": {
            "train": _shown(paths["train_ann"]),
            "val": _shown(paths["val_ann"]),
            "val_videos": len(val_set.videos),
            "val_objects": runs[0]["trackers"]["sipmask"]["num_gt_objects"] if runs else 0,
            "val_crossing_objects": runs[0]["trackers"]["sipmask"]["num_crossing_objects"] if runs else 0,
        },
        "summary": summary_table,
        "frame_ap": {
            kind: _mean_spread([100 * run["frame_metrics"][kind]["AP"] for run in runs])
            for kind in ("bbox", "segm")
        }
        if runs
        else {},
        "runs": runs,
        "environment": _environment(device),
        "wall_seconds": time.perf_counter() - started,
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_metrics(record, out / "reproduce.json")
    (out / "README.md").write_text(_results_markdown(record))
    if progress:
        print(markdown_table(summary_table, len(seeds)))
        print(f"written: {out / 'reproduce.json'}, {out / 'README.md'} ({record['wall_seconds']:.0f} s)")
    return record


def _shown(path: str | os.PathLike) -> str:
    """`path` as the record shows it: relative to the working directory when inside it, else as given."""
    return relative_path(path, Path.cwd()) or str(path)


def _results_markdown(record: dict[str, Any]) -> str:
    """results/video/README.md: what was run, the table, and how to regenerate it."""
    data, image = record["data"], record["image_checkpoint"]
    env = record["environment"]
    lines = [
        "# SipMask-VIS on the synthetic videos (§3.5, §4.4)",
        "",
        f"Generated by `{REPRODUCE_COMMAND}` (do not edit by hand).",
        "",
        (
            f"- Model: `cpu_tiny_vis` (embedding {record['config']['embed_dim']} channels), initialised "
            f"from the image checkpoint `{Path(image['path']).parent.name}` ({image['iteration']} "
            f"iterations, seed {image['seed']}, shared by all seeds), fine-tuned on frame pairs for "
            f"{record['iterations']} iterations of {record['config']['batch_size']} pairs, once per seed "
            f"({len(record['seeds'])} seeds: {', '.join(map(str, record['seeds']))})."
        ),
        (
            f"- Evaluation: {data['val_videos']} val videos, {data['val_objects']} objects of which "
            f"{data['val_crossing_objects']} cross a same-class object. Each seed's model detects every "
            "video once; all trackers run on those same detections."
        ),
        (
            f"- The detector alone, every val frame scored as a COCO image (at most 10 detections, "
            f"score > 0.03): box AP {record['frame_ap']['bbox']['mean']:.1f} ± "
            f"{record['frame_ap']['bbox']['std']:.1f}, mask AP {record['frame_ap']['segm']['mean']:.1f} ± "
            f"{record['frame_ap']['segm']['std']:.1f}. Video AP is limited mainly by these detections; the "
            "'GT boxes' switch counts below isolate the tracker."
        ),
        (
            "- ID switches (IDSW): tracking.count_id_switches (mask IoU >= 0.5), summed over the val "
            "videos; 'crossing' counts only the objects that overlap a same-class object in some frame. "
            "'det.': on the tracked detections (all of them, score > 0.03). 'GT boxes': the tracker is fed "
            "the ground truth as detections, with the model's embeddings at its boxes, so the count "
            "measures association alone."
        ),
        "",
        markdown_table(record["summary"], len(record["seeds"])),
        "",
        "Trackers:",
        "",
    ]
    lines += [f"- `{name}`: {text}" for name, text in record["trackers"].items()]
    lines += [
        "",
        (
            f"Environment: Python {env['python']}, torch {env['torch']}, torchvision {env['torchvision']}, "
            f"{env['cpu_count']} CPU(s), {env['torch_threads']} torch threads, device {env['device']}; "
            f"wall time {record['wall_seconds'] / 60:.1f} min (training and evaluation of all seeds)."
        ),
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------
# command-line handlers (called by cli.py for --task vis and predict --video)
# ----------------------------------------------------------------------------------------------------


def _video_dataset(
    ann: str | os.PathLike | None, video_dir: str | os.PathLike | None, mode: str, what: str, seed: int = 0
) -> YTVISDataset:
    """A YTVISDataset with both paths checked; bad files become one-line usage errors."""
    if ann is None or video_dir is None:
        raise UsageError(f"{what}: give both the YouTube-VIS JSON and the video folder")
    ann, video_dir = Path(ann), Path(video_dir)
    if not ann.is_file():
        raise UsageError(f"{what}: annotation file not found: {ann}")
    if not video_dir.is_dir():
        raise UsageError(f"{what}: video folder not found: {video_dir}")
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
    schedule of image_stage_config (cpu_tiny_vis: cpu_tiny's 1700 iterations; --image-stage-iters N
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


if __name__ == "__main__":
    sys.exit(main())
