"""Tests for sipmask_ref/trackers.py (§3.5 inference side: the matcher, the IoU baseline, video results,
identity switches)."""

import json

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch

from sipmask_ref.trackers import IouTracker, TrackMatcher, VideoResultAccumulator, count_id_switches
from sipmask_ref.tracking import embeddings_at_boxes, jitter_boxes

torch.set_num_threads(1)


def _t(rows):
    return torch.tensor(rows, dtype=torch.float32)


# ---------------------------------------------------------------- TrackMatcher

E_A, E_B, E_C = [5.0, 0.0], [0.0, 5.0], [-5.0, -5.0]
LEFT, MIDDLE, RIGHT = [0, 0, 10, 10], [15, 0, 25, 10], [30, 0, 40, 10]


def _match(matcher, embeds, boxes, labels=None, scores=None):
    n = len(boxes)
    labels = torch.tensor(labels if labels is not None else [1] * n)
    scores = _t(scores if scores is not None else [0.9] * n)
    return matcher.match(_t(embeds), _t(boxes), labels, scores).tolist()


def test_matcher_crossing_objects_keep_ids_and_new_object():
    m = TrackMatcher()
    assert _match(m, [E_A, E_B], [LEFT, RIGHT]) == [0, 1]
    assert _match(m, [E_B, E_A], [MIDDLE, MIDDLE]) == [1, 0]  # overlapping, order swapped
    assert _match(m, [E_A, E_B], [RIGHT, LEFT]) == [0, 1]  # crossed over
    assert _match(m, [E_B, E_C, E_A], [LEFT, [60, 60, 70, 70], RIGHT]) == [1, 2, 0]  # C is new
    assert m.num_identities == 3
    m.reset()
    assert m.num_identities == 0
    assert _match(m, [E_B], [LEFT]) == [0]


def test_matcher_recovers_identity_after_absence():
    m = TrackMatcher()
    assert _match(m, [E_A, E_B], [LEFT, RIGHT]) == [0, 1]
    assert _match(m, [E_B], [RIGHT]) == [1]
    assert _match(m, [E_B], [RIGHT]) == [1]
    # A re-enters far from its last box: recovered from memory by its embedding
    assert _match(m, [E_B, E_A], [RIGHT, [80, 80, 95, 95]]) == [1, 0]
    torch.testing.assert_close(m.boxes[0], _t([80, 80, 95, 95]))  # memory box overwritten


def test_matcher_one_detection_per_identity():
    for scores, expected in (([0.9, 0.2], [0, -1]), ([0.2, 0.9], [-1, 0])):
        m = TrackMatcher()
        _match(m, [E_A], [LEFT])
        ids = _match(m, [E_A, E_A], [[1, 0, 11, 10], [2, 0, 12, 10]], scores=scores)
        assert ids == expected
        winner = expected.index(0)
        torch.testing.assert_close(m.boxes[0], _t([[1, 0, 11, 10], [2, 0, 12, 10]][winner]))
        assert m.num_identities == 1


def test_matcher_label_is_not_updated_and_empty_frame():
    m = TrackMatcher()
    _match(m, [E_A], [LEFT], labels=[3])
    # S(identity 0) = ~0 + 2 (IoU) beats S(new) = -30 + 10 (label term of the new column): matched
    assert _match(m, [[6.0, 0.0]], [LEFT], labels=[4]) == [0]
    assert m.labels.tolist() == [3]
    assert _match(m, [], []) == []


def test_matcher_each_term_switch_changes_the_decision():
    def first_frame(matcher, embeds, boxes, labels):
        _match(matcher, embeds, boxes, labels=labels)

    # embedding: the same object far away; only the embedding says "same"
    for use, expected in ((True, [0]), (False, [1])):
        m = TrackMatcher(use_embedding=use)
        first_frame(m, [E_A], [LEFT], [1])
        assert _match(m, [E_A], [[80, 80, 90, 90]]) == expected

    # IoU: embedding mildly prefers identity 1, the box sits exactly on identity 0
    for use, expected in ((True, [0]), (False, [1])):
        m = TrackMatcher(use_iou=use)
        first_frame(m, [[0.0, 0.0], [1.0, 0.0]], [LEFT, RIGHT], [1, 1])
        assert _match(m, [[1.0, 0.0]], [LEFT]) == expected

    # label: same place and embedding, different label -> new identity unless the label term is off
    for use, expected in ((True, [1]), (False, [0])):
        m = TrackMatcher(use_label=use)
        first_frame(m, [[1.0, 0.0]], [LEFT], [1])
        assert _match(m, [[1.0, 0.0]], [LEFT], labels=[2]) == expected

    # score: two detections compete for identity 0; the confident one wins only with the score term
    for use, expected in ((True, [0, -1]), (False, [-1, 0])):
        m = TrackMatcher(use_score=use)
        first_frame(m, [[1.0, 0.0]], [LEFT], [1])
        assert _match(m, [[2.0, 0.0], [3.0, 0.0]], [LEFT, LEFT], scores=[0.9, 0.1]) == expected

    # a weight of 0 is the same switch
    m = TrackMatcher(iou_weight=0.0)
    first_frame(m, [[0.0, 0.0], [1.0, 0.0]], [LEFT, RIGHT], [1, 1])
    assert _match(m, [[1.0, 0.0]], [LEFT]) == [1]


def test_matcher_rejects_non_positive_scores():
    m = TrackMatcher()
    _match(m, [E_A], [LEFT])
    with pytest.raises(ValueError, match="scores"):
        _match(m, [E_A], [LEFT], scores=[0.0])


# ---------------------------------------------------------------- IouTracker


def test_iou_tracker_greedy_by_score():
    tracker = IouTracker(iou_threshold=0.5)
    assert _match(tracker, [[0.0]] * 2, [LEFT, [20, 0, 30, 10]]) == [0, 1]
    # b (score 0.9, IoU 0.67 with track 0) is served before a (score 0.5, IoU 0.82 with track 0)
    ids = _match(tracker, [[0.0]] * 2, [[1, 0, 11, 10], [2, 0, 12, 10]], scores=[0.5, 0.9])
    assert ids == [2, 0]
    # only the previous frame is remembered: track 1 disappeared last frame, so it comes back as new
    assert _match(tracker, [[0.0]], [[20, 0, 30, 10]]) == [3]
    assert _match(tracker, [[0.0]], [[21, 0, 31, 10]]) == [3]


# ---------------------------------------------------------------- video results and id switches


def test_video_result_accumulator_format():
    acc = VideoResultAccumulator(video_id=11, num_frames=3, label_to_cat_id={1: 7, 2: 9})
    h, w = 6, 8
    prob0 = torch.zeros(2, 1, h, w)
    prob0[0, 0, 1:3, 2:5] = 0.8
    prob0[0, 0, 3, 2] = 0.4  # below the 0.5 threshold
    prob0[1, 0, 4:6, 0:2] = 0.9
    acc.add_frame(0, torch.tensor([0, 1]), torch.tensor([1, 1]), _t([0.8, 0.5]), prob0)
    mask1 = torch.zeros(2, h, w, dtype=torch.bool)
    mask1[0, 0:2, 0:2] = True
    acc.add_frame(1, torch.tensor([0, -1]), torch.tensor([2, 1]), _t([0.6, 0.3]), mask1)
    acc.add_frame(2, torch.tensor([0]), torch.tensor([2]), _t([0.4]), torch.ones(1, h, w))
    results = acc.results()
    json.dumps(results)
    assert len(results) == 2
    r0, r1 = results
    assert r0["video_id"] == 11 and r0["category_id"] == 9  # labels 1, 2, 2 -> 2 -> cat 9
    assert r0["score"] == pytest.approx(0.6)
    assert len(r0["segmentations"]) == 3 and all(s is not None for s in r0["segmentations"])
    decoded = mask_utils.decode(r0["segmentations"][0]).astype(bool)
    np.testing.assert_array_equal(decoded, (prob0[0, 0] > 0.5).numpy())
    assert isinstance(r0["segmentations"][0]["counts"], str)
    assert r1["category_id"] == 7 and r1["score"] == pytest.approx(0.5)
    assert r1["segmentations"][1:] == [None, None]
    with pytest.raises(ValueError, match="frame 1 added twice"):
        acc.add_frame(1, torch.tensor([0]), torch.tensor([1]), _t([0.5]), torch.ones(1, h, w))
    fresh = VideoResultAccumulator(11, 1, {1: 7})
    with pytest.raises(ValueError, match="label 5"):
        fresh.add_frame(0, torch.tensor([0]), torch.tensor([5]), _t([0.5]), prob0[:1])


def test_video_result_accumulator_tie_vote_and_bad_frame():
    acc = VideoResultAccumulator(video_id=1, num_frames=2, label_to_cat_id={1: 3, 2: 4})
    acc.add_frame(0, torch.tensor([0]), torch.tensor([2]), _t([0.5]), torch.ones(1, 2, 2))
    acc.add_frame(1, torch.tensor([0]), torch.tensor([1]), _t([0.5]), torch.ones(1, 2, 2))
    assert acc.results()[0]["category_id"] == 3  # tie 1 vs 2 -> the smallest label, as np.bincount.argmax
    with pytest.raises(ValueError, match="outside"):
        acc.add_frame(2, torch.tensor([0]), torch.tensor([1]), _t([0.5]), torch.ones(1, 2, 2))
    with pytest.raises(ValueError, match="appears twice"):
        VideoResultAccumulator(1, 1, {1: 1}).add_frame(
            0, torch.tensor([0, 0]), torch.tensor([1, 1]), _t([0.5, 0.5]), torch.ones(2, 2, 2)
        )


def test_count_id_switches_hand_case_boxes():
    g0 = [_t(LEFT)] * 5
    g1 = [_t([50, 50, 60, 60])] * 5
    pred = {
        5: [_t(LEFT), _t([1, 0, 11, 10]), None, None, _t(LEFT)],
        7: [None, None, None, _t(LEFT), None],
        8: [_t([50, 50, 60, 60])] * 5,
        9: [None, None, _t([5, 5, 15, 15]), None, None],  # IoU 0.14 with g0: below 0.5, frame unmatched
    }
    # g0: 5, 5, (unmatched), 7, 5 -> two switches; g1: always 8 -> none
    assert count_id_switches({0: g0, 1: g1}, pred) == 2
    assert count_id_switches({0: g0}, {}) == 0
    with pytest.raises(ValueError, match="numbers of frames"):
        count_id_switches({0: g0}, {1: g0[:3]})


def test_count_id_switches_with_masks_and_rle():
    full = torch.zeros(4, 4, dtype=torch.bool)
    full[:2] = True
    gt = {0: [full, full, full]}
    rle = mask_utils.encode(np.asfortranarray(full.numpy().astype(np.uint8)))  # counts as bytes
    pred = {0: [full, None, None], 1: [None, rle, rle]}
    assert count_id_switches(gt, pred) == 1
    with pytest.raises(ValueError, match="box was compared with a mask"):
        count_id_switches({0: [_t(LEFT)]}, {0: [full]})


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_outputs_follow_the_input_device(device):
    boxes = _t([LEFT, RIGHT]).to(device)
    jittered = jitter_boxes(boxes, torch.Generator().manual_seed(0))  # CPU generator, device boxes
    assert jittered.device == boxes.device
    embed_map = torch.randn(2, 4, 6, generator=torch.Generator().manual_seed(1)).to(device)
    embeds = embeddings_at_boxes(embed_map, jittered)
    assert embeds.shape == (2, 2) and embeds.device == boxes.device
    m = TrackMatcher()
    labels, scores = torch.tensor([1, 2], device=device), torch.tensor([0.9, 0.8], device=device)
    assert m.match(embeds, boxes, labels, scores).tolist() == [0, 1]
    ids = m.match(embeds, boxes, labels, scores)
    assert ids.tolist() == [0, 1] and ids.device == boxes.device
