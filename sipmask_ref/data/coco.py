"""COCO-format instance segmentation dataset in the sipmask_ref data contract.

``CocoInstances(ann_file, image_dir)`` reads any COCO "instances" JSON (COCO 2017 train / val work
unchanged) and its image folder. Item ``i`` is ``(image, target)``:

    image   float32 [3, H, W]  RGB in [0, 1], the original image size (no resize here)
    target  boxes    float32 [G, 4]     xyxy, absolute pixels of the image
            labels   int64   [G]        contiguous 1..C (0 is background)
            masks    uint8   [G, H, W]  0/1
            image_id int                the JSON image id
            iscrowd  uint8   [G]        always 0 (crowd annotations are not training targets)

How the file is read (the decisions a user should know):

- Labels: the sorted category ids map to 1..C (``cat_id_to_label``, ``label_to_cat_id``); COCO 2017's
  ids 1..90 with gaps become 1..80. ``class_names[label - 1]`` is the category name.
- Images are kept in the order of the JSON ``images`` list. Images without (usable) annotations are kept
  as negatives: G = 0.
- Crowd annotations (``iscrowd`` = 1) are left out of the targets; they stay in ``coco`` (the pycocotools
  object), where COCOeval uses them as ignore regions. A missing ``iscrowd`` means 0 and a missing
  ``area`` is computed from the segmentation (written into ``coco`` so COCOeval can read both).
- Masks: polygons (list of [x1, y1, x2, y2, ...]), uncompressed RLE (``counts`` a list) and compressed RLE
  (``counts`` a string) are decoded with pycocotools to a mask of the image size.
- Boxes: the annotation's ``bbox`` [x, y, w, h] becomes [x, y, x + w, y + h], clipped to the image. When
  ``bbox`` is missing, the box of the mask is used.
- A file that is wrong raises ``ValueError`` at construction, naming the file and the annotation id:
  not JSON, not COCO instances (missing or mistyped ``images`` / ``annotations`` / ``categories``),
  duplicate ids, an annotation whose image or category does not exist, a malformed segmentation, an RLE
  whose size is not the image's. A missing JSON file raises ``FileNotFoundError``.
- Degenerate geometry is skipped with one :class:`AnnotationWarning` per annotation at construction
  (``skip_invalid=True``, the default) or raises ``ValueError`` (``skip_invalid=False``): a polygon part
  with fewer than 3 points, an odd number of coordinates or zero area (only that part is dropped when
  other parts remain), a box with w <= 0 or h <= 0 or outside the image, an empty RLE, and a missing
  segmentation. A missing segmentation is skipped rather than filled with its box: a rectangle would be
  a wrong mask target. Skipped ids and reasons are in ``skipped_annotations``. A polygon with positive
  area that still covers no pixel is only found when decoded; it is dropped then with one warning (per
  annotation and process).
- Images are read with PIL and converted to RGB: grayscale, palette, CMYK, YCbCr with PIL's
  ``convert('RGB')``; RGBA / LA: the alpha channel is dropped (the stored colours are kept, not composited
  over a background, as cv2.imread and most detection loaders do); 16-bit grayscale is divided by 65535.
  EXIF orientation is not applied (COCO annotations refer to the stored pixels). The file's size must
  equal the JSON width / height. A missing image file raises ``FileNotFoundError`` when its item is
  loaded; ``check_files()`` checks every file at once (``dataset_check.scan_images`` also decodes
  them). ``without_images(ids)`` gives the dataset without some images (e.g. unreadable ones).

Where the code is: this module holds the dataset class; the annotation checks and decoding it applies
are in ``coco_annotations.py`` (shared with ``ytvis.py``), image reading in ``image_files.py``. Their
public names are re-exported here, so ``from sipmask_ref.data.coco import AnnotationWarning,
decode_segmentation, load_rgb_image`` keeps working.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torch import Tensor
from torch.utils.data import Dataset

from ..files import read_json
from .coco_annotations import (
    AnnotationWarning,
    InstanceRecord,
    build_target,
    category_maps,
    check_box,
    check_categories,
    check_segmentation,
    decode_segmentation,
    is_int,
    parse_instance,
    polygon_area,
    segmentation_to_rle,
    validate_coco_instances,
)
from .image_files import load_rgb_image, read_rgb_array
from .transforms import transformed_target

Target = dict[str, Any] | None
Transform = Callable[[Tensor, Target], tuple[Tensor, Target]]


def _coco_index(data: dict[str, Any]) -> COCO:
    """A pycocotools COCO object over an already parsed instances dict (for COCOeval)."""
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    return coco


class CocoInstances(Dataset):
    """A COCO-format instances JSON + image folder as ``(image, target)`` items (see the module docstring).

    Args:
        ann_file: the instances JSON.
        image_dir: folder the JSON ``file_name`` entries are relative to.
        transforms: optional callable ``(image, target) -> (image, target)`` applied to each item.
        skip_invalid: True: degenerate annotations are skipped with an :class:`AnnotationWarning`;
            False: they raise ValueError. Unknown image / category ids always raise.
        cache: keep each item in memory once read (image decoded, masks rasterised), so that
            later epochs skip the decoding; reads return copies, so nothing a caller does reaches the
            cache. Costs about 12 bytes per pixel of every image plus G bytes per pixel for the masks
            (the synthetic training split: about 0.5 GB); for small datasets only. Each DataLoader
            worker process keeps its own.
    """

    def __init__(
        self,
        ann_file: str | Path,
        image_dir: str | Path,
        transforms: Transform | None = None,
        skip_invalid: bool = True,
        cache: bool = False,
    ) -> None:
        self.ann_file = Path(ann_file)
        self.image_dir = Path(image_dir)
        self.transforms = transforms
        self.skip_invalid = skip_invalid
        self.cache = cache
        self._cached_items: dict[int, tuple[Tensor, dict[str, Any]]] = {}  # image id -> item

        data = read_json(self.ann_file, "annotation")
        validate_coco_instances(data, self.ann_file)
        self.cat_id_to_label, self.label_to_cat_id, self.class_names = category_maps(data["categories"])
        self.images: list[dict[str, Any]] = list(data["images"])
        index_of_image = {image["id"]: k for k, image in enumerate(self.images)}

        self.instances: list[list[InstanceRecord]] = [[] for _ in self.images]  # usable, per image
        self.skipped_annotations: dict[int, str] = {}  # annotation id -> why it is not a target
        self._warned_empty: set[int] = set()
        for ann in data["annotations"]:
            where = f"annotation id {ann['id']} in {self.ann_file}"
            if ann["image_id"] not in index_of_image:
                raise ValueError(f"{where} refers to image id {ann['image_id']}, which is not in 'images'")
            if ann["category_id"] not in self.cat_id_to_label:
                raise ValueError(
                    f"{where} refers to category id {ann['category_id']}, which is not in 'categories'"
                )
            ann.setdefault("iscrowd", 0)
            image_index = index_of_image[ann["image_id"]]
            image = self.images[image_index]
            if "area" not in ann:
                ann["area"] = self._area_for_eval(ann, image["height"], image["width"], where)
            if ann["iscrowd"]:
                continue
            record = parse_instance(
                ann_id=ann["id"],
                label=self.cat_id_to_label[ann["category_id"]],
                segmentation=ann.get("segmentation"),
                bbox=ann.get("bbox"),
                height=image["height"],
                width=image["width"],
                where=where,
                report=functools.partial(self._report, ann["id"], where),
            )
            if record is not None:
                self.instances[image_index].append(record)

        self.coco = _coco_index(data)

    def _report(self, ann_id: int, where: str, problem: str, skipped: bool) -> None:
        """Warn about (or, when skip_invalid is False, raise for) degenerate geometry."""
        if not self.skip_invalid:
            raise ValueError(f"{where}: {problem} (skip_invalid=False)")
        consequence = "annotation skipped" if skipped else "that polygon is dropped"
        warnings.warn(f"{where}: {problem}; {consequence}", AnnotationWarning, stacklevel=4)
        if skipped:
            self.skipped_annotations.setdefault(ann_id, problem)

    @staticmethod
    def _area_for_eval(ann: dict[str, Any], height: int, width: int, where: str) -> float:
        """Mask area for an annotation without 'area' (COCOeval needs it); bbox area without a mask."""
        try:
            segmentation, _ = check_segmentation(ann.get("segmentation"), height, width, where)
        except ValueError:
            segmentation = None  # the training parse reports malformed segmentations
        if segmentation is not None:
            return float(mask_utils.area(segmentation_to_rle(segmentation, height, width)))
        bbox = ann.get("bbox")
        if isinstance(bbox, list) and len(bbox) == 4:
            return float(max(bbox[2], 0) * max(bbox[3], 0))
        return 0.0

    def _on_empty_mask(self, record: InstanceRecord) -> None:
        """A polygon that covers no pixel once rasterised: warn once per annotation, then skip."""
        if record.ann_id in self._warned_empty:
            return
        self._warned_empty.add(record.ann_id)
        problem = "its polygons cover no pixel"
        self.skipped_annotations.setdefault(record.ann_id, problem)
        warnings.warn(
            f"annotation id {record.ann_id} in {self.ann_file}: {problem}; annotation skipped",
            AnnotationWarning,
            stacklevel=5,
        )

    def __len__(self) -> int:
        return len(self.images)

    def get_image_info(self, idx: int) -> dict[str, Any]:
        """The JSON image dict of item ``idx`` (id, file_name, width, height, ...)."""
        return self.images[idx]

    def indices_with_instances(self) -> list[int]:
        """Items with at least one usable instance, e.g. for ``Subset`` when training without negatives
        (the official mmdet training drops images without ground truth)."""
        return [idx for idx, records in enumerate(self.instances) if records]

    def image_path(self, idx: int) -> Path:
        """Where the image of item ``idx`` is read from."""
        return self.image_dir / self.images[idx]["file_name"]

    def image_file(self, idx: int) -> tuple[Path, tuple[int, int], str]:
        """(path, (width, height) from the JSON, name in messages) of the image of item ``idx``."""
        info = self.images[idx]
        return self.image_path(idx), (info["width"], info["height"]), f"image id {info['id']}"

    def load_image(self, idx: int) -> Tensor:
        """The image of item ``idx``, float32 [3, H, W]; its file must exist, decode and have the JSON size
        (FileNotFoundError, OSError or ValueError naming the file and the image id otherwise)."""
        return load_rgb_image(*self.image_file(idx))

    def load_target(self, idx: int) -> tuple[dict[str, Any], list[InstanceRecord]]:
        """The target of item ``idx`` (data contract, masks decoded) and the records of its instances in
        the target's order (an instance whose mask covers no pixel is left out of both, with a warning)."""
        info = self.images[idx]
        height, width = info["height"], info["width"]
        return build_target(self.instances[idx], height, width, info["id"], self._on_empty_mask)

    def load_item(self, idx: int) -> tuple[Tensor, dict[str, Any]]:
        """Item ``idx`` before ``transforms``: (image [3, H, W], target) in the data contract
        (with ``cache``, a copy of the item kept from its first read)."""
        image_id = self.images[idx]["id"]
        if image_id in self._cached_items:
            return _copied_item(*self._cached_items[image_id])
        image = self.load_image(idx)
        target, _ = self.load_target(idx)
        if not self.cache:
            return image, target
        self._cached_items[image_id] = (image, target)
        return _copied_item(image, target)

    def without_images(self, image_ids: Iterable[int]) -> CocoInstances:
        """A copy of this dataset without the images ``image_ids``, e.g. files that cannot be read.

        Their annotations leave ``coco`` too, so that an evaluation on the copy neither expects
        detections on the dropped images nor counts their objects as missed. The other items keep
        their order; the copy shares the parsed records (read-only) with this dataset.
        """
        drop = set(image_ids)
        unknown = drop - {image["id"] for image in self.images}
        if unknown:
            raise ValueError(f"{self.ann_file}: image id(s) {sorted(unknown)[:20]} are not in the dataset")
        kept = [k for k, image in enumerate(self.images) if image["id"] not in drop]
        subset = copy.copy(self)
        subset.images = [self.images[k] for k in kept]
        subset.instances = [self.instances[k] for k in kept]
        data = self.coco.dataset
        dropped_anns = {ann["id"] for ann in data["annotations"] if ann["image_id"] in drop}
        subset.skipped_annotations = {
            ann_id: why for ann_id, why in self.skipped_annotations.items() if ann_id not in dropped_anns
        }
        subset._warned_empty = set(self._warned_empty)
        subset.coco = _coco_index(
            {
                **data,
                "images": subset.images,
                "annotations": [ann for ann in data["annotations"] if ann["image_id"] not in drop],
            }
        )
        return subset

    def __getitem__(self, idx: int) -> tuple[Tensor, dict[str, Any]]:
        if not -len(self) <= idx < len(self):
            raise IndexError(f"index {idx} out of range for {len(self)} images")
        image, target = self.load_item(idx % len(self))
        if self.transforms is not None:
            image, transformed = self.transforms(image, target)
            target = transformed_target(transformed, "CocoInstances")
        return image, target

    def check_files(self, check_sizes: bool = False) -> None:
        """Verify that every image file exists (and, with ``check_sizes``, has the JSON size).

        Raises FileNotFoundError / ValueError listing the first problems and how many there are.
        """
        missing, wrong_size = [], []
        for idx, info in enumerate(self.images):
            path = self.image_path(idx)
            if not path.is_file():
                missing.append(f"{path} (image id {info['id']})")
            elif check_sizes:
                with Image.open(path) as img:
                    if tuple(img.size) != (info["width"], info["height"]):
                        wrong_size.append(
                            f"{path} (image id {info['id']}): {img.size[0]}x{img.size[1]} in the file, "
                            f"{info['width']}x{info['height']} in the JSON"
                        )
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} of {len(self.images)} image files listed in {self.ann_file} are missing, "
                f"e.g. " + "; ".join(missing[:5])
            )
        if wrong_size:
            raise ValueError(
                f"{len(wrong_size)} image files do not have the size given in {self.ann_file}, e.g. "
                + "; ".join(wrong_size[:5])
            )

    def __repr__(self) -> str:
        return (
            f"CocoInstances({self.ann_file}, {len(self)} images, {len(self.class_names)} classes, "
            f"{sum(len(r) for r in self.instances)} instances)"
        )


__all__ = [
    "AnnotationWarning",
    "CocoInstances",
    "InstanceRecord",
    "Target",
    "Transform",
    "build_target",
    "category_maps",
    "check_box",
    "check_categories",
    "check_segmentation",
    "decode_segmentation",
    "is_int",
    "load_rgb_image",
    "parse_instance",
    "polygon_area",
    "read_rgb_array",
    "segmentation_to_rle",
    "validate_coco_instances",
]


def _copied_item(image: Tensor, target: dict[str, Any]) -> tuple[Tensor, dict[str, Any]]:
    """A copy of a cached item: new tensors, so that changes made in place leave the cache as read."""
    return image.clone(), {
        key: value.clone() if torch.is_tensor(value) else value for key, value in target.items()
    }
