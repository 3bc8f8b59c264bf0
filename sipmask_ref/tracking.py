"""§3.5 Single-stage video instance segmentation, training side: the tracking branch and its loss.

Paper, §3.5: "we simply extend our SipMask by introducing an additional fully-convolutional branch in
parallel to mask-specialized classification and regression branches for instance tracking. [...] our
SipMask extracts a tracking feature vector from the tracking feature maps at the bounding-box center to
represent each instance."

The pieces, in the order a training pair passes through them (trackers.py holds what links the
detections of a video at inference: the matcher, the IoU baseline, the video-level results):

    TrackingBranch            P3, P4, P5 -> tracking feature map (stride 8, E channels)
    embeddings_at_boxes       one E-vector per box, read at the box centre (training and inference)
    jitter_boxes              training: the reference frame's GT boxes, slightly perturbed
    tracking_targets          training: which reference object (or "new") each current box is
    tracking_loss             training: cross-entropy over [new, reference objects]

How the detector uses them during training (one image pair of the batch, index b; video_model.py):

    embed_cur = branch(p3, p4, p5)[b]                                   # [E, H, W]
    embed_ref = branch(p3_ref, p4_ref, p5_ref)[b]                       # [E, H, W]
    cur = embeddings_at_boxes(embed_cur, predicted_boxes_of_positives)  # [N, E]
    ref = embeddings_at_boxes(embed_ref, jitter_boxes(ref_gt_boxes))    # [G, E]
    targets = tracking_targets(gt_obj_ids[matched_gt], ref_obj_ids)     # [N]
    loss_track = tracking_loss(cur, ref, targets)   # then averaged over the images of the batch

Shape letters as in the package docstring, plus one: E = channels of the tracking embedding (512 in the
paper presets).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# ----------------------------------------------------------------------------------------------------
# The tracking branch
# ----------------------------------------------------------------------------------------------------


class TrackingBranch(nn.Module):
    """Fully-convolutional tracking branch: P3, P4, P5 -> one tracking feature map at stride 8.

    §3.5: "The fully-convolutional branch consists of two convolutional layers. After that, the output
    feature maps of different layers in this branch are fused to obtain the tracking feature maps,
    similar to basis mask generation in our mask-specialized regression branch."

    As in the authors' code (SipMask-VIS): the same two blocks conv3x3 + GroupNorm + ReLU are applied to
    P3, P4 and P5 separately; P4 is upsampled x2 and P5 x4 (bilinear, align_corners=False) to P3's size;
    the three maps are concatenated (3*D channels) and a 1x1 conv maps them to E channels with no
    activation and no normalisation. (The authors upsample by a scale factor; we resize to P3's exact
    size, which is the same thing whenever the padded input is divisible by 32.)

    Args:
        in_channels: D, the FPN channels.
        embed_dim: E, channels of the tracking embedding (512 in the paper presets).
        num_convs: shared conv blocks (2 in the paper).
        use_gn: GroupNorm after each 3x3 conv (the authors use GN; without it the conv gets a bias).

    forward(p3 [B, D, H, W], p4 [B, D, H/2, W/2], p5 [B, D, H/4, W/4]) -> [B, E, H, W].
    """

    def __init__(self, in_channels: int, embed_dim: int = 512, num_convs: int = 2, use_gn: bool = True):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(num_convs):
            conv = nn.Conv2d(in_channels, in_channels, kernel_size=3, padding=1, bias=not use_gn)
            nn.init.normal_(conv.weight, std=0.01)  # the authors' normal_init(std=0.01)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
            layers.append(conv)
            if use_gn:
                # 32 groups as the authors; fewer when D is small (the CPU presets), always dividing D.
                layers.append(nn.GroupNorm(math.gcd(32, in_channels), in_channels))
            layers.append(nn.ReLU(inplace=True))
        self.convs = nn.Sequential(*layers)
        # The fusion conv keeps PyTorch's default init, as the authors' `fovea_track` does.
        self.fuse = nn.Conv2d(3 * in_channels, embed_dim, kernel_size=1)
        self.embed_dim = embed_dim

    def forward(self, p3: Tensor, p4: Tensor, p5: Tensor) -> Tensor:
        size = p3.shape[-2:]
        maps = []
        for p in (p3, p4, p5):
            x = self.convs(p)  # [B, D, h, w], the same weights for every level
            if x.shape[-2:] != size:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            maps.append(x)  # [B, D, H, W]
        fused: Tensor = self.fuse(torch.cat(maps, dim=1))  # [B, 3D, H, W] -> [B, E, H, W]
        return fused


def embeddings_at_boxes(embed_map: Tensor, boxes: Tensor, stride: int = 8) -> Tensor:
    """The tracking vector of each box: the map's cell at floor(box centre / stride).

    §3.5: "our SipMask extracts a tracking feature vector from the tracking feature maps at the
    bounding-box center to represent each instance."

    Args:
        embed_map: [E, H, W] tracking map of one image (stride 8 for TrackingBranch).
        boxes: [N, 4] xyxy in pixels of the network input (the resized, padded image).
        stride: pixels of the input per cell of the map.
    Returns:
        [N, E]. Centres outside the map (e.g. a jittered box leaving the image) are clamped to the border
        cell; the authors do not clamp, which would index out of range.
    """
    _, height, width = embed_map.shape
    cx = torch.floor((boxes[:, 0] + boxes[:, 2]) / 2 / stride).long().clamp(0, width - 1)  # [N]
    cy = torch.floor((boxes[:, 1] + boxes[:, 3]) / 2 / stride).long().clamp(0, height - 1)  # [N]
    return embed_map[:, cy, cx].t()  # [E, N] -> [N, E]


def jitter_boxes(
    boxes: Tensor, generator: torch.Generator | None = None, shift: float = 0.05, scale: float = 0.05
) -> Tensor:
    """Perturb the reference frame's GT boxes before reading their embeddings (training only).

    As the authors: centre (cx, cy) += U(-shift, shift) * (w, h) and (w, h) *= 1 + U(-scale, scale),
    independently per box and per coordinate. Boxes are not clipped.

    Args:
        boxes: [G, 4] xyxy.
        generator: torch RNG for determinism; its device is used for the draw, the result follows `boxes`.
    Returns:
        [G, 4] xyxy, same dtype and device as `boxes`.
    """
    num = boxes.shape[0]
    device = generator.device if generator is not None else boxes.device
    u = torch.rand((num, 4), generator=generator, device=device, dtype=torch.float32).to(boxes)  # [G, 4]
    u = u * 2 - 1  # U(-1, 1)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2  # [G, 2]
    wh = (boxes[:, 2:] - boxes[:, :2]).abs()  # [G, 2]
    new_centre = centre + wh * u[:, :2] * shift
    new_wh = wh * (1 + u[:, 2:] * scale)
    return torch.cat([new_centre - new_wh / 2, new_centre + new_wh / 2], dim=1)


# ----------------------------------------------------------------------------------------------------
# Training: targets and loss
# ----------------------------------------------------------------------------------------------------


def tracking_targets(cur_obj_ids: Tensor, ref_obj_ids: Tensor) -> Tensor:
    """Class index of each current-frame instance among [new, reference objects].

    Target = 1 + position of the same object id in the reference frame, or 0 when the object is absent
    from the reference frame ("new object").

    Args:
        cur_obj_ids: [N] video-level object ids of the current boxes (e.g. the id of each positive's
            matched GT instance).
        ref_obj_ids: [G] video-level object ids of the reference frame's GT instances, all distinct.
    Returns:
        [N] int64 in 0..G.
    """
    if torch.unique(ref_obj_ids).numel() != ref_obj_ids.numel():
        raise ValueError(f"tracking_targets: reference object ids are not distinct: {ref_obj_ids.tolist()}")
    same = cur_obj_ids[:, None] == ref_obj_ids[None, :]  # [N, G], at most one True per row
    column = torch.arange(1, ref_obj_ids.numel() + 1, device=cur_obj_ids.device)  # [G]: 1..G
    return (same.long() * column).sum(dim=1)  # [N]: 1 + position, or 0 when absent


def tracking_loss(cur_embeds: Tensor, ref_embeds: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy over [new object, reference objects] for one image pair.

    Authors' code (SipMask-VIS): logits = [0, e_cur . e_ref^T], raw dot products with a zero
    "new object" column first; loss = CE(logits, target), averaged over the N current instances.
    The caller averages the per-image values over the images of the batch (loss weight 1).

    Args:
        cur_embeds: [N, E] embeddings at the current frame's (predicted) boxes.
        ref_embeds: [G, E] embeddings at the reference frame's (jittered GT) boxes.
        targets: [N] int64 from `tracking_targets`: 0 = new/absent, k = reference object k-1.
    Returns:
        scalar. With N = 0 or G = 0 there is nothing to learn: 0 connected to the graph of both inputs.
    """
    if targets.numel() and (targets.min() < 0 or targets.max() > ref_embeds.shape[0]):
        raise ValueError(
            f"tracking_loss: targets must lie in 0..{ref_embeds.shape[0]}, got {targets.tolist()}"
        )
    if cur_embeds.shape[0] == 0 or ref_embeds.shape[0] == 0:
        return cur_embeds.sum() * 0 + ref_embeds.sum() * 0
    new_column = cur_embeds.new_zeros(cur_embeds.shape[0], 1)  # [N, 1]
    logits = torch.cat([new_column, cur_embeds @ ref_embeds.t()], dim=1)  # [N, 1 + G]
    return F.cross_entropy(logits, targets)
