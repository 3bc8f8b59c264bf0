"""The benchmarks on disk: PNG files with COCO or YouTube-VIS 2019 JSON, the same bytes for a seed.

JSON is written with sorted keys and fixed separators, PNG without a timestamp, and every image
and video from its own random stream, so that one seed always gives byte-identical files. Top to
bottom:

    annotation_fields        a mask -> (RLE, bbox, area), as a COCO annotation stores them
    write_canonical_json     JSON whose bytes depend only on the data (make_data's params.json too)
    generate_image_dataset   images/{train,val}/*.png + annotations/instances_{train,val}.json
    generate_video_dataset   videos/{train,val}/vid_*/*.png + annotations/{train,val}.json
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ...files import write_atomic
from ...geometry import encode_mask, mask_box
from .config import (
    CATEGORY_IDS,
    GENERATOR_VERSION,
    SHAPE_CLASSES,
    SyntheticConfig,
    SyntheticVideoConfig,
    with_overrides,
)
from .scenes import sample_image
from .videos import sample_video


def annotation_fields(mask: np.ndarray) -> tuple[dict[str, Any], list[float], int]:
    """(RLE, bbox, area) of a non-empty bool mask [H, W], as a COCO annotation stores them.

    RLE is pycocotools' compressed form with ``counts`` decoded to str (JSON-ready); bbox is
    [x, y, w, h] of the mask's pixels, so that the xyxy box [x, y, x + w, y + h] holds pixel (x', y')
    exactly when x <= x' < x + w and y <= y' < y + h; area is the pixel count.
    """
    box = mask_box(mask)
    if box is None:
        raise ValueError("annotation_fields: the mask is empty")
    x0, y0, x1, y1 = box
    bbox = [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]
    return encode_mask(mask), bbox, int(mask.sum())


def _categories(classes: Sequence[str]) -> list[dict[str, Any]]:
    """COCO categories of ``classes``, ordered by id."""
    return [
        {"id": CATEGORY_IDS[name], "name": name, "supercategory": "shape"}
        for name in SHAPE_CLASSES
        if name in classes
    ]


def write_canonical_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON with sorted keys and fixed separators, so that equal data gives equal bytes (atomically)."""
    text = (json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n").encode("ascii")
    write_atomic(path, lambda f: f.write(text))


def _write_png(path: Path, image: np.ndarray) -> None:
    """Write uint8 [H, W, 3] as PNG. PIL adds no timestamp, so equal pixels give equal bytes."""
    Image.fromarray(image).save(path, format="PNG", compress_level=1)  # fast, ~7% larger


def _fresh_dir(path: Path) -> Path:
    """Create ``path`` empty, removing a previous generation's files there."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def generate_image_dataset(
    out_dir: str | Path, config: SyntheticConfig | None = None, progress: bool = True, **overrides: Any
) -> dict[str, Path]:
    """Write the image benchmark (PNG images + COCO instances JSON) under ``out_dir``.

    ``overrides`` replace fields of ``config`` (default ``SyntheticConfig()``), e.g.
    ``generate_image_dataset(tmp, num_train=10, num_val=2, seed=1)``. The images of each split
    are written to a fresh ``out_dir/images/<split>``. Returns the paths: ``train_annotations``,
    ``train_images``, ``val_annotations``, ``val_images``.
    """
    config = with_overrides(config or SyntheticConfig(), overrides)
    out_dir = Path(out_dir)
    paths: dict[str, Path] = {}
    for split, count in (("train", config.num_train), ("val", config.num_val)):
        image_dir = _fresh_dir(out_dir / "images" / split)
        images: list[dict[str, Any]] = []
        annotations: list[dict[str, Any]] = []
        for index in tqdm(range(count), desc=f"synthetic images ({split})", disable=not progress):
            sample = sample_image(config, index, split)
            file_name = f"{index:06d}.png"
            _write_png(image_dir / file_name, sample.image)
            image_id = index + 1
            images.append(
                {
                    "id": image_id,
                    "file_name": file_name,
                    "width": config.image_size,
                    "height": config.image_size,
                }
            )
            for mask, name in zip(sample.masks, sample.class_names, strict=True):
                rle, bbox, area = annotation_fields(mask)
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_id,
                        "category_id": CATEGORY_IDS[name],
                        "segmentation": rle,
                        "bbox": bbox,
                        "area": area,
                        "iscrowd": 0,
                    }
                )
        ann_file = out_dir / "annotations" / f"instances_{split}.json"
        write_canonical_json(
            ann_file,
            {
                "info": {
                    "description": "sipmask_ref synthetic adjacent-instance benchmark (images)",
                    "version": GENERATOR_VERSION,
                    "split": split,
                    "config": asdict(config),
                },
                "licenses": [],
                "categories": _categories(config.classes),
                "images": images,
                "annotations": annotations,
            },
        )
        paths[f"{split}_annotations"], paths[f"{split}_images"] = ann_file, image_dir
    return paths


def generate_video_dataset(
    out_dir: str | Path, config: SyntheticVideoConfig | None = None, progress: bool = True, **overrides: Any
) -> dict[str, Path]:
    """Write the video benchmark (PNG frames + YouTube-VIS 2019 JSON) under ``out_dir``.

    Each annotation is one identity: ``segmentations``, ``bboxes`` and ``areas`` hold one entry per
    frame, None in the frames where it is absent. ``overrides`` replace fields of ``config``. Returns
    the paths ``train_annotations``, ``train_videos``, ``val_annotations``, ``val_videos``.
    """
    config = with_overrides(config or SyntheticVideoConfig(), overrides)
    out_dir = Path(out_dir)
    frames, size = config.num_frames, config.image_size
    paths: dict[str, Path] = {}
    for split, count in (("train", config.num_train), ("val", config.num_val)):
        video_root = _fresh_dir(out_dir / "videos" / split)
        videos: list[dict[str, Any]] = []
        annotations: list[dict[str, Any]] = []
        for index in tqdm(range(count), desc=f"synthetic videos ({split})", disable=not progress):
            sample = sample_video(config, index, split)
            folder = f"vid_{index:04d}"
            (video_root / folder).mkdir()
            file_names = [f"{folder}/{t:05d}.png" for t in range(frames)]
            for name, frame in zip(file_names, sample.frames, strict=True):
                _write_png(video_root / name, frame)
            video_id = index + 1
            videos.append(
                {"id": video_id, "width": size, "height": size, "length": frames, "file_names": file_names}
            )
            for name, per_frame in zip(sample.class_names, sample.masks, strict=True):
                encoded = [annotation_fields(m) if m is not None else (None, None, None) for m in per_frame]
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "video_id": video_id,
                        "category_id": CATEGORY_IDS[name],
                        "iscrowd": 0,
                        "segmentations": [e[0] for e in encoded],
                        "bboxes": [e[1] for e in encoded],
                        "areas": [e[2] for e in encoded],
                        "width": size,
                        "height": size,
                        "length": frames,
                    }
                )
        ann_file = out_dir / "annotations" / f"{split}.json"
        write_canonical_json(
            ann_file,
            {
                "info": {
                    "description": "sipmask_ref synthetic adjacent-instance benchmark (videos)",
                    "version": GENERATOR_VERSION,
                    "split": split,
                    "config": asdict(config),
                },
                "licenses": [],
                "categories": _categories(config.classes),
                "videos": videos,
                "annotations": annotations,
            },
        )
        paths[f"{split}_annotations"], paths[f"{split}_videos"] = ann_file, video_root
    return paths
