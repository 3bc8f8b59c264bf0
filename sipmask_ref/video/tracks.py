"""§3.5 / §4.4 whole videos through SipMaskVIS and a tracker: detect, track, score.

Not a new equation: this file runs SipMaskVIS (video_model.py) frame by frame through whole videos,
links its detections with a tracker of trackers.py and scores the result. Read top to bottom:

    TRACKERS, make_tracker   the matcher of §3.5 (TrackMatcher, each term switchable) or the IoU baseline
    FrameDetections      the detections of one frame, on the CPU, in frame pixels
    detect_frames        the detector, frame by frame: boxes, labels, scores, masks, embeddings
    track_frames         one tracker over the detections of one video -> an identity per detection
    video_results        one video's tracked detections -> YouTube-VIS results (one per identity)
    crossing_objects, gt_tracks, predicted_tracks   what the identity-switch counts compare
    ground_truth_detections  the ground truth as detections (with the model's embeddings): the tracker
                         alone, without detection errors
    frames_as_coco_gt    the frames as COCO images (the detector's per-frame AP)
    evaluate_vis         every video of a YouTube-VIS dataset, one or several trackers on the SAME
                         detections -> YouTube-VIS results, video AP (eval/ytvis.py), identity switches
                         (SWITCHES), optionally the per-frame COCO AP of the detector

Decisions where the paper and the authors' code are silent:
- A frame file that cannot be found during evaluation is skipped with a warning: it gets no detections
  (its entries in the results are None) and the tracker's memory is carried over it unchanged.
- Identity switches (trackers.count_id_switches, masks, IoU >= 0.5) are counted over all ground-truth
  objects and over the "crossing" ones: objects whose box overlaps the box of another object of the
  same class in at least one frame (the synthetic benchmark sends same-class objects across each other).
  They are counted twice: on the tracked detections, and with the ground truth given to the tracker as
  its detections (with the model's embeddings at the true boxes), which measures association alone;
  with a weak detector the first count is dominated by detection noise (duplicates under other labels).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torch import Tensor
from torchvision.ops import box_iou
from tqdm.auto import tqdm

from ..config import SipMaskConfig
from ..data.ytvis import YTVISDataset
from ..eval.coco import evaluate_coco, predictions_to_coco_results
from ..eval.ytvis import evaluate_ytvis
from ..geometry import encode_mask
from ..trackers import IouTracker, TrackMatcher, VideoResultAccumulator, count_id_switches
from ..video_model import SipMaskVIS

# The trackers compared in results/video/README.md: the full matcher, the matcher with one term removed, the
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
# The identity-switch counts of evaluate_vis (see its docstring), in the order the tables show them.
SWITCHES = ("id_switches", "id_switches_crossing", "gt_box_id_switches", "gt_box_id_switches_crossing")


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
    count_switches: also count identity switches (trackers.count_id_switches, mask IoU >= 0.5), over
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
    out: dict[str, dict[str, Any]] = {
        name: {"results": [], **dict.fromkeys(SWITCHES, 0 if count_switches else None)} for name in trackers
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
