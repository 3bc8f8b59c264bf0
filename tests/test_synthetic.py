"""Tests of the synthetic adjacent-instance benchmark (sipmask_ref/data/synthetic.py)."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from sipmask_ref.data import synthetic as S

SMALL_IMAGES = dict(num_train=8, num_val=3)
SMALL_VIDEOS = dict(num_train=3, num_val=1, num_frames=8)


def _tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path -> its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def image_set(tmp_path_factory) -> dict[str, Path]:
    return S.generate_image_dataset(tmp_path_factory.mktemp("img"), progress=False, **SMALL_IMAGES)


@pytest.fixture(scope="module")
def video_set(tmp_path_factory) -> dict[str, Path]:
    return S.generate_video_dataset(tmp_path_factory.mktemp("vid"), progress=False, **SMALL_VIDEOS)


# --- determinism ------------------------------------------------------------------------------


def test_image_generation_is_byte_identical_for_a_seed(image_set, tmp_path):
    first = _tree_bytes(image_set["train_annotations"].parent.parent)
    S.generate_image_dataset(tmp_path / "again", progress=False, **SMALL_IMAGES)
    assert _tree_bytes(tmp_path / "again") == first
    S.generate_image_dataset(tmp_path / "other", progress=False, seed=1, **SMALL_IMAGES)
    other = _tree_bytes(tmp_path / "other")
    assert other.keys() == first.keys()
    assert other["annotations/instances_train.json"] != first["annotations/instances_train.json"]
    assert other["images/train/000000.png"] != first["images/train/000000.png"]


def test_train_and_val_differ_and_images_do_not_depend_on_the_split_size():
    config = S.SyntheticConfig()
    train, val = S.sample_image(config, 0, "train"), S.sample_image(config, 0, "val")
    assert not np.array_equal(train.image, val.image)
    bigger = S.sample_image(S.SyntheticConfig(num_train=5000), 0, "train")
    assert np.array_equal(train.image, bigger.image) and np.array_equal(train.masks, bigger.masks)


def test_video_generation_is_byte_identical_for_a_seed(tmp_path):
    kwargs = dict(num_train=2, num_val=1, num_frames=4, progress=False)
    S.generate_video_dataset(tmp_path / "a", **kwargs)
    S.generate_video_dataset(tmp_path / "b", **kwargs)
    S.generate_video_dataset(tmp_path / "c", seed=3, **kwargs)
    first = _tree_bytes(tmp_path / "a")
    assert first == _tree_bytes(tmp_path / "b")
    assert first["annotations/train.json"] != _tree_bytes(tmp_path / "c")["annotations/train.json"]


# --- COCO files -------------------------------------------------------------------------------


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
    config = S.SyntheticConfig(**SMALL_IMAGES)
    for image in data["images"]:
        anns = [a for a in data["annotations"] if a["image_id"] == image["id"]]
        masks = np.stack([mask_utils.decode(a["segmentation"]) for a in anns]).astype(bool)
        assert masks.sum(axis=0).max() <= 1  # occlusion: one owner per pixel
        sample = S.sample_image(config, image["id"] - 1, "val")
        assert np.array_equal(masks, sample.masks)
        assert [S.CATEGORY_IDS[n] for n in sample.class_names] == [a["category_id"] for a in anns]
        png = np.asarray(Image.open(image_set["val_images"] / image["file_name"]))
        assert np.array_equal(png, sample.image)


def test_hidden_instances_are_removed_from_the_scene():
    config = S.SyntheticConfig()
    for index in range(10):
        sample = S.sample_image(config, index)
        areas = sample.masks.reshape(len(sample.masks), -1).sum(axis=1)
        assert (areas >= config.min_visible_area).all()


def test_class_subset_keeps_its_category_ids(tmp_path):
    paths = S.generate_image_dataset(
        tmp_path, num_train=3, num_val=0, classes=("star", "square"), progress=False
    )
    data = json.loads(paths["train_annotations"].read_text())
    assert [c["id"] for c in data["categories"]] == [20, 60]
    assert {a["category_id"] for a in data["annotations"]} <= {20, 60}


def test_bad_configuration_raises():
    with pytest.raises(ValueError, match="classes"):
        S.SyntheticConfig(classes=("disc", "hexagon"))
    with pytest.raises(ValueError, match="adjacency"):
        S.SyntheticConfig(adjacency=1.5)
    with pytest.raises(ValueError, match="unknown SyntheticConfig field"):
        S.generate_image_dataset("unused", num_imgs=3)


# --- adjacency statistic ----------------------------------------------------------------------


def _coco_from_masks(masks: list[np.ndarray], category_ids: list[int]) -> dict:
    """A one-image COCO dict holding ``masks`` as RLE annotations."""
    anns = []
    for k, (mask, cat) in enumerate(zip(masks, category_ids, strict=True)):
        rle, bbox, area = S.annotation_fields(mask)
        anns.append(
            {
                "id": k + 1,
                "image_id": 1,
                "category_id": cat,
                "segmentation": rle,
                "bbox": bbox,
                "area": area,
                "iscrowd": 0,
            }
        )
    return {
        "images": [{"id": 1, "file_name": "x.png", "width": 64, "height": 64}],
        "categories": [{"id": 10, "name": "disc"}, {"id": 20, "name": "square"}],
        "annotations": anns,
    }


def test_adjacency_on_a_hand_built_image():
    y, x = np.mgrid[:64, :64]
    in_square = (x >= 4) & (x < 24) & (y >= 4) & (y < 24)
    upper = in_square & (x > y)  # two triangles touching along the square's diagonal,
    lower = in_square & (x <= y)  # each box holds about half of the other: both adjacent
    far = (x >= 50) & (x < 60) & (y >= 50) & (y < 60)  # same class, alone: not adjacent
    other = (x >= 20) & (x < 40) & (y >= 30) & (y < 40)  # another class, no same-class neighbour
    stats = S.adjacency_stats(_coco_from_masks([upper, lower, far, other], [10, 10, 10, 20]))
    assert stats["adjacent"] == 2 and stats["instances"] == 4 and stats["adjacency"] == 0.5
    assert stats["per_class"] == {
        "disc": {"instances": 3, "adjacent": 2},
        "square": {"instances": 1, "adjacent": 0},
    }
    # the same layout with the lower triangle of another class: nobody is adjacent
    stats = S.adjacency_stats(_coco_from_masks([upper, lower, far, other], [10, 20, 10, 20]))
    assert stats["adjacent"] == 0
    assert "adjacency 0.0%" in S.format_stats(stats)


def test_adjacency_threshold_is_inclusive():
    a = np.zeros((12, 12), dtype=bool)
    a[:10, :10] = True  # box of a: 10 x 10 = 100 pixels
    a[1:, 9] = False
    a[9, 8] = False  # a keeps (row 0, column 9): its box stays 10 x 10
    b = np.zeros_like(a)
    b[1:10, 9:12] = True
    b[9, 8] = True  # b holds exactly 10 pixels of a's box
    assert S.adjacency_flags(np.stack([a, b]), [1, 1]).tolist()[0]
    b[9, 8] = False  # 9 pixels: below 10%
    assert not S.adjacency_flags(np.stack([a, b]), [1, 1]).tolist()[0]


def _measured_adjacency(config: S.SyntheticConfig, count: int) -> float:
    flags = [
        S.adjacency_flags(s.masks, s.class_names) for s in (S.sample_image(config, i) for i in range(count))
    ]
    return float(np.concatenate(flags).mean())


def test_default_knob_gives_at_least_30_percent_adjacency_and_zero_knob_much_less():
    default = _measured_adjacency(S.SyntheticConfig(), 40)
    without = _measured_adjacency(S.SyntheticConfig(adjacency=0.0), 40)
    assert default >= 0.30
    assert without < 0.15 and default - without > 0.2


# --- videos -----------------------------------------------------------------------------------


def test_video_json_follows_youtube_vis_2019(video_set):
    data = json.loads(video_set["train_annotations"].read_text())
    assert {"videos", "annotations", "categories"} <= data.keys()
    assert [v["id"] for v in data["videos"]] == [1, 2, 3]
    for video in data["videos"]:
        assert video["length"] == len(video["file_names"]) == 8
        for name in video["file_names"]:
            assert (video_set["train_videos"] / name).exists()
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


def test_video_masks_are_the_sampled_ones_and_none_exactly_where_absent(video_set):
    data = json.loads(video_set["train_annotations"].read_text())
    config = S.SyntheticVideoConfig(**SMALL_VIDEOS)
    for video in data["videos"]:
        sample = S.sample_video(config, video["id"] - 1, "train")
        anns = [a for a in data["annotations"] if a["video_id"] == video["id"]]
        assert len(anns) == len(sample.masks)
        for ann, masks in zip(anns, sample.masks, strict=True):
            for segm, mask in zip(ann["segmentations"], masks, strict=True):
                assert (segm is None) == (mask is None)
                if mask is not None:
                    assert np.array_equal(mask_utils.decode(segm).astype(bool), mask)
        for t in range(video["length"]):
            present = [m[t] for m in sample.masks if m[t] is not None]
            assert not present or np.sum(present, axis=0).max() <= 1


def _absent_then_present_again(masks: list) -> bool:
    """True when an identity is absent in a frame between two frames where it is present."""
    present = [t for t, m in enumerate(masks) if m is not None]
    return len(present) < present[-1] - present[0] + 1


def test_an_identity_leaves_and_comes_back(video_set):
    data = json.loads(video_set["train_annotations"].read_text())
    stats = S.video_stats(data)
    assert stats["reappearing"] >= 1
    assert stats["videos"] == 3 and stats["frames"] == 24
    every = S.SyntheticVideoConfig(reenter=1.0, num_frames=6)
    for index in range(4):  # with reenter=1 every video holds one
        assert any(_absent_then_present_again(m) for m in S.sample_video(every, index).masks)


# --- make_data --------------------------------------------------------------------------------


def test_make_data_generates_once_and_regenerates_when_parameters_change(tmp_path, capsys):
    kwargs = dict(
        root=tmp_path,
        num_train=4,
        num_val=2,
        num_train_videos=2,
        num_val_videos=1,
        num_frames=4,
        progress=False,
    )
    first = S.make_data(**kwargs)
    assert first["synthetic"]["generated"] and first["synthetic_video"]["generated"]
    assert first["synthetic"]["train_annotations"] == tmp_path / "synthetic/annotations/instances_train.json"
    assert first["synthetic_video"]["val_annotations"].exists()
    assert first["synthetic"]["stats"]["train"]["images"] == 4
    assert first["synthetic_video"]["stats"]["val"]["videos"] == 1
    assert "adjacency" in capsys.readouterr().out
    again = S.make_data(**kwargs, verbose=False)
    assert not again["synthetic"]["generated"] and not again["synthetic_video"]["generated"]
    changed = S.make_data(**{**kwargs, "seed": 1}, video=False, verbose=False)
    assert changed["synthetic"]["generated"] and "synthetic_video" not in changed
