"""The image commands (sipmask_ref/commands/image.py), end to end on a tiny synthetic benchmark (8 train /
4 val images of 128 px): train, resume, evaluate, predict, and the mistakes a user can make with them.

Commands run in-process through `cli.main(argv)`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_util

from sipmask_ref import cli, engine
from sipmask_ref.data.synthetic import CATEGORY_IDS, make_data

CLASSES = ("disc", "square", "ring")  # 3 of the 6 shapes: num_classes must come from the data


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    make_data(root=root, num_train=8, num_val=4, classes=CLASSES, video=False, progress=False, verbose=False)
    return root


@pytest.fixture(scope="module")
def trained(data_root, tmp_path_factory) -> Path:
    """A checkpoint after 2 iterations of cpu_tiny on the synthetic train split (val: synthetic val)."""
    out = tmp_path_factory.mktemp("run")
    code = cli.main(
        [
            "train",
            "--config",
            "cpu_tiny",
            "--data-root",
            str(data_root),
            "--out",
            str(out),
            "--iters",
            "2",
            "--batch-size",
            "2",
            "--log-every",
            "1",
            "--quiet",
        ]
    )
    assert code == 0
    return out


def test_train_writes_checkpoint_metrics_and_log(trained):
    state = engine.read_checkpoint(trained / "checkpoint.pt")
    assert state["iteration"] == 2
    assert state["config"]["num_classes"] == len(CLASSES)  # taken from the dataset, not the preset (6)
    assert state["dataset"]["class_names"] == list(CLASSES)
    assert state["dataset"]["label_to_cat_id"] == {k + 1: CATEGORY_IDS[c] for k, c in enumerate(CLASSES)}
    metrics = json.loads((trained / "metrics.json").read_text())
    assert set(metrics) == {"bbox", "segm"}
    assert all(len(metrics[t]) == 12 and all(-1 <= v <= 1 for v in metrics[t].values()) for t in metrics)
    log = [json.loads(line) for line in (trained / "train_log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log if "lr" in r] == [1, 2]
    assert {"loss_cls", "loss_box", "loss_centerness", "loss_mask"} <= set(log[0])


def test_resume_with_explicit_data(trained, data_root, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes((trained / "checkpoint.pt").read_bytes())
    synthetic = data_root / "synthetic"
    code = cli.main(
        [
            "train",
            "--config",
            "cpu_tiny",
            "--train-ann",
            str(synthetic / "annotations/instances_train.json"),
            "--train-images",
            str(synthetic / "images/train"),
            "--out",
            str(run),
            "--iters",
            "3",
            "--batch-size",
            "2",
            "--resume",
            "--quiet",
        ]
    )
    assert code == 0
    assert engine.read_checkpoint(run / "checkpoint.pt")["iteration"] == 3
    assert not (run / "metrics.json").exists()  # no val set given, none evaluated


@pytest.fixture(scope="module")
def eager(trained, tmp_path_factory) -> Path:
    """The trained checkpoint with score_threshold 0, so that a 2-iteration model reports detections."""
    state = engine.read_checkpoint(trained / "checkpoint.pt")
    state["config"]["score_threshold"] = 0.0
    state["config"]["max_detections"] = 20
    path = tmp_path_factory.mktemp("eager") / "checkpoint.pt"
    engine.save_checkpoint(state, path)
    return path


def test_evaluate_writes_results_with_the_datasets_category_ids(eager, data_root, tmp_path, capsys):
    assert (
        cli.main(
            [
                "evaluate",
                "--checkpoint",
                str(eager),
                "--data-root",
                str(data_root),
                "--out",
                str(tmp_path),
                "--quiet",
            ]
        )
        == 0
    )
    results = json.loads((tmp_path / "results.json").read_text())
    assert 0 < len(results) <= 4 * 20
    assert {r["category_id"] for r in results} <= {CATEGORY_IDS[c] for c in CLASSES}
    assert {r["image_id"] for r in results} <= {1, 2, 3, 4}
    assert all(len(r["bbox"]) == 4 and set(r["segmentation"]) == {"size", "counts"} for r in results)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert [len(metrics["bbox"]), len(metrics["segm"])] == [12, 12]
    printed = capsys.readouterr().out
    assert "bbox" in printed and "segm" in printed and "AP50" in printed


def test_predict_writes_overlays_and_detections(eager, data_root, tmp_path):
    images = [data_root / "synthetic/images/val/000000.png", data_root / "synthetic/images/train/000000.png"]
    assert (
        cli.main(
            [
                "predict",
                "--checkpoint",
                str(eager),
                *map(str, images),
                "--out",
                str(tmp_path),
                "--score-threshold",
                "0",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "000000.json",
        "000000.png",
        "000000_1.json",
        "000000_1.png",
    ]
    record = json.loads((tmp_path / "000000.json").read_text())
    assert (record["width"], record["height"]) == (128, 128)
    assert 0 < len(record["detections"]) <= 20
    for detection in record["detections"]:
        assert detection["class_name"] == CLASSES[detection["label"] - 1]
        assert detection["category_id"] == CATEGORY_IDS[detection["class_name"]]
        assert 0 <= detection["score"] <= 1 and len(detection["box"]) == 4
        mask = mask_util.decode(
            {"size": detection["mask"]["size"], "counts": detection["mask"]["counts"].encode()}
        )
        assert mask.shape == (128, 128) and set(np.unique(mask)) <= {0, 1}
    assert (tmp_path / "000000.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def bad_commands(
    trained: Path, data_root: Path, other_ann: Path, other_images: Path, tmp: Path
) -> dict[str, list[str]]:
    checkpoint = str(trained / "checkpoint.pt")
    (tmp / "junk.pt").write_bytes(b"junk")
    commands = {
        "unknown preset": ["train", "--config", "paper_r51_800", "--out", str(tmp)],
        "resume without checkpoint": ["train", "--config", "cpu_tiny", "--out", str(tmp / "new"), "--resume"],
        "missing annotation file": [
            "train",
            "--config",
            "cpu_tiny",
            "--out",
            str(tmp),
            "--train-ann",
            str(tmp / "none.json"),
            "--train-images",
            str(tmp),
        ],
        "annotations without images": [
            "train",
            "--config",
            "cpu_tiny",
            "--out",
            str(tmp),
            "--train-ann",
            str(other_ann),
        ],
        "missing checkpoint": ["evaluate", "--checkpoint", str(tmp / "none.pt"), "--out", str(tmp)],
        "not a checkpoint": [
            "predict",
            "--checkpoint",
            str(tmp / "junk.pt"),
            str(other_ann),
            "--out",
            str(tmp),
        ],
        "missing image": ["predict", "--checkpoint", checkpoint, str(tmp / "none.png"), "--out", str(tmp)],
        "other categories": [
            "evaluate",
            "--checkpoint",
            checkpoint,
            "--ann",
            str(other_ann),
            "--images",
            str(other_images),
            "--out",
            str(tmp),
        ],
    }
    if not torch.cuda.is_available():
        commands["cuda without CUDA"] = [
            "train",
            "--config",
            "cpu_tiny",
            "--out",
            str(tmp),
            "--device",
            "cuda",
        ]
    return commands


def test_user_errors_give_one_line_and_exit_code_2(trained, data_root, coco_files, tmp_path, capsys):
    commands = bad_commands(trained, data_root, coco_files.ann_file, coco_files.image_dir, tmp_path)
    for name, argv in commands.items():
        assert cli.main(argv) == 2, name
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "error:" in err and "Traceback" not in err, (name, err)
    assert not (tmp_path / "new").exists()
    assert cli.main(["train", "--config", "cpu_tiny"]) == 2  # argparse: --out is required
    assert "--out" in capsys.readouterr().err
