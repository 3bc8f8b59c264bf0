"""CocoInstances (sipmask_ref/data/coco.py): the data contract on a tiny COCO file, the errors of the file
as a whole, and the warnings of the dataset. The checks of single annotations are in
test_coco_annotations.py, image files in test_image_files.py."""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pytest
import torch

from conftest import HEIGHT, WIDTH, CocoFiles, item_by_image_id, load_coco
from sipmask_ref.data.coco import CocoInstances
from sipmask_ref.data.coco_annotations import AnnotationWarning
from sipmask_ref.data.transforms import horizontal_flip


def test_item_types_shapes_and_values(coco_files: CocoFiles) -> None:
    dataset = load_coco(coco_files)
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
    dataset = load_coco(coco_files)
    assert dataset.cat_id_to_label == {3: 1, 7: 2}
    assert dataset.label_to_cat_id == {1: 3, 2: 7}
    assert dataset.class_names == ["cat", "dog"]
    _, target = item_by_image_id(dataset, 1)
    assert target["labels"].tolist() == [2, 1]  # annotation 101 is a dog (7), 102 a cat (3)


def test_masks_equal_the_drawn_shapes_and_boxes_are_xyxy(coco_files: CocoFiles) -> None:
    dataset = load_coco(coco_files)
    _, target = item_by_image_id(dataset, 1)
    assert target["masks"].shape[0] == 2  # the crowd annotation 103 is excluded
    np.testing.assert_array_equal(target["masks"][0].numpy(), coco_files.masks[101])  # polygon
    np.testing.assert_array_equal(target["masks"][1].numpy(), coco_files.masks[102])  # compressed RLE
    assert target["boxes"].tolist() == [[4.0, 2.0, 20.0, 12.0], [24.0, 16.0, 44.0, 28.0]]
    _, target = item_by_image_id(dataset, 2)
    np.testing.assert_array_equal(target["masks"][0].numpy(), coco_files.masks[104])  # uncompressed RLE
    assert target["boxes"].tolist() == [[6.0, 4.0, 22.0, 20.0]]


def test_crowd_is_kept_for_evaluation_and_negatives_are_kept(coco_files: CocoFiles) -> None:
    dataset = load_coco(coco_files)
    assert 103 in dataset.coco.anns and dataset.coco.anns[103]["iscrowd"] == 1
    image, target = item_by_image_id(dataset, 3)
    assert image.shape == (3, HEIGHT, WIDTH)
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)
    assert target["masks"].shape == (0, HEIGHT, WIDTH) and target["iscrowd"].shape == (0,)


def test_transforms_are_applied(coco_files: CocoFiles) -> None:
    plain = load_coco(coco_files)
    flipped = load_coco(coco_files, transforms=horizontal_flip)
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

    loader = torch.utils.data.DataLoader(load_coco(coco_files), batch_size=2, collate_fn=collate)
    images, targets = next(iter(loader))
    assert len(images) == 2 and len(targets) == 2


def test_missing_json(coco_files: CocoFiles) -> None:
    with pytest.raises(FileNotFoundError, match=r"nothere\.json"):
        CocoInstances(coco_files.root / "nothere.json", coco_files.image_dir)


def test_not_json(coco_files: CocoFiles) -> None:
    path = coco_files.root / "broken.json"
    path.write_text("{'images': [")
    with pytest.raises(ValueError, match=r"broken\.json is not valid JSON"):
        CocoInstances(path, coco_files.image_dir)


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


def test_json_round_trip_of_fixture_is_valid(coco_files: CocoFiles) -> None:
    """The fixture file itself is plain JSON that pycocotools accepts."""
    data = json.loads(coco_files.ann_file.read_text())
    dataset = load_coco(coco_files)
    assert len(dataset.coco.getAnnIds()) == len(data["annotations"])


def assert_same_item(item: tuple[torch.Tensor, dict], expected: tuple[torch.Tensor, dict]) -> None:
    """Equal images and equal targets, key by key (tensors element-wise)."""
    torch.testing.assert_close(item[0], expected[0])
    assert item[1].keys() == expected[1].keys()
    for key, value in item[1].items():
        other = expected[1][key]
        assert torch.equal(value, other) if torch.is_tensor(value) else value == other


def test_cache_reads_each_image_once_and_returns_copies(coco_files: CocoFiles) -> None:
    """With cache=True the items equal the uncached ones; the image file is decoded on the first read
    only (deleting the files afterwards does not matter); a change made to a returned item does not
    reach the next read; a subset (without_images) reads its own items right."""
    plain = load_coco(coco_files)
    cached = load_coco(coco_files, cache=True)
    first = [cached[k] for k in range(len(cached))]
    for k in range(len(cached)):
        assert_same_item(first[k], plain[k])  # the cached items are the uncached ones
    for path in coco_files.image_dir.iterdir():
        path.unlink()  # from now on only the cache can serve the items
    for k in range(len(cached)):
        image, target = cached[k]
        assert_same_item((image, target), first[k])
        image.zero_()
        target["masks"].zero_()
        assert_same_item(cached[k], first[k])
    with pytest.raises(FileNotFoundError):
        plain[0]  # the uncached dataset reads the (now missing) file
    dropped = cached.get_image_info(0)["id"]
    subset = cached.without_images([dropped])
    for k in range(len(subset)):
        assert subset[k][1]["image_id"] == subset.get_image_info(k)["id"] != dropped
