"""§3.3 / Figs. 1 and 6, measured: how much of a predicted mask lies on same-class neighbours.

The paper's case for spatial mask prediction (§3.3): with a single set of coefficients per box, the mask
of an instance "tends to also include ... adjacent object instances of the same class" (Fig. 1), because
a linear combination of basis masks cannot tell two objects apart that the basis maps light up alike; with
k x k sub-regions, each part of the box gets its own coefficients and the neighbour can be cut away
(Fig. 4; Fig. 6 shows it on COCO). The paper shows this with pictures. This file turns it into numbers.

For a ground-truth instance g that has a same-class neighbour (`adjacency_flags` of the synthetic
benchmark: at least 10% of g's box lies on other instances of g's class), take the detection matched to
g (below) and its binary mask m at image resolution (probabilities > the evaluation's mask threshold).
With U the union of the masks of the other instances of g's class in the image:

    leak(m, g) = |m ∩ (U \\ g)| / |m|     the share of the predicted mask that falls on same-class neighbours
    miss(m, g) = |g \\ m| / |g|           the share of the instance that the mask does not cover

A mask that covers its instance and nothing else has leak 0 and miss 0; a mask spread over g and its
neighbour has a large leak; cutting the neighbour away with too coarse a mask shows up as miss.

Matching (COCO's greedy rule at one threshold): detections in order of decreasing score; each takes the
not yet matched ground-truth instance of its class with the highest box IoU, if that IoU is >= 0.5.
Ground-truth instances that no detection matches are counted (`unmatched`) but have no leak or miss.

Held here, top to bottom: `same_class_neighbours` (U), `mask_leak` (the two formulas), `match_detections`,
`image_leaks` (one image), `summarize_leaks` (means over instances), `LEAK_IOU_THRESHOLD`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import box_iou

from ..data.synthetic import adjacency_flags

LEAK_IOU_THRESHOLD = 0.5  # box IoU a detection needs to be matched to a ground-truth instance


@dataclass(frozen=True)
class InstanceLeak:
    """The leak and miss of the mask matched to one ground-truth instance that has a same-class neighbour."""

    image_id: int
    gt_index: int  # index of the instance in the image's target
    detection: int  # index of the matched detection in the image's predictions
    label: int
    score: float
    leak: float
    miss: float


def same_class_neighbours(gt_masks: np.ndarray, gt_labels: Sequence[int] | np.ndarray, g: int) -> np.ndarray:
    """U, the union of the other ground-truth instances of instance g's class: bool [H, W].

    gt_masks: [G, H, W] (any dtype; non-zero is on); gt_labels: [G]. All False when g has no
    same-class neighbour.
    """
    labels = np.asarray(gt_labels)
    same_class = labels == labels[g]  # [G]
    same_class[g] = False
    return np.asarray(gt_masks)[same_class].astype(bool).any(axis=0)  # [H, W]


def mask_leak(mask: np.ndarray, instance: np.ndarray, neighbours: np.ndarray) -> tuple[float, float]:
    """(leak, miss) of a predicted bool mask [H, W] against its instance and the instance's same-class
    neighbours (bool [H, W] each):

        leak = |m ∩ (U \\ g)| / |m|,   miss = |g \\ m| / |g|

    An empty predicted mask has leak 0 (it covers nothing) and miss 1; an empty instance has miss 0.
    """
    mask_area = int(mask.sum())
    instance_area = int(instance.sum())
    on_neighbours = int((mask & neighbours & ~instance).sum())
    uncovered = int((instance & ~mask).sum())
    leak = on_neighbours / mask_area if mask_area else 0.0
    miss = uncovered / instance_area if instance_area else 0.0
    return leak, miss


def match_detections(
    boxes: Tensor,
    labels: Tensor,
    scores: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    iou_threshold: float = LEAK_IOU_THRESHOLD,
) -> list[int | None]:
    """For each ground-truth instance, the index of the detection matched to it, or None.

    boxes [N, 4], labels [N], scores [N]; gt_boxes [G, 4], gt_labels [G]. Greedy in decreasing score:
    a detection takes the unmatched ground truth of its label with the highest box IoU >= iou_threshold.
    """
    matched: list[int | None] = [None] * len(gt_boxes)
    if len(boxes) == 0 or len(gt_boxes) == 0:
        return matched
    ious = box_iou(boxes.float(), gt_boxes.float())  # [N, G]
    same_label = labels[:, None] == gt_labels[None, :]  # [N, G]
    ious = torch.where(same_label, ious, torch.full_like(ious, -1.0))
    for n in torch.argsort(scores, descending=True, stable=True).tolist():
        free = torch.tensor([m is None for m in matched])  # [G]
        candidates = torch.where(free, ious[n], torch.full_like(ious[n], -1.0))  # [G]
        best = int(candidates.argmax())
        if candidates[best] >= iou_threshold:
            matched[best] = n
    return matched


def image_leaks(
    prediction: dict[str, Tensor], target: dict[str, Any], mask_threshold: float
) -> tuple[list[InstanceLeak], int]:
    """The leaks of one image: (one InstanceLeak per matched instance with a same-class neighbour,
    the number of such instances that no detection matched).

    prediction: the model's output for the image (boxes [N, 4], labels [N], scores [N], masks
    [N, 1, H, W] probabilities at the image's size); target: the dataset's target (boxes [G, 4],
    labels [G], masks [G, H, W], image_id).
    """
    gt_masks = torch.as_tensor(target["masks"]).bool().numpy()  # [G, H, W]
    gt_labels = torch.as_tensor(target["labels"])
    adjacent = adjacency_flags(gt_masks, gt_labels.tolist())  # [G]
    matched = match_detections(
        prediction["boxes"], prediction["labels"], prediction["scores"], target["boxes"], gt_labels
    )
    masks = (prediction["masks"][:, 0] > mask_threshold).numpy() if len(prediction["boxes"]) else None
    leaks, unmatched = [], 0
    for g in np.flatnonzero(adjacent).tolist():
        n = matched[g]
        if n is None or masks is None:
            unmatched += 1
            continue
        neighbours = same_class_neighbours(gt_masks, gt_labels.numpy(), g)  # [H, W]: U
        leak, miss = mask_leak(masks[n], gt_masks[g], neighbours)
        leaks.append(
            InstanceLeak(
                int(target["image_id"]),
                g,
                n,
                int(gt_labels[g]),
                float(prediction["scores"][n]),
                leak,
                miss,
            )
        )
    return leaks, unmatched


def summarize_leaks(leaks: Sequence[InstanceLeak], unmatched: int) -> dict[str, Any]:
    """Means over the matched adjacent instances: {'leak', 'miss', 'matched', 'unmatched',
    'leaking' (share of masks with leak > 0.05), 'instances' (each InstanceLeak as a dict)}."""
    values = np.array([[item.leak, item.miss] for item in leaks]).reshape(-1, 2)
    return {
        "leak": float(values[:, 0].mean()) if len(leaks) else float("nan"),
        "miss": float(values[:, 1].mean()) if len(leaks) else float("nan"),
        "leaking": float((values[:, 0] > 0.05).mean()) if len(leaks) else float("nan"),
        "matched": len(leaks),
        "unmatched": unmatched,
        "instances": [asdict(item) for item in leaks],
    }
