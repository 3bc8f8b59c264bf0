"""Head, feature alignment (§3.1), spatial coefficients layout and basis masks (§3.2)."""

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import deform_conv2d

from sipmask_ref.basis_masks import ContextualBasisMasks
from sipmask_ref.config import SipMaskConfig, preset
from sipmask_ref.head import SipMaskHead
from sipmask_ref.spatial_preservation import (
    FeatureAlignment,
    SpatialCoefficients,
    deform_conv2d_sampled,
    flatten_coefficients,
    group_norm,
)


def _pyramid(batch=2, channels=64, height=64, width=96):
    return [torch.randn(batch, channels, height // s, width // s) for s in (8, 16, 32, 64, 128)]


def test_head_output_shapes_per_level():
    torch.manual_seed(0)
    config = preset("cpu_tiny")
    head = SipMaskHead(config)
    features = _pyramid(height=128, width=256)
    outputs = head(features)
    for level, x in enumerate(features):
        b, _, h, w = x.shape
        assert outputs.cls_logits[level].shape == (b, 6, h, w)
        assert outputs.box_regression[level].shape == (b, 4, h, w)
        assert outputs.centerness[level].shape == (b, 1, h, w)
        assert outputs.coefficients[level].shape == (b, 4, 16, h, w)
        assert outputs.reg_features[level].shape == (b, 64, h, w)
        assert (outputs.box_regression[level] >= 0).all()  # ReLU'd distances in stride units


def test_head_towers_and_initialisation_follow_the_authors():
    config = replace(preset("paper_r50_544"), pretrained_backbone=False)  # S = 2
    head = SipMaskHead(config)
    assert len(head.reg_tower) == 2 and len(head.cls_tower) == 1  # + feature alignment
    assert head.cls_logits.bias.detach().allclose(torch.full((80,), -math.log(99.0)))
    assert head.cls_logits.weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert head.spatial_coefficients.conv.weight.std().item() == pytest.approx(0.001, rel=0.05)
    assert head.spatial_coefficients.conv.out_channels == 4 * 32
    assert torch.equal(head.scales.detach(), torch.ones(5))
    assert isinstance(head.reg_tower[0][1], torch.nn.GroupNorm) and head.reg_tower[0][1].num_groups == 32
    no_gn = SipMaskHead(replace(config, use_gn=False))
    assert isinstance(no_gn.reg_tower[0][1], torch.nn.Identity) and no_gn.reg_tower[0][0].bias is not None
    assert isinstance(no_gn.feature_alignment.norm, torch.nn.Identity)


def test_group_norm_uses_at_most_32_groups_dividing_the_channels():
    assert group_norm(256).num_groups == 32
    assert group_norm(64).num_groups == 32
    assert group_norm(48).num_groups == 24
    assert group_norm(7).num_groups == 7


def test_feature_alignment_with_zero_offsets_equals_a_plain_conv():
    torch.manual_seed(0)
    align = FeatureAlignment(16, use_gn=False)
    assert align.conv_offset.out_channels == 72  # 4 groups x 9 taps x (dy, dx)
    assert torch.count_nonzero(align.conv_offset.weight) == 0  # zero-initialised
    x = torch.randn(2, 16, 9, 11)
    box_regression = torch.rand(2, 4, 9, 11) * 5
    expected = F.relu(F.conv2d(x, align.conv.weight, padding=1))
    torch.testing.assert_close(align(x, box_regression), expected, rtol=1e-5, atol=1e-5)


def test_offsets_learn_but_do_not_backpropagate_into_the_box_regression():
    torch.manual_seed(0)
    align = FeatureAlignment(16, use_gn=True)
    torch.nn.init.normal_(align.conv_offset.weight, std=0.1)  # non-zero offsets
    x = torch.randn(1, 16, 8, 8, requires_grad=True)
    box_regression = torch.rand(1, 4, 8, 8, requires_grad=True)
    align(x, box_regression).square().sum().backward()
    assert align.conv_offset.weight.grad is not None and align.conv_offset.weight.grad.abs().sum() > 0
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert box_regression.grad is None  # the regression map is detached


def test_disabled_feature_alignment_is_a_plain_conv_block():
    torch.manual_seed(0)
    align = FeatureAlignment(16, use_gn=True, enabled=False)
    assert align.conv_offset is None and isinstance(align.conv, torch.nn.Conv2d)
    x = torch.randn(1, 16, 8, 8)
    out_a = align(x, torch.zeros(1, 4, 8, 8))
    out_b = align(x, torch.rand(1, 4, 8, 8))
    torch.testing.assert_close(out_a, out_b)  # the box regression is ignored
    with pytest.raises(ValueError, match="disabled"):
        align.offsets(torch.zeros(1, 4, 8, 8))


def test_coefficient_channels_q_times_m_belong_to_sub_region_q():
    torch.manual_seed(0)
    layer = SpatialCoefficients(8, num_basis=5, sub_regions=(2, 2))
    x = torch.randn(2, 8, 3, 4)
    raw = layer.conv(x)  # [B, Q*M, H, W]
    coefficients = layer(x)  # [B, Q, M, H, W]
    assert coefficients.shape == (2, 4, 5, 3, 4)
    for q in range(4):  # 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right
        torch.testing.assert_close(coefficients[:, q], raw[:, q * 5 : (q + 1) * 5])
    flat = flatten_coefficients(coefficients)  # [B, H*W, Q, M], locations row-major
    torch.testing.assert_close(flat[1, 1 * 4 + 2], coefficients[1, :, :, 1, 2])


@pytest.mark.parametrize("source", ["p3-p5", "p3"])
def test_basis_masks_are_at_stride_2_for_both_sources(source):
    torch.manual_seed(0)
    branch = ContextualBasisMasks(64, num_basis=16, hidden_channels=32, basis_source=source)
    assert branch.reduce.in_channels == (3 * 64 if source == "p3-p5" else 64)
    basis = branch(_pyramid(height=128, width=192))
    assert basis.shape == (2, 16, 64, 96)  # stride 2 of a 128 x 192 input
    assert (basis >= 0).all()  # ReLU before the upsampling: non-negative maps


def test_contextual_basis_masks_use_p4_and_p5_and_ignore_p6_p7():
    torch.manual_seed(0)
    branch = ContextualBasisMasks(8, num_basis=4, hidden_channels=8)
    torch.nn.init.normal_(branch.reduce.weight)
    torch.nn.init.normal_(branch.predict.weight)
    features = _pyramid(batch=1, channels=8)
    base = branch(features)
    changed_p5 = branch(features[:2] + [features[2] + 1.0] + features[3:])
    changed_p7 = branch(features[:4] + [features[4] + 1.0])
    assert not torch.allclose(base, changed_p5)
    torch.testing.assert_close(base, changed_p7)


def test_basis_refinement_reads_c2_starts_as_the_coarse_maps_and_can_place_finer_detail():
    torch.manual_seed(0)
    branch = ContextualBasisMasks(8, num_basis=4, hidden_channels=8, activation="softplus", detail_channels=6)
    torch.nn.init.normal_(branch.reduce.weight)
    torch.nn.init.normal_(branch.predict.weight)
    features = _pyramid(batch=2, channels=8, height=64, width=96)  # P3 8 x 12
    c2 = torch.randn(2, 6, 16, 24)  # stride 4
    with pytest.raises(ValueError, match="needs the body's C2"):
        branch(features)
    with pytest.raises(ValueError, match="needs the body's C2"):
        branch(features, c2[..., :12])
    # The refinement starts at zero: the maps are the coarse logits at stride 8, upsampled x2,
    # activated, upsampled x2 again; C2 does not change them yet.
    basis = branch(features, c2)
    assert basis.shape == (2, 4, 32, 48)  # stride 2
    x = torch.cat(
        [features[0], *(F.interpolate(f, size=(8, 12), mode="bilinear") for f in features[1:3])], dim=1
    )
    coarse = F.interpolate(branch.predict(F.relu(branch.reduce(x))), scale_factor=2, mode="bilinear")
    torch.testing.assert_close(basis, F.interpolate(F.softplus(coarse), scale_factor=2, mode="bilinear"))
    torch.testing.assert_close(branch(features, torch.zeros_like(c2)), basis)
    # Once trained, a pixel of C2 moves the maps around that pixel only: detail at stride 4, where
    # the coarse maps change over 8-pixel cells.
    assert branch.refine is not None
    torch.nn.init.normal_(branch.refine.weight)
    poked = c2.clone()
    poked[0, :, 8, 12] += 5.0
    change = (branch(features, poked) - branch(features, c2)).abs().amax(dim=1)  # [B, 32, 48]
    assert change[1].max() == 0  # the other image
    changed_rows, changed_cols = torch.nonzero(change[0] > 1e-6, as_tuple=True)
    # a 3x3 conv at stride 4, then x2 bilinear: within 2 C2 pixels = 4 basis pixels of (16, 24)
    assert changed_rows.min() >= 16 - 5 and changed_rows.max() <= 16 + 5
    assert changed_cols.min() >= 24 - 5 and changed_cols.max() <= 24 + 5


def _deform_inputs(b: int, d: int, h: int, w: int, groups: int = 4, seed: int = 0):
    """Features, offsets and a kernel; every sampling position keeps >= 0.05 px from an integer,
    where bilinear interpolation has a kink and two correct kernels may pick different one-sided
    gradients."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, h, w, generator=generator)
    whole = torch.randint(-3, 3, (b, groups * 18, h, w), generator=generator).float()
    fraction = 0.05 + 0.9 * torch.rand(b, groups * 18, h, w, generator=generator)
    weight = torch.randn(d + 3, d, 3, 3, generator=generator) * 0.1
    return x, whole + fraction, weight


@pytest.mark.parametrize("shape", [(2, 8, 7, 9), (1, 16, 1, 1), (3, 4, 2, 5)])
def test_sampled_deform_conv_equals_torchvisions_values_and_gradients(shape):
    x, offsets, weight = _deform_inputs(*shape)
    inputs = [t.clone().requires_grad_() for t in (x, offsets, weight)]
    reference = [t.clone().requires_grad_() for t in (x, offsets, weight)]
    ours = deform_conv2d_sampled(*inputs)
    theirs = deform_conv2d(*reference, padding=(1, 1))
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
    upstream = torch.randn_like(ours)
    for mine, other in zip(
        torch.autograd.grad(ours, inputs, upstream),
        torch.autograd.grad(theirs, reference, upstream),
        strict=True,
    ):
        torch.testing.assert_close(mine, other, rtol=1e-4, atol=1e-4)


def test_sampled_deform_conv_is_eq_1_written_out_for_one_location():
    x, offsets, weight = _deform_inputs(1, 4, 5, 6, groups=1)
    y = deform_conv2d_sampled(x, offsets, weight)
    p0 = (2, 3)  # (row, column)
    expected = torch.zeros(weight.shape[0])
    for r in range(9):  # y(p0) = sum_r w_r x(p0 + p_r + dp_r)
        dy, dx = offsets[0, 2 * r, p0[0], p0[1]], offsets[0, 2 * r + 1, p0[0], p0[1]]
        py, px = p0[0] + r // 3 - 1 + dy.item(), p0[1] + r % 3 - 1 + dx.item()
        value = torch.zeros(4)  # bilinear, zero outside the map
        for qy in (math.floor(py), math.floor(py) + 1):
            for qx in (math.floor(px), math.floor(px) + 1):
                if 0 <= qy < 5 and 0 <= qx < 6:
                    value += (1 - abs(py - qy)) * (1 - abs(px - qx)) * x[0, :, qy, qx]
        expected += weight[:, :, r // 3, r % 3] @ value
    torch.testing.assert_close(y[0, :, p0[0], p0[1]], expected, rtol=1e-4, atol=1e-5)


def test_feature_alignment_kernels_agree_and_bad_names_are_rejected():
    torch.manual_seed(0)
    sampled = FeatureAlignment(16, implementation="sampled")
    torch.nn.init.normal_(sampled.conv_offset.weight, std=0.3)
    tv = FeatureAlignment(16, implementation="torchvision")
    tv.load_state_dict(sampled.state_dict())  # same parameters, other kernel
    x, box_regression = torch.randn(2, 16, 6, 7), torch.rand(2, 4, 6, 7) * 3
    torch.testing.assert_close(sampled(x, box_regression), tv(x, box_regression), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="implementation"):
        FeatureAlignment(16, implementation="cuda")
    with pytest.raises(ValueError, match="deform_implementation"):
        SipMaskConfig(deform_implementation="fast")
