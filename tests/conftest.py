"""Shared fixtures: tiny COCO and YouTube-VIS datasets written into tmp_path.

Every mask is drawn here with NumPy, so tests can compare decoded masks with the drawn shape. Images are
HEIGHT x WIDTH = 32 x 48. Category ids are deliberately non-contiguous and listed out of order.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from sipmask_ref.config import preset
from sipmask_ref.data.coco import CocoInstances
from sipmask_ref.data.synthetic import generate_video_dataset, make_data
from sipmask_ref.model import SipMask

HEIGHT, WIDTH = 32, 48

# tests/browser/ (notebook 10's widgets in JupyterLab and Chromium) needs the notebooks' fast-mode
# checkpoints and about a minute: `make test` runs it after nbval has trained them, `make browser-test`
# on its own. A plain `pytest tests` leaves it out; `pytest tests/browser` runs it.
collect_ignore = ["browser"]


# --------------------------------------------------------------------------------------------------------
# Helpers (plain functions, importable from tests as `from conftest import ...`)
# --------------------------------------------------------------------------------------------------------


def tiny_synthetic(root: Path, num_train: int = 4, num_val: int = 2) -> Path:
    """A synthetic image benchmark of 64 x 64 images under `root` (no videos), quietly; `root`."""
    make_data(
        root=root,
        image_size=64,
        num_train=num_train,
        num_val=num_val,
        video=False,
        progress=False,
        verbose=False,
    )
    return root


def without_gradient(model: torch.nn.Module) -> list[str]:
    """Names of the trainable parameters that the last backward pass did not reach (engine.train's
    DistributedDataParallel runs without find_unused_parameters, so there must be none)."""
    return [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]


def uncompressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO uncompressed RLE of a 0/1 mask [H, W], computed by hand: run lengths in column-major order,
    starting with a (possibly empty) run of zeros."""
    flat = np.asarray(mask, dtype=np.uint8).flatten(order="F")
    counts, current, run = [], 0, 0
    for value in flat:
        if value != current:
            counts.append(run)
            current, run = value, 0
        run += 1
    counts.append(run)
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(c) for c in counts]}


def compressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO compressed RLE (counts as a string, as in JSON files) of a 0/1 mask [H, W]."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": rle["counts"].decode("ascii")}


def mask_bbox(mask: np.ndarray) -> list[float]:
    """COCO bbox [x, y, w, h] of the pixels of a mask (pixel edges)."""
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def rect_mask(x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    """0/1 mask with columns x1..x2-1 and rows y1..y2-1 set."""
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    mask[y1:y2, x1:x2] = 1
    return mask


def triangle_mask() -> np.ndarray:
    """A right triangle below the diagonal of the square rows 4..19, columns 6..21."""
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    for row in range(16):
        mask[4 + row, 6 : 6 + row + 1] = 1
    return mask


def make_sample(height: int = 20, width: int = 30) -> tuple[torch.Tensor, dict]:
    """(image [3, H, W], target) for the transform tests: two rectangular instances whose boxes are
    their masks' pixel extents."""
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(3, height, width, generator=generator)
    masks = torch.zeros(2, height, width, dtype=torch.uint8)
    masks[0, 2:9, 3:11] = 1  # rows 2..8, columns 3..10
    masks[1, 10:18, 15:29] = 1
    target = {
        "boxes": torch.tensor([[3.0, 2.0, 11.0, 9.0], [15.0, 10.0, 29.0, 18.0]]),
        "labels": torch.tensor([1, 2]),
        "masks": masks,
        "image_id": 5,
        "iscrowd": torch.zeros(2, dtype=torch.uint8),
    }
    return image, target


def mask_extent(mask: torch.Tensor) -> list[float]:
    """xyxy pixel-edge box of a mask [H, W]."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def empty_target(height: int, width: int) -> dict:
    return {
        "boxes": torch.zeros(0, 4),
        "labels": torch.zeros(0, dtype=torch.int64),
        "masks": torch.zeros(0, height, width, dtype=torch.uint8),
        "image_id": 0,
        "iscrowd": torch.zeros(0, dtype=torch.uint8),
    }


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def random_pixels(seed: int, channels: int) -> np.ndarray:
    """Deterministic random uint8 pixels [H, W, channels] (or [H, W] for one channel)."""
    rng = np.random.default_rng(seed)
    shape = (HEIGHT, WIDTH) if channels == 1 else (HEIGHT, WIDTH, channels)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


# --------------------------------------------------------------------------------------------------------
# COCO
# --------------------------------------------------------------------------------------------------------

# The polygon of annotation 101: a rectangle with corners (4, 2) and (20, 12); pycocotools fills
# columns 4..19 and rows 2..11.
POLYGON = [4.0, 2.0, 20.0, 2.0, 20.0, 12.0, 4.0, 12.0]


@dataclass
class CocoFiles:
    """A tiny COCO dataset on disk plus what was drawn into it."""

    root: Path
    image_dir: Path
    ann_file: Path
    data: dict[str, Any]
    masks: dict[int, np.ndarray]  # annotation id -> drawn mask [H, W]
    pixels: dict[str, np.ndarray] = field(default_factory=dict)  # file name -> stored pixels

    def write(self, data: dict[str, Any], name: str = "variant.json") -> Path:
        """Write a modified copy of the annotations next to the original; returns its path."""
        return write_json(self.root / name, data)

    def copy(self) -> dict[str, Any]:
        return copy.deepcopy(self.data)


def load_coco(files: CocoFiles, **kwargs: Any) -> CocoInstances:
    """The CocoInstances of a CocoFiles (keyword arguments: CocoInstances')."""
    return CocoInstances(files.ann_file, files.image_dir, **kwargs)


def item_by_image_id(dataset: CocoInstances, image_id: int) -> tuple[torch.Tensor, dict[str, Any]]:
    """The item of ``dataset`` whose JSON image id is ``image_id``."""
    index = next(k for k, info in enumerate(dataset.images) if info["id"] == image_id)
    return dataset[index]


@pytest.fixture
def coco_files(tmp_path: Path) -> CocoFiles:
    """Images: rgb.png (RGB, 3 annotations incl. a crowd one), gray.png (L, 1 annotation),
    rgba.png (RGBA, no annotation: a negative). Categories 7 'dog' and 3 'cat' (-> labels 2 and 1)."""
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    pixels = {
        "rgb.png": random_pixels(1, 3),
        "gray.png": random_pixels(2, 1),
        "rgba.png": random_pixels(3, 4),
    }
    Image.fromarray(pixels["rgb.png"]).save(image_dir / "rgb.png")
    Image.fromarray(pixels["gray.png"]).save(image_dir / "gray.png")
    Image.fromarray(pixels["rgba.png"]).save(image_dir / "rgba.png")

    polygon_mask = rect_mask(4, 2, 20, 12)
    ring = rect_mask(24, 16, 44, 28)
    ring[20:24, 30:36] = 0  # a hole: RLE can hold it, a box cannot
    crowd = rect_mask(0, 20, 16, 32)
    triangle = triangle_mask()
    masks = {101: polygon_mask, 102: ring, 103: crowd, 104: triangle}

    data = {
        "info": {"description": "sipmask_ref test fixture"},
        "images": [
            {"id": 1, "file_name": "rgb.png", "width": WIDTH, "height": HEIGHT},
            {"id": 2, "file_name": "gray.png", "width": WIDTH, "height": HEIGHT},
            {"id": 3, "file_name": "rgba.png", "width": WIDTH, "height": HEIGHT},
        ],
        "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}],
        "annotations": [
            {
                "id": 101,
                "image_id": 1,
                "category_id": 7,
                "iscrowd": 0,
                "segmentation": [POLYGON],
                "bbox": [4.0, 2.0, 16.0, 10.0],
                "area": 160.0,
            },
            {
                "id": 102,
                "image_id": 1,
                "category_id": 3,
                "iscrowd": 0,
                "segmentation": compressed_rle(ring),
                "bbox": mask_bbox(ring),
                "area": float(ring.sum()),
            },
            {
                "id": 103,
                "image_id": 1,
                "category_id": 3,
                "iscrowd": 1,
                "segmentation": uncompressed_rle(crowd),
                "bbox": mask_bbox(crowd),
                "area": float(crowd.sum()),
            },
            {
                "id": 104,
                "image_id": 2,
                "category_id": 7,
                "iscrowd": 0,
                "segmentation": uncompressed_rle(triangle),
                "bbox": mask_bbox(triangle),
                "area": float(triangle.sum()),
            },
        ],
    }
    ann_file = write_json(tmp_path / "instances.json", data)
    return CocoFiles(
        root=tmp_path, image_dir=image_dir, ann_file=ann_file, data=data, masks=masks, pixels=pixels
    )


# --------------------------------------------------------------------------------------------------------
# YouTube-VIS
# --------------------------------------------------------------------------------------------------------


@dataclass
class YtvisFiles:
    """A tiny YouTube-VIS dataset on disk plus what was drawn into it."""

    root: Path
    video_dir: Path
    ann_file: Path
    data: dict[str, Any]
    masks: dict[tuple[int, int], np.ndarray]  # (annotation id, frame) -> drawn mask [H, W]

    def write(self, data: dict[str, Any], name: str = "variant.json") -> Path:
        return write_json(self.root / name, data)

    def copy(self) -> dict[str, Any]:
        return copy.deepcopy(self.data)


def frame_pixels(video_id: int, frame_index: int) -> np.ndarray:
    """The RGB pixels stored for a frame (distinct per frame)."""
    return random_pixels(1000 * video_id + frame_index, 3)


@pytest.fixture
def ytvis_files(tmp_path: Path) -> YtvisFiles:
    """Three videos (ids 10, 20, 30; categories 5 'person' and 2 'car' -> labels 2 and 1):

    - video 10 'walk', 4 frames. Object 11 (person) in frames 0, 1, 3 (absent, None, in frame 2: it leaves
      and comes back; frame 3 is a polygon, the others RLE). Object 12 (car) only in frame 1.
      Annotated frames: 0, 1, 3.
    - video 20 'still', 1 frame. Object 13 (person) in frame 0.
    - video 30 'empty', 3 frames, no objects.
    """
    video_dir = tmp_path / "JPEGImages"
    videos = [(10, "walk", 4), (20, "still", 1), (30, "empty", 3)]
    video_entries = []
    for video_id, name, length in videos:
        (video_dir / name).mkdir(parents=True)
        file_names = []
        for f in range(length):
            file_name = f"{name}/{f:05d}.png"
            Image.fromarray(frame_pixels(video_id, f)).save(video_dir / file_name)
            file_names.append(file_name)
        video_entries.append(
            {"id": video_id, "width": WIDTH, "height": HEIGHT, "length": length, "file_names": file_names}
        )

    masks = {
        (11, 0): rect_mask(2, 2, 12, 10),
        (11, 1): rect_mask(4, 3, 14, 11),
        (11, 3): rect_mask(8, 6, 18, 14),  # drawn as the polygon below
        (12, 1): rect_mask(30, 18, 44, 30),
        (13, 0): triangle_mask(),
    }
    walk_polygon = [8.0, 6.0, 18.0, 6.0, 18.0, 14.0, 8.0, 14.0]

    def track(
        ann_id: int, video_id: int, category_id: int, length: int, frames: dict[int, Any]
    ) -> dict[str, Any]:
        segmentations, bboxes, areas = [], [], []
        for f in range(length):
            if f in frames:
                segmentations.append(frames[f])
                bboxes.append(mask_bbox(masks[(ann_id, f)]))
                areas.append(float(masks[(ann_id, f)].sum()))
            else:
                segmentations.append(None)
                bboxes.append(None)
                areas.append(None)
        return {
            "id": ann_id,
            "video_id": video_id,
            "category_id": category_id,
            "iscrowd": 0,
            "segmentations": segmentations,
            "bboxes": bboxes,
            "areas": areas,
            "width": WIDTH,
            "height": HEIGHT,
            "length": 1,
        }

    data = {
        "info": {"description": "sipmask_ref test fixture"},
        "videos": video_entries,
        "categories": [{"id": 5, "name": "person"}, {"id": 2, "name": "car"}],
        "annotations": [
            track(
                11,
                10,
                5,
                4,
                {0: uncompressed_rle(masks[(11, 0)]), 1: compressed_rle(masks[(11, 1)]), 3: [walk_polygon]},
            ),
            track(12, 10, 2, 4, {1: uncompressed_rle(masks[(12, 1)])}),
            track(13, 20, 5, 1, {0: uncompressed_rle(masks[(13, 0)])}),
        ],
    }
    ann_file = write_json(tmp_path / "ytvis.json", data)
    return YtvisFiles(root=tmp_path, video_dir=video_dir, ann_file=ann_file, data=data, masks=masks)


# --------------------------------------------------------------------------------------------------------
# Synthetic benchmark
# --------------------------------------------------------------------------------------------------------

SMALL_SYNTHETIC_VIDEOS = dict(num_train=3, num_val=1, num_frames=8)  # the videos of synthetic_video_set


@pytest.fixture(scope="module")
def synthetic_video_set(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The synthetic video benchmark of SMALL_SYNTHETIC_VIDEOS, written once per test module; its paths."""
    return generate_video_dataset(tmp_path_factory.mktemp("vid"), progress=False, **SMALL_SYNTHETIC_VIDEOS)


# --------------------------------------------------------------------------------------------------------
# The explorer (tests/test_explorer.py, tests/test_explorer_maps.py)
# --------------------------------------------------------------------------------------------------------

EXPLORER_SIZE = 64


class ExplorerImages:
    """Two 64 x 64 images with two square instances each (labels 1 and 2), for the explorer."""

    class_names: ClassVar[list[str]] = ["a", "b"]

    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(0)
        self.items = []
        for k in range(2):
            image = torch.rand(3, EXPLORER_SIZE, EXPLORER_SIZE, generator=generator)
            boxes = torch.tensor([[4.0 + k, 6.0, 30.0, 28.0], [34.0, 30.0 + k, 60.0, 58.0]])
            masks = torch.zeros(2, EXPLORER_SIZE, EXPLORER_SIZE, dtype=torch.uint8)
            for g, (x1, y1, x2, y2) in enumerate(boxes.int().tolist()):
                masks[g, y1:y2, x1:x2] = 1
            self.items.append(
                (image, {"boxes": boxes, "labels": torch.tensor([1, 2]), "masks": masks, "image_id": k + 1})
            )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        return self.items[index]


def explorer_model(sub_regions=(2, 2), score_threshold: float = 0.0) -> SipMask:
    """An untrained cpu_tiny SipMask for ExplorerImages, in eval mode (the same weights each call)."""
    torch.manual_seed(0)
    config = dataclasses.replace(
        preset("cpu_tiny"),
        num_classes=2,
        input_size=(EXPLORER_SIZE, EXPLORER_SIZE),
        sub_regions=sub_regions,
        score_threshold=score_threshold,
        max_detections=8,
    )
    return SipMask(config).eval()
