"""CocoInstances: the data contract on a tiny COCO file, and every kind of bad input."""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import HEIGHT, WIDTH, CocoFiles, compressed_rle, rect_mask, uncompressed_rle
from sipmask_ref.data.coco import AnnotationWarning, CocoInstances
from sipmask_ref.data.transforms import horizontal_flip


def load(files: CocoFiles, **kwargs) -> CocoInstances:
    return CocoInstances(files.ann_file, files.image_dir, **kwargs)


def item_by_image_id(dataset: CocoInstances, image_id: int):
    index = next(k for k, info in enumerate(dataset.images) if info["id"] == image_id)
    return dataset[index]


# ---------------------------------------------------------------------------------------------------------
# Contract
# ---------------------------------------------------------------------------------------------------------


def test_item_types_shapes_and_values(coco_files: CocoFiles) -> None:
    dataset = load(coco_files)
    assert len(dataset) == 3
    for k in range(len(dataset)):
        image, target = dataset[k]
        num = target["boxes"].shape[0]
        assert image.dtype == torch.float32 and image.shape == (3, HEIGHT, WIDTH)
        assert 0.0 <= image.min() and image.max() <= 1.0
        assert target["boxes"].dtype == torch.float32 and target["boxes"].shape == (num, 4)
        assert target["labels"].dtype == torch.int64 and target["labels"].shape == (num,)
        assert target["masks"].dtype == torch.uint8 and target["masks"].shape == (num, HEIGHT, WIDTH)
        assert target["iscrowd"].dtype == torch.uint8 and target["iscrowd"].tolist() == [0] * num
        assert type(target["image_id"]) is int and target["image_id"] == dataset.get_image_info(k)["id"]
        assert set(target["masks"].unique().tolist()) <= {0, 1}


def test_category_mapping_both_ways(coco_files: CocoFiles) -> None:
    dataset = load(coco_files)
    assert dataset.cat_id_to_label == {3: 1, 7: 2}
    assert dataset.label_to_cat_id == {1: 3, 2: 7}
    assert dataset.class_names == ["cat", "dog"]
    _, target = item_by_image_id(dataset, 1)
    assert target["labels"].tolist() == [2, 1]  # annotation 101 is a dog (7), 102 a cat (3)


def test_masks_equal_the_drawn_shapes_and_boxes_are_xyxy(coco_files: CocoFiles) -> None:
    dataset = load(coco_files)
    _, target = item_by_image_id(dataset, 1)
    assert target["masks"].shape[0] == 2  # the crowd annotation 103 is excluded
    np.testing.assert_array_equal(target["masks"][0].numpy(), coco_files.masks[101])  # polygon
    np.testing.assert_array_equal(target["masks"][1].numpy(), coco_files.masks[102])  # compressed RLE
    assert target["boxes"].tolist() == [[4.0, 2.0, 20.0, 12.0], [24.0, 16.0, 44.0, 28.0]]
    _, target = item_by_image_id(dataset, 2)
    np.testing.assert_array_equal(target["masks"][0].numpy(), coco_files.masks[104])  # uncompressed RLE
    assert target["boxes"].tolist() == [[6.0, 4.0, 22.0, 20.0]]


def test_crowd_is_kept_for_evaluation_and_negatives_are_kept(coco_files: CocoFiles) -> None:
    dataset = load(coco_files)
    assert 103 in dataset.coco.anns and dataset.coco.anns[103]["iscrowd"] == 1
    image, target = item_by_image_id(dataset, 3)
    assert image.shape == (3, HEIGHT, WIDTH)
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)
    assert target["masks"].shape == (0, HEIGHT, WIDTH) and target["iscrowd"].shape == (0,)


def test_image_modes_are_converted_to_rgb(coco_files: CocoFiles) -> None:
    dataset = load(coco_files)
    pixels = coco_files.pixels
    image, _ = item_by_image_id(dataset, 1)
    np.testing.assert_allclose(image.permute(1, 2, 0).numpy(), pixels["rgb.png"] / 255.0, atol=1e-6)
    image, _ = item_by_image_id(dataset, 2)  # grayscale: the same value in R, G and B
    for channel in range(3):
        np.testing.assert_allclose(image[channel].numpy(), pixels["gray.png"] / 255.0, atol=1e-6)
    image, _ = item_by_image_id(dataset, 3)  # RGBA: alpha dropped, stored colours kept
    np.testing.assert_allclose(
        image.permute(1, 2, 0).numpy(), pixels["rgba.png"][:, :, :3] / 255.0, atol=1e-6
    )


def test_palette_cmyk_and_16_bit_images(coco_files: CocoFiles) -> None:
    rgb = Image.open(coco_files.image_dir / "rgb.png")
    rgb.convert("P").save(coco_files.image_dir / "rgb.png")
    gray16 = coco_files.pixels["gray.png"].astype(np.uint16) * 257
    Image.fromarray(gray16).save(coco_files.image_dir / "gray.png")
    rgb.convert("CMYK").save(coco_files.image_dir / "rgba.png", format="TIFF")
    dataset = load(coco_files)
    image, _ = item_by_image_id(dataset, 1)
    assert image.shape == (3, HEIGHT, WIDTH)
    image, _ = item_by_image_id(dataset, 2)
    np.testing.assert_allclose(image[1].numpy(), coco_files.pixels["gray.png"] / 255.0, atol=1e-6)
    image, _ = item_by_image_id(dataset, 3)
    assert image.shape == (3, HEIGHT, WIDTH) and image.dtype == torch.float32


def test_transforms_are_applied(coco_files: CocoFiles) -> None:
    plain = load(coco_files)
    flipped = load(coco_files, transforms=horizontal_flip)
    image, target = plain[0]
    image_f, target_f = flipped[0]
    torch.testing.assert_close(image_f, image.flip(-1))
    torch.testing.assert_close(target_f["masks"], target["masks"].flip(-1))


def test_box_is_clipped_and_missing_bbox_comes_from_the_mask(coco_files: CocoFiles) -> None:
    data = coco_files.copy()
    data["annotations"][0]["bbox"] = [-3.0, 2.0, 60.0, 10.0]  # sticks out left and right
    del data["annotations"][1]["bbox"]
    dataset = CocoInstances(coco_files.write(data), coco_files.image_dir)
    _, target = item_by_image_id(dataset, 1)
    assert target["boxes"].tolist() == [[0.0, 2.0, float(WIDTH), 12.0], [24.0, 16.0, 44.0, 28.0]]


def test_missing_iscrowd_and_area_are_filled(coco_files: CocoFiles) -> None:
    data = coco_files.copy()
    del data["annotations"][0]["iscrowd"]
    del data["annotations"][0]["area"]
    dataset = CocoInstances(coco_files.write(data), coco_files.image_dir)
    assert dataset.coco.anns[101]["iscrowd"] == 0
    assert dataset.coco.anns[101]["area"] == float(coco_files.masks[101].sum())
    _, target = item_by_image_id(dataset, 1)
    assert target["boxes"].shape[0] == 2


def test_dataloader_with_collate(coco_files: CocoFiles) -> None:
    from sipmask_ref.data.transforms import collate

    loader = torch.utils.data.DataLoader(load(coco_files), batch_size=2, collate_fn=collate)
    images, targets = next(iter(loader))
    assert len(images) == 2 and len(targets) == 2


# ---------------------------------------------------------------------------------------------------------
# Bad input: the file
# ---------------------------------------------------------------------------------------------------------


def test_missing_json(coco_files: CocoFiles) -> None:
    with pytest.raises(FileNotFoundError, match=r"nothere\.json"):
        CocoInstances(coco_files.root / "nothere.json", coco_files.image_dir)


def test_not_json(coco_files: CocoFiles) -> None:
    path = coco_files.root / "broken.json"
    path.write_text("{'images': [")
    with pytest.raises(ValueError, match=r"broken\.json is not valid JSON"):
        CocoInstances(path, coco_files.image_dir)


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


@pytest.mark.parametrize("skip_invalid", [True, False])
def test_unknown_image_or_category_always_raises(coco_files: CocoFiles, skip_invalid: bool) -> None:
    data = coco_files.copy()
    data["annotations"][1]["image_id"] = 99
    with pytest.raises(ValueError, match=r"annotation id 102 in .*variant\.json refers to image id 99"):
        CocoInstances(coco_files.write(data), coco_files.image_dir, skip_invalid=skip_invalid)
    data = coco_files.copy()
    data["annotations"][2]["category_id"] = 1  # even a crowd annotation must name a real category
    with pytest.raises(ValueError, match=r"annotation id 103 in .*variant\.json refers to category id 1"):
        CocoInstances(coco_files.write(data), coco_files.image_dir, skip_invalid=skip_invalid)


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


# ---------------------------------------------------------------------------------------------------------
# Bad input: degenerate geometry (warn + skip, or raise with skip_invalid=False)
# ---------------------------------------------------------------------------------------------------------

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


def test_warnings_come_once_at_construction_not_per_item(coco_files: CocoFiles) -> None:
    data = coco_files.copy()
    data["annotations"][0]["bbox"] = [4.0, 2.0, 0.0, 0.0]
    data["annotations"][3]["segmentation"] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = CocoInstances(coco_files.write(data), coco_files.image_dir)
    messages = [str(w.message) for w in caught if issubclass(w.category, AnnotationWarning)]
    assert len(messages) == 2
    assert any("annotation id 101" in m for m in messages) and any("annotation id 104" in m for m in messages)
    with warnings.catch_warnings():
        warnings.simplefilter("error", AnnotationWarning)
        for k in range(len(dataset)):
            dataset[k]
    assert set(dataset.skipped_annotations) == {101, 104}


def test_polygon_covering_no_pixel_warns_once_when_decoded(coco_files: CocoFiles) -> None:
    data = coco_files.copy()
    data["annotations"][0]["segmentation"] = [[4.1, 2.1, 4.3, 2.1, 4.2, 2.3]]  # tiny but positive area
    dataset = CocoInstances(coco_files.write(data), coco_files.image_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AnnotationWarning)
        _, target = item_by_image_id(dataset, 1)
    messages = [str(w.message) for w in caught if issubclass(w.category, AnnotationWarning)]
    assert len(messages) == 1
    assert re.search(r"annotation id 101 in .*variant\.json: its polygons cover no pixel", messages[0])
    assert target["labels"].tolist() == [1]
    with warnings.catch_warnings():
        warnings.simplefilter("error", AnnotationWarning)
        item_by_image_id(dataset, 1)


# ---------------------------------------------------------------------------------------------------------
# Bad input: image files
# ---------------------------------------------------------------------------------------------------------


def test_missing_image_file_raises_when_loaded(coco_files: CocoFiles) -> None:
    (coco_files.image_dir / "gray.png").unlink()
    dataset = load(coco_files)  # construction does not read images
    dataset[0]
    with pytest.raises(FileNotFoundError, match=r"gray\.png \(image id 2\) does not exist"):
        dataset[1]
    with pytest.raises(
        FileNotFoundError, match=r"1 of 3 image files .* missing, e\.g\. .*gray\.png \(image id 2\)"
    ):
        dataset.check_files()


def test_image_size_mismatch(coco_files: CocoFiles) -> None:
    Image.new("RGB", (50, 30)).save(coco_files.image_dir / "rgba.png")
    dataset = load(coco_files)
    message = "rgba.png (image id 3) is 50x30 (width x height) but the annotation file says 48x32"
    with pytest.raises(ValueError, match=re.escape(message)):
        dataset[2]
    dataset.check_files()  # existence only
    with pytest.raises(ValueError, match=r"rgba\.png \(image id 3\): 50x30 in the file, 48x32 in the JSON"):
        dataset.check_files(check_sizes=True)


def test_unreadable_image_file(coco_files: CocoFiles) -> None:
    (coco_files.image_dir / "rgb.png").write_bytes(b"not an image")
    with pytest.raises(OSError, match=r"cannot read image file .*rgb\.png \(image id 1\)"):
        load(coco_files)[0]


def test_json_round_trip_of_fixture_is_valid(coco_files: CocoFiles) -> None:
    """The fixture file itself is plain JSON that pycocotools accepts."""
    data = json.loads(coco_files.ann_file.read_text())
    dataset = load(coco_files)
    assert len(dataset.coco.getAnnIds()) == len(data["annotations"])
