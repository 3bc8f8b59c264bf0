"""Reading COCO annotations: the checks and decoding behind ``CocoInstances`` (coco.py) and ``ytvis.py``.

Every decision a user should know (what raises, what is skipped with a warning, how a box is clipped)
is listed in the docstring of ``coco.py``; this module is where those checks are made. Nothing here
knows about a dataset object: each function takes the JSON values and a ``where`` that names the
annotation in its messages, so that the image and the video datasets share them. Top to bottom:

    AnnotationWarning, InstanceRecord   the warning of degenerate geometry; one usable instance
    is_int                              a JSON integer (bool excluded)
    polygon_area, check_segmentation    polygons and RLE checked; degenerate parts named, not raised
    segmentation_to_rle, decode_segmentation
                                        a checked segmentation -> RLE -> uint8 mask [H, W]
    check_box, parse_instance           bbox [x, y, w, h] -> clipped xyxy; one annotation -> a record
    build_target                        the records of one image -> the target of the data contract
    category_maps, check_categories     category ids <-> labels 1..C, and their checks
    validate_coco_instances             the shape of a whole COCO instances file
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from pycocotools import mask as mask_utils

from ..geometry import mask_box


class AnnotationWarning(UserWarning):
    """An annotation (or part of one) was skipped because its geometry is degenerate."""


class InstanceRecord(NamedTuple):
    """One usable instance, parsed once at construction."""

    ann_id: int  # the JSON annotation id (the identity in YouTube-VIS)
    label: int  # 1..C
    box: tuple[float, float, float, float]  # xyxy, clipped to the image
    segmentation: Any  # polygons (degenerate parts removed) or an RLE dict


def is_int(value: Any) -> bool:
    """True for a JSON integer (bool excluded)."""
    return isinstance(value, int) and not isinstance(value, bool)


def polygon_area(coords: Sequence[float]) -> float:
    """Area of the polygon [x1, y1, x2, y2, ...] by the shoelace formula."""
    xs, ys = coords[0::2], coords[1::2]
    xs_next = list(xs[1:]) + [xs[0]]
    ys_next = list(ys[1:]) + [ys[0]]
    twice_area = sum(x0 * y1 - x1 * y0 for x0, y0, x1, y1 in zip(xs, ys, xs_next, ys_next, strict=True))
    return abs(twice_area) / 2.0


def check_segmentation(segmentation: Any, height: int, width: int, where: str) -> tuple[Any, list[str]]:
    """Validate one COCO segmentation for an image of ``height x width``.

    Returns ``(segmentation, problems)``: the usable segmentation (polygon parts that are degenerate removed)
    or None when nothing usable is left, and a description of each degenerate part. Raises ValueError
    naming ``where`` when the segmentation is malformed (wrong types, RLE of another size).
    """
    if segmentation is None:
        return None, ["no segmentation"]
    if isinstance(segmentation, list):
        if len(segmentation) == 0:
            return None, ["empty segmentation (no polygon)"]
        parts, problems = [], []
        for k, polygon in enumerate(segmentation):
            if not isinstance(polygon, list):
                raise ValueError(f"{where}: polygon {k} is a {type(polygon).__name__}, not a list of numbers")
            try:
                coords = [float(v) for v in polygon]
                finite = all(math.isfinite(v) for v in coords)
            except (TypeError, ValueError) as err:
                raise ValueError(f"{where}: polygon {k} is not a list of numbers") from err
            if not finite:
                raise ValueError(f"{where}: polygon {k} has a NaN or infinite coordinate")
            if len(coords) % 2 == 1:
                problems.append(f"polygon {k} has an odd number of coordinates ({len(coords)})")
            elif len(coords) < 6:
                problems.append(f"polygon {k} has fewer than 3 points ({len(coords) // 2})")
            elif polygon_area(coords) <= 0.0:
                problems.append(f"polygon {k} has zero area")
            else:
                parts.append(coords)
        return (parts if parts else None), problems
    if isinstance(segmentation, dict):
        counts, size = segmentation.get("counts"), segmentation.get("size")
        if counts is None or size is None:
            raise ValueError(
                f"{where}: an RLE segmentation needs 'counts' and 'size', got keys {sorted(segmentation)}"
            )
        if not (isinstance(size, list) and len(size) == 2 and all(is_int(v) for v in size)):
            raise ValueError(f"{where}: RLE 'size' must be [height, width], got {size!r}")
        if list(size) != [height, width]:
            raise ValueError(
                f"{where}: RLE size [height, width] = {size} differs from the image size {[height, width]}"
            )
        if isinstance(counts, list):  # uncompressed RLE: run lengths, column-major, starting with zeros
            if not all(is_int(v) and v >= 0 for v in counts):
                raise ValueError(f"{where}: uncompressed RLE counts must be non-negative integers")
            if sum(counts) != height * width:
                raise ValueError(
                    f"{where}: uncompressed RLE counts sum to {sum(counts)}, "
                    f"not height*width = {height * width}"
                )
            area = sum(counts[1::2])
        elif isinstance(counts, (str, bytes)):  # compressed RLE (COCO's string encoding)
            area = int(mask_utils.area({"size": size, "counts": counts}))
        else:
            raise ValueError(f"{where}: RLE counts must be a list or a string, got {type(counts).__name__}")
        if area == 0:
            return None, ["the RLE mask is empty"]
        return segmentation, []
    raise ValueError(
        f"{where}: segmentation must be a list of polygons or an RLE dict, got {type(segmentation).__name__}"
    )


def segmentation_to_rle(segmentation: Any, height: int, width: int) -> dict[str, Any]:
    """A checked segmentation (see :func:`check_segmentation`) -> one pycocotools RLE."""
    if isinstance(segmentation, list):  # polygons, each with >= 3 points after checking
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation["counts"], list):  # uncompressed RLE
        return mask_utils.frPyObjects(segmentation, height, width)
    return segmentation  # compressed RLE


def decode_segmentation(segmentation: Any, height: int, width: int, where: str | None = None) -> np.ndarray:
    """A segmentation (polygons, uncompressed or compressed RLE) -> uint8 mask [H, W] of 0 / 1.

    Made for checked segmentations (:func:`check_segmentation`). ``where`` (e.g. "annotation 7")
    turns pycocotools' error on a malformed one into a ValueError naming it.
    """
    try:
        mask = mask_utils.decode(segmentation_to_rle(segmentation, height, width))  # [H, W]
    except (TypeError, ValueError, KeyError, IndexError) as error:
        if where is None:
            raise
        raise ValueError(f"{where}: cannot decode segmentation ({error})") from error
    return np.ascontiguousarray(mask, dtype=np.uint8)


def check_box(
    bbox: Any, height: int, width: int, where: str
) -> tuple[tuple[float, float, float, float] | None, str | None]:
    """COCO bbox [x, y, w, h] -> (xyxy clipped to the image, None), or (None, problem) when degenerate.

    Raises ValueError naming ``where`` when the bbox is not four finite numbers.
    """
    try:
        values = [float(v) for v in bbox]
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: bbox must be [x, y, w, h] numbers, got {bbox!r}") from err
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"{where}: bbox must be four finite numbers [x, y, w, h], got {bbox!r}")
    x, y, w, h = values
    if w <= 0 or h <= 0:
        return None, f"degenerate bbox {bbox} (w <= 0 or h <= 0)"
    x1, y1 = max(x, 0.0), max(y, 0.0)
    x2, y2 = min(x + w, float(width)), min(y + h, float(height))
    if x2 <= x1 or y2 <= y1:
        return None, f"bbox {bbox} lies outside the {width}x{height} image"
    return (x1, y1, x2, y2), None


def parse_instance(
    ann_id: int,
    label: int,
    segmentation: Any,
    bbox: Any,
    height: int,
    width: int,
    where: str,
    report: Callable[[str, bool], None],
) -> InstanceRecord | None:
    """Check one instance's segmentation and box; None when it must be skipped.

    Each problem is passed to ``report(problem, skipped)`` (which warns or raises); ``skipped`` tells
    whether the whole instance is dropped or only a polygon part. ``bbox`` None: use the box of the mask.
    """
    segmentation, problems = check_segmentation(segmentation, height, width, where)
    for problem in problems:
        report(problem, segmentation is None)
    if segmentation is None:
        return None
    if bbox is None:
        # the box of the mask's pixels (pycocotools' toBbox); a polygon of positive area may still cover
        # no pixel: a zero box then, as toBbox gives (the instance is dropped when its mask is decoded)
        x0, y0, x1, y1 = mask_box(decode_segmentation(segmentation, height, width)) or (0, 0, 0, 0)
        box = (float(x0), float(y0), float(x1), float(y1))
    else:
        checked, box_problem = check_box(bbox, height, width, where)
        if checked is None:
            assert box_problem is not None  # check_box names the problem of every box it rejects
            report(box_problem, True)
            return None
        box = checked
    return InstanceRecord(ann_id=ann_id, label=label, box=box, segmentation=segmentation)


def build_target(
    records: Sequence[InstanceRecord],
    height: int,
    width: int,
    image_id: int,
    on_empty_mask: Callable[[InstanceRecord], None],
) -> tuple[dict[str, Any], list[InstanceRecord]]:
    """Decode the masks of ``records`` into a contract target; returns it and the records it kept.

    A record whose mask decodes to no pixel is passed to ``on_empty_mask`` and left out.
    """
    kept, masks = [], []
    for record in records:
        mask = decode_segmentation(record.segmentation, height, width)  # [H, W]
        if not mask.any():
            on_empty_mask(record)
            continue
        kept.append(record)
        masks.append(torch.from_numpy(mask))
    num = len(kept)
    target = {
        "boxes": torch.tensor([r.box for r in kept], dtype=torch.float32).reshape(num, 4),  # [G, 4]
        "labels": torch.tensor([r.label for r in kept], dtype=torch.int64),  # [G]
        "masks": (
            torch.stack(masks) if masks else torch.zeros((0, height, width), dtype=torch.uint8)
        ),  # [G, H, W]
        "image_id": int(image_id),
        "iscrowd": torch.zeros(num, dtype=torch.uint8),  # [G]
    }
    return target, kept


def category_maps(
    categories: Sequence[dict[str, Any]],
) -> tuple[dict[int, int], dict[int, int], list[str]]:
    """Sorted category ids -> labels 1..C; returns (cat_id_to_label, label_to_cat_id, class_names)."""
    ordered = sorted(categories, key=lambda c: c["id"])
    cat_id_to_label = {c["id"]: k + 1 for k, c in enumerate(ordered)}
    label_to_cat_id = {label: cat_id for cat_id, label in cat_id_to_label.items()}
    class_names = [str(c["name"]) for c in ordered]
    return cat_id_to_label, label_to_cat_id, class_names


def check_categories(categories: list[Any], path: Path) -> None:
    """Each category needs an integer id (unique) and a name."""
    seen = set()
    for k, category in enumerate(categories):
        if not isinstance(category, dict) or not is_int(category.get("id")) or "name" not in category:
            raise ValueError(
                f"{path}: category #{k} must be a dict with an integer 'id' and a 'name', got {category!r}"
            )
        if category["id"] in seen:
            raise ValueError(f"{path}: category id {category['id']} appears twice")
        seen.add(category["id"])


def validate_coco_instances(data: Any, path: Path) -> None:
    """Raise ValueError naming ``path`` unless ``data`` looks like a COCO instances file."""
    if not isinstance(data, dict):
        raise ValueError(
            f"{path} is not a COCO instances file: the top level is a {type(data).__name__}, not an object"
        )
    missing = [key for key in ("images", "annotations", "categories") if key not in data]
    if missing:
        raise ValueError(f"{path} is not a COCO instances file: missing key(s) {missing}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data[key], list):
            raise ValueError(f"{path}: '{key}' must be a list, got {type(data[key]).__name__}")
    seen = set()
    for k, image in enumerate(data["images"]):
        if not isinstance(image, dict):
            raise ValueError(f"{path}: image #{k} is a {type(image).__name__}, not an object")
        problems = [key for key in ("id", "width", "height") if not is_int(image.get(key))]
        if not isinstance(image.get("file_name"), str):
            problems.append("file_name")
        if problems:
            raise ValueError(f"{path}: image #{k} (id {image.get('id')!r}) lacks a valid {problems}")
        if image["width"] <= 0 or image["height"] <= 0:
            raise ValueError(f"{path}: image id {image['id']} has size {image['width']}x{image['height']}")
        if image["id"] in seen:
            raise ValueError(f"{path}: image id {image['id']} appears twice")
        seen.add(image["id"])
    check_categories(data["categories"], path)
    seen = set()
    for k, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            raise ValueError(f"{path}: annotation #{k} is a {type(ann).__name__}, not an object")
        if not is_int(ann.get("id")):
            raise ValueError(f"{path}: annotation #{k} has no integer 'id' (got {ann.get('id')!r})")
        for key in ("image_id", "category_id"):
            if not is_int(ann.get(key)):
                raise ValueError(
                    f"{path}: annotation id {ann['id']} has no integer '{key}' (got {ann.get(key)!r})"
                )
        if ann["id"] in seen:
            raise ValueError(f"{path}: annotation id {ann['id']} appears twice")
        seen.add(ann["id"])
