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
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torch import Tensor
from torch.utils.data import Dataset

from ..files import read_json
from ..geometry import mask_box
from .transforms import transformed_target

Target = dict[str, Any] | None
Transform = Callable[[Tensor, Target], tuple[Tensor, Target]]


class AnnotationWarning(UserWarning):
    """An annotation (or part of one) was skipped because its geometry is degenerate."""


class InstanceRecord(NamedTuple):
    """One usable instance, parsed once at construction."""

    ann_id: int  # the JSON annotation id (the identity in YouTube-VIS)
    label: int  # 1..C
    box: tuple[float, float, float, float]  # xyxy, clipped to the image
    segmentation: Any  # polygons (degenerate parts removed) or an RLE dict


# ---------------------------------------------------------------------------------------------------------
# Helpers shared with ytvis.py: reading images, checking and decoding segmentations.
# ---------------------------------------------------------------------------------------------------------


def is_int(value: Any) -> bool:
    """True for a JSON integer (bool excluded)."""
    return isinstance(value, int) and not isinstance(value, bool)


def load_rgb_image(path: Path, expected_size: tuple[int, int] | None, owner: str) -> Tensor:
    """Read an image file as float32 [3, H, W], RGB in [0, 1] (conversions: see the module docstring).

    ``expected_size`` is (width, height) from the annotation file (None: not checked); ``owner`` names the
    image in error messages, e.g. "image id 3".
    """
    array = read_rgb_array(path, expected_size, owner)  # [H, W, 3]
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def read_rgb_array(path: Path, expected_size: tuple[int, int] | None, owner: str) -> np.ndarray:
    """:func:`load_rgb_image` without the tensor: float32 [H, W, 3], with the same checks and errors.

    Scanning a dataset before training calls this: it decodes the file as training will, without torch.
    """
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} ({owner}) does not exist")
    try:
        with Image.open(path) as img:
            if expected_size is not None and tuple(img.size) != tuple(expected_size):
                raise ValueError(
                    f"image file {path} ({owner}) is {img.size[0]}x{img.size[1]} (width x height) "
                    f"but the annotation file says {expected_size[0]}x{expected_size[1]}"
                )
            return _pil_to_rgb_array(img, path)  # [H, W, 3]
    except OSError as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise OSError(f"cannot read image file {path} ({owner}): {err}") from err


def _pil_to_rgb_array(img: Image.Image, path: Path) -> np.ndarray:
    """PIL image of any common mode -> float32 [H, W, 3] in [0, 1]."""
    if img.mode.startswith("I;16"):  # 16-bit grayscale
        gray = np.asarray(img).astype(np.float32) / 65535.0  # [H, W]
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode in ("I", "F"):
        raise ValueError(
            f"image file {path} has PIL mode {img.mode!r} (32-bit integer / float pixels), whose range "
            f"is unknown; convert it to 8-bit RGB"
        )
    try:
        rgb = img.convert("RGB")  # L, P, 1: replicated gray / palette colours; RGBA, LA: alpha dropped
    except ValueError as err:
        raise ValueError(f"image file {path}: cannot convert PIL mode {img.mode!r} to RGB") from err
    return np.asarray(rgb, dtype=np.float32) / 255.0


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


# ---------------------------------------------------------------------------------------------------------
# The dataset
# ---------------------------------------------------------------------------------------------------------


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
    """

    def __init__(
        self,
        ann_file: str | Path,
        image_dir: str | Path,
        transforms: Transform | None = None,
        skip_invalid: bool = True,
    ) -> None:
        self.ann_file = Path(ann_file)
        self.image_dir = Path(image_dir)
        self.transforms = transforms
        self.skip_invalid = skip_invalid

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
        """Item ``idx`` before ``transforms``: (image [3, H, W], target) in the data contract."""
        image = self.load_image(idx)
        target, _ = self.load_target(idx)
        return image, target

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
