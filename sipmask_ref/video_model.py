"""§3.5 SipMask-VIS: the SipMask detector plus a tracking branch, trained on pairs of frames.

Paper, §3.5: "we simply extend our SipMask by introducing an additional fully-convolutional branch in
parallel to mask-specialized classification and regression branches for instance tracking. [...] our
SipMask extracts a tracking feature vector from the tracking feature maps at the bounding-box center to
represent each instance."

Training, one step (the authors' SipMask-VIS recipe: docs/authors_implementation.md §4):

    current frames + reference frames (same videos, same resize and flip)
      -> backbone + FPN on all 2B frames, shared weights         P3..P7
      -> current frames only: head, basis masks, the four image losses of §3.4 (model.py)
      -> all frames: TrackingBranch over P3-P5 (tracking.py)      [2B, E, Hp/8, Wp/8]
      -> current: embeddings at the PREDICTED boxes of the mask-loss positives (the FCOS
         assignment of the image losses, computed once: SipMask.assign -> BatchAssignment)
         reference: embeddings at the GT boxes, jittered
      -> loss_track = cross-entropy over [new object, reference objects]   (tracking.tracking_loss)

Eval mode returns the image detections plus each detection's embedding ('embeds' [N, E]); identities
across frames are assigned outside the model, frame by frame (video/tracks.py with trackers.py's
TrackMatcher / IouTracker).

`load_image_weights` initialises SipMaskVIS from an image SipMask checkpoint where shapes match (the
authors start from a COCO checkpoint): the tracking branch is new, and the class conv is skipped when
the number of classes differs.

Shape letters as in the package docstring; E is the channels of the tracking embedding
(config.embed_dim: 512 in paper_vis_r50), D those of the FPN features it is computed from.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch
from torch import Tensor

from .checkpoints import read_checkpoint
from .config import SipMaskConfig
from .model import BatchAssignment, PreparedBatch, SipMask
from .tracking import TrackingBranch, embeddings_at_boxes, jitter_boxes, tracking_loss, tracking_targets


class SipMaskVIS(SipMask):
    """SipMask with a tracking branch (§3.5), for video instance segmentation.

    Train mode: `model(images, targets, ref_images, ref_targets)`. images / targets are B current
    frames as for SipMask, each target with `obj_ids` int64 [G] (the video-level identity of each
    instance, as YTVISDataset gives); ref_images / ref_targets are one reference frame of the same
    video per current frame, of the same size, with their own `obj_ids`. Returns SipMask's four
    losses plus `loss_track` (times config.track_loss_weight).

    Eval mode: `model(images)` returns SipMask's detections (config: score > 0.03, at most 10, masks
    binarised at 0.5 in the VIS presets) with one more key per image:
        embeds  float32 [N, E]  the tracking embedding at each detection's box centre.

    `embedding_maps(images)` and `embeddings_at(images, boxes)` expose the tracking features for
    teaching (similarity matrices between frames).
    """

    def __init__(self, config: SipMaskConfig) -> None:
        super().__init__(config)
        # Two shared conv blocks over P3, P4, P5, fused at stride 8, then a 1x1 conv to E channels.
        self.tracking = TrackingBranch(
            config.fpn_channels, config.embed_dim, num_convs=2, use_gn=config.use_gn
        )

    @property
    def embed_stride(self) -> int:
        """Input pixels per cell of the tracking map (the stride of P3)."""
        return self.config.strides[0]

    # ---- forward -----------------------------------------------------------------------------

    def forward(
        self,
        images: list[Tensor],
        targets: list[dict[str, Any]] | None = None,
        ref_images: list[Tensor] | None = None,
        ref_targets: list[dict[str, Any]] | None = None,
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """Losses of a batch of frame pairs (train mode) or detections with embeddings (eval mode)."""
        if self.training:
            if targets is None or ref_images is None or ref_targets is None:
                raise ValueError(
                    "SipMaskVIS: train mode needs images, targets, ref_images and "
                    "ref_targets (frame pairs; call model.eval() for inference)"
                )
            return self.pair_losses(images, targets, ref_images, ref_targets)
        return self.detect_with_embeddings(images)

    def pair_losses(
        self,
        images: list[Tensor],
        targets: list[dict[str, Any]],
        ref_images: list[Tensor],
        ref_targets: list[dict[str, Any]],
    ) -> dict[str, Tensor]:
        """The image losses of the current frames + loss_track of the pairs (see the module doc)."""
        num = len(images)
        if len(targets) != num or len(ref_images) != num or len(ref_targets) != num:
            raise ValueError(
                f"SipMaskVIS: got {num} images, {len(targets)} targets, "
                f"{len(ref_images)} reference images and {len(ref_targets)} reference targets"
            )
        for k, (image, ref_image) in enumerate(zip(images, ref_images, strict=True)):
            if tuple(image.shape) != tuple(ref_image.shape):
                raise ValueError(
                    f"SipMaskVIS: images[{k}] {tuple(image.shape)} and its reference "
                    f"{tuple(ref_image.shape)} differ in size; a pair comes from one video"
                )
        ids = [_object_ids(t, f"targets[{k}]") for k, t in enumerate(targets)]
        ref_ids = [_object_ids(t, f"ref_targets[{k}]") for k, t in enumerate(ref_targets)]

        # One preprocessing for all 2B frames: current first, then the references.
        batch = self.preprocess(list(images) + list(ref_images), list(targets) + list(ref_targets))
        prepared_targets = batch.targets
        assert prepared_targets is not None  # preprocess prepares the targets it is given
        kept_ids = [
            _kept_ids(obj, targets_in, prepared, scale, f"frame {k}")
            for k, (obj, targets_in, prepared, scale) in enumerate(
                zip(
                    ids + ref_ids,
                    list(targets) + list(ref_targets),
                    prepared_targets,
                    batch.scale_factors,
                    strict=True,
                )
            )
        ]
        features, c2 = self.backbone.forward_with_c2(batch.images)  # P3..P7, C2 of the 2B frames
        outputs = self.head([f[:num] for f in features])  # the detector runs on the current frames
        basis_masks = self.basis_masks(outputs.reg_features[:3], c2[:num])  # [B, M, Hp/2, Wp/2]
        assignment = self.assign(outputs, prepared_targets[:num])  # once, for all five losses
        losses = self.compute_losses(outputs, basis_masks, prepared_targets[:num], assignment)
        embed_maps = self.tracking(*features[:3])  # [2B, E, Hp/8, Wp/8]
        loss_track = self.tracking_loss(
            assignment,
            embed_maps[:num],
            embed_maps[num:],
            kept_ids[:num],
            prepared_targets[num:],
            kept_ids[num:],
        )
        losses["loss_track"] = self.config.track_loss_weight * loss_track
        return losses

    def tracking_loss(
        self,
        assignment: BatchAssignment,
        embed_cur: Tensor,
        embed_ref: Tensor,
        obj_ids: list[Tensor],
        ref_targets: list[dict[str, Tensor]],
        ref_obj_ids: list[Tensor],
    ) -> Tensor:
        """loss_track of a batch, averaged over its images (an image without positives adds 0).

        Per image, as the authors: the current frame's FCOS positives that the mask loss uses (all
        levels, predicted boxes decoded and detached, boxes of area <= 1 at stride 2 dropped: the
        `mask_positives` and `mask_boxes` of the batch's assignment, the one `compute_losses` read)
        give one embedding each at their predicted box; the reference frame's GT boxes, jittered, give
        one each; the target of a positive is 1 + the position of its GT object in the reference frame,
        or 0 ("new") when that object is absent there.

        assignment: `self.assign` of the current frames; embed_cur, embed_ref: [B, E, H, W] tracking
        maps; ref_targets: preprocessed (boxes in input pixels); obj_ids / ref_obj_ids: [G] per image,
        aligned with the current / reference targets' boxes.
        """
        device = embed_cur.device
        with torch.autocast(device.type, enabled=False):
            losses = []
            for b, (positives, boxes) in enumerate(
                zip(assignment.mask_positives, assignment.mask_boxes, strict=True)
            ):
                cur = embeddings_at_boxes(embed_cur[b].float(), boxes, self.embed_stride)  # [N, E]
                ref_boxes = jitter_boxes(ref_targets[b]["boxes"])  # [G, 4], global torch RNG
                ref = embeddings_at_boxes(embed_ref[b].float(), ref_boxes, self.embed_stride)  # [G, E]
                matched = assignment.matched_gt[b, positives]  # [N] index of each positive's GT
                labels = tracking_targets(obj_ids[b][matched], ref_obj_ids[b])
                losses.append(tracking_loss(cur, ref, labels))
            return torch.stack(losses).mean()

    # ---- inference ---------------------------------------------------------------------------

    def embedding_maps(self, images: list[Tensor]) -> tuple[Tensor, PreparedBatch]:
        """Tracking maps [B, E, Hp/8, Wp/8] of a list of images, and how they were prepared."""
        batch = self.preprocess(images)
        features = self.backbone(batch.images)
        return self.tracking(*features[:3]), batch

    @torch.no_grad()
    def embeddings_at(self, images: list[Tensor], boxes: list[Tensor]) -> list[Tensor]:
        """Embeddings [N, E] at given boxes [N, 4] (xyxy, ORIGINAL image pixels) of each image."""
        maps, batch = self.embedding_maps(images)
        out = []
        for b, image_boxes in enumerate(boxes):
            sx, sy = batch.scale_factors[b]
            scaled = image_boxes.to(maps.device).float() * maps.new_tensor([sx, sy, sx, sy])
            out.append(embeddings_at_boxes(maps[b].float(), scaled, self.embed_stride))
        return out

    @torch.no_grad()
    def detect_with_embeddings(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        """SipMask's detections of each image plus 'embeds' [N, E] at each box centre."""
        batch = self.preprocess(images)
        features, outputs, basis_masks = self.run_network(batch.images)
        embed_maps = self.tracking(*features[:3]).float()  # [B, E, Hp/8, Wp/8]
        results = self.postprocess(outputs, basis_masks, batch)
        for b, result in enumerate(results):
            # The boxes come back in original pixels; the embedding is read on the network input.
            sx, sy = batch.scale_factors[b]
            boxes = result["boxes"] * result["boxes"].new_tensor([sx, sy, sx, sy])  # [N, 4]
            result["embeds"] = embeddings_at_boxes(embed_maps[b], boxes, self.embed_stride)
        return results


# ----------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------


def _object_ids(target: dict[str, Any], name: str) -> Tensor:
    """The target's obj_ids as int64 [G], checked against its boxes."""
    if not isinstance(target, dict) or "obj_ids" not in target:
        raise ValueError(
            f"SipMaskVIS: {name} has no 'obj_ids' (video-level identity of each instance; "
            f"YTVISDataset provides it)"
        )
    ids = torch.as_tensor(target["obj_ids"]).to(torch.int64).reshape(-1)
    num = len(target["boxes"])
    if ids.numel() != num:
        raise ValueError(
            f"SipMaskVIS: {name} (image_id {target.get('image_id', '?')}) has {ids.numel()} "
            f"obj_ids for {num} boxes"
        )
    return ids


def _kept_ids(
    ids: Tensor, target: dict[str, Any], prepared: dict[str, Tensor], scale: tuple[float, float], name: str
) -> Tensor:
    """The obj_ids of the boxes that SipMask.preprocess kept (it drops boxes of zero area after resize).

    Recomputes preprocess's rule (boxes x (sx, sy, sx, sy), keep x2 > x1 and y2 > y1) and checks that
    it gives exactly the kept boxes, so the identities stay aligned with boxes, labels and masks.
    """
    boxes = torch.as_tensor(target["boxes"]).to(device=prepared["boxes"].device, dtype=torch.float32)
    sx, sy = scale
    resized = boxes * torch.tensor([sx, sy, sx, sy], dtype=boxes.dtype, device=boxes.device)
    keep = (resized[:, 2] > resized[:, 0]) & (resized[:, 3] > resized[:, 1])  # [G]
    if not torch.equal(resized[keep], prepared["boxes"]):
        raise ValueError(f"SipMaskVIS: {name}: could not align obj_ids with the preprocessed boxes")
    return ids.to(keep.device)[keep]


def load_image_weights(
    model: SipMaskVIS, source: str | os.PathLike[str] | dict[str, Any], verbose: bool = True
) -> dict[str, list[str]]:
    """Copy an image SipMask checkpoint's weights into SipMaskVIS wherever name and shape match.

    source: a checkpoint path written by engine.train, a checkpoint dict (with a 'model' entry) or a
    plain state dict. What is not copied keeps its fresh initialisation:
        - the tracking branch (`tracking.*`): the image model has none;
        - tensors whose shape differs, e.g. the class conv `head.cls_logits` when the number of classes
          differs (80 COCO classes -> 40 YouTube-VIS classes: the authors' repository does not show how
          they handle it; here that conv is re-initialised);
        - image-model tensors absent from SipMaskVIS (none for checkpoints of this package).
    Returns {'loaded': names, 'skipped': 'name (reason)' entries, 'not_in_source': names}.
    """
    if isinstance(source, (str, os.PathLike)):
        source = read_checkpoint(source)
    state = source.get("model", source) if isinstance(source, dict) else None
    if not isinstance(state, dict):
        raise ValueError(
            "load_image_weights: source must be a checkpoint path, a checkpoint dict or a state dict"
        )
    own = model.state_dict()
    loaded, skipped = [], []
    update = {}
    for name, value in state.items():
        if name not in own:
            skipped.append(f"{name} (not in SipMaskVIS)")
        elif tuple(own[name].shape) != tuple(value.shape):
            skipped.append(f"{name} (shape {tuple(value.shape)} vs {tuple(own[name].shape)})")
        else:
            update[name] = value
            loaded.append(name)
    model.load_state_dict(update, strict=False)
    not_in_source = [name for name in own if name not in state]
    report = {"loaded": loaded, "skipped": skipped, "not_in_source": not_in_source}
    if verbose and skipped:
        warnings.warn(
            f"load_image_weights: {len(skipped)} tensors not copied: {', '.join(skipped[:6])}"
            + (" ..." if len(skipped) > 6 else ""),
            stacklevel=2,
        )
    return report
