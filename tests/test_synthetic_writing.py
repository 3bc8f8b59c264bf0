"""Tests of the synthetic benchmarks on disk: COCO / YouTube-VIS files, byte for byte
(sipmask_ref/data/synthetic/writing.py)."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from sipmask_ref.data.synthetic.config import CATEGORY_IDS, SyntheticConfig
from sipmask_ref.data.synthetic.scenes import sample_image
from sipmask_ref.data.synthetic.writing import generate_image_dataset, generate_video_dataset

SMALL_IMAGES = dict(num_train=8, num_val=3)


def _tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path -> its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def image_set(tmp_path_factory) -> dict[str, Path]:
    return generate_image_dataset(tmp_path_factory.mktemp("img"), progress=False, **SMALL_IMAGES)


def test_image_generation_is_byte_identical_for_a_seed(image_set, tmp_path):
    first = _tree_bytes(image_set["train_annotations"].parent.parent)
    generate_image_dataset(tmp_path / "again", progress=False, **SMALL_IMAGES)
    assert _tree_bytes(tmp_path / "again") == first
    generate_image_dataset(tmp_path / "other", progress=False, seed=1, **SMALL_IMAGES)
    other = _tree_bytes(tmp_path / "other")
    assert other.keys() == first.keys()
    assert other["annotations/instances_train.json"] != first["annotations/instances_train.json"]
    assert other["images/train/000000.png"] != first["images/train/000000.png"]


def test_video_generation_is_byte_identical_for_a_seed(tmp_path):
    kwargs = dict(num_train=2, num_val=1, num_frames=4, progress=False)
    generate_video_dataset(tmp_path / "a", **kwargs)
    generate_video_dataset(tmp_path / "b", **kwargs)
    generate_video_dataset(tmp_path / "c", seed=3, **kwargs)
    first = _tree_bytes(tmp_path / "a")
    assert first == _tree_bytes(tmp_path / "b")
    assert first["annotations/train.json"] != _tree_bytes(tmp_path / "c")["annotations/train.json"]


def test_coco_json_loads_and_every_rle_matches_its_area_and_bbox(image_set):
    coco = COCO(str(image_set["train_annotations"]))
    assert sorted(coco.getCatIds()) == [10, 20, 30, 40, 50, 60]  # non-contiguous on purpose
    assert min(coco.getImgIds()) == 1 and min(coco.getAnnIds()) == 1
    assert len(coco.getImgIds()) == SMALL_IMAGES["num_train"]
    for ann in coco.loadAnns(coco.getAnnIds()):
        assert ann["iscrowd"] == 0
        mask = coco.annToMask(ann).astype(bool)
        assert mask.sum() == ann["area"] > 0
        assert list(mask_utils.toBbox(ann["segmentation"])) == ann["bbox"]
        rows, cols = np.nonzero(mask)
        x, y, w, h = ann["bbox"]
        assert (x, y, x + w, y + h) == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
    for info in coco.loadImgs(coco.getImgIds()):
        path = image_set["train_images"] / info["file_name"]
        assert Image.open(path).size == (info["width"], info["height"]) == (128, 128)


def test_json_masks_are_the_sampled_visible_masks_and_never_overlap(image_set):
    data = json.loads(image_set["val_annotations"].read_text())
    config = SyntheticConfig(**SMALL_IMAGES)
    for image in data["images"]:
        anns = [a for a in data["annotations"] if a["image_id"] == image["id"]]
        masks = np.stack([mask_utils.decode(a["segmentation"]) for a in anns]).astype(bool)
        assert masks.sum(axis=0).max() <= 1  # occlusion: one owner per pixel
        sample = sample_image(config, image["id"] - 1, "val")
        assert np.array_equal(masks, sample.masks)
        assert [CATEGORY_IDS[n] for n in sample.class_names] == [a["category_id"] for a in anns]
        png = np.asarray(Image.open(image_set["val_images"] / image["file_name"]))
        assert np.array_equal(png, sample.image)


def test_class_subset_keeps_its_category_ids(tmp_path):
    paths = generate_image_dataset(
        tmp_path, num_train=3, num_val=0, classes=("star", "square"), progress=False
    )
    data = json.loads(paths["train_annotations"].read_text())
    assert [c["id"] for c in data["categories"]] == [20, 60]
    assert {a["category_id"] for a in data["annotations"]} <= {20, 60}


def test_video_json_follows_youtube_vis_2019(synthetic_video_set):
    data = json.loads(synthetic_video_set["train_annotations"].read_text())
    assert {"videos", "annotations", "categories"} <= data.keys()
    assert [v["id"] for v in data["videos"]] == [1, 2, 3]
    for video in data["videos"]:
        assert video["length"] == len(video["file_names"]) == 8
        for name in video["file_names"]:
            assert (synthetic_video_set["train_videos"] / name).exists()
    lengths = {v["id"]: v["length"] for v in data["videos"]}
    for ann in data["annotations"]:
        assert ann["length"] == lengths[ann["video_id"]] and ann["iscrowd"] == 0
        for key in ("segmentations", "bboxes", "areas"):
            assert len(ann[key]) == ann["length"]
        absent = [s is None for s in ann["segmentations"]]
        assert absent == [b is None for b in ann["bboxes"]] == [a is None for a in ann["areas"]]
        assert not all(absent)
        for segm, bbox, area in zip(ann["segmentations"], ann["bboxes"], ann["areas"], strict=True):
            if segm is not None:
                assert mask_utils.decode(segm).sum() == area >= 20
                assert list(mask_utils.toBbox(segm)) == bbox
