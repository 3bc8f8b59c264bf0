"""eval/leak.py: the leak and miss of masks against same-class neighbours (§3.3), and leak_table.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_synthetic
from sipmask_ref import cli, leak_table, reproduce
from sipmask_ref.eval.leak import (
    image_leaks,
    mask_leak,
    match_detections,
    same_class_neighbours,
    summarize_leaks,
)


def _square(x0: int, y0: int, x1: int, y1: int, size: int = 20) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_mask_leak_counts_pixels_on_neighbours_and_missed_pixels() -> None:
    instance = _square(2, 2, 8, 8)  # 36 px
    neighbour = _square(8, 2, 14, 8)  # 36 px, touching on the right
    mask = _square(4, 2, 11, 8)  # columns 4..10: 24 px of the instance, 18 of the neighbour
    leak, miss = mask_leak(mask, instance, neighbour)
    assert leak == pytest.approx(18 / 42)
    assert miss == pytest.approx(12 / 36)  # columns 2, 3 of the instance are not covered
    assert mask_leak(instance, instance, neighbour) == (0.0, 0.0)
    # pixels the instance shares with the union U do not count as leak (U \ g)
    assert mask_leak(instance, instance, instance | neighbour) == (0.0, 0.0)
    empty = np.zeros_like(instance)
    assert mask_leak(empty, instance, neighbour) == (0.0, 1.0)
    assert mask_leak(mask, empty, neighbour)[1] == 0.0


def test_match_detections_is_greedy_by_score_within_the_class() -> None:
    gt_boxes = torch.tensor([[0.0, 0, 10, 10], [10.0, 0, 20, 10], [30.0, 30, 40, 40]])
    gt_labels = torch.tensor([1, 1, 2])
    boxes = torch.tensor(
        [
            [0.0, 0, 10, 10],  # 0: exact on gt 0, low score
            [1.0, 0, 10, 10],  # 1: IoU 0.9 with gt 0, high score: takes gt 0 first
            [10.0, 0, 20, 10],  # 2: exact on gt 1 but the wrong class
            [30.0, 30, 34, 34],  # 3: class 2, IoU 0.16 with gt 2: below 0.5
        ]
    )
    labels = torch.tensor([1, 1, 2, 2])
    scores = torch.tensor([0.3, 0.9, 0.8, 0.7])
    assert match_detections(boxes, labels, scores, gt_boxes, gt_labels) == [1, None, None]
    assert match_detections(boxes[:0], labels[:0], scores[:0], gt_boxes, gt_labels) == [None] * 3


def test_image_leaks_only_adjacent_instances_and_counts_unmatched() -> None:
    a = _square(2, 2, 8, 8)  # class 1, fills its box: nothing else fits in it, so not adjacent
    b = _square(6, 4, 14, 10) & ~a  # class 1, partly behind a: 8 of its 48 box pixels are a's
    c = _square(2, 12, 6, 16)  # class 2, isolated: never counted
    e = _square(12, 12, 18, 18)  # class 3
    f = _square(14, 14, 20, 20) & ~e  # class 3, 16 of its 36 box pixels are e's: adjacent, undetected
    target = {
        "image_id": 7,
        "boxes": torch.tensor(
            [[2.0, 2, 8, 8], [6.0, 4, 14, 10], [2.0, 12, 6, 16], [12.0, 12, 18, 18], [14.0, 14, 20, 20]]
        ),
        "labels": torch.tensor([1, 1, 2, 3, 3]),
        "masks": torch.from_numpy(np.stack([a, b, c, e, f]).astype(np.uint8)),
    }
    spread = a | b  # b's detection, its mask spread over a as well
    prediction = {
        "boxes": torch.tensor([[6.0, 4, 14, 10], [2.0, 12, 6, 16]]),
        "labels": torch.tensor([1, 2]),
        "scores": torch.tensor([0.9, 0.8]),
        "masks": torch.from_numpy(np.stack([spread, c]).astype(np.float32))[:, None] * 0.9,
    }
    leaks, unmatched = image_leaks(prediction, target, mask_threshold=0.5)
    assert unmatched == 1  # f: adjacent, no detection
    assert len(leaks) == 1  # b only: a is not adjacent, c has no same-class neighbour
    item = leaks[0]
    assert (item.image_id, item.gt_index, item.detection, item.label) == (7, 1, 0, 1)
    assert item.leak == pytest.approx(36 / 76) and item.miss == 0.0  # a's 36 px of the 76 px mask
    assert item.score == pytest.approx(0.9)
    summary = summarize_leaks(leaks, unmatched)
    assert summary["leak"] == pytest.approx(36 / 76) and summary["matched"] == 1
    assert (
        summary["unmatched"] == 1 and summary["leaking"] == 1.0 and summary["instances"][0]["gt_index"] == 1
    )
    empty = summarize_leaks([], 3)
    assert math.isnan(empty["leak"]) and empty["matched"] == 0 and empty["unmatched"] == 3


def test_leak_table_from_reproduce_checkpoints(tmp_path: Path) -> None:
    tiny_synthetic(tmp_path / "data", num_train=2, num_val=2)
    with pytest.raises(FileNotFoundError, match="python -m sipmask_ref reproduce --only"):
        leak_table.leak_table(tmp_path / "work", tmp_path / "data", seeds=1, out=None, progress=False)
    for label in leak_table.LEAK_ROWS:  # what `reproduce --only` trains: 1 iteration is enough here
        variant = leak_table._table4_variant(label)
        reproduce.run_one(variant, 0, 1, tmp_path / "work", tmp_path / "data", threads=1)
    report = leak_table.leak_table(
        tmp_path / "work", tmp_path / "data", seeds=1, out=tmp_path / "results", progress=False
    )
    assert list(report["rows"]) == ["1x1", "2x2"]
    assert [(run["row"], run["seed"]) for run in report["runs"]] == [("1x1", 0), ("2x2", 0)]
    assert report["rows"]["2x2"]["matched"]["n"] == 1
    saved = json.loads((tmp_path / "results" / "leak.json").read_text())
    assert saved["format"] == leak_table.FORMAT and saved["rows"].keys() == report["rows"].keys()
    markdown = (tmp_path / "results" / "leak.md").read_text()
    assert markdown.startswith("# The leak of masks") and "| 1x1 |" in markdown and "| 2x2 |" in markdown
    # the command: the same table into --out; a missing checkpoint is one line, exit code 2
    argv = [
        "leak",
        "--seeds",
        "1",
        "--work-dir",
        str(tmp_path / "work"),
        "--data-root",
        str(tmp_path / "data"),
    ]
    assert cli.main([*argv, "--out", str(tmp_path / "cli"), "--quiet"]) == 0
    assert json.loads((tmp_path / "cli" / "leak.json").read_text())["rows"] == saved["rows"]
    assert cli.main([*argv[:3], "--work-dir", str(tmp_path / "none"), "--quiet"]) == 2


def test_same_class_neighbours_is_the_union_of_the_other_instances_of_the_class():
    masks = np.zeros((4, 3, 4), dtype=np.uint8)
    masks[0, 0, 0] = masks[1, 1, 1] = masks[2, 2, 2] = masks[3, 0, 3] = 1
    labels = np.array([1, 1, 2, 1])
    union = same_class_neighbours(masks, labels, 0)
    assert union.dtype == bool and union.shape == (3, 4)
    assert union.sum() == 2 and union[1, 1] and union[0, 3]  # instances 1 and 3, not 0 itself nor 2
    assert not same_class_neighbours(masks, labels, 2).any()  # the only instance of its class
