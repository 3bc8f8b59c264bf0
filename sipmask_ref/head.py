"""The SipMask head, shared by all pyramid levels (Fig. 3a): layers and reshapes only.

For each level P_l (a [B, D, H, W] feature):

    mask-specialized regression branch (§3.2)       mask-specialized classification branch (§3.1)
    reg tower: S x (conv3x3 + GN + ReLU)            cls tower: S-1 x (conv3x3 + GN + ReLU)
      |-> box regression (l, t, r, b) ------------------> FeatureAlignment (deformable conv)
      |-> centerness                                         |-> class logits (C)
      '-> (P3-P5) basis masks, in basis_masks.py             '-> spatial coefficients (Q x M)

Box regression is ReLU(scale_l * conv(reg_feature)) in stride units (multiply by the level's
stride for pixels); scale_l is a learnable per-level scalar initialised to 1.0.
Deliberate difference: the authors use scale_l * conv with no ReLU and no exp; negative distances
then make the -log(IoU) loss undefined without mmdet-v1's "+1" widths. sipmask_ref applies a ReLU,
as torchvision's FCOS and the authors' SipMask-benchmark do.
A consequence, and a second deliberate difference: the box-regression conv's bias starts at 1.0
(one stride per side) instead of 0. The authors' mmdet-v1 IoU adds +1 to widths of boxes decoded in
stride units, so their zero initial prediction already counts as a one-stride box; with an exact
IoU, a near-zero start gives IoU ~ 1e-4, huge -log(IoU) gradients, and the ReLU units die (all
distances 0, loss_box stuck at -log(1e-6)): in the CPU overfit test (SGD lr 0.01, no gradient
clipping) 3 of 4 seeds died with bias 0, none of 4 with bias 1.0.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from .config import SipMaskConfig
from .spatial_preservation import FeatureAlignment, SpatialCoefficients, group_norm

# Initial (l, t, r, b) of every location, in strides (see the module docstring).
INITIAL_BOX_DISTANCE = 1.0


class HeadOutputs(NamedTuple):
    """Per-level outputs of the head, one list entry per level (P3..P7).

    cls_logits:       [B, C, H, W] class logits (sigmoid, no background class).
    box_regression:   [B, 4, H, W] distances (l, t, r, b) >= 0 in units of the level's stride.
    centerness:       [B, 1, H, W] centerness logits.
    coefficients:     [B, Q, M, H, W] spatial coefficients, sub-regions row-major.
    reg_features:     [B, D, H, W] regression-tower outputs (input of the basis-mask branch).
    """

    cls_logits: list[Tensor]
    box_regression: list[Tensor]
    centerness: list[Tensor]
    coefficients: list[Tensor]
    reg_features: list[Tensor]


def conv_block(channels: int, use_gn: bool) -> nn.Sequential:
    """conv3x3 + GN + ReLU (conv with bias and no GN when use_gn is False), weights std 0.01."""
    conv = nn.Conv2d(channels, channels, 3, padding=1, bias=not use_gn)
    nn.init.normal_(conv.weight, std=0.01)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    norm = group_norm(channels) if use_gn else nn.Identity()
    return nn.Sequential(conv, norm, nn.ReLU(inplace=True))


def _prediction_conv(in_channels: int, out_channels: int, bias: float = 0.0) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
    nn.init.normal_(conv.weight, std=0.01)
    assert conv.bias is not None  # nn.Conv2d has a bias by default
    nn.init.constant_(conv.bias, bias)
    return conv


class SipMaskHead(nn.Module):
    """Classification + regression towers, feature alignment and the prediction convs."""

    def __init__(self, config: SipMaskConfig) -> None:
        super().__init__()
        d, s = config.fpn_channels, config.stacked_convs
        self.cls_tower = nn.Sequential(*[conv_block(d, config.use_gn) for _ in range(s - 1)])
        self.reg_tower = nn.Sequential(*[conv_block(d, config.use_gn) for _ in range(s)])
        self.feature_alignment = FeatureAlignment(
            d,
            use_gn=config.use_gn,
            enabled=config.feature_alignment,
            implementation=config.deform_implementation,
        )
        # Prior probability 0.01 for every class at the start: bias = -log((1 - 0.01) / 0.01).
        self.cls_logits = _prediction_conv(d, config.num_classes, bias=-math.log(99.0))
        self.box_regression = _prediction_conv(d, 4, bias=INITIAL_BOX_DISTANCE)
        self.centerness = _prediction_conv(d, 1)
        self.spatial_coefficients = SpatialCoefficients(d, config.num_basis, config.sub_regions)
        self.scales = nn.Parameter(torch.ones(len(config.strides)))  # one per level

    def forward(self, features: list[Tensor]) -> HeadOutputs:
        """features: [P3..P7], each [B, D, H_l, W_l] -> HeadOutputs (lists over the levels)."""
        outputs = HeadOutputs([], [], [], [], [])
        for level, x in enumerate(features):
            reg_feature = self.reg_tower(x)  # [B, D, H, W]
            box_regression = torch.relu(self.scales[level] * self.box_regression(reg_feature))
            aligned = self.feature_alignment(self.cls_tower(x), box_regression)  # [B, D, H, W]
            outputs.cls_logits.append(self.cls_logits(aligned))  # [B, C, H, W]
            outputs.box_regression.append(box_regression)  # [B, 4, H, W]
            outputs.centerness.append(self.centerness(reg_feature))  # [B, 1, H, W]
            outputs.coefficients.append(self.spatial_coefficients(aligned))  # [B, Q, M, H, W]
            outputs.reg_features.append(reg_feature)
        return outputs
