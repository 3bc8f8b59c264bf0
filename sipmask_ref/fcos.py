"""§3 FCOS: feature-map points, training-target assignment, box decoding and centerness.

SipMask "is built on FCOS detection method [40], due to its flexible anchor-free design" (§3).
Every location (point) of every pyramid level predicts a class and the distances (l, t, r, b) from
itself to the four sides of a box. This file holds the parts of FCOS that are plain geometry:

    locations          where the points of each level lie in image pixels
    fcos_targets       which ground-truth box (if any) each point must predict (vectorised)
    decode_boxes       (l, t, r, b) distances -> (x1, y1, x2, y2) boxes
    centerness_target  the FCOS centerness of a point inside its box

`fcos_targets_reference` is the same assignment written with plain python loops; it is used only
by the tests, to prove the vectorised version equal.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor


class FcosTargets(NamedTuple):
    """Training targets of the points of one image.

    labels:      int64 [P], class 1..C of the assigned ground truth, 0 for background.
    box_targets: float [P, 4], distances (l, t, r, b) in pixels from the point to the sides of its
                 assigned ground-truth box; zeros for background points.
    matched_gt:  int64 [P], index into the image's ground truths, -1 for background points.
    """

    labels: Tensor
    box_targets: Tensor
    matched_gt: Tensor


def locations(
    feature_sizes: list[tuple[int, int]],
    strides: Sequence[int],
    device: torch.device | str | None = None,
) -> list[Tensor]:
    """Image-pixel coordinates of the points of each pyramid level.

    The point in row i, column j of a level with stride s lies at
    (x, y) = (s // 2 + j * s, s // 2 + i * s), the centre of the s x s cell it sees (as the
    authors' code). Points are listed row-major, the order of `feature.flatten(-2)`.

    Args:
        feature_sizes: (height, width) of each level's feature map.
        strides: the stride of each level in image pixels.
        device: where to create the tensors (follow the feature maps' device).
    Returns:
        one float32 tensor [P_l, 2] of (x, y) per level.
    """
    if len(feature_sizes) != len(strides):
        raise ValueError(f"fcos.locations: {len(feature_sizes)} feature sizes but {len(strides)} strides")
    points_per_level = []
    for (height, width), stride in zip(feature_sizes, strides, strict=True):
        xs = torch.arange(width, dtype=torch.float32, device=device) * stride + stride // 2
        ys = torch.arange(height, dtype=torch.float32, device=device) * stride + stride // 2
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")  # [H, W] each
        points_per_level.append(torch.stack([grid_x.flatten(), grid_y.flatten()], dim=1))  # [P_l, 2]
    return points_per_level


def flatten_levels(
    points_per_level: list[Tensor],
    strides: Sequence[int],
    regress_ranges: Sequence[tuple[float, float]],
) -> tuple[Tensor, Tensor, Tensor]:
    """Concatenate the points of all levels and give each point its level's stride and range.

    Returns:
        points [P, 2], strides [P] (float), regress_ranges [P, 2], in the order of the levels:
        exactly the inputs `fcos_targets` expects.
    """
    if not len(points_per_level) == len(strides) == len(regress_ranges):
        raise ValueError(
            f"fcos.flatten_levels: {len(points_per_level)} levels of points, {len(strides)} strides "
            f"and {len(regress_ranges)} regress ranges must agree"
        )
    points = torch.cat(points_per_level, dim=0)  # [P, 2]
    per_point_strides = torch.cat(
        [
            torch.full((len(p),), float(s), dtype=points.dtype, device=points.device)
            for p, s in zip(points_per_level, strides, strict=True)
        ]
    )  # [P]
    per_point_ranges = torch.cat(
        [
            torch.tensor([lo, hi], dtype=points.dtype, device=points.device).expand(len(p), 2)
            for p, (lo, hi) in zip(points_per_level, regress_ranges, strict=True)
        ]
    )  # [P, 2]
    return points, per_point_strides, per_point_ranges


def _check_target_inputs(
    points: Tensor, strides: Tensor, regress_ranges: Tensor, gt_boxes: Tensor, gt_labels: Tensor
) -> None:
    """Raise a ValueError naming the bad argument of `fcos_targets`."""
    num_points = points.shape[0]
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"fcos_targets: points must be [P, 2], got {tuple(points.shape)}")
    if strides.shape != (num_points,):
        raise ValueError(f"fcos_targets: strides must be [P]={num_points}, got {tuple(strides.shape)}")
    if regress_ranges.shape != (num_points, 2):
        raise ValueError(f"fcos_targets: regress_ranges must be [P, 2], got {tuple(regress_ranges.shape)}")
    if gt_boxes.ndim != 2 or gt_boxes.shape[1] != 4:
        raise ValueError(f"fcos_targets: gt_boxes must be [G, 4], got {tuple(gt_boxes.shape)}")
    if gt_labels.shape != (gt_boxes.shape[0],):
        raise ValueError(
            f"fcos_targets: gt_labels must be [G]={gt_boxes.shape[0]}, got {tuple(gt_labels.shape)}"
        )
    if gt_labels.numel() > 0 and int(gt_labels.min()) < 1:
        raise ValueError(
            "fcos_targets: gt_labels must be 1..C (0 is reserved for background), "
            f"got min label {int(gt_labels.min())}"
        )


def points_of_maps(
    maps: Sequence[Tensor], strides: Sequence[int], regress_ranges: Sequence[tuple[float, float]]
) -> tuple[Tensor, Tensor, Tensor]:
    """`flatten_levels(locations(...))` for per-level maps [B, *, H_l, W_l] (the head's outputs).

    Returns points [P, 2], strides [P], regress_ranges [P, 2] on the maps' device.
    """
    sizes = [(int(x.shape[-2]), int(x.shape[-1])) for x in maps]
    return flatten_levels(locations(sizes, strides, maps[0].device), strides, regress_ranges)


def fcos_targets(
    points: Tensor,
    strides: Tensor,
    regress_ranges: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    center_radius: float = 1.5,
) -> FcosTargets:
    """Assign each point of one image to at most one ground-truth box (FCOS with center sampling).

    A point is a candidate for ground truth g when all of these hold:
      1. it lies strictly inside box g;
      2. center sampling: it lies strictly inside the square g-centre +- center_radius * stride (the
         stride of the point's own level), clipped to box g. `center_radius <= 0` turns center
         sampling off (step 1 alone, the original FCOS);
      3. the largest of its distances max(l, t, r, b) to box g lies in its level's regress range
         lo < max <= hi, so that each level learns objects of one scale.
    4. Among the candidate ground truths of a point, the one with the smallest area wins (the
       first one if areas are equal). A point with no candidate is background.

    Args:
        points: [P, 2] (x, y) in image pixels, all levels concatenated (see `flatten_levels`).
        strides: [P] stride of each point's level.
        regress_ranges: [P, 2] (lo, hi) of each point's level.
        gt_boxes: [G, 4] xyxy in image pixels; G may be 0.
        gt_labels: [G] int64, 1..C.
        center_radius: center-sampling radius in strides (1.5 as the authors).
    Returns:
        FcosTargets(labels [P], box_targets [P, 4] (l, t, r, b), matched_gt [P]).
    """
    _check_target_inputs(points, strides, regress_ranges, gt_boxes, gt_labels)
    num_points, num_gt = points.shape[0], gt_boxes.shape[0]
    device = points.device
    if num_gt == 0:
        return FcosTargets(
            labels=torch.zeros(num_points, dtype=torch.int64, device=device),
            box_targets=points.new_zeros((num_points, 4)),
            matched_gt=torch.full((num_points,), -1, dtype=torch.int64, device=device),
        )

    gt_boxes = gt_boxes.to(points.dtype)
    strides = strides.to(points.dtype)
    regress_ranges = regress_ranges.to(points.dtype)
    x = points[:, 0, None]  # [P, 1]
    y = points[:, 1, None]  # [P, 1]
    x1, y1, x2, y2 = gt_boxes.unbind(dim=1)  # [G] each

    # Distances from every point to the four sides of every ground-truth box.
    ltrb = torch.stack([x - x1, y - y1, x2 - x, y2 - y], dim=2)  # [P, G, 4]

    # Step 1: the point lies strictly inside the ground-truth box.
    candidate = ltrb.min(dim=2).values > 0  # [P, G]

    # Step 2: center sampling: strictly inside centre +- radius * stride, clipped to the box.
    if center_radius > 0:
        radius = center_radius * strides[:, None]  # [P, 1]
        center_x = (x1 + x2) / 2  # [G]
        center_y = (y1 + y2) / 2  # [G]
        region_x1 = torch.maximum(center_x - radius, x1)  # [P, G]
        region_y1 = torch.maximum(center_y - radius, y1)  # [P, G]
        region_x2 = torch.minimum(center_x + radius, x2)  # [P, G]
        region_y2 = torch.minimum(center_y + radius, y2)  # [P, G]
        in_center = (x > region_x1) & (y > region_y1) & (x < region_x2) & (y < region_y2)  # [P, G]
        candidate &= in_center

    # Step 3: the largest distance must lie in the level's regress range, lo < max <= hi.
    # The lower bound is exclusive so that a distance exactly on a boundary (e.g. 64) belongs to
    # one level only.
    max_distance = ltrb.max(dim=2).values  # [P, G]
    candidate &= (max_distance > regress_ranges[:, 0, None]) & (max_distance <= regress_ranges[:, 1, None])

    # Step 4: among the candidates, the ground truth with the smallest area wins.
    # Areas are (x2 - x1) * (y2 - y1); the authors' mmdet-v1 code adds +1 to width and height, a
    # deliberate difference here (it can only change which box wins between near-equal areas).
    areas = (x2 - x1) * (y2 - y1)  # [G]
    candidate_areas = torch.where(candidate, areas[None, :], torch.inf)  # [P, G]
    min_area, matched = candidate_areas.min(dim=1)  # [P] each; ties -> the first index
    foreground = torch.isfinite(min_area)  # [P]

    matched_gt = torch.where(foreground, matched, -1)  # [P]
    labels = torch.where(foreground, gt_labels.to(device)[matched], 0)  # [P]
    point_index = torch.arange(num_points, device=device)
    box_targets = ltrb[point_index, matched] * foreground[:, None]  # [P, 4]
    return FcosTargets(labels=labels.to(torch.int64), box_targets=box_targets, matched_gt=matched_gt)


def fcos_targets_reference(
    points: Tensor,
    strides: Tensor,
    regress_ranges: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    center_radius: float = 1.5,
) -> FcosTargets:
    """The assignment of `fcos_targets` written with python loops over points and boxes.

    Slow; used by the tests only, to check the vectorised version.
    """
    _check_target_inputs(points, strides, regress_ranges, gt_boxes, gt_labels)
    labels, box_targets, matched_gt = [], [], []
    for p in range(points.shape[0]):
        x, y = float(points[p, 0]), float(points[p, 1])
        stride = float(strides[p])
        lo, hi = float(regress_ranges[p, 0]), float(regress_ranges[p, 1])
        best_gt, best_area, best_ltrb = -1, float("inf"), [0.0, 0.0, 0.0, 0.0]
        for g in range(gt_boxes.shape[0]):
            x1, y1, x2, y2 = (float(v) for v in gt_boxes[g])
            l, t, r, b = x - x1, y - y1, x2 - x, y2 - y
            if min(l, t, r, b) <= 0:
                continue
            if center_radius > 0:
                cx, cy, radius = (x1 + x2) / 2, (y1 + y2) / 2, center_radius * stride
                if not (max(cx - radius, x1) < x < min(cx + radius, x2)):
                    continue
                if not (max(cy - radius, y1) < y < min(cy + radius, y2)):
                    continue
            if not (lo < max(l, t, r, b) <= hi):
                continue
            area = (x2 - x1) * (y2 - y1)
            if area < best_area:
                best_gt, best_area, best_ltrb = g, area, [l, t, r, b]
        matched_gt.append(best_gt)
        labels.append(int(gt_labels[best_gt]) if best_gt >= 0 else 0)
        box_targets.append(best_ltrb)
    return FcosTargets(
        labels=torch.tensor(labels, dtype=torch.int64, device=points.device),
        box_targets=torch.tensor(box_targets, dtype=points.dtype, device=points.device).reshape(-1, 4),
        matched_gt=torch.tensor(matched_gt, dtype=torch.int64, device=points.device),
    )


def decode_boxes(points: Tensor, ltrb: Tensor) -> Tensor:
    """Boxes from distances: (x - l, y - t, x + r, y + b).

    Args:
        points: [P, 2] (x, y).
        ltrb: [P, 4] distances (l, t, r, b) in the same units as the points.
    Returns:
        [P, 4] boxes (x1, y1, x2, y2).
    """
    if points.shape[:-1] != ltrb.shape[:-1] or points.shape[-1] != 2 or ltrb.shape[-1] != 4:
        raise ValueError(
            f"decode_boxes: points [P, 2] and ltrb [P, 4] expected, got {tuple(points.shape)} "
            f"and {tuple(ltrb.shape)}"
        )
    x, y = points.unbind(dim=-1)
    left, top, right, bottom = ltrb.unbind(dim=-1)
    return torch.stack([x - left, y - top, x + right, y + bottom], dim=-1)


def centerness_target(ltrb: Tensor) -> Tensor:
    """FCOS centerness of positive points: sqrt(min(l,r)/max(l,r) * min(t,b)/max(t,b)).

    1 at the centre of the box, falling to 0 at its sides. The distances must be positive (every
    positive point lies strictly inside its box).

    Args:
        ltrb: [N, 4] distances (l, t, r, b).
    Returns:
        [N] centerness in (0, 1].
    """
    left, top, right, bottom = ltrb.unbind(dim=-1)
    horizontal = torch.minimum(left, right) / torch.maximum(left, right)  # [N]
    vertical = torch.minimum(top, bottom) / torch.maximum(top, bottom)  # [N]
    return torch.sqrt(horizontal * vertical)
