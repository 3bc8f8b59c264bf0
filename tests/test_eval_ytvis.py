"""YouTube-VIS video AP on tiny hand-made videos (3 frames of 10 x 12 pixels)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_util

from sipmask_ref.eval.coco import STAT_NAMES
from sipmask_ref.eval.ytvis import evaluate_ytvis, format_table, sequence_iou, sequence_iou_matrix

H, W = 10, 12


def rect(y1: int, y2: int, x1: int, x2: int, height: int = H, width: int = W) -> dict:
    """Compressed RLE (str counts) of the rectangle rows y1:y2, columns x1:x2."""
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[y1:y2, x1:x2] = 1
    rle = mask_util.encode(np.asfortranarray(mask))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def uncompressed(rle: dict) -> dict:
    """The same mask as an uncompressed RLE (list of run lengths, column-major, zeros first)."""
    flat = mask_util.decode(rle).flatten(order="F")
    counts, current, run = [], 0, 0
    for value in flat:
        if value != current:
            counts.append(run)
            current, run = value, 0
        run += 1
    counts.append(run)
    return {"size": list(rle["size"]), "counts": counts}


def make_gt(tracks: list[tuple[int, int, list]], num_videos: int = 2, length: int = 3, size=(H, W)) -> dict:
    """YouTube-VIS 2019 style ground truth; tracks are (video_id, category_id, segmentations)."""
    height, width = size
    return {
        "videos": [
            {
                "id": v,
                "length": length,
                "height": height,
                "width": width,
                "file_names": [f"{v}/{t:05d}.jpg" for t in range(length)],
            }
            for v in range(1, num_videos + 1)
        ],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [
            {
                "id": k + 1,
                "video_id": v,
                "category_id": c,
                "iscrowd": 0,
                "segmentations": segs,
                "areas": [None if s is None else int(mask_util.area(s)) for s in segs],
                "bboxes": [None if s is None else list(mask_util.toBbox(s)) for s in segs],
            }
            for k, (v, c, segs) in enumerate(tracks)
        ],
    }


def result(video_id: int, category_id: int, segs: list, score: float = 0.9) -> dict:
    return {"video_id": video_id, "category_id": category_id, "score": score, "segmentations": segs}


def test_sequence_iou_by_hand():
    # gt: frames 0, 1 (4x4 = 16 px each); prediction: frames 1, 2, shifted 2 px right (16 px each).
    gt = [rect(2, 6, 2, 6), rect(2, 6, 2, 6), None]
    pred = [None, rect(2, 6, 4, 8), rect(2, 6, 4, 8)]
    # frame 0: union 16 (gt only); frame 1: intersection 4x2 = 8, union 16 + 16 - 8 = 24;
    # frame 2: union 16 (prediction only). IoU = 8 / (16 + 24 + 16) = 1/7
    assert sequence_iou(pred, gt) == pytest.approx(1 / 7)
    assert sequence_iou(gt, gt) == pytest.approx(1.0)
    assert sequence_iou([None] * 3, [None] * 3) == 0.0
    np.testing.assert_allclose(sequence_iou_matrix([pred, gt], [gt]), [[1 / 7], [1.0]])
    with pytest.raises(ValueError, match="they must match"):
        sequence_iou(pred[:2], gt)


def test_batched_sequence_iou_matches_reference():
    rng = np.random.default_rng(0)

    def random_track() -> list:
        frames = []
        for _ in range(4):
            if rng.random() < 0.3:
                frames.append(None)
            else:
                y1, x1 = rng.integers(0, 6, size=2)
                height, width = rng.integers(1, 5), rng.integers(0, 7)  # width 0: an empty mask
                frames.append(rect(int(y1), int(y1 + height), int(x1), int(x1 + width)))
        return frames

    preds = [random_track() for _ in range(6)]
    gts = [random_track() for _ in range(4)]
    expected = [[sequence_iou(p, g) for g in gts] for p in preds]
    np.testing.assert_allclose(sequence_iou_matrix(preds, gts), expected, rtol=0, atol=1e-12)


def test_perfect_predictions():
    track_a = [rect(2, 6, 2, 6), None, rect(3, 7, 3, 8)]
    track_b = [rect(0, 5, 0, 5), rect(0, 5, 1, 6), rect(0, 5, 2, 7)]
    gt = make_gt([(1, 1, track_a), (2, 2, track_b)])
    metrics = evaluate_ytvis(gt, [result(1, 1, track_a), result(2, 2, track_b, score=0.4)])
    assert list(metrics) == list(STAT_NAMES)
    for name in ("AP", "AP50", "AP75", "APs", "AR1", "AR10", "AR100", "ARs"):
        assert metrics[name] == pytest.approx(1.0), name
    # every track is small (< 128^2 px): the medium / large settings have no ground truth -> -1
    assert metrics["APm"] == metrics["APl"] == metrics["ARm"] == metrics["ARl"] == -1.0


def test_known_sequence_iou_gives_ap50_one_ap75_zero():
    # gt areas 20, 20, 24; the prediction matches frames 0 and 1 exactly and misses frame 2:
    # IoU = (20 + 20) / (20 + 20 + 24) = 40 / 64 = 0.625
    gt_track = [rect(1, 5, 1, 6), rect(1, 5, 2, 7), rect(1, 5, 2, 8)]
    pred_track = gt_track[:2] + [None]
    assert sequence_iou(pred_track, gt_track) == pytest.approx(0.625)
    metrics = evaluate_ytvis(make_gt([(1, 1, gt_track)], num_videos=1), [result(1, 1, pred_track)])
    assert metrics["AP50"] == pytest.approx(1.0)
    assert metrics["AP75"] == pytest.approx(0.0)
    # matched at the IoU thresholds 0.50, 0.55, 0.60 out of ten -> 3/10
    assert metrics["AP"] == pytest.approx(0.3)
    assert metrics["AR1"] == pytest.approx(0.3)


def test_two_tracks_one_prediction():
    # Two "cat" tracks in one video, one prediction equal to the first track.
    first = [rect(0, 4, 0, 4), rect(0, 4, 1, 5), rect(0, 4, 2, 6)]
    second = [rect(6, 10, 6, 10), rect(6, 10, 7, 11), None]
    metrics = evaluate_ytvis(make_gt([(1, 1, first), (1, 1, second)], num_videos=1), [result(1, 1, first)])
    # recall 1/2 at every IoU threshold
    assert metrics["AR1"] == pytest.approx(0.5)
    assert metrics["AR10"] == pytest.approx(0.5)
    # precision 1 for the 51 recall thresholds 0.00..0.50, 0 for the 50 above -> 51/101
    assert metrics["AP"] == pytest.approx(51 / 101)
    assert metrics["AP50"] == pytest.approx(51 / 101)


def test_size_class_is_the_mean_area_over_present_frames():
    # 160 x 160 frames; areas (absent, 150^2 = 22500, 110^2 = 12100): mean over present frames 17300
    # -> medium (128^2 = 16384 .. 256^2). Counting the absent frame as 0 would make it small.
    size = (160, 160)
    track = [None, rect(0, 150, 0, 150, *size), rect(0, 110, 0, 110, *size)]
    metrics = evaluate_ytvis(make_gt([(1, 2, track)], num_videos=1, size=size), [result(1, 2, track)])
    assert metrics["APm"] == pytest.approx(1.0)
    assert metrics["APs"] == -1.0 and metrics["APl"] == -1.0


def test_empty_results_score_zero(capsys):
    gt = make_gt([(1, 1, [rect(2, 6, 2, 6), None, None])], num_videos=1)
    metrics = evaluate_ytvis(gt, [])
    for name in ("AP", "AP50", "AP75", "APs", "AR1", "AR10", "AR100", "ARs"):
        assert metrics[name] == 0.0, name
    assert metrics["APm"] == metrics["APl"] == -1.0  # no medium / large ground truth
    assert capsys.readouterr().out == ""


def test_bad_results_raise():
    track = [rect(2, 6, 2, 6), None, None]
    gt = make_gt([(1, 1, track)], num_videos=1)
    with pytest.raises(ValueError, match="video id 5"):
        evaluate_ytvis(gt, [result(5, 1, track)])
    with pytest.raises(ValueError, match="video 1 has 3 frames"):
        evaluate_ytvis(gt, [result(1, 1, track[:2])])
    with pytest.raises(ValueError, match="category id 9"):
        evaluate_ytvis(gt, [result(1, 9, track)])
    with pytest.raises(ValueError, match="differs from the video size"):
        evaluate_ytvis(gt, [result(1, 1, [rect(2, 6, 2, 6, height=20), None, None])])


def test_uncompressed_rle_and_polygon_ground_truth_from_file(tmp_path):
    # The YouTube-VIS 2019 JSON stores uncompressed RLE; polygons are accepted too.
    track_a = [rect(2, 6, 2, 6), None, rect(3, 7, 3, 8)]
    polygon = [[1.0, 1.0, 7.0, 1.0, 7.0, 5.0, 1.0, 5.0]]
    polygon_rle = mask_util.merge(mask_util.frPyObjects(polygon, H, W))
    polygon_rle["counts"] = polygon_rle["counts"].decode("ascii")
    gt = make_gt([(1, 1, track_a)], num_videos=1)
    gt["annotations"][0]["segmentations"] = [uncompressed(s) if s else None for s in track_a]
    gt["annotations"].append(
        {"id": 2, "video_id": 1, "category_id": 2, "iscrowd": 0, "segmentations": [None, polygon, polygon]}
    )
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(gt))
    results = [result(1, 1, track_a), result(1, 2, [None, polygon_rle, polygon_rle])]
    results_path = tmp_path / "results.json"
    results_path.write_text(json.dumps(results))
    metrics = evaluate_ytvis(str(gt_path), str(results_path))
    assert metrics["AP"] == pytest.approx(1.0)
    assert metrics["AR1"] == pytest.approx(1.0)
    table = format_table(metrics).splitlines()
    assert table[0].split() == ["type", *STAT_NAMES]
    assert table[1].split()[:3] == ["video", "segm", "100.0"]
