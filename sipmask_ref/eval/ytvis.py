"""YouTube-VIS video AP, built on pycocotools' COCOeval.

Video instance segmentation is scored with the COCO protocol where

* an "image" is a whole VIDEO, and an "instance" is a whole TRACK (one mask, or None, per frame);
* the IoU of a predicted track d and a ground-truth track g is the sequence-level mask IoU

      IoU(d, g) = sum_t |d_t ∩ g_t| / sum_t |d_t ∪ g_t|

  where a frame in which only one side is present adds that side's area to the union only, and a
  frame where both are absent adds nothing (`sequence_iou`);
* a track's size class uses its mean mask area over the frames where it is present (non-empty), with
  the video area ranges small < 128², medium 128²..256², large > 256²; maxDets = [1, 10, 100] tracks
  per video. AR1 and AR10 are the numbers YouTube-VIS leaderboards report next to AP.

`YTVISeval` subclasses COCOeval and only replaces how instances are gathered (`_prepare`) and how
IoUs are computed (`computeIoU`); COCOeval's own evaluateImg / accumulate / summarize do the greedy
matching and the precision/recall averaging, so the numbers follow the official YouTube-VIS evaluation
(the youtubevos fork of cocoapi). As there, crowd tracks are matched with the plain sequence IoU and
then ignored. As in `eval/coco.py`, -1 means "no ground truth for this setting" and is kept.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_util
from pycocotools.cocoeval import COCOeval

from sipmask_ref.eval.coco import STAT_NAMES
from sipmask_ref.eval.coco import format_table as _format_rows
from sipmask_ref.files import read_json

# (min, max) mean track area of the size classes 'all', 'small', 'medium', 'large' (YouTube-VIS)
VIDEO_AREA_RANGES: list[list[float]] = [[0, 1e5**2], [0, 128**2], [128**2, 256**2], [256**2, 1e5**2]]
VIDEO_MAX_DETS: list[int] = [1, 10, 100]

Rle = dict  # a compressed RLE {'size': [H, W], 'counts': str | bytes}


# ----------------------------------------------------------------------------------------------------
# sequence IoU
# ----------------------------------------------------------------------------------------------------
def sequence_iou(pred_rles_per_frame: Sequence[Rle | None], gt_rles_per_frame: Sequence[Rle | None]) -> float:
    """Sequence-level mask IoU of two tracks: sum_t |d_t ∩ g_t| / sum_t |d_t ∪ g_t|.

    Each argument holds one compressed RLE (or None when the track is absent) per frame. A frame with
    one side absent adds that side's area to the union only; both absent adds nothing. 0 if the union
    is empty. This is the plainly written reference; `sequence_iou_matrix` is the batched version.
    """
    if len(pred_rles_per_frame) != len(gt_rles_per_frame):
        raise ValueError(
            f"tracks have {len(pred_rles_per_frame)} and {len(gt_rles_per_frame)} frames; they must match"
        )
    intersection = 0.0
    union = 0.0
    for pred, gt in zip(pred_rles_per_frame, gt_rles_per_frame, strict=True):
        if pred is not None and gt is not None:
            intersection += float(mask_util.area(mask_util.merge([pred, gt], intersect=True)))
            union += float(mask_util.area(mask_util.merge([pred, gt], intersect=False)))
        elif pred is not None:
            union += float(mask_util.area(pred))
        elif gt is not None:
            union += float(mask_util.area(gt))
    return intersection / union if union > 0 else 0.0


def sequence_iou_matrix(pred_tracks: list[list[Rle | None]], gt_tracks: list[list[Rle | None]]) -> np.ndarray:
    """Sequence IoU of every (predicted, ground-truth) pair of tracks of one video: [N, G].

    Same numbers as `sequence_iou` pair by pair, but one pycocotools call per frame instead of two per
    pair and frame. Per frame, `mask_util.iou` with iscrowd=1 returns |d ∩ g| / |d|; multiplying back
    by |d| gives the (integer) intersection. The union is sum_t |d_t| + sum_t |g_t| - sum_t |d_t ∩ g_t|.
    """
    num_pred, num_gt = len(pred_tracks), len(gt_tracks)
    if num_pred == 0 or num_gt == 0:
        return np.zeros((num_pred, num_gt))
    num_frames = len(gt_tracks[0])
    if any(len(track) != num_frames for track in list(pred_tracks) + list(gt_tracks)):
        raise ValueError("all tracks of a video must have the same number of frames")
    intersection = np.zeros((num_pred, num_gt))  # [N, G]
    pred_area = np.zeros((num_pred, num_frames))  # [N, frames]
    gt_area = np.zeros((num_gt, num_frames))  # [G, frames]
    for t in range(num_frames):
        pred_idx = [i for i, track in enumerate(pred_tracks) if track[t] is not None]
        gt_idx = [j for j, track in enumerate(gt_tracks) if track[t] is not None]
        if pred_idx:
            pred_area[pred_idx, t] = mask_util.area([pred_tracks[i][t] for i in pred_idx])
        if gt_idx:
            gt_area[gt_idx, t] = mask_util.area([gt_tracks[j][t] for j in gt_idx])
        if pred_idx and gt_idx:
            fraction_of_pred = mask_util.iou(
                [pred_tracks[i][t] for i in pred_idx],
                [gt_tracks[j][t] for j in gt_idx],
                [1] * len(gt_idx),
            )  # |d ∩ g| / |d|
            frame_intersection = np.rint(np.asarray(fraction_of_pred) * pred_area[pred_idx, t][:, None])
            intersection[np.ix_(pred_idx, gt_idx)] += frame_intersection
    union = pred_area.sum(1)[:, None] + gt_area.sum(1)[None, :] - intersection  # [N, G]
    return np.divide(intersection, union, out=np.zeros_like(union), where=union > 0)


# ----------------------------------------------------------------------------------------------------
# loading + validation
# ----------------------------------------------------------------------------------------------------
def _load_json(source: Any, what: str) -> Any:
    """A path is read (files.read_json); anything else is taken as the parsed JSON itself."""
    return read_json(source, what) if isinstance(source, (str, os.PathLike)) else source


def _to_rle(segmentation: Any, height: int, width: int, where: str) -> Rle | None:
    """A frame's segmentation (None, polygons, uncompressed or compressed RLE) as compressed RLE."""
    if segmentation is None or (isinstance(segmentation, list) and len(segmentation) == 0):
        return None
    if isinstance(segmentation, list):  # polygons [[x1, y1, x2, y2, ...], ...]
        return mask_util.merge(mask_util.frPyObjects(segmentation, height, width))
    if not (isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation):
        raise ValueError(f"{where}: a segmentation must be None, polygons or an RLE dict")
    if list(segmentation["size"]) != [height, width]:
        raise ValueError(
            f"{where}: mask size {list(segmentation['size'])} differs from the video size {[height, width]}"
        )
    if isinstance(segmentation["counts"], list):  # uncompressed RLE, as in the YouTube-VIS 2019 JSON
        return mask_util.frPyObjects(segmentation, height, width)
    return segmentation


def _mean_area(track: list[Rle | None]) -> float:
    """Mean mask area over the frames where the track is present and non-empty (0 if none)."""
    present = [rle for rle in track if rle is not None]
    areas = [float(a) for a in mask_util.area(present) if a > 0] if present else []
    return float(np.mean(areas)) if areas else 0.0


def _videos_by_id(gt: dict) -> dict[int, dict]:
    """video id -> {'length', 'height', 'width'} from the ground truth's `videos`."""
    videos = {}
    for video in gt["videos"]:
        length = video.get("length", len(video.get("file_names", [])))
        videos[video["id"]] = {
            "length": int(length),
            "height": int(video["height"]),
            "width": int(video["width"]),
        }
    return videos


def _tracks(anns: list[dict], videos: dict[int, dict], cat_ids: set[int], kind: str) -> list[dict]:
    """Validated tracks {id, video_id, category_id, score, iscrowd, segmentations (RLE|None), area}.

    kind is 'ground-truth annotation' or 'result'; errors name the annotation id / result index and
    the video. Internal ids are 1..n: COCOeval reads id 0 as "unmatched".
    """
    tracks: list[dict[str, Any]] = []
    for k, ann in enumerate(anns):
        name = f"{kind} id {ann['id']}" if "id" in ann and kind != "result" else f"{kind} #{k}"
        for key in ("video_id", "category_id", "segmentations") + (("score",) if kind == "result" else ()):
            if key not in ann:
                raise ValueError(f"{name} lacks '{key}'")
        video_id = ann["video_id"]
        if video_id not in videos:
            raise ValueError(f"{name} references video id {video_id}, which is not in the ground truth")
        if ann["category_id"] not in cat_ids:
            raise ValueError(
                f"{name} (video {video_id}) references category id {ann['category_id']}, which is not in "
                f"the ground truth (ids: {sorted(cat_ids)})"
            )
        video = videos[video_id]
        if len(ann["segmentations"]) != video["length"]:
            raise ValueError(
                f"{name}: video {video_id} has {video['length']} frames but 'segmentations' has "
                f"{len(ann['segmentations'])} entries"
            )
        where = f"{name} (video {video_id})"
        segmentations = [_to_rle(s, video["height"], video["width"], where) for s in ann["segmentations"]]
        tracks.append(
            {
                "id": len(tracks) + 1,
                "video_id": video_id,
                "category_id": ann["category_id"],
                "score": float(ann.get("score", 1.0)),
                "iscrowd": int(ann.get("iscrowd", 0)),
                "segmentations": segmentations,
                "area": _mean_area(segmentations),  # COCOeval's size classes read 'area'
            }
        )
    return tracks


# ----------------------------------------------------------------------------------------------------
# COCOeval with videos as images and tracks as instances
# ----------------------------------------------------------------------------------------------------
class YTVISeval(COCOeval):
    """COCOeval over videos: `params.imgIds` holds video ids, instances are tracks.

    Built from validated track dicts (see `_tracks`) rather than COCO objects; evaluate(),
    accumulate() and summarize() are COCOeval's own.
    """

    def __init__(
        self, video_ids: Sequence[int], cat_ids: Sequence[int], gt_tracks: list[dict], dt_tracks: list[dict]
    ):
        super().__init__(cocoGt=None, cocoDt=None, iouType="segm")
        self.params.imgIds = sorted(video_ids)
        self.params.catIds = sorted(cat_ids)
        self.params.maxDets = list(VIDEO_MAX_DETS)
        self.params.areaRng = [list(r) for r in VIDEO_AREA_RANGES]
        self.gt_tracks = gt_tracks
        self.dt_tracks = dt_tracks

    def _prepare(self) -> None:
        """Group tracks by (video, category) into self._gts / self._dts, the way COCOeval expects."""
        p = self.params
        video_ids, cat_ids = set(p.imgIds), set(p.catIds)
        self._gts = defaultdict(list)
        self._dts = defaultdict(list)
        for gt in self.gt_tracks:
            if gt["video_id"] in video_ids and gt["category_id"] in cat_ids:
                # fresh dict: evaluateImg writes '_ignore' into it
                self._gts[gt["video_id"], gt["category_id"]].append({**gt, "ignore": gt["iscrowd"]})
        for dt in self.dt_tracks:
            if dt["video_id"] in video_ids and dt["category_id"] in cat_ids:
                self._dts[dt["video_id"], dt["category_id"]].append(dict(dt))
        self.evalImgs: Any = defaultdict(list)  # COCOeval's attributes, as its _prepare sets them
        self.eval: dict[str, Any] = {}

    def computeIoU(self, video_id: int, cat_id: int) -> np.ndarray | list:  # noqa: N802 (COCOeval's name)
        """Sequence IoUs [N, G] of one video and category, detections sorted by score as evaluateImg does."""
        gt = self._gts[video_id, cat_id]
        dt = self._dts[video_id, cat_id]
        if len(gt) == 0 and len(dt) == 0:
            return []
        order = np.argsort([-d["score"] for d in dt], kind="mergesort")
        dt = [dt[i] for i in order][: self.params.maxDets[-1]]
        return sequence_iou_matrix([d["segmentations"] for d in dt], [g["segmentations"] for g in gt])


def evaluate_ytvis(
    gt: dict | str | os.PathLike,
    results: list[dict] | str | os.PathLike,
    video_ids: Sequence[int] | None = None,
    verbose: bool = False,
) -> dict[str, float]:
    """YouTube-VIS video AP: {'AP', 'AP50', 'AP75', 'APs', 'APm', 'APl', 'AR1', 'AR10', 'AR100', ...}.

    gt: a YouTube-VIS JSON dict (or its path) with `videos` (id, length or file_names, height, width),
    `categories` and `annotations` (video_id, category_id, iscrowd, per-frame `segmentations`: RLE,
    uncompressed RLE, polygons or None). results: a list (or JSON path) of
    {video_id, category_id, score, segmentations: one RLE or None per frame}.
    video_ids: evaluate on these videos only (default: all). Values in [0, 1], -1 where undefined.
    """
    gt_data = _load_json(gt, "YouTube-VIS ground-truth")
    result_list = _load_json(results, "results")
    if not isinstance(result_list, list):
        raise ValueError("results must be a list of track dicts")
    videos = _videos_by_id(gt_data)
    cat_ids = {c["id"] for c in gt_data["categories"]}
    gt_tracks = _tracks(gt_data.get("annotations", []), videos, cat_ids, "ground-truth annotation")
    dt_tracks = _tracks(result_list, videos, cat_ids, "result")

    eval_video_ids = sorted(videos)
    if video_ids is not None:
        missing = sorted(set(video_ids) - set(videos))
        if missing:
            raise ValueError(f"video_ids not in the ground truth: {missing}")
        eval_video_ids = sorted(set(video_ids))

    evaluator = YTVISeval(eval_video_ids, sorted(cat_ids), gt_tracks, dt_tracks)
    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with quiet:
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(v) for name, v in zip(STAT_NAMES, evaluator.stats, strict=True)}


def format_table(metrics: dict[str, float]) -> str:
    """A one-row table of video metrics (x100, one decimal; '-' where undefined)."""
    return _format_rows({"video segm": metrics})
