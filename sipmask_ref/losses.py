"""§3.4 Loss functions: L = L_reg + L_cls + L_mask (plus the FCOS centerness loss).

"For box classification L_cls and box regression L_reg, we utilize focal loss and IoU loss,
respectively, as in [40]" (FCOS). The new term is the mask alignment weighting loss L_mask, which
weights each instance's mask loss by the quality of its box detection.

    focal_loss             L_cls, sigmoid focal loss over all points
    box_loss               L_reg, -log IoU (or 1 - GIoU) between (l, t, r, b) of the same point
    centerness_loss        FCOS centerness, BCE with logits
    mask_alignment_weight  alpha_j = s_j * o_j, normalised to mean ~1 per image
    mask_loss              L_mask = 1/N sum_j l^j * alpha_j, one image, written as the paper says
    batch_mask_loss        the same for every image of a batch at once (the training path)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import sigmoid_focal_loss

from sipmask_ref.config import ALIGNMENT_WEIGHTS, BOX_LOSSES
from sipmask_ref.spatial_mask_prediction import assemble_mask_logits, box_pixel_logits, crop_to_boxes

# IoU is clamped at this value before the log, so that -log IoU stays finite (as mmdet's IoULoss).
IOU_EPS = 1e-6

# The values of config.alignment_weight; home config.py. Notebook 05 reads losses.ALIGNMENT_MODES.
ALIGNMENT_MODES = ALIGNMENT_WEIGHTS


def focal_loss(
    logits: Tensor, labels: Tensor, normalizer: float, gamma: float = 2.0, alpha: float = 0.25
) -> Tensor:
    """§3.4 L_cls: sigmoid focal loss, summed over points and classes, divided by `normalizer`.

    FL(p_t) = -alpha_t (1 - p_t)^gamma log(p_t), one binary problem per class; label 0
    (background) is negative for every class.

    Args:
        logits: [P, C] class logits.
        labels: [P] int64, 1..C or 0 for background.
        normalizer: positive number to divide the sum by (the authors: num_pos + num_images).
    Returns:
        scalar.
    """
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(
            f"focal_loss: logits [P, C] and labels [P] expected, got {tuple(logits.shape)} and "
            f"{tuple(labels.shape)}"
        )
    if normalizer <= 0:
        raise ValueError(f"focal_loss: normalizer must be > 0, got {normalizer}")
    num_classes = logits.shape[1]
    if labels.numel() > 0 and (int(labels.min()) < 0 or int(labels.max()) > num_classes):
        raise ValueError(
            f"focal_loss: labels must be in 0..{num_classes}, got [{int(labels.min())}, {int(labels.max())}]"
        )
    # One-hot over C + 1 columns (column 0 = background), then drop the background column.
    targets = F.one_hot(labels.long(), num_classes + 1)[:, 1:].to(logits.dtype)  # [P, C]
    loss: Tensor = sigmoid_focal_loss(logits, targets, alpha=alpha, gamma=gamma, reduction="sum")
    return loss / normalizer


def _iou_and_enclosure(pred_ltrb: Tensor, target_ltrb: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """IoU, union and enclosing area of boxes given as (l, t, r, b) from the same point.

    Both boxes contain the point, so the intersection width is min(l, l*) + min(r, r*). Widths are
    (l + r) without mmdet-v1's +1. A predicted box with a negative width (the head has no ReLU)
    counts as empty.
    """
    pred_l, pred_t, pred_r, pred_b = pred_ltrb.unbind(dim=-1)
    tgt_l, tgt_t, tgt_r, tgt_b = target_ltrb.unbind(dim=-1)
    pred_area = (pred_l + pred_r).clamp(min=0) * (pred_t + pred_b).clamp(min=0)  # [N]
    target_area = (tgt_l + tgt_r) * (tgt_t + tgt_b)  # [N]
    inter_w = (torch.minimum(pred_l, tgt_l) + torch.minimum(pred_r, tgt_r)).clamp(min=0)  # [N]
    inter_h = (torch.minimum(pred_t, tgt_t) + torch.minimum(pred_b, tgt_b)).clamp(min=0)  # [N]
    intersection = inter_w * inter_h  # [N]
    union = pred_area + target_area - intersection  # [N]
    iou = intersection / union.clamp(min=IOU_EPS)  # [N]
    enclose_w = torch.maximum(pred_l, tgt_l) + torch.maximum(pred_r, tgt_r)  # [N]
    enclose_h = torch.maximum(pred_t, tgt_t) + torch.maximum(pred_b, tgt_b)  # [N]
    enclosure = enclose_w * enclose_h  # [N]
    return iou, union, enclosure


def box_loss(pred_ltrb: Tensor, target_ltrb: Tensor, weight: Tensor, kind: str = "iou") -> Tensor:
    """§3.4 L_reg: IoU loss between predicted and target boxes of the same positive points.

    'iou' (the paper, as FCOS): l = -log(IoU), IoU clamped at IOU_EPS.
    'giou': l = 1 - GIoU, GIoU = IoU - (enclosure - union) / enclosure.
    Result sum_j w_j l_j / sum_j w_j, with w the centerness targets (as the authors).

    Args:
        pred_ltrb: [N, 4] predicted distances (l, t, r, b) in pixels.
        target_ltrb: [N, 4] target distances (positive).
        weight: [N] per-positive weights (centerness targets).
        kind: one of config.BOX_LOSSES, 'iou' or 'giou' (config.box_loss; notebook 02 passes kind=).
    Returns:
        scalar; with no positives (N = 0, or weights summing to 0) a zero still connected to
        `pred_ltrb`, so that backward works.
    """
    if kind not in BOX_LOSSES:
        raise ValueError(f"box_loss: kind must be one of {BOX_LOSSES}, got {kind!r}")
    if pred_ltrb.shape != target_ltrb.shape or pred_ltrb.shape[-1:] != (4,):
        raise ValueError(
            f"box_loss: pred_ltrb and target_ltrb must both be [N, 4], got {tuple(pred_ltrb.shape)} "
            f"and {tuple(target_ltrb.shape)}"
        )
    if weight.shape != pred_ltrb.shape[:1]:
        raise ValueError(f"box_loss: weight must be [N], got {tuple(weight.shape)}")
    weight_sum = weight.sum()
    if pred_ltrb.shape[0] == 0 or float(weight_sum) <= 0:
        return pred_ltrb.sum() * 0
    iou, union, enclosure = _iou_and_enclosure(pred_ltrb, target_ltrb)
    if kind == "iou":
        losses = -torch.log(iou.clamp(min=IOU_EPS))  # [N]
    else:
        giou = iou - (enclosure - union) / enclosure.clamp(min=IOU_EPS)  # [N]
        losses = 1 - giou  # [N]
    return (weight * losses).sum() / weight_sum


def centerness_loss(logits: Tensor, target: Tensor) -> Tensor:
    """FCOS centerness loss: BCE with logits against `centerness_target`, mean over positives.

    Args:
        logits: [N] centerness logits of the positive points.
        target: [N] centerness targets in (0, 1].
    Returns:
        scalar; 0 connected to `logits` when N = 0.
    """
    if logits.shape != target.shape or logits.ndim != 1:
        raise ValueError(
            f"centerness_loss: logits and target must both be [N], got {tuple(logits.shape)} and "
            f"{tuple(target.shape)}"
        )
    if logits.numel() == 0:
        return logits.sum() * 0
    return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="mean")


def mask_alignment_weight(
    scores: Tensor, ious: Tensor, alignment_weight: str = "cls+loc", box_image: Tensor | None = None
) -> Tensor:
    """§3.4 mask alignment weighting: alpha_j = o_j * s_j, normalised, without gradient.

    "The weighting factor alpha_j is then obtained by multiplying the overlap o_j and the
    classification score s_j of the bounding-box j." The authors then normalise per image,
    alpha <- alpha / (sum alpha + 1e-4) * N, so that the mean weight is ~1.

    Args:
        scores: [N] s_j, classification probability of the GT class at each positive.
        ious: [N] o_j, IoU of each predicted box with its ground truth.
        alignment_weight: config.alignment_weight, one of config.ALIGNMENT_WEIGHTS: 'cls+loc' (s*o,
            the paper), 'cls' (s), 'loc' (o) or 'none' (1): the ablation.
        box_image: int64 [N], the image of each box when the boxes of a batch come together: each
            image is normalised on its own, as if called once per image (None: one image).
    Returns:
        [N] weights (detached).
    """
    if alignment_weight not in ALIGNMENT_WEIGHTS:
        raise ValueError(
            f"mask_alignment_weight: alignment_weight must be one of {ALIGNMENT_WEIGHTS}, "
            f"got {alignment_weight!r}"
        )
    if scores.shape != ious.shape or scores.ndim != 1:
        raise ValueError(
            f"mask_alignment_weight: scores and ious must both be [N], got {tuple(scores.shape)} "
            f"and {tuple(ious.shape)}"
        )
    if box_image is not None and box_image.shape != scores.shape:
        raise ValueError(f"mask_alignment_weight: box_image must be [N], got {tuple(box_image.shape)}")
    with torch.no_grad():
        scores, ious = scores.detach(), ious.detach().to(scores.dtype)
        if alignment_weight == "cls+loc":
            alpha = scores * ious
        elif alignment_weight == "cls":
            alpha = scores.clone()
        elif alignment_weight == "loc":
            alpha = ious.clone()
        else:
            alpha = torch.ones_like(scores)
        if box_image is None:
            return alpha / (alpha.sum() + 1e-4) * alpha.numel()  # [N]
        num_images = int(box_image.max()) + 1 if box_image.numel() > 0 else 0
        sums = alpha.new_zeros(num_images).index_add_(0, box_image, alpha)  # [I] sum of alpha per image
        counts = torch.bincount(box_image, minlength=num_images).to(alpha.dtype)  # [I] boxes per image
        return alpha / (sums[box_image] + 1e-4) * counts[box_image]  # [N]


def valid_mask_boxes(boxes: Tensor) -> Tensor:
    """Boxes kept by `mask_loss`: positive width and height and area (x2-x1)*(y2-y1) > 1.

    Args:
        boxes: [N, 4] xyxy in basis-map pixels.
    Returns:
        bool [N].
    """
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    return (widths > 0) & (heights > 0) & (widths * heights > 1)


def mask_loss(
    basis_masks: Tensor,
    coefficients: Tensor,
    boxes: Tensor,
    gt_masks: Tensor,
    weights: Tensor,
    sub_regions: tuple[int, int],
) -> Tensor:
    """§3.4 mask alignment weighting loss of one image: L_mask = 1/N sum_j l^j * alpha_j.

    l^j is the pixel-wise BCE of instance j's assembled mask (§3.3) against its ground-truth mask,
    summed over the pixels inside box j and divided by the box area w * h (basis-map pixels).
    Outside the box the authors' CropSplit / CropSplitGt set both the prediction and the ground
    truth to 0, where BCE is 0, so summing inside the box only is the same loss. It is computed from
    logits (BCE with logits), which is numerically stable where the sigmoid saturates.

    Boxes with a non-positive side or area <= 1 pixel are dropped (as the authors; see
    `valid_mask_boxes`) and N counts the kept boxes. The weights are used as given.

    Args:
        basis_masks: [M, H, W] basis masks of the image.
        coefficients: [N, Q, M] spatial coefficients of the positives.
        boxes: [N, 4] xyxy in basis-map pixels (the authors use the detached predicted boxes).
        gt_masks: [N, H, W] {0, 1} ground-truth mask of each positive's assigned GT, at basis size.
        weights: [N] alpha_j from `mask_alignment_weight`.
        sub_regions: (k_h, k_w).
    Returns:
        scalar; when no box is kept, a zero still connected to `coefficients` and `basis_masks`,
        so that backward (and DDP) works.
    """
    num_boxes = boxes.shape[0]
    if gt_masks.ndim != 3 or gt_masks.shape[0] != num_boxes or gt_masks.shape[1:] != basis_masks.shape[1:]:
        raise ValueError(
            f"mask_loss: gt_masks must be [N, H, W] = {(num_boxes, *basis_masks.shape[1:])}, got "
            f"{tuple(gt_masks.shape)}"
        )
    if weights.shape != (num_boxes,):
        raise ValueError(f"mask_loss: weights must be [N]={num_boxes}, got {tuple(weights.shape)}")
    keep = valid_mask_boxes(boxes)  # [N]
    if not bool(keep.any()):
        return coefficients.sum() * 0 + basis_masks.sum() * 0
    boxes, coefficients = boxes[keep], coefficients[keep]
    gt_masks, weights = gt_masks[keep], weights[keep]
    num_kept = boxes.shape[0]

    logits, inside = assemble_mask_logits(basis_masks, coefficients, boxes, sub_regions)  # [N, H, W]
    targets = crop_to_boxes(gt_masks.to(logits.dtype), boxes)  # [N, H, W]
    pixel_losses = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")  # [N, H, W]
    pixel_losses = torch.where(inside, pixel_losses, torch.zeros_like(pixel_losses))
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])  # [N]
    instance_losses = pixel_losses.sum(dim=(1, 2)) / areas  # [N] l^j
    return (instance_losses * weights.to(logits.dtype)).sum() / num_kept


def batch_mask_loss(
    basis_masks: Tensor,
    coefficients: Tensor,
    boxes: Tensor,
    box_image: Tensor,
    gt_masks: Tensor,
    box_gt: Tensor,
    weights: Tensor,
    sub_regions: tuple[int, int],
) -> Tensor:
    """§3.4 L_mask of every image of a batch in one pass: [I] losses, image i's equal to
    `mask_loss` of that image's boxes (the tests check it).

    The fast path beside `mask_loss`: instead of one call per image, each filling [N, H, W] maps of
    logits and cropped targets, the logits come only at the K (box, pixel) pairs inside the boxes
    (`box_pixel_logits`), each pixel's target is read from its box's GT mask, and the BCE of the K
    pairs is summed per box, l^j = sum inside box j / its area, then per image,
    L_i = sum_j alpha_j l^j / N_i over image i's N_i kept boxes (as `mask_loss`, boxes with a
    non-positive side or area <= 1 are dropped). An image without kept boxes gets 0.

    Args:
        basis_masks: [I, M, H, W] basis masks of the batch.
        coefficients: [N, Q, M] spatial coefficients of the positives of all images.
        boxes: [N, 4] xyxy in basis-map pixels.
        box_image: int64 [N] the image (0 .. I-1) of each positive.
        gt_masks: [G, H, W] {0, 1} ground-truth masks of all images at basis size.
        box_gt: int64 [N] row of gt_masks that each positive is assigned to.
        weights: [N] alpha_j from `mask_alignment_weight` (normalised per image).
        sub_regions: (k_h, k_w).
    Returns:
        [I] per-image losses, connected to `coefficients` and `basis_masks` even when all are 0.
    """
    num_images, _, height, width = basis_masks.shape
    num_boxes = boxes.shape[0]
    for name, value in (("box_image", box_image), ("box_gt", box_gt), ("weights", weights)):
        if value.shape != (num_boxes,):
            raise ValueError(f"batch_mask_loss: {name} must be [N]={num_boxes}, got {tuple(value.shape)}")
    if gt_masks.ndim != 3 or gt_masks.shape[1:] != basis_masks.shape[2:]:
        raise ValueError(
            f"batch_mask_loss: gt_masks must be [G, H, W] with H, W = {tuple(basis_masks.shape[2:])}, got "
            f"{tuple(gt_masks.shape)}"
        )
    keep = valid_mask_boxes(boxes)  # [N]
    if not bool(keep.any()):
        return (coefficients.sum() * 0 + basis_masks.sum() * 0).expand(num_images)
    boxes, coefficients, box_image = boxes[keep], coefficients[keep], box_image[keep]
    box_gt, weights = box_gt[keep], weights[keep]

    positions, logits = box_pixel_logits(basis_masks, coefficients, boxes, box_image, sub_regions)  # [K]
    pixels_per_map = height * width
    box = torch.div(positions, pixels_per_map, rounding_mode="floor")  # [K] box of each pair
    pixel = positions - box * pixels_per_map  # [K] y * W + x
    targets = gt_masks.reshape(gt_masks.shape[0], pixels_per_map)[box_gt[box], pixel].to(logits.dtype)
    pixel_losses = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")  # [K]
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])  # [N]
    instance_losses = logits.new_zeros(boxes.shape[0]).index_add(0, box, pixel_losses) / areas  # [N] l^j
    weighted = instance_losses * weights.to(logits.dtype)  # [N]
    per_image = logits.new_zeros(num_images).index_add(0, box_image, weighted)  # [I]
    kept = torch.bincount(box_image, minlength=num_images).clamp(min=1).to(logits.dtype)  # [I]
    return per_image / kept  # images without kept boxes: 0, connected through index_add
