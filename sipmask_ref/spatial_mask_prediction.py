"""§3.3 Spatial mask prediction (SMP): one map per sub-region of a box, pruned and summed.

Each detection j comes with k_h x k_w sets of spatial coefficients c_ij, one per sub-region i of
its box (2 x 2: top-left, top-right, bottom-left, bottom-right). With the image's basis masks B,

    M_i = sigma(B x C_i)                                                        (Eq. 2)

"the response values of M_ij outside the i-th quadrant of the box j are set as zero for generating
a pruned map" and "we perform a simple addition of its pruned maps obtained from all four
quadrants". So inside box j a pixel takes the value of its own sub-region's map and outside the
box it is 0.

Which pixels belong where (boxes in basis-map pixels, floats allowed):
    integer pixel (x, y) is inside box j when x1 <= x < x2 and y1 <= y < y2;
    its column is min(k_w - 1, floor((x - x1) * k_w / (x2 - x1))), its row likewise with k_h;
    sub-regions are numbered row-major: index = row * k_w + column.
The authors' CropSplit CUDA kernel divides by (x2 - x1 + 0.1) / 2 instead of (x2 - x1) / 2, which
moves the split a few hundredths of a pixel; sipmask_ref deliberately uses the exact box fraction.
Boxes are not clipped to the map before splitting: a box partly outside the map keeps its
sub-regions where the whole box puts them, and only the pixels that exist are filled.

`assemble_masks` is the fast path; `assemble_masks_reference` is Eq. (2) written literally with
loops over boxes and sub-regions, for the tests.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check_sub_regions(sub_regions: tuple[int, int]) -> tuple[int, int]:
    """Validate (k_h, k_w) and return it as a tuple of ints."""
    if len(sub_regions) != 2 or min(int(k) for k in sub_regions) < 1:
        raise ValueError(f"sub_regions must be (k_h, k_w) with k >= 1, got {sub_regions}")
    return int(sub_regions[0]), int(sub_regions[1])


def _check_boxes(boxes: Tensor, name: str) -> None:
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name}: boxes must be [N, 4] xyxy, got {tuple(boxes.shape)}")


def box_pixel_mask(boxes: Tensor, height: int, width: int) -> Tensor:
    """Pixels (x, y) of an H x W map with x1 <= x < x2 and y1 <= y < y2, per box.

    Args:
        boxes: [N, 4] xyxy in map pixels.
    Returns:
        bool [N, H, W].
    """
    _check_boxes(boxes, "box_pixel_mask")
    xs = torch.arange(width, dtype=boxes.dtype, device=boxes.device)  # [W]
    ys = torch.arange(height, dtype=boxes.dtype, device=boxes.device)  # [H]
    x1, y1, x2, y2 = (v[:, None] for v in boxes.unbind(dim=1))  # [N, 1] each
    inside_x = (xs >= x1) & (xs < x2)  # [N, W]
    inside_y = (ys >= y1) & (ys < y2)  # [N, H]
    return inside_y[:, :, None] & inside_x[:, None, :]  # [N, H, W]


def sub_region_index(
    boxes: Tensor, height: int, width: int, sub_regions: tuple[int, int]
) -> tuple[Tensor, Tensor]:
    """Which pixels lie inside each box, and in which of its sub-regions.

    Args:
        boxes: [N, 4] xyxy in map pixels.
        height, width: map size H x W.
        sub_regions: (k_h, k_w).
    Returns:
        inside: bool [N, H, W], x1 <= x < x2 and y1 <= y < y2.
        index: int64 [N, H, W], row * k_w + column of the pixel's sub-region. Outside the box the
            row/column are clamped into range, so the index is valid but meaningless there.
    """
    k_h, k_w = _check_sub_regions(sub_regions)
    inside = box_pixel_mask(boxes, height, width)  # [N, H, W]
    xs = torch.arange(width, dtype=boxes.dtype, device=boxes.device)  # [W]
    ys = torch.arange(height, dtype=boxes.dtype, device=boxes.device)  # [H]
    x1, y1, x2, y2 = (v[:, None] for v in boxes.unbind(dim=1))  # [N, 1] each
    # An empty box (x2 <= x1) has no pixel inside; a positive width only avoids dividing by zero.
    box_w = (x2 - x1).clamp(min=torch.finfo(boxes.dtype).tiny)  # [N, 1]
    box_h = (y2 - y1).clamp(min=torch.finfo(boxes.dtype).tiny)  # [N, 1]
    column = torch.floor((xs - x1) * k_w / box_w).clamp(0, k_w - 1).long()  # [N, W]
    row = torch.floor((ys - y1) * k_h / box_h).clamp(0, k_h - 1).long()  # [N, H]
    index = row[:, :, None] * k_w + column[:, None, :]  # [N, H, W]
    return inside, index


def _check_assembly_inputs(
    basis_masks: Tensor, coefficients: Tensor, boxes: Tensor, sub_regions: tuple[int, int], name: str
) -> tuple[int, int]:
    k_h, k_w = _check_sub_regions(sub_regions)
    _check_boxes(boxes, name)
    if basis_masks.ndim != 3:
        raise ValueError(f"{name}: basis_masks must be [M, H, W], got {tuple(basis_masks.shape)}")
    expected = (boxes.shape[0], k_h * k_w, basis_masks.shape[0])
    if tuple(coefficients.shape) != expected:
        raise ValueError(
            f"{name}: coefficients must be [N, Q, M] = {expected} for sub_regions {(k_h, k_w)}, "
            f"got {tuple(coefficients.shape)}"
        )
    return k_h, k_w


def assemble_mask_logits(
    basis_masks: Tensor, coefficients: Tensor, boxes: Tensor, sub_regions: tuple[int, int]
) -> tuple[Tensor, Tensor]:
    """§3.3 Eq. (2) before the sigmoid: each pixel's logit from its own sub-region's coefficients.

    M_i = sigma(B x C_i); "the response values of M_ij outside the i-th quadrant of the box j are
    set as zero ... we perform a simple addition of its pruned maps". Since the sub-regions of a box
    do not overlap, pruning and adding = picking, for each pixel, the map of its own sub-region.
    Here that pick is made on the logits B x C_i, so that the loss can use the numerically stable
    BCE-with-logits; `assemble_masks` applies the sigmoid.

    The loop runs over the Q sub-regions (never over boxes): sub-region i computes B x C_i for all
    N boxes at once and keeps it where a pixel belongs to sub-region i. Memory is a few [N, H, W]
    tensors, not [N, Q, H, W]. The gradient reaches only the selected sub-region's coefficients,
    and no basis pixel outside every box.

    Args:
        basis_masks: [M, H, W] basis masks B of one image.
        coefficients: [N, Q, M] spatial coefficients, sub-regions row-major (Q = k_h * k_w).
        boxes: [N, 4] xyxy in basis-map pixels.
        sub_regions: (k_h, k_w).
    Returns:
        logits: [N, H, W] logit of each pixel's own sub-region inside box j, 0 outside it (unused
            there: the mask is 0 outside the box).
        inside: bool [N, H, W] pixels inside box j.
    """
    _check_assembly_inputs(basis_masks, coefficients, boxes, sub_regions, "assemble_mask_logits")
    num_basis, height, width = basis_masks.shape
    num_boxes, num_sub_regions, _ = coefficients.shape
    inside, index = sub_region_index(boxes, height, width, sub_regions)  # [N, H, W] each
    own_sub_region = torch.where(inside, index, -1)  # [N, H, W], -1 outside the box
    basis = basis_masks.reshape(num_basis, height * width)  # [M, H*W]
    logits = coefficients.new_zeros((num_boxes, height, width))  # [N, H, W]
    for i in range(num_sub_regions):
        logits_i = (coefficients[:, i, :] @ basis).reshape(num_boxes, height, width)  # [N, H, W] B x C_i
        logits = torch.where(own_sub_region == i, logits_i, logits)  # prune to sub-region i, add
    return logits, inside


def assemble_masks(
    basis_masks: Tensor, coefficients: Tensor, boxes: Tensor, sub_regions: tuple[int, int]
) -> Tensor:
    """§3.3 instance maps M^_j = sum_i M^_ij: sigmoid of the pixel's own sub-region inside box j.

    Args and shapes as `assemble_mask_logits`.
    Returns:
        [N, H, W] probabilities, exactly 0 outside each box.
    """
    logits, inside = assemble_mask_logits(basis_masks, coefficients, boxes, sub_regions)
    return torch.where(inside, torch.sigmoid(logits), torch.zeros_like(logits))


def assemble_masks_reference(
    basis_masks: Tensor, coefficients: Tensor, boxes: Tensor, sub_regions: tuple[int, int]
) -> Tensor:
    """Eq. (2) written literally, one box and one sub-region at a time (slow; for the tests).

    For box j and sub-region i = (row, column): M_ij = sigma(B x c_ij); set it to zero outside the
    pixels x1 + column * w / k_w <= x < x1 + (column + 1) * w / k_w (the last column reaching x2)
    and likewise in y; add the pruned maps of all sub-regions. The bounds are compared as
    (x - x1) * k_w >= column * w, which is the same rule as the floor in `sub_region_index`.
    """
    k_h, k_w = _check_assembly_inputs(
        basis_masks, coefficients, boxes, sub_regions, "assemble_masks_reference"
    )
    num_basis, height, width = basis_masks.shape
    xs = torch.arange(width, dtype=boxes.dtype, device=boxes.device)  # [W]
    ys = torch.arange(height, dtype=boxes.dtype, device=boxes.device)  # [H]
    masks = []
    for j in range(boxes.shape[0]):
        x1, y1, x2, y2 = boxes[j]
        box_w, box_h = x2 - x1, y2 - y1
        instance_map = basis_masks.new_zeros((height, width))  # [H, W]
        for row in range(k_h):
            for column in range(k_w):
                i = row * k_w + column
                m_ij = torch.sigmoid(torch.einsum("m,mhw->hw", coefficients[j, i], basis_masks))
                in_x = (xs >= x1) & (xs < x2) & ((xs - x1) * k_w >= column * box_w)
                if column < k_w - 1:
                    in_x &= (xs - x1) * k_w < (column + 1) * box_w
                in_y = (ys >= y1) & (ys < y2) & ((ys - y1) * k_h >= row * box_h)
                if row < k_h - 1:
                    in_y &= (ys - y1) * k_h < (row + 1) * box_h
                keep = in_y[:, None] & in_x[None, :]  # [H, W]
                instance_map = instance_map + torch.where(keep, m_ij, torch.zeros_like(m_ij))
        masks.append(instance_map)
    if not masks:
        return basis_masks.new_zeros((0, height, width))
    return torch.stack(masks)  # [N, H, W]


def crop_to_boxes(masks: Tensor, boxes: Tensor) -> Tensor:
    """Zero each mask outside its box (the authors' CropSplitGt), same dtype as `masks`.

    Args:
        masks: [N, H, W].
        boxes: [N, 4] xyxy in the masks' pixels; inside means x1 <= x < x2 and y1 <= y < y2.
    Returns:
        [N, H, W].
    """
    if masks.ndim != 3 or masks.shape[0] != boxes.shape[0]:
        raise ValueError(
            f"crop_to_boxes: masks [N, H, W] and boxes [N, 4] expected, got {tuple(masks.shape)} "
            f"and {tuple(boxes.shape)}"
        )
    inside = box_pixel_mask(boxes, masks.shape[1], masks.shape[2])  # [N, H, W]
    return torch.where(inside, masks, torch.zeros_like(masks))
