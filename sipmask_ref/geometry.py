"""Boxes and masks: IoU, the tightest box of a mask, COCO RLE encoding. Not a paper section.

The one home of these small operations; it imports no other module of the package, so the paper
files (model.py, inference.py, tracking.py), the data, the evaluation and the experiment code can all
use it. Top to bottom:

    paired_box_iou     IoU of boxes_a[j] with boxes_b[j]               [N, 4], [N, 4] -> [N]
    pairwise_box_iou   IoU of every pair of boxes of each group        [C, N, 4] -> [C, N, N]
    mask_iou           IoU of two bool masks                           [H, W], [H, W] -> float
    mask_box           the tightest box around a bool mask (numpy)     [H, W] -> (x0, y0, x1, y1) or None
    encode_masks       binarise and RLE-encode masks (COCO RLE dicts)  [N, 1, H, W] or [N, H, W] -> N dicts
    encode_mask        one bool mask -> its RLE dict                   [H, W] -> dict

Boxes are (x1, y1, x2, y2) with no "+1" in widths (docs/authors_implementation.md, section 8: where
sipmask_ref differs from the authors).
Box unions are clamped at the dtype's smallest positive number, so two empty boxes have IoU 0, not NaN.
Shape letters as in the package docstring.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch import Tensor


def paired_box_iou(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """IoU of boxes_a[j] with boxes_b[j] (xyxy, no +1 widths): [N, 4], [N, 4] -> [N]."""
    top_left = torch.maximum(boxes_a[:, :2], boxes_b[:, :2])  # [N, 2]
    bottom_right = torch.minimum(boxes_a[:, 2:], boxes_b[:, 2:])  # [N, 2]
    intersection = (bottom_right - top_left).clamp(min=0).prod(dim=1)  # [N]
    area_a = (boxes_a[:, 2:] - boxes_a[:, :2]).clamp(min=0).prod(dim=1)  # [N]
    area_b = (boxes_b[:, 2:] - boxes_b[:, :2]).clamp(min=0).prod(dim=1)  # [N]
    union = (area_a + area_b - intersection).clamp(min=torch.finfo(boxes_a.dtype).tiny)
    return intersection / union


def pairwise_box_iou(boxes: Tensor) -> Tensor:
    """IoU between all pairs of boxes in each group: [C, N, 4] -> [C, N, N] (no +1 widths).

    The [C, N, N] temporaries are updated in place (Fast NMS calls this on 80 x 200 x 200).
    """
    x1, y1, x2, y2 = boxes.unbind(dim=-1)  # [C, N] each
    areas = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)  # [C, N]
    inter_w = torch.minimum(x2[:, :, None], x2[:, None, :])  # [C, N, N]
    inter_w.sub_(torch.maximum(x1[:, :, None], x1[:, None, :])).clamp_(min=0)
    inter_h = torch.minimum(y2[:, :, None], y2[:, None, :])  # [C, N, N]
    inter_h.sub_(torch.maximum(y1[:, :, None], y1[:, None, :])).clamp_(min=0)
    intersection = inter_w.mul_(inter_h)  # [C, N, N]
    union = (areas[:, :, None] + areas[:, None, :]).sub_(intersection)  # [C, N, N]
    return intersection.div_(union.clamp_(min=torch.finfo(boxes.dtype).tiny))


def mask_iou(a: Tensor, b: Tensor) -> float:
    """IoU of two bool masks of the same size [H, W] (0.0 when both are empty)."""
    union = int((a | b).sum())
    return int((a & b).sum()) / union if union else 0.0


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tightest box (x0, y0, x1, y1) around a bool mask [H, W], x1 and y1 exclusive; None when empty.

    The same box as pycocotools' toBbox of the mask's RLE, [x0, y0, x1 - x0, y1 - y0] in COCO's
    [x, y, w, h].
    """
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def encode_masks(masks: Tensor | np.ndarray, threshold: float) -> list[dict[str, Any]]:
    """Binarise masks (`> threshold`) and RLE-encode them, one JSON-ready RLE dict per mask.

    masks: [N, 1, H, W] or [N, H, W] probabilities or bools (tensor on any device, or array). Each
    RLE is {'size': [H, W], 'counts': str} (counts decoded from bytes so `json.dump` works).
    """
    array = masks.detach().cpu().numpy() if isinstance(masks, Tensor) else np.asarray(masks)
    if array.ndim == 4:
        if array.shape[1] != 1:
            raise ValueError(f"masks must be [N, 1, H, W] or [N, H, W], got shape {array.shape}")
        array = array[:, 0]
    if array.ndim != 3:
        raise ValueError(f"masks must be [N, 1, H, W] or [N, H, W], got shape {array.shape}")
    if array.shape[0] == 0:
        return []
    binary = (array > threshold).astype(np.uint8)  # [N, H, W]
    # pycocotools wants a Fortran-ordered [H, W, N] uint8 array
    rles = mask_utils.encode(np.asfortranarray(binary.transpose(1, 2, 0)))
    return [{"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")} for rle in rles]


def encode_mask(mask: Tensor | np.ndarray) -> dict[str, Any]:
    """A bool mask [H, W] -> COCO RLE dict {'size': [H, W], 'counts': str} (JSON-ready)."""
    return encode_masks(mask[None], 0.5)[0]
