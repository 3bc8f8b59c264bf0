"""YouTube-VIS 2019 dataset: video frames with tracked instance masks (§3.5, video instance segmentation).

The JSON has ``videos`` (id, width, height, length, file_names), ``categories`` and ``annotations``; an
annotation is one object through the whole video: id, video_id, category_id, iscrowd, and per frame a
``segmentations`` entry (RLE dict / polygon list / None when the object is not visible), a ``bboxes`` entry
([x, y, w, h] or None) and ``areas``. Test / validation JSONs have no annotations; that is allowed.

``YTVISDataset(ann_file, video_dir, mode=...)`` has three views:

    'pairs'   training (§3.5): one item per frame with at least one object, returning
              (image, target, ref_image, ref_target); the reference frame is drawn uniformly from the
              OTHER annotated frames of the same video (the frame itself when it is the only one).
    'frames'  every frame of every video in order, (image, target); G = 0 where nothing is annotated.
    'images'  the annotated frames as independent (image, target) items, like a COCO image dataset.

Targets follow the data contract of ``coco.py`` (boxes, labels, masks, image_id, iscrowd) plus
``obj_ids`` int64 [G] (the annotation ids: an object's identity across frames, kept when it leaves the
view and comes back), ``frame_index`` and ``video_id`` (python ints). A frame's ``image_id`` is
``video_id * FRAME_ID_STRIDE + frame_index``.

Decisions:
- Reference sampling is reproducible: item ``i`` draws from a ``torch.Generator`` seeded from
  (seed, epoch, i); call ``set_epoch`` each epoch to get new references, independent of DataLoader workers.
- ``transforms`` are applied to a frame and its reference with the same random draws (both flipped or
  neither), and in ``iter_video`` to all frames of the video alike; see ``transforms.apply_same_transform``.
- A ``None`` segmentation means the object is absent from that frame (a box without a mask also counts as
  absent: there is no mask target). A missing bbox is replaced by the box of the mask.
- Errors and warnings follow ``coco.py``: a wrong file (not YouTube-VIS, unknown video / category,
  per-frame lists whose length is not the video length) raises ValueError naming the file and annotation
  id; degenerate geometry in one frame is skipped with an ``AnnotationWarning`` (or raises with
  ``skip_invalid=False``); a missing frame file raises FileNotFoundError naming the path and video id when
  the frame is loaded; ``check_files()`` checks all files at once.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..files import read_json
from .coco import Transform
from .coco_annotations import (
    AnnotationWarning,
    InstanceRecord,
    build_target,
    category_maps,
    check_categories,
    is_int,
    parse_instance,
)
from .image_files import load_rgb_image
from .transforms import apply_same_transform, transform_with_seed, transformed_target

MODES = ("pairs", "frames", "images")
FRAME_ID_STRIDE = 100_000  # image_id of a frame = video_id * FRAME_ID_STRIDE + frame_index


def frame_image_id(video_id: int, frame_index: int) -> int:
    """The ``image_id`` given to frame ``frame_index`` of video ``video_id``."""
    return video_id * FRAME_ID_STRIDE + frame_index


def validate_ytvis(data: Any, path: Path) -> None:
    """Raise ValueError naming ``path`` unless ``data`` looks like a YouTube-VIS file."""
    if not isinstance(data, dict):
        raise ValueError(
            f"{path} is not a YouTube-VIS file: the top level is a {type(data).__name__}, not an object"
        )
    for key in ("videos", "categories"):
        if key not in data:
            hint = " (it has 'images': a COCO image file? use CocoInstances)" if "images" in data else ""
            raise ValueError(f"{path} is not a YouTube-VIS file: missing key '{key}'{hint}")
        if not isinstance(data[key], list):
            raise ValueError(f"{path}: '{key}' must be a list, got {type(data[key]).__name__}")
    annotations = data.get("annotations")
    if annotations is not None and not isinstance(annotations, list):
        raise ValueError(
            f"{path}: 'annotations' must be a list (or absent), got {type(annotations).__name__}"
        )
    seen = set()
    for k, video in enumerate(data["videos"]):
        if not isinstance(video, dict):
            raise ValueError(f"{path}: video #{k} is a {type(video).__name__}, not an object")
        problems = [key for key in ("id", "width", "height") if not is_int(video.get(key))]
        names = video.get("file_names")
        if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
            problems.append("file_names")
        if problems:
            raise ValueError(f"{path}: video #{k} (id {video.get('id')!r}) lacks a valid {problems}")
        file_names: list[str] = video["file_names"]
        if video["width"] <= 0 or video["height"] <= 0:
            raise ValueError(f"{path}: video id {video['id']} has size {video['width']}x{video['height']}")
        if "length" in video and video["length"] != len(file_names):
            raise ValueError(
                f"{path}: video id {video['id']} has length {video['length']} "
                f"but {len(file_names)} file_names"
            )
        if len(file_names) >= FRAME_ID_STRIDE:
            raise ValueError(f"{path}: video id {video['id']} has more than {FRAME_ID_STRIDE - 1} frames")
        if video["id"] in seen:
            raise ValueError(f"{path}: video id {video['id']} appears twice")
        seen.add(video["id"])
    check_categories(data["categories"], path)
    seen = set()
    for k, ann in enumerate(annotations or []):
        if not isinstance(ann, dict):
            raise ValueError(f"{path}: annotation #{k} is a {type(ann).__name__}, not an object")
        if not is_int(ann.get("id")):
            raise ValueError(f"{path}: annotation #{k} has no integer 'id' (got {ann.get('id')!r})")
        for key in ("video_id", "category_id"):
            if not is_int(ann.get(key)):
                raise ValueError(
                    f"{path}: annotation id {ann['id']} has no integer '{key}' (got {ann.get(key)!r})"
                )
        if not isinstance(ann.get("segmentations"), list):
            raise ValueError(f"{path}: annotation id {ann['id']} has no 'segmentations' list")
        if ann["id"] in seen:
            raise ValueError(f"{path}: annotation id {ann['id']} appears twice")
        seen.add(ann["id"])


class YTVISDataset(Dataset):
    """A YouTube-VIS JSON + folder of frame images (see the module docstring for items and decisions).

    Args:
        ann_file: the YouTube-VIS JSON.
        video_dir: folder the ``file_names`` entries are relative to (e.g. ``train/JPEGImages``).
        transforms: optional callable ``(image, target) -> (image, target)``.
        mode: 'pairs' (training pairs), 'frames' (every frame) or 'images' (annotated frames).
        seed: seed of the reference-frame sampling (mode 'pairs').
        skip_invalid: True: degenerate per-frame geometry is skipped with a warning; False: ValueError.
    """

    def __init__(
        self,
        ann_file: str | os.PathLike[str],
        video_dir: str | os.PathLike[str],
        transforms: Transform | None = None,
        mode: str = "pairs",
        seed: int = 0,
        skip_invalid: bool = True,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not is_int(seed) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.ann_file = Path(ann_file)
        self.video_dir = Path(video_dir)
        self.transforms = transforms
        self.mode = mode
        self.seed = seed
        self.epoch = 0
        self.skip_invalid = skip_invalid

        self.data = read_json(self.ann_file, "annotation")  # the parsed JSON, e.g. for evaluation
        validate_ytvis(self.data, self.ann_file)
        self.cat_id_to_label, self.label_to_cat_id, self.class_names = category_maps(self.data["categories"])
        self.videos: list[dict[str, Any]] = list(self.data["videos"])
        self._index_of_video = {video["id"]: k for k, video in enumerate(self.videos)}

        # instances[v][f]: the usable objects of frame f of video v
        self.instances: list[list[list[InstanceRecord]]] = [
            [[] for _ in video["file_names"]] for video in self.videos
        ]
        self.skipped_annotations: dict[tuple[int, int], str] = {}  # (annotation id, frame) -> reason
        self._warned_empty: set[tuple[int, int]] = set()
        for ann in self.data.get("annotations") or []:
            self._parse_annotation(ann)

        # annotated_frames[v]: frames of video v with at least one object, in order
        self.annotated_frames: list[list[int]] = [
            [f for f, records in enumerate(frames) if records] for frames in self.instances
        ]
        if mode == "frames":
            self.items = [
                (v, f) for v, video in enumerate(self.videos) for f in range(len(video["file_names"]))
            ]
        else:
            self.items = [(v, f) for v, frames in enumerate(self.annotated_frames) for f in frames]

    def _parse_annotation(self, ann: dict[str, Any]) -> None:
        """Check one object track and store its usable frames in ``instances``."""
        where = f"annotation id {ann['id']} in {self.ann_file}"
        if ann["video_id"] not in self._index_of_video:
            raise ValueError(f"{where} refers to video id {ann['video_id']}, which is not in 'videos'")
        if ann["category_id"] not in self.cat_id_to_label:
            raise ValueError(
                f"{where} refers to category id {ann['category_id']}, which is not in 'categories'"
            )
        v = self._index_of_video[ann["video_id"]]
        video = self.videos[v]
        length = len(video["file_names"])
        segmentations = ann["segmentations"]
        bboxes = ann.get("bboxes")
        per_frame_lists = (("segmentations", segmentations), ("bboxes", bboxes), ("areas", ann.get("areas")))
        for key, values in per_frame_lists:
            if values is not None and (not isinstance(values, list) or len(values) != length):
                got = f"{len(values)} entries" if isinstance(values, list) else f"a {type(values).__name__}"
                raise ValueError(f"{where}: '{key}' has {got} but video id {video['id']} has {length} frames")
        if ann.get("iscrowd", 0):
            return  # crowd regions are not training targets
        for f, segmentation in enumerate(segmentations):
            if segmentation is None:
                continue  # the object is not visible in this frame
            frame_where = f"annotation id {ann['id']} (video id {video['id']}, frame {f}) in {self.ann_file}"
            record = parse_instance(
                ann_id=ann["id"],
                label=self.cat_id_to_label[ann["category_id"]],
                segmentation=segmentation,
                bbox=None if bboxes is None else bboxes[f],
                height=video["height"],
                width=video["width"],
                where=frame_where,
                report=functools.partial(self._report, (ann["id"], f), frame_where),
            )
            if record is not None:
                self.instances[v][f].append(record)

    def _report(self, key: tuple[int, int], where: str, problem: str, skipped: bool) -> None:
        """Warn about (or, when skip_invalid is False, raise for) degenerate geometry in one frame."""
        if not self.skip_invalid:
            raise ValueError(f"{where}: {problem} (skip_invalid=False)")
        consequence = "object skipped in this frame" if skipped else "that polygon is dropped"
        warnings.warn(f"{where}: {problem}; {consequence}", AnnotationWarning, stacklevel=5)
        if skipped:
            self.skipped_annotations.setdefault(key, problem)

    def _on_empty_mask(self, record: InstanceRecord, video_id: int, frame_index: int) -> None:
        """A polygon that covers no pixel once rasterised: warn once per (object, frame), then skip."""
        key = (record.ann_id, frame_index)
        if key in self._warned_empty:
            return
        self._warned_empty.add(key)
        problem = "its polygons cover no pixel"
        self.skipped_annotations.setdefault(key, problem)
        warnings.warn(
            f"annotation id {record.ann_id} (video id {video_id}, frame {frame_index}) in {self.ann_file}: "
            f"{problem}; object skipped in this frame",
            AnnotationWarning,
            stacklevel=6,
        )

    # ----------------------------------------------------------------------------------------------------
    # Loading
    # ----------------------------------------------------------------------------------------------------

    def frame_path(self, video_index: int, frame_index: int) -> Path:
        """Where frame ``frame_index`` of the ``video_index``-th video is read from."""
        return self.video_dir / self.videos[video_index]["file_names"][frame_index]

    def frame_file(self, video_index: int, frame_index: int) -> tuple[Path, tuple[int, int], str]:
        """(path, (width, height) from the JSON, name in messages) of a frame."""
        video = self.videos[video_index]
        owner = f"video id {video['id']}, frame {frame_index}"
        return self.frame_path(video_index, frame_index), (video["width"], video["height"]), owner

    def load_frame_image(self, video_index: int, frame_index: int) -> Tensor:
        """The image of a frame, float32 [3, H, W]; its file must exist, decode and have the video's size
        (FileNotFoundError, OSError or ValueError naming the file, the video id and the frame otherwise)."""
        return load_rgb_image(*self.frame_file(video_index, frame_index))

    def load_frame(self, video_index: int, frame_index: int) -> tuple[Tensor, dict[str, Any]]:
        """Frame ``frame_index`` of video number ``video_index``, before transforms: (image, target)."""
        video = self.videos[video_index]
        height, width = video["height"], video["width"]
        image = self.load_frame_image(video_index, frame_index)
        target, kept = build_target(
            self.instances[video_index][frame_index],
            height,
            width,
            frame_image_id(video["id"], frame_index),
            lambda record: self._on_empty_mask(record, video["id"], frame_index),
        )
        target["obj_ids"] = torch.tensor([r.ann_id for r in kept], dtype=torch.int64)  # [G]
        target["frame_index"] = int(frame_index)
        target["video_id"] = int(video["id"])
        return image, target

    def set_epoch(self, epoch: int) -> None:
        """Change the reference frames drawn in mode 'pairs' (call once per epoch)."""
        self.epoch = int(epoch)

    def sample_reference(self, index: int) -> int:
        """Frame index of the reference frame of pair item ``index``: uniform over the other annotated frames.

        The generator is seeded from (seed, epoch, index), so the choice does not depend on worker order.
        """
        video_index, frame_index = self.items[index]
        candidates = [f for f in self.annotated_frames[video_index] if f != frame_index]
        if not candidates:  # the only annotated frame of its video: it is its own reference
            return frame_index
        state = np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1, dtype=np.uint64)
        generator = torch.Generator().manual_seed(int(state[0]))
        pick = int(torch.randint(len(candidates), (), generator=generator).item())
        return candidates[pick]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        index = index % len(self)
        video_index, frame_index = self.items[index]
        image, target = self.load_frame(video_index, frame_index)
        if self.mode != "pairs":
            if self.transforms is not None:
                image, transformed = self.transforms(image, target)
                target = transformed_target(transformed, "YTVISDataset")
            return image, target
        ref_image, ref_target = self.load_frame(video_index, self.sample_reference(index))
        if self.transforms is not None:
            (image, transformed), (ref_image, ref_transformed) = apply_same_transform(
                self.transforms, [(image, target), (ref_image, ref_target)]
            )
            target = transformed_target(transformed, "YTVISDataset")
            ref_target = transformed_target(ref_transformed, "YTVISDataset")
        return image, target, ref_image, ref_target

    def iter_video(self, video_index: int) -> Iterator[tuple[int, Tensor, dict[str, Any]]]:
        """Yield ``(frame_index, image, target)`` for every frame of the ``video_index``-th video, in order.

        ``transforms`` make the same random draws on every frame of the video.
        """
        if not 0 <= video_index < len(self.videos):
            raise IndexError(f"video index {video_index} out of range for {len(self.videos)} videos")
        seed = int(torch.randint(0, 2**62, ()).item())
        for frame_index in range(len(self.videos[video_index]["file_names"])):
            image, target = self.load_frame(video_index, frame_index)
            if self.transforms is not None:
                image, transformed = transform_with_seed(self.transforms, image, target, seed)
                target = transformed_target(transformed, "YTVISDataset")
            yield frame_index, image, target

    def video_frames(self, video_id: int) -> Iterator[tuple[int, Tensor, dict[str, Any]]]:
        """:meth:`iter_video` for the video with JSON id ``video_id``."""
        if video_id not in self._index_of_video:
            raise KeyError(f"video id {video_id} is not in {self.ann_file}")
        return self.iter_video(self._index_of_video[video_id])

    def check_files(self) -> None:
        """Verify that every frame file exists; FileNotFoundError listing the first missing ones."""
        missing, total = [], 0
        for v, video in enumerate(self.videos):
            for f in range(len(video["file_names"])):
                total += 1
                path = self.frame_path(v, f)
                if not path.is_file():
                    missing.append(f"{path} (video id {video['id']}, frame {f})")
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} of {total} frame files listed in {self.ann_file} are missing, e.g. "
                + "; ".join(missing[:5])
            )

    def __repr__(self) -> str:
        return (
            f"YTVISDataset({self.ann_file}, mode={self.mode!r}, {len(self.videos)} videos, "
            f"{len(self)} items, {len(self.class_names)} classes)"
        )
