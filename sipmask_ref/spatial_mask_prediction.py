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

`sub_region_maps` is Eq. (2) itself, every M_ij over the whole map before pruning (what Fig. 4
shows; model.forward_intermediates and the explorer return it). `assemble_masks` is the fast path to
the pruned and summed masks; `assemble_masks_reference` is the same written literally with loops over
boxes and sub-regions, for the tests (which prove the two equal).

Cost of the fast path. Eq. (2) written literally computes B x C_i over the whole H x W map for
every box and every sub-region: N * Q * M * H * W multiply-adds, although a pixel only ever uses
its own sub-region's map and only inside its box. The fast path (`_sparse_logits`) computes just
those logits: with K = the number of (box, pixel) pairs with the pixel inside the box (at most
N * H * W, usually a few percent of N * Q * H * W), each logit is one dot product of M values,
K * M multiply-adds. The pixels of each (box, sub-region) pair form a rectangle; together they are
the non-zeros of a sparse [N * Q, H * W] matrix, and `torch.sparse.sampled_addmm` computes C x B
only at those entries (a "sampled" matrix product). The K results are copied into the zeroed
[N, H, W] output, whose zero-filling is then a good part of the remaining time. Memory is O(K)
indices and values besides the output, so a huge box (even one far larger than the map) costs at
most what the literal formula costs, never a window larger than the map. Measured on one CPU
thread (benchmarks/inference.py: 100 boxes of 4 to 64 pixels, 136 x 136 maps, M = 32): 20 to 24x
faster than the reference, about 12x faster than computing every sub-region's map over the whole
map (`_full_map_logits`).

The backward pass of the sparse product transposes its pattern (a sort over the K entries). When
autograd records the assembly and the boxes cover more than `FULL_MAP_COVERAGE` (a quarter) of the
N x H x W (box, pixel) pairs, the full-map computation (`_full_map_logits`: per sub-region, B x C_i
for all boxes at once, kept where a pixel belongs to sub-region i) is as fast or faster, and is used
instead. Both give the same values and gradients (the tests check it).
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import torch
from torch import Tensor

# Under autograd, boxes covering more than this share of the N x H x W (box, pixel) pairs are
# assembled by the full-map path (see `_full_map_is_cheaper`).
FULL_MAP_COVERAGE = 0.25


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


def _sub_region_bounds(low: Tensor, high: Tensor, size: int, parts: int) -> Tensor:
    """Pixel bounds of the `parts` sub-regions of every box along one axis (x or y).

    Args:
        low, high: [N] box sides along the axis (x1, x2 or y1, y2), in map pixels.
        size: the map's extent along the axis (W or H).
        parts: k_w or k_h.
    Returns:
        int64 [N, parts + 1] `bounds`: the pixels of part c are bounds[:, c] <= x < bounds[:, c + 1].
        bounds[:, 0] is the first pixel with x >= low, bounds[:, parts] the first with x >= high, all
        clipped to [0, size]. The split pixels come from evaluating the module's rule
        floor((x - low) * parts / (high - low)) at every pixel of the axis (a cheap [N, size]
        tensor, as in `sub_region_index`), so both agree exactly, float rounding included.
    """
    coords = torch.arange(size, dtype=low.dtype, device=low.device)  # [W] (or [H])
    low, high = low[:, None], high[:, None]  # [N, 1]
    length = (high - low).clamp(min=torch.finfo(low.dtype).tiny)  # [N, 1]
    part = torch.floor((coords - low) * parts / length)  # [N, W], non-decreasing along the axis
    inside = (coords >= low) & (coords < high)  # [N, W] an interval (empty for a NaN box)
    start = (coords < low).sum(dim=1)  # [N] first pixel inside
    stop = start + inside.sum(dim=1)  # [N]
    # Part c starts at the first pixel whose rule value reaches c (parts 0 and parts - 1 are open
    # ended: the rule is clamped to [0, parts - 1]).
    splits = [torch.clamp((part < c).sum(dim=1), min=start, max=stop) for c in range(1, parts)]
    return torch.stack([start, *splits, stop], dim=1)  # [N, parts + 1]


def _run_positions(run_starts: list[Tensor], run_length: Tensor, total: int) -> list[Tensor]:
    """For each tensor of run starts: the positions start[r], start[r] + 1, ... of every run r, run
    after run ([total] each; all share the run lengths)."""
    first = torch.cumsum(run_length, dim=0) - run_length  # where each run begins in the output
    along = torch.arange(total, device=run_length.device)  # [total]
    return [
        torch.repeat_interleave(start - first, run_length, output_size=total).add_(along)
        for start in run_starts
    ]


class _Rectangles(NamedTuple):
    """The pixels of every (box j, sub-region i) pair, a rectangle clipped to the map.

    Pairs are ordered box by box and, inside a box, row-major like the coefficients (pair index
    j * Q + i). Each field is int64 [N * Q]; an empty rectangle has height or width 0.
    """

    top: Tensor
    height: Tensor
    left: Tensor
    width: Tensor


def _sub_region_rectangles(
    boxes: Tensor, height: int, width: int, sub_regions: tuple[int, int]
) -> _Rectangles:
    """The rectangle of map pixels of each (box, sub-region) pair (see `_Rectangles`)."""
    k_h, k_w = sub_regions
    num_boxes = boxes.shape[0]
    x1, y1, x2, y2 = boxes.unbind(dim=1)
    rows = _sub_region_bounds(y1, y2, height, k_h)[:, :, None]  # [N, k_h + 1, 1]
    columns = _sub_region_bounds(x1, x2, width, k_w)[:, None, :]  # [N, 1, k_w + 1]
    shape = (num_boxes, k_h, k_w)
    return _Rectangles(
        top=rows[:, :-1].expand(shape).flatten(),
        height=(rows[:, 1:] - rows[:, :-1]).expand(shape).flatten(),
        left=columns[:, :, :-1].expand(shape).flatten(),
        width=(columns[:, :, 1:] - columns[:, :, :-1]).expand(shape).flatten(),
    )


def _rectangle_pixels(
    rectangles: _Rectangles, height: int, width: int, num_sub_regions: int, box_image: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Every pixel of every rectangle, rectangle after rectangle, row by row inside each.

    Args:
        box_image: int64 [N], the image of each box when the maps of I images are read as one
            [I * H * W] row of pixels (None: one image).
    Returns:
        pixels: int64 [K] flat index y * W + x of each pixel in the map (i * H * W + y * W + x with
            `box_image`, i the image of the pixel's box; K = number of pixels).
        positions: int64 [K] flat index j * H * W + y * W + x of the same pixel in an [N, H, W]
            output, j the box of its rectangle.
    """
    top, rows_per_pair, left, run_length_per_pair = rectangles
    device = top.device
    # One run of consecutive pixels per row of each rectangle: R runs.
    run_pair = torch.repeat_interleave(torch.arange(top.numel(), device=device), rows_per_pair)  # [R]
    first_run = torch.cumsum(rows_per_pair, dim=0) - rows_per_pair  # [N * Q]
    run_y = top[run_pair] + torch.arange(run_pair.numel(), device=device) - first_run[run_pair]
    run_start = run_y * width + left[run_pair]  # [R] first pixel of each run
    run_length = run_length_per_pair[run_pair]  # [R]
    run_box = torch.div(run_pair, num_sub_regions, rounding_mode="floor")  # [R]
    run_map = run_start if box_image is None else run_start + box_image[run_box] * (height * width)
    total = int(run_length.sum())
    pixels, positions = _run_positions(  # [K] each
        [run_map, run_start + run_box * (height * width)], run_length, total
    )
    return pixels, positions


def _sparse_logits(
    basis_masks: Tensor, coefficients: Tensor, rectangles: _Rectangles, box_image: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """B x c_ij at exactly the pixels inside each box j, with the coefficients of the pixel's own
    sub-region i: K dot products of M values (the fast path, see the module docstring).

    The (box, sub-region) pairs and their pixels are the non-zeros of a sparse [N * Q, I * H * W]
    matrix; `torch.sparse.sampled_addmm` computes the product C x B [N * Q, I * H * W] only at those
    entries. Gradients flow to the coefficients and the basis masks through them only.

    Args:
        basis_masks: [M, H, W] of one image, or [I, M, H, W] of I images with `box_image`.
        box_image: int64 [N], the image whose basis masks box j reads (needed with [I, M, H, W]).
    Returns:
        positions: int64 [K] flat indices into the [N, H, W] output.
        logits: [K] the logit at each of those positions.
    """
    if basis_masks.ndim == 3:
        basis_masks = basis_masks[None]  # [1, M, H, W]
    num_images, num_basis, height, width = basis_masks.shape
    num_boxes, num_sub_regions, _ = coefficients.shape
    if num_images > 1 and box_image is None:
        raise ValueError("_sparse_logits: basis masks of several images need box_image")
    pixels, positions = _rectangle_pixels(  # [K] each
        rectangles, height, width, num_sub_regions, box_image if num_images > 1 else None
    )
    # sampled_addmm has no half-precision CPU kernel: reduced precision is computed in float32.
    dtype = torch.promote_types(basis_masks.dtype, torch.float32)
    counts = rectangles.height * rectangles.width  # [N * Q] pixels of each pair
    row_offsets = torch.cat([counts.new_zeros(1), torch.cumsum(counts, dim=0)])  # [N * Q + 1]
    with warnings.catch_warnings():  # torch flags its sparse CSR layout as beta, once per process
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        pattern = torch.sparse_csr_tensor(
            row_offsets,
            pixels,
            basis_masks.new_zeros(pixels.numel(), dtype=dtype),
            size=(num_boxes * num_sub_regions, num_images * height * width),
            check_invariants=False,
        )
    # Basis pixels as rows [I * H * W, M], so that each sampled entry reads M contiguous values.
    basis = basis_masks.to(dtype).contiguous(memory_format=torch.channels_last)  # [I, M, H, W]
    basis = basis.permute(0, 2, 3, 1).reshape(num_images * height * width, num_basis)  # [I*H*W, M]
    rows = coefficients.to(dtype).reshape(num_boxes * num_sub_regions, num_basis)  # [N * Q, M]
    logits = torch.sparse.sampled_addmm(pattern, rows, basis.t(), beta=0.0).values()  # [K]
    return positions, logits.to(basis_masks.dtype)


def _full_map_logits(
    basis_masks: Tensor, coefficients: Tensor, boxes: Tensor, sub_regions: tuple[int, int]
) -> Tensor:
    """Eq. (2) logits, each sub-region's B x C_i computed over the whole map for all N boxes at once
    (N * Q * M * H * W multiply-adds) and kept where a pixel belongs to sub-region i: [N, H, W],
    0 outside the boxes. The path taken when gradients are needed and boxes cover much of the map.
    """
    num_basis, height, width = basis_masks.shape
    num_boxes, num_sub_regions, _ = coefficients.shape
    inside, index = sub_region_index(boxes, height, width, sub_regions)  # [N, H, W] each
    own_sub_region = torch.where(inside, index, -1)  # [N, H, W], -1 outside the box
    basis = basis_masks.reshape(num_basis, height * width)  # [M, H*W]
    logits = coefficients.new_zeros((num_boxes, height, width))  # [N, H, W]
    for i in range(num_sub_regions):
        logits_i = (coefficients[:, i, :] @ basis).reshape(num_boxes, height, width)  # B x C_i
        logits = torch.where(own_sub_region == i, logits_i, logits)  # prune to sub-region i, add
    return logits


def _full_map_is_cheaper(basis_masks: Tensor, coefficients: Tensor, rectangles: _Rectangles) -> bool:
    """True when autograd will differentiate the assembly and the boxes cover more than
    `FULL_MAP_COVERAGE` of the N x H x W (box, pixel) pairs.

    The sparse product's backward transposes its K-entry pattern (a sort); on one CPU thread that
    costs more than the full-map products once boxes cover about a quarter of the map (measured:
    equal near 0.25, 2x slower at 0.5). Without gradients the sparse path is always cheaper.
    """
    needs_grad = torch.is_grad_enabled() and (basis_masks.requires_grad or coefficients.requires_grad)
    if not needs_grad:
        return False
    num_pixels = int((rectangles.height * rectangles.width).sum())
    return num_pixels > FULL_MAP_COVERAGE * coefficients.shape[0] * basis_masks[0].numel()


def sub_region_maps(basis_masks: Tensor, coefficients: Tensor) -> Tensor:
    """§3.3 Eq. (2), M_ij = sigma(B x c_ij): the map of every sub-region i of every box j over the
    whole basis map, not pruned (paper Fig. 4 shows these beside the pruned sum).

    Args:
        basis_masks: [M, H, W] basis masks B of one image.
        coefficients: [N, Q, M] spatial coefficients, sub-regions row-major.
    Returns:
        [N, Q, H, W] probabilities.
    """
    return torch.sigmoid(torch.einsum("nqm,mhw->nqhw", coefficients, basis_masks))


def assemble_mask_logits(
    basis_masks: Tensor, coefficients: Tensor, boxes: Tensor, sub_regions: tuple[int, int]
) -> tuple[Tensor, Tensor]:
    """§3.3 Eq. (2) before the sigmoid: each pixel's logit from its own sub-region's coefficients.

    M_i = sigma(B x C_i); "the response values of M_ij outside the i-th quadrant of the box j are
    set as zero ... we perform a simple addition of its pruned maps". Since the sub-regions of a box
    do not overlap, pruning and adding = picking, for each pixel, the map of its own sub-region.
    Here that pick is made on the logits B x C_i, so that the loss can use the numerically stable
    BCE-with-logits; `assemble_masks` applies the sigmoid.

    Only the picked logits are computed (K * M multiply-adds for the K (box, pixel) pairs with the
    pixel inside the box, `_sparse_logits`) and written into a zeroed [N, H, W] tensor; under
    autograd with boxes covering much of the map, `_full_map_logits` instead (see the module
    docstring). The gradient reaches only the selected sub-region's coefficients, and no basis
    pixel outside every box.

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
    sub_regions = _check_assembly_inputs(
        basis_masks, coefficients, boxes, sub_regions, "assemble_mask_logits"
    )
    _, height, width = basis_masks.shape
    inside = box_pixel_mask(boxes, height, width)  # [N, H, W]
    rectangles = _sub_region_rectangles(boxes, height, width, sub_regions)
    if _full_map_is_cheaper(basis_masks, coefficients, rectangles):
        return _full_map_logits(basis_masks, coefficients, boxes, sub_regions), inside
    positions, values = _sparse_logits(basis_masks, coefficients, rectangles)  # [K] each
    logits = basis_masks.new_zeros((boxes.shape[0], height, width))  # [N, H, W]
    logits.view(-1).index_copy_(0, positions, values)
    return logits, inside


def box_pixel_logits(
    basis_masks: Tensor, coefficients: Tensor, boxes: Tensor, box_image: Tensor, sub_regions: tuple[int, int]
) -> tuple[Tensor, Tensor]:
    """`assemble_mask_logits` for the boxes of a whole batch at once, as K values instead of maps.

    The same logits as `assemble_mask_logits(basis_masks[box_image[j]], ...)` box by box, at exactly
    the K (box, pixel) pairs with the pixel inside the box, in one sparse product over the batch
    (`_sparse_logits`); the training loss reads nothing else, so no [N, H, W] map is filled.
    Under autograd, when the boxes cover more than FULL_MAP_COVERAGE of the N x H x W pairs, each
    image's boxes go through `_full_map_logits` instead, as in `assemble_mask_logits`.

    Args:
        basis_masks: [I, M, H, W] basis masks of the I images of a batch.
        coefficients: [N, Q, M] spatial coefficients, sub-regions row-major.
        boxes: [N, 4] xyxy in basis-map pixels.
        box_image: int64 [N], the image (0 .. I-1) of each box.
        sub_regions: (k_h, k_w).
    Returns:
        positions: int64 [K] flat index j * H * W + y * W + x of each pair (box j, pixel (x, y)),
            box after box, row-major inside each box.
        logits: [K] the logit of that pixel from its own sub-region's coefficients.
    """
    if basis_masks.ndim != 4:
        raise ValueError(
            f"box_pixel_logits: basis_masks must be [I, M, H, W], got {tuple(basis_masks.shape)}"
        )
    sub_regions = _check_assembly_inputs(basis_masks[0], coefficients, boxes, sub_regions, "box_pixel_logits")
    if box_image.shape != (boxes.shape[0],):
        raise ValueError(f"box_pixel_logits: box_image must be [N], got {tuple(box_image.shape)}")
    num_images, _, height, width = basis_masks.shape
    rectangles = _sub_region_rectangles(boxes, height, width, sub_regions)
    if not _full_map_is_cheaper(basis_masks[0], coefficients, rectangles):
        return _sparse_logits(basis_masks, coefficients, rectangles, box_image)
    _, positions = _rectangle_pixels(rectangles, height, width, sub_regions[0] * sub_regions[1])
    logits = coefficients.new_zeros((boxes.shape[0], height, width))  # [N, H, W]
    for image in range(num_images):
        chosen = (box_image == image).nonzero().squeeze(1)  # [N_i]
        if chosen.numel() > 0:
            maps = _full_map_logits(basis_masks[image], coefficients[chosen], boxes[chosen], sub_regions)
            logits = logits.index_copy(0, chosen, maps)
    return positions, logits.view(-1)[positions]


def assemble_masks(
    basis_masks: Tensor, coefficients: Tensor, boxes: Tensor, sub_regions: tuple[int, int]
) -> Tensor:
    """§3.3 instance maps M^_j = sum_i M^_ij: sigmoid of the pixel's own sub-region inside box j.

    Args and shapes as `assemble_mask_logits` (the same paths; on the fast one the sigmoid is taken
    of the K logits inside the boxes only).
    Returns:
        [N, H, W] probabilities, exactly 0 outside each box.
    """
    sub_regions = _check_assembly_inputs(basis_masks, coefficients, boxes, sub_regions, "assemble_masks")
    _, height, width = basis_masks.shape
    rectangles = _sub_region_rectangles(boxes, height, width, sub_regions)
    if _full_map_is_cheaper(basis_masks, coefficients, rectangles):
        logits = _full_map_logits(basis_masks, coefficients, boxes, sub_regions)  # [N, H, W]
        inside = box_pixel_mask(boxes, height, width)
        return torch.where(inside, torch.sigmoid(logits), torch.zeros_like(logits))
    positions, values = _sparse_logits(basis_masks, coefficients, rectangles)  # [K] each
    masks = basis_masks.new_zeros((boxes.shape[0], height, width))  # [N, H, W]
    masks.view(-1).index_copy_(0, positions, torch.sigmoid(values))
    return masks


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
    _num_basis, height, width = basis_masks.shape
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
