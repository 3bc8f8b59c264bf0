"""Inference: from head outputs to boxes, labels, scores and masks in original-image pixels.

Two detection paths, as the authors (config.nms):

'standard' (the ~800-pixel models):
    per level, keep the top `pre_nms_top_n` locations ranked by max_c(prob_c * centerness);
    decode their boxes and clip them to the image; per class keep candidates whose RAW class
    probability is > score_threshold; score = prob * centerness; NMS per class at nms_iou
    (torchvision.ops.batched_nms); keep the best `max_detections`.
'fast' (the 544 models, the authors' `ssd_flag`):
    the same per-level top-n; scores multiplied by centerness FIRST; YOLACT Fast NMS (`fast_nms`):
    per class the top `fast_nms_top_k`, a box is kept when its largest IoU with a higher-scored box
    of its class is <= nms_iou and its score is > score_threshold; global top `max_detections`.

Masks (§3.3): the kept locations' spatial coefficients and the image's basis masks are assembled
by `spatial_mask_prediction.assemble_masks` with the boxes in basis-map pixels (input pixels / 2),
pruned per sub-region and 0 outside the box; the [N, H/2, W/2] maps are upsampled x2 (bilinear) to
the padded input, cropped to the resized image and resized (bilinear) to the original image. The
result is a probability map; binarise it at config.mask_threshold (0.4 as the authors). `paste_masks`
upsamples only a window around each box (the rest of the map is 0 and stays 0) and skips the last
resize when the image was not resized; the values are those of the whole-map operations.

Deliberate differences from the authors' code: they upsample the cropped stride-2 maps in one step
by 2 / scale_factor and binarise before pasting; sipmask_ref upsamples x2, crops the padding, then
resizes to the original size and returns probabilities (the same maps up to interpolation
rounding). Boxes are clipped to [0, w] x [0, h] (mmdet-v1 clips to w - 1, h - 1).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import batched_nms

from .config import SipMaskConfig
from .fcos import decode_boxes
from .geometry import pairwise_box_iou
from .spatial_mask_prediction import assemble_masks

# Detections are pasted to full resolution this many at a time, to bound memory.
PASTE_CHUNK = 32
# Fast NMS computes about this many IoUs (a few classes' [N, N] matrices) at a time.
FAST_NMS_CHUNK = 2**18


class Detections(NamedTuple):
    """Detections of one image in the pixels of the resized (network input) image.

    boxes [N, 4] xyxy, scores [N], labels [N] int64 1..C, coefficients [N, Q, M].
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    coefficients: Tensor


def fast_nms(
    boxes: Tensor,
    scores: Tensor,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.1,
    top_k: int = 200,
    max_detections: int = 100,
) -> tuple[Tensor, Tensor, Tensor]:
    """YOLACT's Fast NMS, vectorised over classes.

    For each class: sort the candidates by score and keep the top `top_k`; compute their IoU
    matrix and keep only the part below the diagonal (IoU of each box with the HIGHER-scored boxes
    of its class; YOLACT takes the transposed part above it, the same numbers); a box survives
    when that largest IoU is <= iou_threshold and its score is > score_threshold. Unlike standard
    NMS, a box already suppressed can still suppress others, which lets everything run as matrix
    operations (a few classes at a time, see FAST_NMS_CHUNK). Finally the `max_detections` best
    survivors over all classes.

    Args:
        boxes: [P, 4] candidate boxes (shared by all classes).
        scores: [P, C] per-class scores.
    Returns:
        index [N] into the P candidates, labels [N] 0-based class index, scores [N]; best first.
    """
    num_candidates, num_classes = scores.shape
    if num_candidates == 0:
        empty = torch.zeros(0, dtype=torch.int64, device=scores.device)
        return empty, empty.clone(), scores.new_zeros(0)
    k = min(top_k, num_candidates)
    class_scores, order = scores.t().sort(dim=1, descending=True, stable=True)  # [C, P] each
    class_scores, order = class_scores[:, :k], order[:, :k]  # [C, N]
    class_boxes = boxes[order]  # [C, N, 4]
    # IoU is symmetric, so the IoU of box j with the higher-scored boxes i < j is row j below the
    # diagonal (the same numbers as column j above it, reduced along the contiguous last dim).
    # A few classes at a time: 80 x 200 x 200 temporaries overflow the CPU caches (2x slower).
    classes_per_chunk = max(1, FAST_NMS_CHUNK // (k * k))
    max_iou = torch.cat(
        [
            pairwise_box_iou(class_boxes[c : c + classes_per_chunk]).tril_(diagonal=-1).amax(dim=2)
            for c in range(0, num_classes, classes_per_chunk)
        ]
    )  # [C, N]: largest IoU of each box with a higher-scored box of its class
    keep = (max_iou <= iou_threshold) & (class_scores > score_threshold)  # [C, N]
    labels = torch.arange(num_classes, device=scores.device)[:, None].expand(-1, k)[keep]  # [N]
    index, kept_scores = order[keep], class_scores[keep]  # [N]
    kept_scores, best = kept_scores.sort(descending=True, stable=True)
    best = best[:max_detections]
    return index[best], labels[best], kept_scores[:max_detections]


def _top_candidates_per_level(cls_logits: list[Tensor], centerness: list[Tensor], top_n: int) -> list[Tensor]:
    """Per level, the indices of the `top_n` locations with the largest max_c(prob_c * ctr)."""
    selected = []
    for logits, ctr in zip(cls_logits, centerness, strict=True):  # [P_l, C], [P_l]
        ranking = (logits.sigmoid() * ctr.sigmoid()[:, None]).max(dim=1).values  # [P_l]
        selected.append(ranking.topk(min(top_n, ranking.numel())).indices)
    return selected


def detect(
    cls_logits: list[Tensor],
    box_regression: list[Tensor],
    centerness: list[Tensor],
    coefficients: list[Tensor],
    points: list[Tensor],
    strides: tuple[int, ...],
    image_size: tuple[int, int],
    config: SipMaskConfig,
) -> Detections:
    """Boxes, scores, labels and coefficients of ONE image, in resized-input pixels.

    Per-level inputs of that image, flattened over locations (row-major, as fcos.locations):
        cls_logits [P_l, C], box_regression [P_l, 4] (stride units), centerness [P_l] (logits),
        coefficients [P_l, Q, M], points [P_l, 2].
    image_size: (h, w) of the resized image before padding (boxes are clipped to it).
    """
    chosen = _top_candidates_per_level(cls_logits, centerness, config.pre_nms_top_n)
    probs = torch.cat([c[i].sigmoid() for c, i in zip(cls_logits, chosen, strict=True)])  # [P, C]
    ctr = torch.cat([c[i].sigmoid() for c, i in zip(centerness, chosen, strict=True)])  # [P]
    coefs = torch.cat([c[i] for c, i in zip(coefficients, chosen, strict=True)])  # [P, Q, M]
    boxes = torch.cat(
        [
            decode_boxes(p[i], r[i] * s)
            for p, r, s, i in zip(points, box_regression, strides, chosen, strict=True)
        ]
    )  # [P, 4]
    boxes = clip_boxes(boxes, image_size)

    if config.nms == "fast":
        index, labels, scores = fast_nms(
            boxes,
            probs * ctr[:, None],
            config.nms_iou,
            config.score_threshold,
            config.fast_nms_top_k,
            config.max_detections,
        )
    else:
        index, labels = (probs > config.score_threshold).nonzero(as_tuple=True)  # [N] each
        scores = probs[index, labels] * ctr[index]  # [N]
        keep = batched_nms(boxes[index], scores, labels, config.nms_iou)[: config.max_detections]
        index, labels, scores = index[keep], labels[keep], scores[keep]
    return Detections(boxes[index], scores, labels + 1, coefs[index])


def paste_masks(
    basis_masks: Tensor,
    coefficients: Tensor,
    boxes: Tensor,
    sub_regions: tuple[int, int],
    image_size: tuple[int, int],
    original_size: tuple[int, int],
) -> Tensor:
    """Mask probabilities [N, 1, H0, W0] at the original image size.

    Args:
        basis_masks: [M, H, W] basis masks of the image, stride 2 of the padded input.
        coefficients: [N, Q, M] spatial coefficients of the detections.
        boxes: [N, 4] detections in resized-input pixels.
        image_size: (h, w) of the resized image inside the padded input.
        original_size: (H0, W0) of the image given to the model.

    The result is the same as upsampling every whole [H, W] map x2 (bilinear), cropping the padding
    and resizing to (H0, W0), but cheaper: an assembled map is 0 outside its box, so its x2 upsampling
    is 0 outside the box's window widened by one stride-2 pixel (`_mask_windows`); only that window
    is upsampled (bit-identical values) and written into a zeroed [N, 1, h, w]. The last resize is
    skipped when (h, w) is already the original size (bilinear at scale 1 is the identity).
    """
    h, w = image_size
    upsampled = basis_masks.new_zeros((boxes.shape[0], 1, h, w))  # [N, 1, h, w]
    for start in range(0, boxes.shape[0], PASTE_CHUNK):
        part = slice(start, start + PASTE_CHUNK)
        masks = assemble_masks(basis_masks, coefficients[part], boxes[part] / 2, sub_regions)
        windows = _mask_windows(boxes[part] / 2, masks.shape[-2], masks.shape[-1])  # [n, 4]
        for j, (top, bottom, left, right) in enumerate(windows.tolist(), start=start):
            rows, columns = min(2 * bottom, h) - 2 * top, min(2 * right, w) - 2 * left
            if rows <= 0 or columns <= 0:  # an empty box, or a window in the padding (beyond h x w)
                continue
            window = masks[j - start, top:bottom, left:right][None, None]  # [1, 1, rows/2, columns/2]
            window = F.interpolate(window, scale_factor=2, mode="bilinear", align_corners=False)
            upsampled[j, 0, 2 * top : 2 * top + rows, 2 * left : 2 * left + columns] = window[
                0, 0, :rows, :columns
            ]
    if (h, w) == tuple(original_size):
        return upsampled
    return F.interpolate(upsampled, size=original_size, mode="bilinear", align_corners=False)


def _mask_windows(boxes: Tensor, height: int, width: int) -> Tensor:
    """Rows [top, bottom) and columns [left, right) of an H x W map holding each box's pixels
    (x1 <= x < x2, y1 <= y < y2) plus one pixel on every side, clipped to the map: int64 [N, 4].

    The extra pixel is 0 in an assembled mask; the bilinear x2 upsampling of the window therefore
    reads the same values at the window's edge as the upsampling of the whole map (which would
    read the 0 beyond it), so both agree exactly inside the window, and the whole map's upsampling
    is 0 outside it. An empty box gets an empty window.
    """
    bounds = []
    for low, high, size in ((boxes[:, 1], boxes[:, 3], height), (boxes[:, 0], boxes[:, 2], width)):
        coords = torch.arange(size, dtype=boxes.dtype, device=boxes.device)  # [H] (or [W])
        inside = (coords >= low[:, None]) & (coords < high[:, None])  # [N, H] an interval
        first = (coords < low[:, None]).sum(dim=1)  # [N]
        count = inside.sum(dim=1)  # [N]
        bounds += [
            torch.where(count > 0, (first - 1).clamp(min=0), 0),
            torch.where(count > 0, (first + count + 1).clamp(max=size), 0),
        ]
    return torch.stack(bounds, dim=1)  # [N, 4] (top, bottom, left, right)


def scale_boxes_to_original(
    boxes: Tensor, scale_factor: tuple[float, float], original_size: tuple[int, int]
) -> Tensor:
    """Boxes from resized-input pixels back to the original image, clipped to it."""
    sx, sy = scale_factor
    return clip_boxes(boxes / boxes.new_tensor([sx, sy, sx, sy]), original_size)


def clip_boxes(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Clip xyxy boxes [N, 4] to [0, w] x [0, h] for size = (h, w)."""
    h, w = size
    x1, y1, x2, y2 = boxes.unbind(dim=1)
    return torch.stack([x1.clamp(0, w), y1.clamp(0, h), x2.clamp(0, w), y2.clamp(0, h)], dim=1)
