"""video/tracks.py: trackers by name, tracking glue, crossing objects and evaluate_vis on tiny data.

Bad input: a missing frame file, a None (absent) annotation frame, a one-frame video, an identity that
leaves and re-enters, videos without predictions.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from sipmask_ref.config import preset
from sipmask_ref.data.ytvis import YTVISDataset
from sipmask_ref.trackers import IouTracker, TrackMatcher
from sipmask_ref.video.tracks import (
    TRACKERS,
    FrameDetections,
    crossing_objects,
    evaluate_vis,
    make_tracker,
    track_frames,
    video_results,
)
from sipmask_ref.video_model import SipMaskVIS

torch.set_num_threads(1)


def small_model(**changes) -> SipMaskVIS:
    config = dataclasses.replace(
        preset("cpu_tiny_vis"), input_size=(64, 64), num_classes=2, embed_dim=8, **changes
    )
    torch.manual_seed(0)
    return SipMaskVIS(config).eval()


def _detections(embeds, boxes, labels=None, scores=None) -> FrameDetections:
    n = len(boxes)
    masks = torch.zeros(n, 32, 48, dtype=torch.bool)
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        masks[k, y1:y2, x1:x2] = True
    return FrameDetections(
        torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        torch.tensor(labels or [1] * n),
        torch.tensor(scores or [0.9] * n),
        torch.tensor(embeds, dtype=torch.float32).reshape(n, -1),
        masks,
    )


def test_identity_that_leaves_and_reenters_keeps_its_id_with_the_matcher_only():
    a, b = [8.0, 0.0], [0.0, 8.0]
    video = [
        _detections([a, b], [[2, 2, 12, 12], [30, 2, 40, 12]]),
        _detections([b], [[30, 4, 40, 14]]),  # A has left
        None,  # a missing frame: skipped, memory unchanged
        _detections([b, a], [[30, 6, 40, 16], [20, 18, 30, 28]]),  # A is back, elsewhere
    ]
    ids = track_frames(video, TrackMatcher())
    assert [None if i is None else i.tolist() for i in ids] == [[0, 1], [1], None, [1, 0]]
    baseline = track_frames(video, IouTracker())
    assert baseline[3].tolist() == [1, 2]  # the IoU baseline forgets A and opens a new identity
    results = video_results(7, video, ids, {1: 10})
    assert [r["segmentations"][1] is None for r in results] == [True, False]
    assert all(r["segmentations"][2] is None for r in results)
    assert [r["video_id"] for r in results] == [7, 7]


def test_make_tracker_names_and_switches():
    config = preset("cpu_tiny_vis")
    assert isinstance(make_tracker("iou_greedy", config), IouTracker)
    for name in TRACKERS[:-1]:
        assert isinstance(make_tracker(name, config), TrackMatcher)
    assert (
        make_tracker("no_iou", config).iou_weight == 0
        and not make_tracker("no_embedding", config).use_embedding
    )
    assert make_tracker("embedding_only", config).label_weight == 0
    with pytest.raises(ValueError, match="unknown tracker"):
        make_tracker("kalman", config)


def test_crossing_objects_are_same_class_overlaps():
    targets = [
        {
            "boxes": torch.tensor([[0.0, 0, 10, 10], [5, 5, 15, 15], [8, 8, 20, 20]]),
            "labels": torch.tensor([1, 1, 2]),
            "obj_ids": torch.tensor([4, 5, 6]),
        },
        None,
    ]
    assert crossing_objects(targets) == {4, 5}


def test_evaluation_survives_missing_frames_absent_objects_and_one_frame_videos(ytvis_files):
    """Fixture: video 10 has an object absent (None) in frame 2, video 20 has one frame, video 30 no
    objects. Frame 1 of video 10 is deleted: a warning, that frame's entries are None."""
    (ytvis_files.video_dir / "walk" / "00001.png").unlink()
    dataset = YTVISDataset(ytvis_files.ann_file, ytvis_files.video_dir, mode="frames")
    model = small_model(score_threshold=0.0)
    with pytest.warns(UserWarning, match="00001.png"):
        found = evaluate_vis(model, dataset, trackers=("sipmask", "iou_greedy"), progress=False)
    for name in ("sipmask", "iou_greedy"):
        results = found[name]["results"]
        assert {r["video_id"] for r in results} == {10, 20, 30}
        walk = [r for r in results if r["video_id"] == 10]
        assert walk and all(r["segmentations"][1] is None for r in walk)
        assert all(len(r["segmentations"]) == 1 for r in results if r["video_id"] == 20)
        assert 0 <= found[name]["metrics"]["AP"] <= 1
    assert found["sipmask"]["num_gt_objects"] == 2  # object 12 is only in the missing frame


def test_no_predictions_gives_zeros_not_a_crash(ytvis_files):
    dataset = YTVISDataset(ytvis_files.ann_file, ytvis_files.video_dir, mode="frames")
    model = small_model(score_threshold=1.0)  # nothing passes
    found = evaluate_vis(model, dataset, trackers=TRACKERS, frame_ap=True, progress=False)
    for name in TRACKERS:
        assert found[name]["results"] == []
        assert (
            found[name]["frame_metrics"]["segm"]["AP"] == 0
            and found[name]["frame_metrics"]["bbox"]["AR100"] == 0
        )
        metrics = found[name]["metrics"]
        assert metrics["AP"] == 0 and metrics["AR10"] == 0
        assert found[name]["id_switches"] == 0
    # Association alone (the ground truth as detections): object 11 leaves at frame 2 and comes back at
    # frame 3; the IoU baseline remembers only the previous frame, so it gives it a new identity.
    assert found["iou_greedy"]["gt_box_id_switches"] == 1
