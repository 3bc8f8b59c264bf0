"""Tests for sipmask_ref/tracking.py (§3.5 training side: tracking branch, embeddings, targets, loss)."""

import math

import pytest
import torch
import torch.nn.functional as F

from sipmask_ref.tracking import (
    TrackingBranch,
    embeddings_at_boxes,
    jitter_boxes,
    tracking_loss,
    tracking_targets,
)

torch.set_num_threads(1)


def _t(rows):
    return torch.tensor(rows, dtype=torch.float32)


# ---------------------------------------------------------------- branch and embeddings


def test_tracking_branch_shape_and_fusion():
    torch.manual_seed(0)
    branch = TrackingBranch(in_channels=8, embed_dim=16)
    p3, p4, p5 = torch.randn(2, 8, 16, 20), torch.randn(2, 8, 8, 10), torch.randn(2, 8, 4, 5)
    out = branch(p3, p4, p5)
    assert out.shape == (2, 16, 16, 20)
    # Recompute by hand: shared convs per level, P4 x2 and P5 x4 upsampled to P3's size, concat, 1x1.
    up = lambda x, f: F.interpolate(x, scale_factor=f, mode="bilinear", align_corners=False)  # noqa: E731
    fused = torch.cat([branch.convs(p3), up(branch.convs(p4), 2), up(branch.convs(p5), 4)], dim=1)
    assert fused.shape == (2, 24, 16, 20)
    torch.testing.assert_close(out, branch.fuse(fused))
    assert out.min() < 0  # no activation after the 1x1 conv
    # without GN, and with GN on a channel count that 32 does not divide
    levels = (torch.randn(1, 48, 8, 8), torch.randn(1, 48, 4, 4), torch.randn(1, 48, 2, 2))
    assert TrackingBranch(48, 8, use_gn=False)(*levels).shape == (1, 8, 8, 8)
    assert TrackingBranch(48, 8)(*levels).shape == (1, 8, 8, 8)


def test_embeddings_at_boxes_picks_centre_cell():
    embed_map = torch.arange(3 * 4 * 5, dtype=torch.float32).reshape(3, 4, 5)  # [E=3, H=4, W=5]
    boxes = _t(
        [
            [16, 8, 24, 16],  # centre (20, 12) -> cell x=2, y=1
            [0, 0, 7.9, 7.9],  # centre (3.95, 3.95) -> cell (0, 0)
            [100, 100, 120, 130],  # outside -> clamped to (4, 3)
            [-30, -30, -10, -10],  # negative centre -> clamped to (0, 0)
        ]
    )
    got = embeddings_at_boxes(embed_map, boxes, stride=8)
    assert got.shape == (4, 3)
    torch.testing.assert_close(got[0], embed_map[:, 1, 2])
    torch.testing.assert_close(got[1], embed_map[:, 0, 0])
    torch.testing.assert_close(got[2], embed_map[:, 3, 4])
    torch.testing.assert_close(got[3], embed_map[:, 0, 0])


def test_jitter_boxes_bounds_and_determinism():
    boxes = _t([[10, 20, 110, 70], [0, 0, 8, 40], [50, 50, 51, 52]])
    a = jitter_boxes(boxes, torch.Generator().manual_seed(3))
    b = jitter_boxes(boxes, torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, boxes)
    wh = boxes[:, 2:] - boxes[:, :2]
    shift = (a[:, :2] + a[:, 2:]) / 2 - (boxes[:, :2] + boxes[:, 2:]) / 2
    ratio = (a[:, 2:] - a[:, :2]) / wh
    assert (shift.abs() <= 0.05 * wh + 1e-5).all()
    assert ((ratio >= 0.95 - 1e-6) & (ratio <= 1.05 + 1e-6)).all()
    assert jitter_boxes(boxes[:0]).shape == (0, 4)


# ---------------------------------------------------------------- training loss


def test_tracking_targets_with_absent_objects():
    targets = tracking_targets(torch.tensor([3, 5, 9, 3]), torch.tensor([9, 3]))
    assert targets.tolist() == [2, 0, 1, 2]
    assert tracking_targets(torch.tensor([1, 2]), torch.tensor([], dtype=torch.long)).tolist() == [0, 0]
    with pytest.raises(ValueError, match="not distinct"):
        tracking_targets(torch.tensor([1]), torch.tensor([4, 4]))


def test_tracking_loss_matches_hand_cross_entropy():
    cur = _t([[1, 0], [0, 2]])
    ref = _t([[1, 1], [2, 0]])
    targets = torch.tensor([2, 0])
    # dot products: row 0 -> [1, 2], row 1 -> [2, 0]; with the zero "new" column first:
    rows = [[0.0, 1.0, 2.0], [0.0, 2.0, 0.0]]

    def ce(row, t):
        return -(row[t] - math.log(sum(math.exp(v) for v in row)))

    expected = (ce(rows[0], 2) + ce(rows[1], 0)) / 2
    assert tracking_loss(cur, ref, targets).item() == pytest.approx(expected, rel=1e-6)


def test_tracking_loss_empty_cases_are_zero_and_connected():
    ref = torch.randn(3, 4, requires_grad=True)
    loss = tracking_loss(torch.zeros(0, 4, requires_grad=True), ref, torch.zeros(0, dtype=torch.long))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    cur = torch.randn(2, 4, requires_grad=True)
    loss = tracking_loss(cur, torch.zeros(0, 4, requires_grad=True), torch.zeros(2, dtype=torch.long))
    assert loss.item() == 0.0
    loss.backward()
    with pytest.raises(ValueError, match="targets"):
        tracking_loss(cur, ref, torch.tensor([0, 4]))
