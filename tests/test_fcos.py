"""Tests for sipmask_ref/fcos.py: points, target assignment, decoding, centerness."""

import math

import pytest
import torch

from sipmask_ref.fcos import (
    FcosTargets,
    centerness_target,
    decode_boxes,
    fcos_targets,
    fcos_targets_reference,
    flatten_levels,
    locations,
    points_of_maps,
)

STRIDES = (8, 16, 32, 64, 128)
RANGES = ((-1, 64), (64, 128), (128, 256), (256, 512), (512, 1e8))


def test_locations_two_levels_by_hand():
    points = locations([(2, 3), (1, 2)], [8, 16], device="cpu")
    assert len(points) == 2
    # stride 8: x = 4 + 8j for j = 0, 1, 2; y = 4 + 8i for i = 0, 1; row-major.
    expected_8 = torch.tensor([[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12]], dtype=torch.float32)
    # stride 16: x = 8 + 16j, y = 8.
    expected_16 = torch.tensor([[8, 8], [24, 8]], dtype=torch.float32)
    torch.testing.assert_close(points[0], expected_8)
    torch.testing.assert_close(points[1], expected_16)


def test_locations_odd_stride_and_mismatch():
    (points,) = locations([(1, 2)], [3])
    torch.testing.assert_close(points, torch.tensor([[1.0, 1.0], [4.0, 1.0]]))  # 3 // 2 = 1
    with pytest.raises(ValueError, match="1 feature sizes but 2 strides"):
        locations([(1, 2)], [8, 16])


def test_flatten_levels():
    per_level = locations([(2, 2), (1, 1)], [8, 16])
    points, strides, ranges = flatten_levels(per_level, [8, 16], [(-1, 64), (64, 128)])
    assert points.shape == (5, 2)
    torch.testing.assert_close(strides, torch.tensor([8.0, 8, 8, 8, 16]))
    torch.testing.assert_close(ranges[3], torch.tensor([-1.0, 64]))
    torch.testing.assert_close(ranges[4], torch.tensor([64.0, 128]))


def _image_points(height: int, width: int):
    sizes = [(math.ceil(height / s), math.ceil(width / s)) for s in STRIDES]
    return flatten_levels(locations(sizes, STRIDES), STRIDES, RANGES)


def _random_boxes(generator: torch.Generator, num: int, size: float) -> torch.Tensor:
    centres = torch.rand(num, 2, generator=generator) * size
    half = torch.rand(num, 2, generator=generator) * size * 0.5 + 2
    # Quantise so that some boxes repeat exactly (equal areas exercise the tie-break).
    return torch.round(torch.cat([centres - half, centres + half], dim=1))


@pytest.mark.parametrize("num_gt", [0, 1, 3, 6])
@pytest.mark.parametrize("center_radius", [1.5, 0.0])
def test_vectorised_equals_reference(num_gt, center_radius):
    generator = torch.Generator().manual_seed(100 * num_gt + int(center_radius))
    points, strides, ranges = _image_points(96, 128)
    boxes = _random_boxes(generator, num_gt, 128.0)
    if num_gt >= 3:
        boxes[1] = boxes[0]  # identical boxes: the first must win
        boxes[2] = boxes[0] + torch.tensor([1.0, 1.0, 1.0, 1.0])  # same area, shifted
    labels = torch.randint(1, 5, (num_gt,), generator=generator)
    fast = fcos_targets(points, strides, ranges, boxes, labels, center_radius)
    slow = fcos_targets_reference(points, strides, ranges, boxes, labels, center_radius)
    assert isinstance(fast, FcosTargets)
    torch.testing.assert_close(fast.labels, slow.labels)
    torch.testing.assert_close(fast.matched_gt, slow.matched_gt)
    torch.testing.assert_close(fast.box_targets, slow.box_targets)
    if num_gt > 0:
        assert (fast.labels > 0).any()
    if num_gt >= 3:
        assert not (fast.matched_gt == 1).any()  # the duplicate of box 0 never wins


def test_no_ground_truth_is_all_background():
    points, strides, ranges = _image_points(32, 32)
    targets = fcos_targets(points, strides, ranges, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
    assert (targets.labels == 0).all() and (targets.matched_gt == -1).all()
    assert targets.box_targets.shape == (points.shape[0], 4) and (targets.box_targets == 0).all()


def test_center_sampling_range_and_smallest_area_by_hand():
    # Single level, stride 8, range (-1, 64]. Points on a row at y = 20.
    xs = torch.tensor([2.0, 12.0, 20.0, 28.0, 36.0, 44.0, 60.0])
    points = torch.stack([xs, torch.full_like(xs, 20.0)], dim=1)
    strides = torch.full((7,), 8.0)
    ranges = torch.tensor([[-1.0, 64.0]]).expand(7, 2)
    # Box 0 spans x 0..80 (centre 40), y 0..40 (centre 20). Centre region x in (28, 52).
    # Box 1 is a smaller box around x = 36 and wins there.
    boxes = torch.tensor([[0.0, 0.0, 80.0, 40.0], [30.0, 10.0, 42.0, 30.0]])
    labels = torch.tensor([3, 7])
    targets = fcos_targets(points, strides, ranges, boxes, labels, center_radius=1.5)
    # x=2, 12, 20, 28: inside box 0 but outside its centre region (28 is on the open border).
    # x=36: inside both candidates' centre regions -> smaller box 1.
    # x=44: centre region of box 0 only (box 1 ends at 42).
    # x=60: outside the centre region.
    assert targets.labels.tolist() == [0, 0, 0, 0, 7, 3, 0]
    assert targets.matched_gt.tolist() == [-1, -1, -1, -1, 1, 0, -1]
    torch.testing.assert_close(targets.box_targets[4], torch.tensor([6.0, 10.0, 6.0, 10.0]))
    torch.testing.assert_close(targets.box_targets[5], torch.tensor([44.0, 20.0, 36.0, 20.0]))

    # Without center sampling every point inside a box is a candidate, as long as
    # max(l, t, r, b) stays in the range: x = 2 (r = 78) and x = 12 (r = 68) exceed 64.
    plain = fcos_targets(points, strides, ranges, boxes, labels, center_radius=0.0)
    assert plain.labels.tolist() == [0, 0, 3, 3, 7, 3, 3]
    range_40 = torch.tensor([[-1.0, 40.0]]).expand(7, 2)
    small_range = fcos_targets(points, strides, range_40, boxes, labels, center_radius=0.0)
    # max distances for box 0: x=2:78, 12:68, 20:60, 28:52, 36:44, 44:44, 60:60 -> all > 40.
    # Box 1 at x=36: max(6, 10, 6, 10) = 10 <= 40.
    assert small_range.labels.tolist() == [0, 0, 0, 0, 7, 0, 0]
    # The lower bound is exclusive: a range (44, 64] drops max distance 44 exactly.
    range_44 = torch.tensor([[44.0, 64.0]]).expand(7, 2)
    lower = fcos_targets(points, strides, range_44, boxes, labels, center_radius=0.0)
    assert lower.labels.tolist() == [0, 0, 3, 3, 0, 0, 3]


def test_bad_labels_raise():
    points, strides, ranges = torch.zeros(1, 2), torch.ones(1), torch.tensor([[-1.0, 64]])
    with pytest.raises(ValueError, match=r"1\.\.C"):
        fcos_targets(points, strides, ranges, torch.tensor([[0.0, 0, 4, 4]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="gt_boxes"):
        fcos_targets(points, strides, ranges, torch.zeros(2, 3), torch.tensor([1, 1]))


def test_decode_boxes_round_trip():
    box = torch.tensor([10.0, 20.0, 50.0, 44.0])
    points = torch.tensor([[12.0, 30.0], [30.0, 40.0], [49.5, 20.5]])
    ltrb = torch.stack(
        [points[:, 0] - box[0], points[:, 1] - box[1], box[2] - points[:, 0], box[3] - points[:, 1]], dim=1
    )
    torch.testing.assert_close(decode_boxes(points, ltrb), box.expand(3, 4))


def test_centerness_target_by_hand():
    ltrb = torch.tensor([[1.0, 2.0, 3.0, 2.0], [5.0, 5.0, 5.0, 5.0], [2.0, 1.0, 8.0, 4.0]])
    expected = torch.tensor([math.sqrt(1 / 3), 1.0, math.sqrt(2 / 8 * 1 / 4)])
    torch.testing.assert_close(centerness_target(ltrb), expected)
    assert centerness_target(torch.zeros(0, 4)).shape == (0,)


def test_points_of_maps_reads_the_level_sizes_from_the_maps():
    strides, ranges = (8, 16), ((-1.0, 64.0), (64.0, 1e8))
    maps = [torch.zeros(2, 3, 5, 7), torch.zeros(2, 3, 3, 4)]
    expected = flatten_levels(locations([(5, 7), (3, 4)], strides), strides, ranges)
    for got, want in zip(points_of_maps(maps, strides, ranges), expected, strict=True):
        torch.testing.assert_close(got, want)
    assert expected[0].shape == (5 * 7 + 3 * 4, 2)
