"""§3.1 Spatial preservation (SP) module: feature alignment and spatial coefficients.

"Our SP module performs two tasks: spatial coefficients generation and feature alignment."

- `FeatureAlignment`: a deformable 3x3 conv whose kernel offsets are predicted from the box
  regression (l, t, r, b) of the same location, so that the classification feature "aligns with
  the regressed box location". Its output feeds both the box classifier and the coefficients.
- `SpatialCoefficients`: a 3x3 conv predicting, at every location, a separate set of m
  coefficients for each of the k_h x k_w sub-regions of the box predicted there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import DeformConv2d, deform_conv2d

from .config import DEFORM_IMPLEMENTATIONS


def deform_conv2d_sampled(features: Tensor, offsets: Tensor, weight: Tensor) -> Tensor:
    """§3.1 Eq. (1) written with `grid_sample`:  y(p0) = sum_{r in G} w_r * x(p0 + p_r + dp_r)

    The same function as `torchvision.ops.deform_conv2d(features, offsets, weight, padding=k // 2)`
    (stride 1, dilation 1, no bias, no mask), computed in two plain steps:
    1. sample x bilinearly at the K = k_h * k_w shifted positions p0 + p_r + dp_r of every output
       location (zero outside the map, as torchvision) -> columns [B, D, K, H, W];
    2. contract the columns with the kernel: y = sum over (D, K) of w * columns.
    Autograd differentiates both steps, so the backward pass is grid_sample's and a matrix product.
    On a CPU this is ~5x faster forward and ~10x faster forward + backward than torchvision's
    kernel at the sizes used here (see tests/test_head.py for the equality); it
    holds the K-fold columns in memory, which torchvision's CUDA kernel avoids.

    Args:
        features: x [B, D, H, W].
        offsets: dp [B, 2 * K * G, H, W], torchvision's layout: channel 2 * (g * K + r) is the row
            (y) offset of tap r in offset group g, the next channel its column (x) offset; tap r
            is row-major in the kernel; the D channels are split into G equal groups.
        weight: w [E, D, k_h, k_w] (odd k_h, k_w).
    Returns:
        y [B, E, H, W].
    """
    b, d, h, w = features.shape
    e, _, k_h, k_w = weight.shape
    taps = k_h * k_w
    groups = offsets.shape[1] // (2 * taps)
    if groups * 2 * taps != offsets.shape[1] or d % groups or k_h % 2 == 0 or k_w % 2 == 0:
        raise ValueError(
            f"deform_conv2d_sampled: offsets {tuple(offsets.shape)} do not fit features "
            f"{tuple(features.shape)} and an odd kernel {k_h}x{k_w}"
        )
    dp = offsets.view(b, groups, taps, 2, h, w)
    kernel_y, kernel_x = torch.meshgrid(
        torch.arange(k_h, dtype=features.dtype, device=features.device) - k_h // 2,
        torch.arange(k_w, dtype=features.dtype, device=features.device) - k_w // 2,
        indexing="ij",
    )  # p_r, [k_h, k_w] each
    rows = torch.arange(h, dtype=features.dtype, device=features.device).view(1, 1, 1, h, 1)
    cols = torch.arange(w, dtype=features.dtype, device=features.device).view(1, 1, 1, 1, w)
    y = rows + kernel_y.reshape(1, 1, taps, 1, 1) + dp[:, :, :, 0]  # [B, G, K, H, W]
    x = cols + kernel_x.reshape(1, 1, taps, 1, 1) + dp[:, :, :, 1]  # [B, G, K, H, W]
    # Pixel centres in grid_sample's align_corners=False coordinates (valid for maps of size 1 too).
    grid = torch.stack(((2 * x + 1) / w - 1, (2 * y + 1) / h - 1), dim=-1)  # [B, G, K, H, W, 2]
    sampled = F.grid_sample(
        features.reshape(b * groups, d // groups, h, w),
        grid.reshape(b * groups, taps * h, w, 2),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    )  # [B*G, D/G, K*H, W]
    columns = sampled.view(b, d, taps, h, w)  # [B, D, K, H, W]
    return torch.einsum("bdkhw,edk->behw", columns, weight.reshape(e, d, taps))


def group_norm(channels: int, max_groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with the largest number of groups <= max_groups that divides `channels`.

    32 groups for the paper's 256 channels (as the authors); fewer for narrow models.
    """
    groups = max(g for g in range(1, max_groups + 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


class FeatureAlignment(nn.Module):
    """§3.1 feature alignment: a deformable conv driven by the regressed box distances.

    "The input to the deformable convolutional layer are the regression offsets to left, right,
    top, and bottom corners [...] These offsets are utilized to estimate the kernel offset dp_r
    that augments the regular sampling grid G" (Eq. (1), see `forward`).

    As the authors (`FeatureAlign`), the offsets dp_r are not built geometrically from
    (l, t, r, b): a 1x1 conv without bias maps the DETACHED 4-channel box regression (stride units)
    to 2 * 9 * 4 = 72 channels, (dy, dx) for each of the 9 taps of each of 4 offset groups
    (torchvision's DeformConv2d ordering, the same as mmcv's). That 1x1 conv is initialised to
    zero, so at the start the layer is exactly a plain 3x3 conv. The deformable conv has no bias
    and weights of std 0.01; then GroupNorm (if use_gn) and ReLU.

    With `enabled=False` (ablation) the layer is a plain conv3x3 + GN + ReLU and ignores the box
    regression.

    `implementation` picks the kernel of the deformable conv (the parameters are the same):
    'torchvision' (`torchvision.ops.deform_conv2d`), 'sampled' (`deform_conv2d_sampled`, equal up
    to float rounding and much faster on a CPU) or 'auto' (the default): 'sampled' on a CPU,
    'torchvision' on other devices, where its kernel saves the K-fold column memory.
    """

    def __init__(
        self,
        channels: int,
        use_gn: bool = True,
        enabled: bool = True,
        offset_groups: int = 4,
        implementation: str = "auto",
    ) -> None:
        super().__init__()
        if implementation not in DEFORM_IMPLEMENTATIONS:
            raise ValueError(
                f"FeatureAlignment: implementation must be one of {DEFORM_IMPLEMENTATIONS}, "
                f"got {implementation!r}"
            )
        self.enabled = enabled
        self.implementation = implementation
        kernel_taps = 3 * 3
        if enabled:
            self.conv_offset: nn.Conv2d | None = nn.Conv2d(4, offset_groups * kernel_taps * 2, 1, bias=False)
            nn.init.zeros_(self.conv_offset.weight)
            # No bias, as the authors' DeformConv (even when the head has no GN).
            self.conv = DeformConv2d(channels, channels, 3, padding=1, bias=False)
        else:
            self.conv_offset = None
            self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=not use_gn)
            if self.conv.bias is not None:
                nn.init.zeros_(self.conv.bias)
        nn.init.normal_(self.conv.weight, std=0.01)
        self.norm = group_norm(channels) if use_gn else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, features: Tensor, box_regression: Tensor) -> Tensor:
        """§3.1 Eq. (1):  y(p0) = sum_{r in G} w_r * x(p0 + p_r + dp_r)

        G is the regular 3x3 sampling grid, p_r its r-th position, w_r the kernel weight at p_r and
        dp_r the offset predicted from the box regression at p0 (`offsets`), then GN and ReLU.

        Args:
            features: [B, D, H, W] the classification-tower output x.
            box_regression: [B, 4, H, W] (l, t, r, b) in stride units of the same level; detached,
                so no gradient flows back into the regression branch from here.
        Returns:
            the aligned feature [B, D, H, W].
        """
        if self.enabled:
            offsets = self.offsets(box_regression)  # [B, 72, H, W]
            device_type = features.device.type
            if torch.is_autocast_enabled(device_type):
                # Neither kernel has a half-precision CPU path: run it in float32 under autocast
                # (as torchvision's own CUDA autocast rule does).
                with torch.autocast(device_type, enabled=False):
                    x = self.deform(features.float(), offsets.float())
            else:
                x = self.deform(features, offsets)
        else:
            x = self.conv(features)
        aligned: Tensor = self.relu(self.norm(x))
        return aligned

    def deform(self, features: Tensor, offsets: Tensor) -> Tensor:
        """The deformable conv of Eq. (1) with the kernel chosen by `implementation`."""
        implementation = self.implementation
        if implementation == "auto":
            implementation = "sampled" if features.device.type == "cpu" else "torchvision"
        if implementation == "sampled":
            return deform_conv2d_sampled(features, offsets, self.conv.weight)
        out: Tensor = deform_conv2d(features, offsets, self.conv.weight, padding=self.conv.padding)
        return out

    def offsets(self, box_regression: Tensor) -> Tensor:
        """Kernel offsets dp_r [B, 2 * 9 * groups, H, W] from the detached box regression."""
        if self.conv_offset is None:
            raise ValueError(
                "FeatureAlignment.offsets: feature alignment is disabled "
                "(config.feature_alignment=False); the layer has no offsets"
            )
        offsets: Tensor = self.conv_offset(box_regression.detach())
        return offsets


class SpatialCoefficients(nn.Module):
    """§3.1 spatial coefficients: a separate set c_ij in R^m for each sub-region i of box j.

    "Instead of predicting a single set of coefficients for the whole bounding-box j, we predict
    a separate set of spatial coefficients c_ij in R^m for each of its sub-region i."

    A 3x3 conv (std 0.001, as the authors' `sip_cof`) from the aligned feature to Q * M channels,
    no activation. Channel layout: channels [q*M : (q+1)*M] belong to sub-region q, sub-regions
    row-major (2x2: q = 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right), the authors'
    [0:32] top-left, [32:64] top-right, [64:96] bottom-left, [96:128] bottom-right.
    """

    def __init__(self, channels: int, num_basis: int, sub_regions: tuple[int, int]) -> None:
        super().__init__()
        self.num_basis = num_basis
        self.num_sub_regions = sub_regions[0] * sub_regions[1]
        self.conv = nn.Conv2d(channels, self.num_sub_regions * num_basis, 3, padding=1)
        nn.init.normal_(self.conv.weight, std=0.001)
        assert self.conv.bias is not None  # nn.Conv2d has a bias by default
        nn.init.zeros_(self.conv.bias)

    def forward(self, aligned_features: Tensor) -> Tensor:
        """[B, D, H, W] -> coefficients [B, Q, M, H, W]."""
        b, _, h, w = aligned_features.shape
        coefficients: Tensor = self.conv(aligned_features)  # [B, Q*M, H, W]
        return coefficients.view(b, self.num_sub_regions, self.num_basis, h, w)  # [B, Q, M, H, W]


def flatten_coefficients(coefficients: Tensor) -> Tensor:
    """Per-location coefficients of one level: [B, Q, M, H, W] -> [B, H*W, Q, M] (row-major)."""
    b, q, m, h, w = coefficients.shape
    return coefficients.permute(0, 3, 4, 1, 2).reshape(b, h * w, q, m)
