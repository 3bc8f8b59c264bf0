"""dataset_check.py and the commands that use it: `check-data`, and the image scan of `train`.

The broken dataset is written here, image by image (64 x 64 px, categories 1 'cat' and 2 'dog'):

    image 1 good.png        cats 11 and 12 side by side (each has >= 10% of its box on the other),
                            dog 13: a 2 x 2 px square that no FCOS point of cpu_tiny falls inside
    image 2 truncated.png   the first half of a PNG file: cannot be decoded (its dog 21 is not counted)
    image 3 wrong_size.png  48 x 64 px in the file, 64 x 64 in the JSON (its dog 31 is not counted)
    image 4 bad_ann.png     cat 41: bbox outside the image; dog 42: a polygon of zero area;
                            cat 44: a polygon outside the image (no bbox: it covers no pixel); dog 43: fine
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import compressed_rle, mask_bbox, tiny_synthetic
from sipmask_ref import cli, dataset_check
from sipmask_ref.config import preset
from sipmask_ref.data.coco import AnnotationWarning, CocoInstances

SIZE = 64


def _rect(x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    """0/1 mask [64, 64] with columns x1..x2-1 and rows y1..y2-1 set."""
    mask = np.zeros((SIZE, SIZE), dtype=np.uint8)
    mask[y1:y2, x1:x2] = 1
    return mask


def _ann(ann_id: int, image_id: int, category_id: int, mask: np.ndarray) -> dict[str, Any]:
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": compressed_rle(mask),
        "bbox": mask_bbox(mask),
        "iscrowd": 0,
    }


def _polygon(ann_id: int, category_id: int, polygon: list[int], bbox: list[int] | None) -> dict[str, Any]:
    """An annotation of image 4 with one polygon (and a bbox, unless None)."""
    ann = {"id": ann_id, "image_id": 4, "category_id": category_id, "segmentation": [polygon], "iscrowd": 0}
    return ann if bbox is None else {**ann, "bbox": bbox}


def write_broken_dataset(root: Path) -> tuple[Path, Path]:
    """The dataset of the module docstring under ``root``; returns (annotation file, image folder)."""
    images = root / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("good.png", "bad_ann.png", "truncated.png"):
        Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(images / name)
    whole = (images / "truncated.png").read_bytes()
    (images / "truncated.png").write_bytes(whole[: len(whole) // 2])
    Image.fromarray(rng.integers(0, 256, (SIZE, 48, 3), dtype=np.uint8)).save(images / "wrong_size.png")
    data = {
        "images": [
            {"id": k + 1, "file_name": name, "width": SIZE, "height": SIZE}
            for k, name in enumerate(("good.png", "truncated.png", "wrong_size.png", "bad_ann.png"))
        ],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [
            _ann(11, 1, 1, _rect(4, 4, 36, 36)),  # 1024 px: medium
            _ann(12, 1, 1, _rect(30, 4, 60, 36)),  # 960 px: small
            _ann(13, 1, 2, _rect(45, 3, 47, 5)),  # 4 px, no positive point
            _ann(21, 2, 2, _rect(10, 10, 30, 30)),
            _ann(31, 3, 2, _rect(10, 10, 30, 30)),
            _polygon(41, 1, [70, 70, 80, 70, 80, 80, 70, 80], bbox=[70, 70, 10, 10]),
            _polygon(42, 2, [10, 10, 20, 20, 30, 30], bbox=[10, 10, 20, 20]),  # collinear
            _ann(43, 4, 2, _rect(10, 40, 50, 60)),  # 800 px: small
            _polygon(44, 1, [100, 100, 110, 100, 110, 110], bbox=None),
        ],
    }
    ann_file = root / "annotations" / "instances_broken.json"
    ann_file.parent.mkdir()
    ann_file.write_text(json.dumps(data))
    return ann_file, images


@pytest.fixture
def broken(tmp_path: Path) -> tuple[Path, Path]:
    return write_broken_dataset(tmp_path / "broken")


def test_scan_images_names_each_bad_file_with_the_datasets_message(broken):
    ann_file, images = broken
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AnnotationWarning)
        bad = dataset_check.scan_images(CocoInstances(ann_file, images))
    assert [(b.image_id, b.path) for b in bad] == [
        (2, images / "truncated.png"),
        (3, images / "wrong_size.png"),
    ]
    assert bad[0].problem.startswith(f"cannot read image file {images / 'truncated.png'} (image id 2): ")
    assert bad[1].problem == (
        f"image file {images / 'wrong_size.png'} (image id 3) is 48x64 (width x height) "
        "but the annotation file says 64x64"
    )


def test_fcos_assignment_of_one_box_by_hand():
    """cpu_tiny doubles a 64 px image to 128 px: the box (4, 4, 36, 36) becomes (8, 8, 72, 72), centre 40.
    P3 (stride 8, sampling radius 12): the 4 points 36, 44 in x and y have a largest distance > 32,
    outside P3's range (-1, 32]. P4 (stride 16, radius 24): 9 points 24, 40, 56; the centre (40, 40)
    has largest distance 32, not > 32: 8 positives. P5 (stride 32): the points 16 and 48 are at most
    56 from a side, not > 64. A 2 x 2 px box lies between the points: none."""
    config = preset("cpu_tiny")
    boxes = torch.tensor([[4.0, 4.0, 36.0, 36.0], [45.0, 3.0, 47.0, 5.0]])
    counts = dataset_check.fcos_assignment((SIZE, SIZE), boxes, torch.tensor([1, 2]), config)
    assert counts.tolist() == [[0, 8, 0, 0, 0], [0, 0, 0, 0, 0]]
    assert dataset_check.level_names(config) == ["P3", "P4", "P5", "P6", "P7"]
    assert dataset_check.level_sizes((800, 1344), config.strides) == [
        (100, 168),
        (50, 84),
        (25, 42),
        (13, 21),
        (7, 11),
    ]


def test_check_dataset_report(broken):
    ann_file, images = broken
    with warnings.catch_warnings():
        warnings.simplefilter("error", AnnotationWarning)  # collected into the report, not shown
        report, gallery = dataset_check.check_dataset(
            ann_file, images, preset("cpu_tiny"), preset_name="cpu_tiny"
        )
    where = f"in {ann_file}"
    assert report["ok"] is False
    assert report["preset"] == "cpu_tiny"
    assert report["images"] == 4 and report["annotations"] == 9 and report["crowd_annotations"] == 0
    assert [(b["image_id"], b["file"]) for b in report["bad_images"]] == [
        (2, str(images / "truncated.png")),
        (3, str(images / "wrong_size.png")),
    ]
    assert report["annotation_problems"] == [
        f"annotation id 41 {where}: bbox [70, 70, 10, 10] lies outside the 64x64 image; annotation skipped",
        f"annotation id 42 {where}: polygon 0 has zero area; annotation skipped",
        f"annotation id 44 {where}: its polygons cover no pixel; annotation skipped",
    ]
    assert report["skipped_annotations"] == [
        {"annotation_id": 41, "problem": "bbox [70, 70, 10, 10] lies outside the 64x64 image"},
        {"annotation_id": 42, "problem": "polygon 0 has zero area"},
        {"annotation_id": 44, "problem": "its polygons cover no pixel"},
    ]
    cat, dog = report["classes"]["cat"], report["classes"]["dog"]
    assert cat["instances"] == 2 and dog["instances"] == 2
    assert cat["area"] == {"small": 1, "medium": 1, "large": 0}
    assert dog["area"] == {"small": 2, "medium": 0, "large": 0}
    assert cat["sqrt_area"] == {
        "min": pytest.approx(math.sqrt(960)),
        "median": pytest.approx((math.sqrt(960) + 32) / 2),
        "max": 32.0,
    }
    assert dog["sqrt_area"] == {
        "min": 2.0,
        "median": pytest.approx((2 + math.sqrt(800)) / 2),
        "max": math.sqrt(800),
    }
    assert (cat["adjacent"], cat["adjacency"], dog["adjacent"], dog["adjacency"]) == (2, 1.0, 0, 0.0)
    assert (cat["no_positive"], cat["no_positive_ids"]) == (0, [])
    assert (dog["no_positive"], dog["no_positive_ids"]) == (1, [13])
    levels = ("P3", "P4", "P5", "P6", "P7")
    assert list(cat["positives_per_level"]) == list(levels)
    everything = report["all"]
    assert everything["instances"] == 4 and everything["no_positive_ids"] == [13]
    for level in levels:
        assert everything["positives_per_level"][level] == (
            cat["positives_per_level"][level] + dog["positives_per_level"][level]
        )
    # cat 11: 8 on P4 (test above); cat 12, (60, 8, 120, 72) at 128 px: the same 3 x 3 P4 points around its
    # centre (90, 40) but the centre itself; dog 43, (20, 80, 100, 120): P3's 9 points are all 32 px or
    # more from its left or right side, P4's 2 x 3 points are inside (32, 64]
    assert cat["positives_per_level"] == {"P3": 0, "P4": 16, "P5": 0, "P6": 0, "P7": 0}
    assert dog["positives_per_level"] == {"P3": 0, "P4": 6, "P5": 0, "P6": 0, "P7": 0}
    # the gallery holds the two readable images, the tiny dog labelled as FCOS sees it
    assert [target["image_id"] for _, target, _ in gallery] == [1, 4]
    assert gallery[0][2] == ["cat", "cat", "dog: no positive"]
    assert gallery[1][2] == ["dog"]
    text = dataset_check.format_report(report)
    assert "no positive point (dog): annotation id(s) 13" in text
    assert text.splitlines()[-1] == (
        f"PROBLEMS: {ann_file}: 2 of 4 images cannot be used, 3 annotation problem(s)"
    )


def test_check_data_command_writes_the_report_and_exits_2(broken, tmp_path, capsys):
    ann_file, images = broken
    out = tmp_path / "check"
    argv = ["check-data", "--ann", str(ann_file), "--images", str(images), "--config", "cpu_tiny"]
    assert cli.main([*argv, "--out", str(out), "--quiet"]) == 2
    captured = capsys.readouterr()
    assert captured.err == (
        f"sipmask_ref check-data: error: {ann_file}: 2 of 4 images cannot be used, 3 annotation problem(s) "
        f"(details: {out / 'report.txt'})\n"
    )
    assert "dog: no positive" not in captured.out and "image id 2: cannot read image file" in captured.out
    report = json.loads((out / "report.json").read_text())
    assert report["ok"] is False and len(report["bad_images"]) == 2
    assert (out / "report.txt").read_text() == dataset_check.format_report(report) + "\n"
    assert Image.open(out / "gallery.png").size[0] > 0


def test_check_data_on_clean_data_exits_0_into_the_default_folder(tmp_path, monkeypatch, capsys):
    root = tiny_synthetic(tmp_path / "data", num_train=2, num_val=1)
    ann = root / "synthetic" / "annotations" / "instances_train.json"
    monkeypatch.chdir(tmp_path)
    argv = [
        "check-data",
        "--ann",
        str(ann),
        "--images",
        str(root / "synthetic" / "images" / "train"),
        "--quiet",
    ]
    assert cli.main(argv) == 0
    out = tmp_path / "outputs" / "check_data" / "instances_train"
    report = json.loads((out / "report.json").read_text())
    assert report["ok"] and report["preset"] == "paper_r50_800" and report["bad_images"] == []
    assert report["model_input"]["input_size"] == [1333, 800]
    assert (out / "gallery.png").is_file()
    assert capsys.readouterr().out.splitlines()[-2].startswith("OK: ")


def test_check_data_on_a_file_that_is_not_coco_is_one_line(tmp_path, capsys):
    ann = tmp_path / "list.json"
    ann.write_text("[]")
    assert cli.main(["check-data", "--ann", str(ann), "--images", str(tmp_path), "--quiet"]) == 2
    assert capsys.readouterr().err == (
        f"sipmask_ref check-data: error: {ann} is not a COCO instances file: the top level is a list, "
        "not an object\n"
    )


def _train(ann_file: Path, images: Path, out: Path, *extra: str) -> int:
    argv = ["train", "--config", "cpu_tiny", "--train-ann", str(ann_file), "--train-images", str(images)]
    return cli.main([*argv, "--out", str(out), "--iters", "1", "--device", "cpu", "--quiet", *extra])


def test_train_stops_before_the_first_step_naming_the_file(broken, tmp_path, capsys):
    ann_file, images = broken
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AnnotationWarning)
        assert _train(ann_file, images, tmp_path / "run") == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1
    assert captured.err.startswith(
        "sipmask_ref train: error: training set: 2 of 4 images cannot be used, e.g. cannot read image file "
        f"{images / 'truncated.png'} (image id 2)"
    )
    assert "--skip-bad-images" in captured.err
    assert "train cpu_tiny:" not in captured.out  # the model was never built
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_train_skip_bad_images_warns_once_per_image_and_trains_on_the_rest(broken, tmp_path, capsys):
    ann_file, images = broken
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _train(ann_file, images, tmp_path / "run", "--skip-bad-images") == 0
    skipped = [str(w.message) for w in caught if issubclass(w.category, dataset_check.BadImageWarning)]
    assert len(skipped) == 2
    assert skipped[0].startswith(
        f"training set: cannot read image file {images / 'truncated.png'} (image id 2)"
    )
    assert skipped[0].endswith("; image skipped")
    assert skipped[1] == (
        f"training set: image file {images / 'wrong_size.png'} (image id 3) is 48x64 (width x height) "
        "but the annotation file says 64x64; image skipped"
    )
    assert "train cpu_tiny: 2 images" in capsys.readouterr().out
    assert (tmp_path / "run" / "checkpoint.pt").is_file()


def test_train_no_scan_skips_the_scan(broken, tmp_path, monkeypatch):
    ann_file, images = broken
    scanned = []
    monkeypatch.setattr(dataset_check, "scan_images", lambda *a, **k: scanned.append(a) or [])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AnnotationWarning)
        with pytest.raises((OSError, ValueError)):  # without the scan: found by the data loader
            _train(ann_file, images, tmp_path / "run", "--no-scan")
    assert scanned == []


def test_without_images_drops_them_from_items_and_evaluation(coco_files):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AnnotationWarning)
        dataset = CocoInstances(coco_files.ann_file, coco_files.image_dir)
    subset = dataset.without_images([1])
    assert [info["id"] for info in subset.images] == [2, 3]
    assert sorted(subset.coco.getImgIds()) == [2, 3]
    assert all(ann["image_id"] != 1 for ann in subset.coco.dataset["annotations"])
    assert subset[0][1]["image_id"] == 2 and len(subset) == 2
    assert len(dataset) == 3 and sorted(dataset.coco.getImgIds()) == [1, 2, 3]  # the original is unchanged
    with pytest.raises(ValueError, match=r"image id\(s\) \[99\] are not in the dataset"):
        dataset.without_images([99])


def test_train_vis_scans_the_frames_and_refuses_skip_bad_images(ytvis_files, tmp_path, capsys):
    frame = ytvis_files.video_dir / ytvis_files.data["videos"][0]["file_names"][0]
    frame.write_bytes(frame.read_bytes()[:40])
    argv = ["train", "--config", "cpu_tiny_vis", "--task", "vis", "--train-ann", str(ytvis_files.ann_file)]
    argv += ["--train-images", str(ytvis_files.video_dir), "--out", str(tmp_path / "run"), "--iters", "1"]
    argv += ["--device", "cpu", "--quiet"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AnnotationWarning)
        assert cli.main([*argv, "--skip-bad-images"]) == 2
        assert "--skip-bad-images is for image training" in capsys.readouterr().err
        assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot read image file {frame} (video id 10, frame 0)" in err
