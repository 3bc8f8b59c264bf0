"""The annotation checks of sipmask_ref/data/coco_annotations.py, as CocoInstances applies them: a file that
is not COCO, malformed segmentations, degenerate geometry (warn and skip, or raise)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import HEIGHT, WIDTH, CocoFiles, compressed_rle, item_by_image_id, rect_mask, uncompressed_rle
from sipmask_ref.data.coco import CocoInstances
from sipmask_ref.data.coco_annotations import AnnotationWarning


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: [1, 2, 3], r"not a COCO instances file: the top level is a list"),
        (lambda d: {k: v for k, v in d.items() if k != "images"}, r"missing key\(s\) \['images'\]"),
        (lambda d: {"info": {}}, r"missing key\(s\) \['images', 'annotations', 'categories'\]"),
        (lambda d: {**d, "annotations": {"id": 1}}, r"'annotations' must be a list"),
        (
            lambda d: {**d, "images": [{"id": 1, "file_name": "rgb.png"}]},
            r"image #0 \(id 1\) lacks a valid \['width', 'height'\]",
        ),
        (
            lambda d: {**d, "categories": [{"id": "3", "name": "cat"}]},
            r"category #0 must be a dict with an integer 'id'",
        ),
        (lambda d: {**d, "images": d["images"] + d["images"][:1]}, r"image id 1 appears twice"),
        (
            lambda d: {**d, "annotations": d["annotations"] + d["annotations"][:1]},
            r"annotation id 101 appears twice",
        ),
        (
            lambda d: {**d, "annotations": [{"image_id": 1, "category_id": 3}]},
            r"annotation #0 has no integer 'id'",
        ),
    ],
)
def test_not_coco_instances(coco_files: CocoFiles, change, message) -> None:
    path = coco_files.write(change(coco_files.copy()), "wrong.json")
    with pytest.raises(ValueError, match=message) as info:
        CocoInstances(path, coco_files.image_dir)
    assert "wrong.json" in str(info.value)


def test_malformed_segmentations_raise(coco_files: CocoFiles) -> None:
    cases = [
        ({"counts": "abc"}, r"needs 'counts' and 'size'"),
        (
            {"size": [10, 10], "counts": uncompressed_rle(rect_mask(0, 0, 4, 4))["counts"]},
            r"differs from the image size",
        ),
        ({"size": [HEIGHT, WIDTH], "counts": [5, 3]}, r"counts sum to 8"),
        ([["a", "b", "c", "d", "e", "f"]], r"polygon 0 is not a list of numbers"),
        ("polygon", r"must be a list of polygons or an RLE dict"),
    ]
    for segmentation, message in cases:
        data = coco_files.copy()
        data["annotations"][0]["segmentation"] = segmentation
        with pytest.raises(ValueError, match=r"annotation id 101 in .*variant\.json: .*" + message):
            CocoInstances(coco_files.write(data), coco_files.image_dir)


DEGENERATE = [
    ("segmentation", [[4.0, 2.0, 20.0, 2.0]], r"polygon 0 has fewer than 3 points"),
    ("segmentation", [[4.0, 2.0, 10.0, 2.0, 20.0, 2.0]], r"polygon 0 has zero area"),
    ("segmentation", [], r"empty segmentation"),
    ("segmentation", None, r"no segmentation"),
    ("segmentation", compressed_rle(np.zeros((HEIGHT, WIDTH), np.uint8)), r"the RLE mask is empty"),
    ("bbox", [4.0, 2.0, 0.0, 10.0], r"degenerate bbox"),
    ("bbox", [4.0, 2.0, 16.0, -1.0], r"degenerate bbox"),
    ("bbox", [60.0, 2.0, 16.0, 10.0], r"bbox .* lies outside the 48x32 image"),
]


@pytest.mark.parametrize(("key", "value", "message"), DEGENERATE)
def test_degenerate_annotation_warns_and_is_skipped(coco_files: CocoFiles, key, value, message) -> None:
    data = coco_files.copy()
    data["annotations"][0][key] = value
    path = coco_files.write(data)
    with pytest.warns(AnnotationWarning, match=r"annotation id 101 in .*variant\.json: " + message):
        dataset = CocoInstances(path, coco_files.image_dir)
    assert 101 in dataset.skipped_annotations
    _, target = item_by_image_id(dataset, 1)
    assert target["labels"].tolist() == [1]  # only annotation 102 is left
    np.testing.assert_array_equal(target["masks"][0].numpy(), coco_files.masks[102])


@pytest.mark.parametrize(("key", "value", "message"), DEGENERATE)
def test_degenerate_annotation_raises_without_skip_invalid(
    coco_files: CocoFiles, key, value, message
) -> None:
    data = coco_files.copy()
    data["annotations"][0][key] = value
    with pytest.raises(ValueError, match=r"annotation id 101 in .*variant\.json: " + message):
        CocoInstances(coco_files.write(data), coco_files.image_dir, skip_invalid=False)


def test_degenerate_polygon_part_is_dropped_and_the_rest_kept(coco_files: CocoFiles) -> None:
    data = coco_files.copy()
    data["annotations"][0]["segmentation"] = [
        [30.0, 30.0, 31.0, 31.0],
        data["annotations"][0]["segmentation"][0],
    ]
    message = r"annotation id 101 .*polygon 0 has fewer than 3 points \(2\); that polygon is dropped"
    with pytest.warns(AnnotationWarning, match=message):
        dataset = CocoInstances(coco_files.write(data), coco_files.image_dir)
    assert 101 not in dataset.skipped_annotations
    _, target = item_by_image_id(dataset, 1)
    np.testing.assert_array_equal(target["masks"][0].numpy(), coco_files.masks[101])
