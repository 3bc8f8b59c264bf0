"""The SipMask detector (Fig. 3a) behind torchvision's detection-model interface.

images -> resize, normalise, pad to 32 (model_input.py)
       -> backbone + FPN (backbone.py)                           P3..P7
       -> shared head (head.py)                                  per level: class logits,
                                                                 box regression, centerness,
                                                                 spatial coefficients
       -> contextual basis masks from the P3-P5 reg towers (basis_masks.py)
train: FCOS targets (fcos.py), once per batch (BatchAssignment)
       + losses (losses.py)                                      -> dict of 4 scalar losses
eval:  NMS / Fast NMS + mask assembly and pasting (inference.py) -> list of detections
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import fcos, inference, model_input
from .backbone import build_backbone
from .basis_masks import ContextualBasisMasks
from .config import SipMaskConfig

# paired_box_iou lives in geometry.py; model.paired_box_iou stays importable (notebook 05, tests)
from .geometry import paired_box_iou
from .head import HeadOutputs, SipMaskHead
from .losses import (
    batch_mask_loss,
    box_loss,
    centerness_loss,
    focal_loss,
    mask_alignment_weight,
    valid_mask_boxes,
)
from .spatial_mask_prediction import assemble_masks, sub_region_maps
from .spatial_preservation import flatten_coefficients


class PreparedBatch(NamedTuple):
    """The network input built from a list of images (and targets).

    images:         [B, 3, Hp, Wp] resized, normalised, zero-padded to a multiple of 32.
    image_sizes:    (h, w) of each resized image inside the padded batch.
    original_sizes: (H0, W0) of each image as given.
    scale_factors:  (sx, sy) = (w / W0, h / H0) of each image.
    targets:        training only: targets resized like the images (boxes in input pixels, masks
                    zero-padded to [G, Hp, Wp]), zero-area boxes dropped; None in eval.
    """

    images: Tensor
    image_sizes: list[tuple[int, int]]
    original_sizes: list[tuple[int, int]]
    scale_factors: list[tuple[float, float]]
    targets: list[dict[str, Tensor]] | None


class BatchAssignment(NamedTuple):
    """The FCOS assignment of a batch (§3) and the positives of the mask loss: `SipMask.assign`.

    Computed once per batch and read by every loss that needs it (the four of §3.4, SipMaskVIS's
    loss_track of §3.5): which points are positives is decided in one place.

    points:         [P, 2] the points of all levels (fcos.points_of_maps), input pixels.
    strides:        [P] the stride of each point's level.
    labels:         int64 [B, P] class 1..C of the assigned ground truth, 0 for background.
    box_targets:    [B, P, 4] (l, t, r, b) pixels from each point to its assigned ground-truth box.
    matched_gt:     int64 [B, P] index into the image's ground truths, -1 for background.
    positive:       bool [B, P] labels > 0: the points of the box and centerness losses.
    mask_positives: per image int64 [N], the positives the mask loss uses (`mask_positives`).
    mask_boxes:     per image [N, 4], their PREDICTED boxes, decoded and detached, input pixels.
    """

    points: Tensor
    strides: Tensor
    labels: Tensor
    box_targets: Tensor
    matched_gt: Tensor
    positive: Tensor
    mask_positives: list[Tensor]
    mask_boxes: list[Tensor]


class SipMask(nn.Module):
    """SipMask (Cao et al., ECCV 2020): single-stage instance segmentation built on FCOS.

    Call `model(images)` or `model(images, targets)` as torchvision's detection models:

    images: list of B float tensors [3, H, W], RGB in [0, 1], each at its own original size (the
        model resizes to config.input_size, normalises with config.pixel_mean / pixel_std and pads
        to a multiple of 32 itself). Any device; everything follows the images' device.
    targets (train mode, required): list of B dicts
        boxes  float [G, 4]   xyxy in absolute pixels of the image
        labels int64 [G]      1..C (0 is background)
        masks  uint8 [G, H, W] 0/1
        G may be 0 (an image without objects: only the classification loss sees it).

    Train mode returns {loss_cls, loss_box, loss_centerness, loss_mask}: scalar float32 tensors,
    each with weight 1 (the total loss is their sum).
    Eval mode returns a list of B dicts (the detections of each image, best score first):
        boxes  float32 [N, 4]        xyxy in pixels of the ORIGINAL image, clipped to it
        labels int64   [N]           1..C
        scores float32 [N]
        masks  float32 [N, 1, H, W]  mask probabilities in [0, 1] at the original size
                                     (binarise at config.mask_threshold = 0.4 as the authors)

    `forward_intermediates(images)` returns what happens inside (basis masks, coefficients per
    sub-region, boxes in basis-map pixels...) for notebooks and figures.
    """

    def __init__(self, config: SipMaskConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = build_backbone(config)
        self.head = SipMaskHead(config)
        self.basis_masks = ContextualBasisMasks(
            config.fpn_channels,
            config.num_basis,
            config.basis_hidden_channels,
            config.basis_source,
            config.basis_activation,
            self.backbone.body.c2_channels if config.basis_detail else 0,
        )

    # ---- input -------------------------------------------------------------------------------

    def preprocess(self, images: list[Tensor], targets: list[dict[str, Any]] | None = None) -> PreparedBatch:
        """Resize, normalise and pad a list of images (and resize / pad their targets)."""
        cfg = self.config
        if not isinstance(images, (list, tuple)) or len(images) == 0:
            raise ValueError("SipMask: images must be a non-empty list of [3, H, W] tensors")
        if targets is not None and len(targets) != len(images):
            raise ValueError(f"SipMask: got {len(images)} images but {len(targets)} targets")
        resized, image_sizes, original_sizes, scale_factors, resized_targets = [], [], [], [], []
        for k, image in enumerate(images):
            if (
                not torch.is_tensor(image)
                or image.ndim != 3
                or image.shape[0] != 3
                or not image.is_floating_point()
            ):
                raise ValueError(
                    f"SipMask: images[{k}] must be a float tensor [3, H, W] (RGB in "
                    f"[0, 1]), got {getattr(image, 'shape', type(image))}"
                )
            target = None
            if targets is not None:
                target = _checked_target(targets[k], image, k, cfg.num_classes)
            image_r, target_r, scale = model_input.resize(image, target, cfg.input_size, cfg.keep_ratio)
            resized.append(model_input.normalize(image_r, cfg.pixel_mean, cfg.pixel_std))
            image_sizes.append((int(image_r.shape[1]), int(image_r.shape[2])))
            original_sizes.append((int(image.shape[1]), int(image.shape[2])))
            scale_factors.append((float(scale[0]), float(scale[1])))
            resized_targets.append(target_r)
        batch, _ = model_input.pad_batch(resized, cfg.size_divisible)  # [B, 3, H, W] padded
        if targets is None:
            return PreparedBatch(batch, image_sizes, original_sizes, scale_factors, None)
        padded = (int(batch.shape[2]), int(batch.shape[3]))
        prepared = []
        for target_r in resized_targets:
            assert target_r is not None  # resize returns a target for every target it is given
            prepared.append(_drop_degenerate(target_r, padded))
        return PreparedBatch(batch, image_sizes, original_sizes, scale_factors, prepared)

    # ---- network -----------------------------------------------------------------------------

    def run_network(self, images: Tensor) -> tuple[list[Tensor], HeadOutputs, Tensor]:
        """Padded batch [B, 3, Hp, Wp] -> (FPN features P3..P7, head outputs, basis masks).

        Basis masks are [B, M, Hp/2, Wp/2] (stride 2 of the padded input).
        """
        features, c2 = self.backbone.forward_with_c2(images)  # P3..P7, C2 (stride 4)
        outputs = self.head(features)
        basis_masks = self.basis_masks(outputs.reg_features[:3], c2)  # [B, M, Hp/2, Wp/2]
        return features, outputs, basis_masks

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Any]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """Losses (train mode, targets required) or detections (eval mode); see the class doc."""
        if self.training and targets is None:
            raise ValueError("SipMask: targets are required in train mode (call model.eval() for inference)")
        batch = self.preprocess(images, targets if self.training else None)
        _, outputs, basis_masks = self.run_network(batch.images)
        if self.training:
            assert batch.targets is not None  # preprocess prepares the targets it is given
            return self.compute_losses(outputs, basis_masks, batch.targets)
        return self.postprocess(outputs, basis_masks, batch)

    # ---- training ----------------------------------------------------------------------------

    def assign(self, outputs: HeadOutputs, targets: list[dict[str, Tensor]]) -> BatchAssignment:
        """The FCOS assignment of every image (§3) and the positives of the mask loss, in float32.

        Computed once per batch: `compute_losses` reads it, and SipMaskVIS hands the same one to its
        tracking loss (§3.5), which takes its embeddings at the mask loss's positives.
        """
        cfg = self.config
        with torch.no_grad(), torch.autocast(outputs.cls_logits[0].device.type, enabled=False):
            points, strides, ranges = fcos.points_of_maps(
                outputs.cls_logits, cfg.strides, cfg.regress_ranges
            )  # [P, 2], [P], [P, 2]
            reg = torch.cat([x.flatten(2).transpose(1, 2) for x in outputs.box_regression], dim=1)
            reg = reg.float() * strides[None, :, None]  # [B, P, 4] predicted (l, t, r, b), pixels
            assigned = [
                fcos.fcos_targets(
                    points, strides, ranges, t["boxes"], t["labels"], cfg.center_sampling_radius
                )
                for t in targets
            ]
            labels = torch.stack([a.labels for a in assigned])  # [B, P]
            box_targets = torch.stack([a.box_targets for a in assigned])  # [B, P, 4]
            matched_gt = torch.stack([a.matched_gt for a in assigned])  # [B, P]
            positive = labels > 0  # [B, P]
            kept = [mask_positives(points, reg[b], positive[b]) for b in range(len(targets))]
        index, boxes = [k[0] for k in kept], [k[1] for k in kept]  # per image [N], [N, 4]
        return BatchAssignment(points, strides, labels, box_targets, matched_gt, positive, index, boxes)

    def compute_losses(
        self,
        outputs: HeadOutputs,
        basis_masks: Tensor,
        targets: list[dict[str, Tensor]],
        assignment: BatchAssignment | None = None,
    ) -> dict[str, Tensor]:
        """The four losses of §3.4 (+ FCOS centerness), in float32 even under autocast.

        assignment: `self.assign(outputs, targets)`, computed here when not given.
        """
        assigned = self.assign(outputs, targets) if assignment is None else assignment
        with torch.autocast(basis_masks.device.type, enabled=False):
            # [B, P, C], [B, P, 4], [B, P], [B, P, Q, M]
            cls, reg, ctr, coefficients = flatten_outputs(outputs)
            cls, coefficients = cls.float(), coefficients.float()
            losses = self._detection_losses(assigned, cls, reg, ctr)
            losses["loss_mask"] = self._mask_loss(assigned, cls, coefficients, basis_masks.float(), targets)
        return losses

    def detection_losses(
        self,
        outputs: HeadOutputs,
        targets: list[dict[str, Tensor]],
        assignment: BatchAssignment | None = None,
    ) -> dict[str, Tensor]:
        """The three losses of the FCOS detector of §3 alone (no loss_mask), in float32.

        compute_losses returns these and the mask loss; training on these alone trains a box detector
        (the ablation study pretrains its body so: reproduce/pretrain.py).
        """
        assigned = self.assign(outputs, targets) if assignment is None else assignment
        with torch.autocast(outputs.cls_logits[0].device.type, enabled=False):
            cls, reg, ctr, _ = flatten_outputs(outputs)
            return self._detection_losses(assigned, cls.float(), reg, ctr)

    def _detection_losses(
        self, assigned: BatchAssignment, cls: Tensor, reg: Tensor, ctr: Tensor
    ) -> dict[str, Tensor]:
        """Focal, IoU and centerness losses from the flattened outputs: cls [B, P, C] (float32),
        reg [B, P, 4] in stride units, ctr [B, P]."""
        cfg = self.config
        ctr = ctr.float()
        reg = reg.float() * assigned.strides[None, :, None]  # stride units -> pixels
        num_images, _, num_classes = cls.shape
        positive = assigned.positive  # [B, P]
        num_pos = int(positive.sum())

        # Focal loss over all points, normalised by num_pos + num_images (as the authors).
        loss_cls = focal_loss(
            cls.reshape(-1, num_classes),
            assigned.labels.reshape(-1),
            normalizer=num_pos + num_images,
            gamma=cfg.focal_gamma,
            alpha=cfg.focal_alpha,
        )
        # IoU loss weighted by the centerness targets; centerness BCE; positives only.
        pos_targets = assigned.box_targets[positive]  # [N, 4]
        centerness_targets = fcos.centerness_target(pos_targets)  # [N]
        loss_box = box_loss(reg[positive], pos_targets, centerness_targets, kind=cfg.box_loss)
        loss_centerness = centerness_loss(ctr[positive], centerness_targets)
        return {"loss_cls": loss_cls, "loss_box": loss_box, "loss_centerness": loss_centerness}

    def _mask_loss(
        self,
        assigned: BatchAssignment,
        cls: Tensor,
        coefficients: Tensor,
        basis_masks: Tensor,
        targets: list[dict[str, Tensor]],
    ) -> Tensor:
        """§3.4 mask alignment weighting loss: the mean over the images of each image's loss
        (docs/authors_implementation.md §2.3), all images in one pass (`losses.batch_mask_loss`).

        For each image:
        1. all positive locations of all levels, no sampling, with their PREDICTED boxes, decoded and
           detached, boxes of area <= 1 at the basis-map scale dropped (`mask_positives`);
        2. the boxes / 2 -> basis-map pixels;
        3. GT masks of the padded image, bilinearly resized x0.5, > 0.5; each positive uses the
           mask of its assigned GT;
        4. alpha = sigmoid(GT-class logit) x IoU(predicted box, GT box) under no-grad, per
           config.alignment_weight, normalised to mean ~1 over the image's kept positives;
        5. per-instance BCE inside the box / box area, sum_j alpha_j l_j / N.

        Shapes: cls [B, P, C], coefficients [B, P, Q, M], basis_masks [B, M, H, W]; `assigned` gives
        the positives and boxes (input pixels) of each image.
        """
        num_images = basis_masks.shape[0]
        device = basis_masks.device
        counts = [int(index.numel()) for index in assigned.mask_positives]
        box_image = torch.repeat_interleave(
            torch.arange(num_images, device=device), torch.tensor(counts, device=device)
        )  # [N]
        points = torch.cat(assigned.mask_positives)  # [N] point index of each positive
        boxes = torch.cat(assigned.mask_boxes)  # [N, 4] predicted boxes, input pixels
        # Each image's GTs are rows first_gt[b] .. of the batch's GT boxes and masks.
        gt_counts = torch.tensor([int(t["boxes"].shape[0]) for t in targets], device=device)
        first_gt = torch.cumsum(gt_counts, dim=0) - gt_counts  # [B]
        box_gt = assigned.matched_gt[box_image, points] + first_gt[box_image]  # [N]
        labels = assigned.labels[box_image, points]  # [N] 1..C
        with torch.no_grad():
            scores = cls[box_image, points, labels - 1].sigmoid()  # [N] the GT class's score
            gt_boxes = torch.cat([t["boxes"] for t in targets]).to(boxes.dtype)  # [G, 4]
            ious = paired_box_iou(boxes, gt_boxes[box_gt])  # [N], input pixels
            weights = mask_alignment_weight(scores, ious, self.config.alignment_weight, box_image)  # [N]
        basis_size = (basis_masks.shape[-2], basis_masks.shape[-1])
        gt_masks = torch.cat([basis_size_gt_masks(t["masks"], basis_size) for t in targets])  # [G, H, W]
        per_image = batch_mask_loss(
            basis_masks,
            coefficients[box_image, points],
            boxes / 2,
            box_image,
            gt_masks,
            box_gt,
            weights,
            self.config.sub_regions,
        )  # [B]
        return per_image.mean()

    # ---- inference ---------------------------------------------------------------------------

    def postprocess(
        self, outputs: HeadOutputs, basis_masks: Tensor, batch: PreparedBatch
    ) -> list[dict[str, Tensor]]:
        """Detections of every image at its original size (see the class docstring)."""
        cfg = self.config
        results = []
        with torch.autocast(basis_masks.device.type, enabled=False):
            for b, detections in enumerate(self._detect(outputs, batch)):
                original_size = batch.original_sizes[b]
                masks = inference.paste_masks(
                    basis_masks[b].float(),
                    detections.coefficients,
                    detections.boxes,
                    cfg.sub_regions,
                    batch.image_sizes[b],
                    original_size,
                )  # [N, 1, H0, W0]
                boxes = inference.scale_boxes_to_original(
                    detections.boxes, batch.scale_factors[b], original_size
                )
                results.append(
                    {"boxes": boxes, "labels": detections.labels, "scores": detections.scores, "masks": masks}
                )
        return results

    def _detect(self, outputs: HeadOutputs, batch: PreparedBatch) -> list[inference.Detections]:
        """inference.detect for every image of the batch (float32, resized-input pixels)."""
        sizes = [(int(x.shape[-2]), int(x.shape[-1])) for x in outputs.cls_logits]
        points = fcos.locations(sizes, self.config.strides, batch.images.device)
        detections = []
        for b in range(batch.images.shape[0]):
            detections.append(
                inference.detect(
                    cls_logits=[x[b].flatten(1).t().float() for x in outputs.cls_logits],  # [P_l, C]
                    box_regression=[x[b].flatten(1).t().float() for x in outputs.box_regression],
                    centerness=[x[b].flatten().float() for x in outputs.centerness],  # [P_l]
                    coefficients=[
                        flatten_coefficients(x[b : b + 1])[0].float() for x in outputs.coefficients
                    ],  # [P_l, Q, M]
                    points=points,
                    strides=self.config.strides,
                    image_size=batch.image_sizes[b],
                    config=self.config,
                )
            )
        return detections

    @torch.no_grad()
    def forward_intermediates(self, images: list[Tensor]) -> dict[str, Any]:
        """Everything inside one eval forward pass, for teaching (call model.eval() first).

        Returns a dict:
            images          [B, 3, Hp, Wp] the normalised, padded network input
            image_sizes, original_sizes, scale_factors   as PreparedBatch
            features        [P3..P7] FPN features, each [B, D, H_l, W_l]
            cls_logits      per level [B, C, H_l, W_l]
            box_regression  per level [B, 4, H_l, W_l], (l, t, r, b) in stride units
            centerness      per level [B, 1, H_l, W_l] logits
            coefficients    per level [B, Q, M, H_l, W_l], sub-regions row-major
            basis_masks     [B, M, Hp/2, Wp/2]
            detections      per image a dict of the kept detections:
                boxes         [N, 4] in BASIS-MAP pixels (input pixels / 2)
                coefficients  [N, Q, M]
                labels [N] 1..C, scores [N]
                sub_region_maps [N, Q, Hp/2, Wp/2] sigmoid(B x c_q) of each sub-region, unpruned
                masks         [N, Hp/2, Wp/2] the assembled mask (pruned per sub-region, summed)
            results         the same detections as `model(images)` returns
        """
        batch = self.preprocess(images)
        features, outputs, basis_masks = self.run_network(batch.images)
        detections = []
        for b, found in enumerate(self._detect(outputs, batch)):
            basis = basis_masks[b].float()  # [M, H, W]
            boxes = found.boxes / 2
            detections.append(
                {
                    "boxes": boxes,
                    "coefficients": found.coefficients,
                    "labels": found.labels,
                    "scores": found.scores,
                    "sub_region_maps": sub_region_maps(basis, found.coefficients),
                    "masks": assemble_masks(basis, found.coefficients, boxes, self.config.sub_regions),
                }
            )
        return {
            "images": batch.images,
            "image_sizes": batch.image_sizes,
            "original_sizes": batch.original_sizes,
            "scale_factors": batch.scale_factors,
            "features": features,
            "cls_logits": outputs.cls_logits,
            "box_regression": outputs.box_regression,
            "centerness": outputs.centerness,
            "coefficients": outputs.coefficients,
            "basis_masks": basis_masks,
            "detections": detections,
            "results": self.postprocess(outputs, basis_masks, batch),
        }


def flatten_outputs(outputs: HeadOutputs) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Concatenate the levels, locations row-major within a level (the order of fcos.locations).

    Returns cls [B, P, C], box regression [B, P, 4], centerness [B, P], coefficients [B, P, Q, M].
    """
    cls = torch.cat([x.flatten(2).transpose(1, 2) for x in outputs.cls_logits], dim=1)
    reg = torch.cat([x.flatten(2).transpose(1, 2) for x in outputs.box_regression], dim=1)
    ctr = torch.cat([x.flatten(1) for x in outputs.centerness], dim=1)
    coefficients = torch.cat([flatten_coefficients(x) for x in outputs.coefficients], dim=1)
    return cls, reg, ctr, coefficients


def mask_positives(points: Tensor, reg: Tensor, positive: Tensor) -> tuple[Tensor, Tensor]:
    """The positives of the mask loss of one image, and their predicted boxes (the authors' rule).

    All positive points of all levels, no sampling; each one's PREDICTED box, decoded and detached;
    boxes whose area at the basis-map scale (input pixels / 2) is <= 1 dropped (losses.valid_mask_boxes).
    SipMaskVIS's tracking loss takes its current-frame embeddings at the same boxes.

    points [P, 2], reg [P, 4] predicted (l, t, r, b) pixels, positive bool [P]
    -> point indices int64 [N], boxes [N, 4] xyxy input pixels.
    """
    index = positive.nonzero().squeeze(1)  # [N]
    boxes = fcos.decode_boxes(points[index], reg[index]).detach()  # [N, 4]
    keep = valid_mask_boxes(boxes / 2)
    return index[keep], boxes[keep]


def basis_size_gt_masks(masks: Tensor, basis_size: tuple[int, int]) -> Tensor:
    """GT masks of the padded image [G, Hp, Wp] -> {0, 1} float [G, H, W] at the basis-map size.

    As the authors: bilinear resize by 0.5 (align_corners=False: each output pixel is the mean of
    a 2x2 block), pad / crop to the basis-map size, threshold > 0.5.
    """
    height, width = basis_size
    if masks.shape[0] == 0:
        return masks.new_zeros((0, height, width), dtype=torch.float32)
    half = F.interpolate(masks[None].float(), scale_factor=0.5, mode="bilinear", align_corners=False)
    half = half[0]  # [G, Hp/2, Wp/2]
    out = half.new_zeros((half.shape[0], height, width))
    h, w = min(height, half.shape[1]), min(width, half.shape[2])
    out[:, :h, :w] = half[:, :h, :w]
    return (out > 0.5).float()


def _checked_target(target: dict[str, Any], image: Tensor, k: int, num_classes: int) -> dict[str, Any]:
    """Validate one training target and move its tensors to the image's device."""
    if not isinstance(target, dict) or not {"boxes", "labels", "masks"} <= set(target):
        raise ValueError(f"SipMask: targets[{k}] must be a dict with boxes, labels and masks")
    name = f"targets[{k}] (image_id {target.get('image_id', '?')})"
    boxes = torch.as_tensor(target["boxes"]).to(device=image.device, dtype=torch.float32)
    labels = torch.as_tensor(target["labels"]).to(device=image.device, dtype=torch.int64)
    masks = torch.as_tensor(target["masks"]).to(device=image.device)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"SipMask: {name}: boxes must be [G, 4], got {tuple(boxes.shape)}")
    num = boxes.shape[0]
    if labels.shape != (num,) or masks.shape != (num, *image.shape[1:]):
        raise ValueError(
            f"SipMask: {name}: expected labels [{num}] and masks [{num}, "
            f"{image.shape[1]}, {image.shape[2]}] for {num} boxes, got "
            f"{tuple(labels.shape)} and {tuple(masks.shape)}"
        )
    if num > 0 and (int(labels.min()) < 1 or int(labels.max()) > num_classes):
        raise ValueError(
            f"SipMask: {name}: labels must be in 1..{num_classes}, got {torch.unique(labels).tolist()}"
        )
    malformed = (boxes[:, 2:] < boxes[:, :2]).any(dim=1) | ~torch.isfinite(boxes).all(dim=1)  # [G]
    if bool(malformed.any()):
        raise ValueError(f"SipMask: {name}: boxes must be finite xyxy with x2 >= x1 and y2 >= y1")
    out = dict(target)
    out.update(boxes=boxes, labels=labels, masks=masks)
    return out


def _drop_degenerate(target: dict[str, Any], padded_size: tuple[int, int]) -> dict[str, Tensor]:
    """Drop boxes with zero width or height (after resizing) and pad masks to the batch size.

    A zero-area box can have no positive location; dropping it keeps boxes, labels and masks
    aligned. Tiny but positive boxes are kept (FCOS may give them no positive: no loss then).
    """
    boxes = target["boxes"]
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # [G]
    return {
        "boxes": boxes[keep],
        "labels": target["labels"][keep],
        "masks": model_input.pad_masks(target["masks"][keep], padded_size),
    }
