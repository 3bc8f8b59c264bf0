"""COCO bbox + segm evaluation of model outputs, through pycocotools' COCOeval.

The pipeline is the one of the official implementation (and of mmdet / detectron2):

    model outputs --predictions_to_coco_results--> COCO result dicts --evaluate_coco--> 12 numbers per type

* Boxes become [x, y, w, h]; labels 1..C become the dataset's OWN category ids; mask probabilities are
  binarised at `mask_threshold` (> 0.4 as the authors do for images) and RLE-encoded.
* Metrics are COCOeval's `stats`, named by `STAT_NAMES`. Where COCOeval has no ground truth for a
  setting (e.g. no large objects in the evaluated images, so APl is undefined) it reports -1; we KEEP
  -1, exactly as COCOeval prints it, so numbers compare 1:1 with published tables and stay valid JSON
  (NaN is not). `format_table` shows such entries as "-".
* An empty result list is a valid (bad) submission: it scores 0 wherever ground truth exists
  (and -1 where none exists, as above), instead of crashing inside pycocotools' `loadRes`.
* For segm the results' 'bbox' is dropped before `loadRes`, so a detection's size class (small /
  medium / large) is its MASK area, not its box area (pycocotools otherwise uses the box area).
* AP on a subset of the instances (`evaluate_coco(..., ann_ids=...)`, e.g. the adjacent ones): the
  other instances are ignored, as COCO ignores crowd regions, AND the detections that belong to them
  (`detection_owners`: the instance each detection overlaps most) are removed. Ignoring alone is not
  enough: COCOeval only ignores a detection that matches an ignored instance at the IoU threshold, so
  at 0.75..0.95 the other instances' imprecise detections would count as false positives of the subset.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..files import read_json, write_json

# encode_masks lives in geometry.py; eval.coco.encode_masks stays importable
from ..geometry import encode_masks

STAT_NAMES: tuple[str, ...] = (
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "AR1",
    "AR10",
    "AR100",
    "ARs",
    "ARm",
    "ARl",
)  # the order of COCOeval.stats
IOU_TYPES: tuple[str, ...] = ("bbox", "segm")
_SOURCE_ID = "source_id"  # the caller's id of an annotation that _load_gt renumbered


# ----------------------------------------------------------------------------------------------------
# model outputs -> COCO results
# ----------------------------------------------------------------------------------------------------
def _to_numpy(x: Any) -> np.ndarray:
    """A tensor (any device) or array-like as a numpy array."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def predictions_to_coco_results(
    predictions: list[dict],
    image_ids: list[int],
    label_to_cat_id: dict[int, int],
    mask_threshold: float = 0.4,
) -> list[dict]:
    """Convert model outputs (one dict per image) into COCO result dicts.

    predictions[i] (model contract): boxes [N, 4] xyxy in original pixels, labels [N] in 1..C,
    scores [N], optional masks [N, 1, H, W] probabilities. image_ids[i] is the dataset's image id of
    predictions[i]. Returns dicts {image_id, category_id, bbox [x, y, w, h], score} plus
    'segmentation' (RLE with str counts) when the prediction has masks. N may be 0.
    """
    if len(predictions) != len(image_ids):
        raise ValueError(f"{len(predictions)} predictions but {len(image_ids)} image ids")
    results: list[dict] = []
    for prediction, image_id in zip(predictions, image_ids, strict=True):
        boxes = _to_numpy(prediction["boxes"]).reshape(-1, 4).astype(np.float64)  # [N, 4]
        labels = _to_numpy(prediction["labels"]).reshape(-1)  # [N]
        scores = _to_numpy(prediction["scores"]).reshape(-1).astype(np.float64)  # [N]
        if not len(boxes) == len(labels) == len(scores):
            raise ValueError(
                f"image {image_id}: {len(boxes)} boxes, {len(labels)} labels, {len(scores)} scores"
            )
        unknown = sorted({int(label) for label in labels} - set(label_to_cat_id))
        if unknown:
            raise ValueError(
                f"image {image_id}: labels {unknown} are not in label_to_cat_id "
                f"(known labels: {sorted(label_to_cat_id)})"
            )
        rles = None
        if prediction.get("masks") is not None:
            rles = encode_masks(prediction["masks"], mask_threshold)
            if len(rles) != len(boxes):
                raise ValueError(f"image {image_id}: {len(rles)} masks for {len(boxes)} boxes")
        xywh = boxes.copy()
        xywh[:, 2:] -= xywh[:, :2]  # (x1, y1, x2, y2) -> (x, y, w, h)
        for j in range(len(boxes)):
            result = {
                "image_id": int(image_id),
                "category_id": int(label_to_cat_id[int(labels[j])]),
                "bbox": [float(v) for v in xywh[j]],
                "score": float(scores[j]),
            }
            if rles is not None:
                result["segmentation"] = rles[j]
            results.append(result)
    return results


# ----------------------------------------------------------------------------------------------------
# evaluation
# ----------------------------------------------------------------------------------------------------
def _quiet(verbose: bool) -> contextlib.AbstractContextManager:
    """Context that swallows pycocotools' prints unless verbose."""
    return contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())


def _load_gt(coco_gt: COCO | str | os.PathLike, verbose: bool) -> COCO:
    """The ground truth as a COCO object whose annotation ids are all >= 1.

    COCOeval stores "matched to gt id" in an array where 0 means unmatched, so a ground-truth
    annotation with id 0 would silently count as a miss; such a dataset is renumbered 1..G (a copy).
    """
    if not isinstance(coco_gt, COCO):
        dataset = read_json(coco_gt, "COCO ground-truth")
        with _quiet(verbose):
            coco_gt = COCO()
            coco_gt.dataset = dataset
            coco_gt.createIndex()
    ids = [ann["id"] for ann in coco_gt.dataset.get("annotations", [])]
    if 0 in ids or len(set(ids)) != len(ids):
        dataset = copy.deepcopy(coco_gt.dataset)
        for new_id, ann in enumerate(dataset["annotations"], start=1):
            ann[_SOURCE_ID] = ann["id"]  # what the caller calls it (evaluate_coco's ann_ids)
            ann["id"] = new_id
        with _quiet(verbose):
            coco_gt = COCO()
            coco_gt.dataset = dataset
            coco_gt.createIndex()
    return coco_gt


def _source_id(ann: dict) -> Any:
    """An annotation's id as the caller gave it (before _load_gt renumbered it, if it did)."""
    return ann.get(_SOURCE_ID, ann["id"])


def _check_gt(coco_gt: COCO, iou_types: Sequence[str]) -> None:
    """Every ground-truth annotation has the fields COCOeval reads."""
    required = {"image_id", "category_id", "area", "iscrowd", "bbox"}
    if "segm" in iou_types:
        required.add("segmentation")
    for ann in coco_gt.dataset.get("annotations", []):
        missing = required - set(ann)
        if missing:
            raise ValueError(f"ground-truth annotation id {ann.get('id')} lacks {sorted(missing)}")


def _check_results(results: list[dict], coco_gt: COCO, iou_types: Sequence[str]) -> None:
    """Results only name images and categories of the ground truth, and carry what is evaluated."""
    for k, result in enumerate(results):
        missing = {"image_id", "category_id", "score"} - set(result)
        if missing:
            raise ValueError(f"result #{k} lacks {sorted(missing)}")
        for iou_type, key in (("bbox", "bbox"), ("segm", "segmentation")):
            if iou_type in iou_types and key not in result:
                raise ValueError(
                    f"result #{k} (image {result['image_id']}) has no '{key}' but iou_types asks for "
                    f"'{iou_type}'; pass iou_types without '{iou_type}'"
                )
    bad_images = sorted({r["image_id"] for r in results} - set(coco_gt.getImgIds()))
    if bad_images:
        raise ValueError(f"results reference image ids not in the ground truth: {bad_images[:20]}")
    bad_cats = sorted({r["category_id"] for r in results} - set(coco_gt.getCatIds()))
    if bad_cats:
        raise ValueError(
            f"results reference category ids not in the ground truth: {bad_cats}"
            f" (ground-truth ids: {sorted(coco_gt.getCatIds())})"
        )


def _load_results(coco_gt: COCO, results: list[dict], iou_type: str) -> COCO:
    """`coco_gt.loadRes` for one iou type, also for an empty list (where loadRes would crash)."""
    if not results:
        coco_dt = COCO()
        coco_dt.dataset = {
            "images": list(coco_gt.dataset["images"]),
            "categories": copy.deepcopy(coco_gt.dataset.get("categories", [])),
            "annotations": [],
        }
        coco_dt.createIndex()
        return coco_dt
    # keep only the geometry evaluated: without 'bbox', loadRes sizes a segm result by its mask area
    drop = "segmentation" if iou_type == "bbox" else "bbox"
    return coco_gt.loadRes([{k: v for k, v in r.items() if k != drop} for r in results])


def detection_owners(coco_gt: COCO, results: list[dict], iou_type: str) -> list[int | None]:
    """For each result, the id of the ground-truth instance it belongs to, or None.

    A detection belongs to the non-crowd instance of its image that it overlaps most (IoU in the
    geometry of iou_type: boxes for 'bbox', masks for 'segm'), whatever the two classes; None when it
    overlaps none (a detection on the background). Ties: the instance listed first. This is the
    attribution behind evaluate_coco's ann_ids; ids are coco_gt's own.
    """
    key = "bbox" if iou_type == "bbox" else "segmentation"
    owners: list[int | None] = []
    for result in results:
        anns = coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=result["image_id"], iscrowd=False))
        if not anns:
            owners.append(None)
            continue
        regions = [a["bbox"] if key == "bbox" else coco_gt.annToRLE(a) for a in anns]
        ious = np.asarray(mask_utils.iou([result[key]], regions, [0] * len(anns))).reshape(-1)  # [G]
        best = int(np.argmax(ious))
        owners.append(int(anns[best]["id"]) if ious[best] > 0 else None)
    return owners


class _SubsetEval(COCOeval):
    """COCOeval that ignores every ground-truth instance outside `keep` (as it ignores crowd regions)."""

    def __init__(self, coco_gt: COCO, coco_dt: COCO, iou_type: str, keep: set[int]):
        super().__init__(coco_gt, coco_dt, iouType=iou_type)
        self.keep = keep

    def _prepare(self) -> None:
        super()._prepare()
        for instances in self._gts.values():
            for ann in instances:
                ann["ignore"] = ann["ignore"] or ann["id"] not in self.keep


def evaluate_coco(
    coco_gt: COCO | str | os.PathLike,
    results: list[dict] | str | os.PathLike,
    iou_types: Sequence[str] = IOU_TYPES,
    verbose: bool = False,
    image_ids: Sequence[int] | None = None,
    ann_ids: Collection[int] | None = None,
) -> dict[str, dict[str, float]]:
    """COCO AP/AR for each iou type: {'bbox': {'AP': .., ..., 'ARl': ..}, 'segm': {...}}.

    coco_gt: a pycocotools COCO object or the path of a COCO annotation JSON.
    results: COCO result dicts (see `predictions_to_coco_results`) or the path of a results JSON.
    image_ids: evaluate on these images only (default: every image of the ground truth).
    ann_ids: score these ground-truth instances only (default: all). Every other instance is ignored
        (neither a miss nor a true positive, like a crowd region), and the detections that belong to
        one of them (detection_owners, per iou type) are removed first; detections on the background
        stay, as false positives of every subset. So two complementary subsets split the detections
        about instances between them, and neither pays for the other's imprecise detections.
    Values are fractions in [0, 1]; -1 where COCOeval has no ground truth for that setting.
    pycocotools' prints are silenced unless verbose.
    """
    unknown_types = [t for t in iou_types if t not in IOU_TYPES]
    if unknown_types or not iou_types:
        raise ValueError(f"iou_types must be a non-empty subset of {IOU_TYPES}, got {tuple(iou_types)}")
    coco_gt = _load_gt(coco_gt, verbose)
    _check_gt(coco_gt, iou_types)
    if not isinstance(results, list):
        results = read_json(results, "results")
        if not isinstance(results, list):
            raise ValueError("a results JSON must hold a list of result dicts")
    _check_results(results, coco_gt, iou_types)

    eval_image_ids = sorted(coco_gt.getImgIds())
    if image_ids is not None:
        missing = sorted(set(image_ids) - set(eval_image_ids))
        if missing:
            raise ValueError(f"image_ids not in the ground truth: {missing[:20]}")
        eval_image_ids = sorted(set(image_ids))

    keep: set[int] | None = None
    if ann_ids is not None:
        wanted = set(ann_ids)
        keep = {ann["id"] for ann in coco_gt.dataset.get("annotations", []) if _source_id(ann) in wanted}
        unknown = wanted - {_source_id(ann) for ann in coco_gt.dataset.get("annotations", [])}
        if unknown:
            raise ValueError(f"ann_ids not in the ground truth: {sorted(unknown)[:20]}")

    metrics: dict[str, dict[str, float]] = {}
    for iou_type in iou_types:
        scored = results
        if keep is not None:
            owners = detection_owners(coco_gt, results, iou_type)
            scored = [r for r, o in zip(results, owners, strict=True) if o is None or o in keep]
        with _quiet(verbose):
            coco_dt = _load_results(coco_gt, scored, iou_type)
            evaluator = (
                COCOeval(coco_gt, coco_dt, iouType=iou_type)
                if keep is None
                else _SubsetEval(coco_gt, coco_dt, iou_type, keep)
            )
            evaluator.params.imgIds = eval_image_ids
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        metrics[iou_type] = {name: float(v) for name, v in zip(STAT_NAMES, evaluator.stats, strict=True)}
    return metrics


def per_class_ap(
    coco_gt: COCO | str | os.PathLike,
    results: list[dict],
    iou_types: Sequence[str] = IOU_TYPES,
) -> dict[str, dict[str, float]]:
    """COCO AP (IoU 0.50:0.95, all areas, 100 detections) of each category: {iou type: {name: AP}}.

    The same COCOeval run as `evaluate_coco`, read per category from its precision table
    (eval['precision'][T, R, K, area 'all', maxDets 100], averaged over the IoU thresholds T and the
    recall points R where defined). -1 for a category without ground truth in the evaluated images.
    Category names are the dataset's own ('name' of its categories).
    """
    coco_gt = _load_gt(coco_gt, verbose=False)
    _check_gt(coco_gt, iou_types)
    _check_results(results, coco_gt, iou_types)
    table: dict[str, dict[str, float]] = {}
    for iou_type in iou_types:
        with _quiet(False):
            evaluator = COCOeval(coco_gt, _load_results(coco_gt, results, iou_type), iouType=iou_type)
            evaluator.evaluate()
            evaluator.accumulate()
        precision = evaluator.eval["precision"][:, :, :, 0, -1]  # [T, R, K]: area 'all', 100 detections
        table[iou_type] = {}
        for k, cat_id in enumerate(evaluator.params.catIds):
            defined = precision[:, :, k][precision[:, :, k] > -1]
            table[iou_type][coco_gt.cats[cat_id]["name"]] = float(defined.mean()) if defined.size else -1.0
    return table


# ----------------------------------------------------------------------------------------------------
# reporting
# ----------------------------------------------------------------------------------------------------
def format_table(metrics: dict[str, dict[str, float]]) -> str:
    """A plain-text table: one row per entry of `metrics` (e.g. bbox, segm), values x100, 1 decimal.

    Columns are the metric names of the first row, in order; -1 (undefined) is shown as "-".
    """
    if not metrics:
        return "(no metrics)"
    names = list(next(iter(metrics.values())))
    row_label_width = max(len("type"), *(len(row) for row in metrics))
    widths = [max(5, len(name)) for name in names]
    lines = [
        "  ".join(
            [f"{'type':<{row_label_width}}"] + [f"{n:>{w}}" for n, w in zip(names, widths, strict=True)]
        )
    ]
    for row, values in metrics.items():
        cells = []
        for name, w in zip(names, widths, strict=True):
            value = values.get(name)
            text = "-" if value is None or value < 0 else f"{100.0 * value:.1f}"
            cells.append(f"{text:>{w}}")
        lines.append("  ".join([f"{row:<{row_label_width}}"] + cells))
    return "\n".join(lines)


def save_results(results: list[dict], path: str | os.PathLike) -> Path:
    """Write COCO (or YouTube-VIS) result dicts as JSON (one line), atomically. Returns the path."""
    return write_json(results, path, indent=None)


def save_metrics(metrics: dict, path: str | os.PathLike) -> Path:
    """Write a metrics dict as indented JSON, atomically. Returns the path."""
    return write_json(metrics, path, indent=2)
