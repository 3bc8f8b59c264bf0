"""How adjacent are the instances? The benchmark's headline figure, and the statistics of a dataset.

An instance is *adjacent* when at least 10% (``ADJACENCY_THRESHOLD``) of the pixels of its
(visible-mask) bounding box belong to other instances of the same class: the pixels that a single
set of coefficients per box (YOLACT) would leak into its mask. The statistics read COCO and
YouTube-VIS dicts, so they measure any dataset in those formats, not only the synthetic one
(``check-data`` and notebooks 08-10 use them). Top to bottom:

    adjacency_flags              which instances of one image are adjacent, bool [G]
    COCO_AREA_BINS, area_bin     COCO's small / medium / large
    adjacency_stats              a COCO dict: instances, adjacency fraction, per class, sizes
    frames_as_coco, video_stats  a YouTube-VIS dict: identities entering, leaving, coming back; per frame
    format_stats                 a few readable lines of either
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ...geometry import mask_box
from ..coco_annotations import decode_segmentation

ADJACENCY_THRESHOLD = 0.10  # share of a box's pixels that must belong to a same-class neighbour


def adjacency_flags(
    masks: np.ndarray, labels: Sequence[int], threshold: float = ADJACENCY_THRESHOLD
) -> np.ndarray:
    """Which instances of one image are *adjacent* to a same-class instance. bool [G].

    Instance g with visible mask m_g and bounding box b_g (the tightest box around m_g's pixels) is
    adjacent when

        |{pixels p in b_g : p in m_h for some h != g with labels[h] == labels[g]}| >= threshold * |b_g|

    i.e. at least 10% (by default) of the box's pixels belong to other instances of the same class:
    the pixels that a single set of coefficients per box (YOLACT) would leak into g's mask. Pixels of
    other classes do not count; an empty mask is never adjacent. ``masks`` is bool [G, H, W].
    """
    label_array = np.asarray(labels)
    flags = np.zeros(len(masks), dtype=bool)
    for g, mask in enumerate(masks):
        box = mask_box(mask)
        same = label_array == label_array[g]
        same[g] = False
        if box is None or not same.any():
            continue
        x0, y0, x1, y1 = box
        neighbours = masks[same][:, y0:y1, x0:x1].any(axis=0)
        flags[g] = neighbours.sum() >= threshold * (y1 - y0) * (x1 - x0)
    return flags


COCO_AREA_BINS = (("small", 32**2), ("medium", 96**2), ("large", math.inf))  # COCO's area ranges


def area_bin(area: float) -> str:
    """COCO's size name of an instance of ``area`` pixels: 'small' (< 32^2), 'medium' (< 96^2), 'large'."""
    return next(name for name, top in COCO_AREA_BINS if area < top)


_SIDE_BINS = (("<16", 16), ("16-32", 32), ("32-64", 64), (">=64", math.inf))  # longest box side, px


def adjacency_stats(coco: dict[str, Any], threshold: float = ADJACENCY_THRESHOLD) -> dict[str, Any]:
    """Statistics of a COCO instances dict, led by the adjacency fraction of :func:`adjacency_flags`.

    Returns a dict: ``images``, ``instances``, ``instances_per_image`` (mean), ``empty_images``,
    ``adjacent`` (count), ``adjacency`` (fraction of instances that are adjacent), ``threshold``,
    ``per_class`` ({name: {"instances", "adjacent"}}), ``area`` (COCO small/medium/large counts) and
    ``longest_side`` (counts of the box's longest side in the buckets <16, 16-32, 32-64, >=64 px,
    i.e. roughly one FPN level each from stride 8 to 64). Crowd annotations are skipped.
    """
    names = {c["id"]: c["name"] for c in coco["categories"]}
    by_image: dict[int, list[dict[str, Any]]] = {image["id"]: [] for image in coco["images"]}
    for ann in coco["annotations"]:
        if ann["image_id"] not in by_image:
            raise ValueError(f"annotation {ann['id']}: unknown image_id {ann['image_id']}")
        if ann["category_id"] not in names:
            raise ValueError(f"annotation {ann['id']}: unknown category_id {ann['category_id']}")
        if not ann.get("iscrowd", 0):
            by_image[ann["image_id"]].append(ann)
    per_class = {name: {"instances": 0, "adjacent": 0} for name in names.values()}
    area_bins = {name: 0 for name, _ in COCO_AREA_BINS}
    side_bins = {name: 0 for name, _ in _SIDE_BINS}
    adjacent = instances = empty = 0
    for image in coco["images"]:
        anns = by_image[image["id"]]
        empty += not anns
        if not anns:
            continue
        masks = np.stack(
            [
                decode_segmentation(
                    a["segmentation"], image["height"], image["width"], f"annotation {a['id']}"
                ).astype(bool)
                for a in anns
            ]
        )
        flags = adjacency_flags(masks, [a["category_id"] for a in anns], threshold)
        for ann, mask, flag in zip(anns, masks, flags, strict=True):
            name = names[ann["category_id"]]
            per_class[name]["instances"] += 1
            per_class[name]["adjacent"] += int(flag)
            area = int(mask.sum())
            area_bins[area_bin(area)] += 1
            box = mask_box(mask)
            side = max(box[2] - box[0], box[3] - box[1]) if box is not None else 0
            side_bins[next(n for n, top in _SIDE_BINS if side < top)] += 1
        instances += len(anns)
        adjacent += int(flags.sum())
    num_images = len(coco["images"])
    return {
        "images": num_images,
        "instances": instances,
        "instances_per_image": instances / num_images if num_images else 0.0,
        "empty_images": empty,
        "adjacent": adjacent,
        "adjacency": adjacent / instances if instances else 0.0,
        "threshold": threshold,
        "per_class": per_class,
        "area": area_bins,
        "longest_side": side_bins,
    }


def frames_as_coco(ytvis: dict[str, Any]) -> dict[str, Any]:
    """A YouTube-VIS dict seen as a COCO dict with one image per frame (for per-frame statistics)."""
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    frame_ids: dict[tuple[int, int], int] = {}
    for video in ytvis["videos"]:
        for t, file_name in enumerate(video["file_names"]):
            frame_ids[video["id"], t] = len(images) + 1
            images.append(
                {
                    "id": len(images) + 1,
                    "file_name": file_name,
                    "width": video["width"],
                    "height": video["height"],
                }
            )
    for ann in ytvis["annotations"]:
        for t, segmentation in enumerate(ann["segmentations"]):
            if segmentation is None:
                continue
            if (ann["video_id"], t) not in frame_ids:
                raise ValueError(f"annotation {ann['id']}: video {ann['video_id']} has no frame {t}")
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": frame_ids[ann["video_id"], t],
                    "category_id": ann["category_id"],
                    "segmentation": segmentation,
                    "iscrowd": ann.get("iscrowd", 0),
                }
            )
    return {"categories": ytvis["categories"], "images": images, "annotations": annotations}


def video_stats(ytvis: dict[str, Any], threshold: float = ADJACENCY_THRESHOLD) -> dict[str, Any]:
    """Statistics of a YouTube-VIS dict.

    Returns ``videos``, ``frames``, ``identities``, ``identities_per_video``, ``entering`` (absent in
    the first frame, present later), ``leaving`` (present, then absent in the last frame),
    ``reappearing`` (absent between two frames where present: left the frame or was hidden, then
    came back) and ``per_frame``: :func:`adjacency_stats` over all frames as images.
    """
    entering = leaving = reappearing = 0
    for ann in ytvis["annotations"]:
        present = [s is not None for s in ann["segmentations"]]
        if not any(present):
            continue
        first, last = present.index(True), len(present) - 1 - present[::-1].index(True)
        entering += first > 0
        leaving += last < len(present) - 1
        reappearing += not all(present[first : last + 1])
    num_videos = len(ytvis["videos"])
    return {
        "videos": num_videos,
        "frames": sum(v["length"] for v in ytvis["videos"]),
        "identities": len(ytvis["annotations"]),
        "identities_per_video": len(ytvis["annotations"]) / num_videos if num_videos else 0.0,
        "entering": entering,
        "leaving": leaving,
        "reappearing": reappearing,
        "per_frame": adjacency_stats(frames_as_coco(ytvis), threshold),
    }


def format_stats(stats: dict[str, Any], title: str = "") -> str:
    """A few readable lines for the output of :func:`adjacency_stats` or :func:`video_stats`."""
    lines = [title] if title else []
    if "videos" in stats:
        lines.append(
            f"  videos {stats['videos']}, frames {stats['frames']}, identities "
            f"{stats['identities']} ({stats['identities_per_video']:.1f} per video): "
            f"{stats['entering']} enter, {stats['leaving']} leave, "
            f"{stats['reappearing']} disappear and come back"
        )
        stats = stats["per_frame"]
        lines.append("  per frame:")
    lines.append(
        f"  images {stats['images']}, instances {stats['instances']} "
        f"({stats['instances_per_image']:.1f} per image, {stats['empty_images']} empty images)"
    )
    lines.append(
        f"  adjacency {stats['adjacency']:.1%} ({stats['adjacent']} instances with >= "
        f"{stats['threshold']:.0%} of their box on a same-class neighbour)"
    )
    lines.append(
        "  per class: "
        + ", ".join(
            f"{name} {c['instances']} ({c['adjacent'] / c['instances'] if c['instances'] else 0:.0%} adj.)"
            for name, c in stats["per_class"].items()
        )
    )
    lines.append(
        "  COCO area: "
        + ", ".join(f"{k} {v}" for k, v in stats["area"].items())
        + " | longest side (px): "
        + ", ".join(f"{k} {v}" for k, v in stats["longest_side"].items())
    )
    return "\n".join(lines)
