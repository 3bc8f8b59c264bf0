"""Tests for sipmask_ref/spatial_mask_prediction.py (§3.3, Eq. 2)."""

import pytest
import torch

from sipmask_ref.spatial_mask_prediction import (
    assemble_mask_logits,
    assemble_masks,
    assemble_masks_reference,
    box_pixel_mask,
    crop_to_boxes,
    sub_region_index,
    sub_region_maps,
)


def _random_boxes(generator: torch.Generator, num: int, height: int, width: int) -> torch.Tensor:
    """Float boxes on a 1/8 pixel grid (exact in floating point), some over the map edges."""
    x1 = torch.rand(num, generator=generator) * (width + 4) - 4
    y1 = torch.rand(num, generator=generator) * (height + 4) - 4
    w = torch.rand(num, generator=generator) * width * 0.8 + 0.5
    h = torch.rand(num, generator=generator) * height * 0.8 + 0.5
    boxes = torch.stack([x1, y1, x1 + w, y1 + h], dim=1)
    boxes[0] = torch.tensor([0.0, 0.0, width, height])  # the whole map, touching every edge
    boxes[1] = torch.tensor([-3.0, 2.0, 5.0, height + 3.0])  # over the left, bottom edges
    return torch.round(boxes * 8) / 8


@pytest.mark.parametrize("sub_regions", [(1, 1), (2, 2), (3, 3)])
def test_sub_region_maps_are_eq_2_and_prune_and_sum_to_the_masks(sub_regions):
    generator = torch.Generator().manual_seed(5)
    num_basis, height, width, num_boxes = 6, 19, 21, 4
    q = sub_regions[0] * sub_regions[1]
    basis = torch.rand(num_basis, height, width, generator=generator)
    coefficients = torch.randn(num_boxes, q, num_basis, generator=generator)
    boxes = _random_boxes(generator, num_boxes, height, width)
    maps = sub_region_maps(basis, coefficients)  # [N, Q, H, W]
    assert maps.shape == (num_boxes, q, height, width)
    for j in range(num_boxes):
        for i in range(q):  # M_ij = sigma(B x c_ij), written out
            literal = torch.sigmoid((coefficients[j, i][:, None, None] * basis).sum(dim=0))
            torch.testing.assert_close(maps[j, i], literal)
    inside, index = sub_region_index(boxes, height, width, sub_regions)  # [N, H, W] each
    own = maps.gather(1, index[:, None]).squeeze(1)  # each pixel's own sub-region: pruned, summed
    torch.testing.assert_close(
        torch.where(inside, own, 0.0), assemble_masks(basis, coefficients, boxes, sub_regions)
    )


@pytest.mark.parametrize("sub_regions", [(1, 1), (1, 2), (2, 1), (2, 2), (3, 3), (4, 4)])
def test_vectorised_equals_reference(sub_regions):
    generator = torch.Generator().manual_seed(sub_regions[0] * 10 + sub_regions[1])
    num_basis, height, width, num_boxes = 5, 17, 23, 7
    q = sub_regions[0] * sub_regions[1]
    basis = torch.rand(num_basis, height, width, generator=generator)
    coefficients = torch.randn(num_boxes, q, num_basis, generator=generator)
    boxes = _random_boxes(generator, num_boxes, height, width)
    fast = assemble_masks(basis, coefficients, boxes, sub_regions)
    slow = assemble_masks_reference(basis, coefficients, boxes, sub_regions)
    assert fast.shape == (num_boxes, height, width)
    torch.testing.assert_close(fast, slow)
    logits, inside = assemble_mask_logits(basis, coefficients, boxes, sub_regions)
    torch.testing.assert_close(torch.sigmoid(logits) * inside, slow)
    assert (logits[~inside] == 0).all()


def _quadrant_constant_inputs(boxes: torch.Tensor):
    """One basis mask of ones; coefficients make sub-region q's logit equal to q (0..3)."""
    basis = torch.ones(1, 6, 6)
    coefficients = torch.arange(4.0).reshape(1, 4, 1).expand(boxes.shape[0], 4, 1).clone()
    return basis, coefficients


def test_two_by_two_by_hand_on_6x6():
    # Box A: x in [1, 4), y in [0, 6): width 3 (odd). Columns: floor((x-1)*2/3): x=1 -> 0,
    # x=2 -> floor(2/3)=0, x=3 -> floor(4/3)=1. Rows: floor(y*2/6): y=0,1,2 -> 0, y=3,4,5 -> 1.
    # Box B: x in [2.5, 6), y in [1.5, 3.5): pixels x = 3, 4, 5, y = 2, 3.
    # Columns: floor((x-2.5)*2/3.5): x=3 -> 0, 4 -> 0 (3/3.5), 5 -> 1 (5/3.5). Rows:
    # floor((y-1.5)*2/2): y=2 -> 0, y=3 -> 1.
    boxes = torch.tensor([[1.0, 0.0, 4.0, 6.0], [2.5, 1.5, 6.0, 3.5]])
    basis, coefficients = _quadrant_constant_inputs(boxes)
    logits, inside = assemble_mask_logits(basis, coefficients, boxes, (2, 2))
    _ = -1  # outside marker in the expected tables below
    expected_a = torch.tensor(
        [
            [_, 0, 0, 1, _, _],
            [_, 0, 0, 1, _, _],
            [_, 0, 0, 1, _, _],
            [_, 2, 2, 3, _, _],
            [_, 2, 2, 3, _, _],
            [_, 2, 2, 3, _, _],
        ],
        dtype=torch.float32,
    )
    expected_b = torch.tensor(
        [
            [_, _, _, _, _, _],
            [_, _, _, _, _, _],
            [_, _, _, 0, 0, 1],
            [_, _, _, 2, 2, 3],
            [_, _, _, _, _, _],
            [_, _, _, _, _, _],
        ],
        dtype=torch.float32,
    )
    masks = assemble_masks(basis, coefficients, boxes, (2, 2))
    for j, expected in enumerate([expected_a, expected_b]):
        assert torch.equal(inside[j], expected >= 0)
        torch.testing.assert_close(logits[j], expected.clamp(min=0))  # logits are 0 outside
        want = torch.where(expected >= 0, torch.sigmoid(expected), torch.zeros(()))
        torch.testing.assert_close(masks[j], want)
    _, index = sub_region_index(boxes, 6, 6, (2, 2))
    assert torch.equal(index[0][inside[0]], expected_a[expected_a >= 0].long())


def test_box_pixel_mask_half_open():
    inside = box_pixel_mask(torch.tensor([[1.0, 1.0, 3.0, 2.0], [0.5, 0.5, 1.0, 1.0]]), 4, 4)
    assert inside[0].nonzero().tolist() == [[1, 1], [1, 2]]  # x = 1, 2; y = 1 (x2, y2 excluded)
    assert not inside[1].any()  # no integer pixel in [0.5, 1)


def test_zero_outside_and_no_boxes():
    generator = torch.Generator().manual_seed(0)
    basis = torch.randn(3, 8, 8, generator=generator)
    boxes = torch.tensor([[2.0, 2.0, 5.0, 6.0]])
    masks = assemble_masks(basis, torch.randn(1, 4, 3, generator=generator), boxes, (2, 2))
    outside = ~box_pixel_mask(boxes, 8, 8)
    assert (masks[outside] == 0).all() and (masks[~outside] > 0).all()
    empty = assemble_masks(basis, torch.zeros(0, 4, 3), torch.zeros(0, 4), (2, 2))
    assert empty.shape == (0, 8, 8)
    assert assemble_masks_reference(basis, torch.zeros(0, 4, 3), torch.zeros(0, 4), (2, 2)).shape == (0, 8, 8)


def test_gradients_reach_only_the_selected_sub_regions():
    generator = torch.Generator().manual_seed(1)
    basis = torch.randn(4, 6, 6, generator=generator, requires_grad=True)
    # The box's bottom half (rows y >= 7) lies below the 6-row map: sub-regions 2 and 3 (bottom-left,
    # bottom-right) have no pixel inside the map.
    boxes = torch.tensor([[1.0, 1.0, 5.0, 13.0]])
    coefficients = torch.randn(1, 4, 4, generator=generator, requires_grad=True)
    masks = assemble_masks(basis, coefficients, boxes, (2, 2))
    (masks * torch.rand(masks.shape, generator=generator)).sum().backward()
    assert (coefficients.grad[0, 2:] == 0).all()
    assert (coefficients.grad[0, :2] != 0).all()
    outside_all = ~box_pixel_mask(boxes, 6, 6)[0]
    assert (basis.grad[:, outside_all] == 0).all()
    assert (basis.grad[:, ~outside_all] != 0).any()


def test_crop_to_boxes_keeps_dtype_and_zeroes_outside():
    masks = torch.ones(2, 5, 5, dtype=torch.uint8)
    boxes = torch.tensor([[1.0, 1.0, 3.0, 4.0], [0.0, 0.0, 10.0, 10.0]])
    cropped = crop_to_boxes(masks, boxes)
    assert cropped.dtype == torch.uint8
    assert cropped[0].sum() == 2 * 3 and cropped[0, 1:4, 1:3].all()
    assert cropped[1].sum() == 25


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="coefficients"):
        assemble_masks(torch.zeros(3, 4, 4), torch.zeros(1, 3, 3), torch.zeros(1, 4), (2, 2))
    with pytest.raises(ValueError, match="sub_regions"):
        assemble_masks(torch.zeros(3, 4, 4), torch.zeros(1, 4, 3), torch.zeros(1, 4), (0, 2))


def test_huge_outside_and_mixed_boxes_equal_reference():
    generator = torch.Generator().manual_seed(5)
    num_basis, height, width = 6, 19, 24
    boxes = torch.tensor(
        [
            [-500.0, -300.0, 700.0, 900.0],  # far larger than the map on every side
            [-40.0, 3.0, -2.0, 10.0],  # entirely left of the map
            [30.0, 3.0, 40.0, 10.0],  # entirely right of the map
            [2.0, -30.0, 9.0, -1.0],  # entirely above
            [2.0, 19.0, 9.0, 25.0],  # starts at the bottom edge: no row inside
            [4.5, 4.5, 4.9, 30.0],  # narrower than a pixel, no integer x inside
            [3.0, 2.0, 3.0, 9.0],  # zero width
            [0.0, 0.0, 1.0, 1.0],  # a single pixel
            [-3.25, 15.5, 27.75, 40.0],  # wider than the map, bottom rows only
            [10.125, 1.875, 13.5, 18.25],  # small, fractional
        ]
    )
    for sub_regions in [(2, 2), (3, 1), (1, 4)]:
        q = sub_regions[0] * sub_regions[1]
        basis = torch.rand(num_basis, height, width, generator=generator)
        coefficients = torch.randn(boxes.shape[0], q, num_basis, generator=generator)
        expected = assemble_masks_reference(basis, coefficients, boxes, sub_regions)
        torch.testing.assert_close(assemble_masks(basis, coefficients, boxes, sub_regions), expected)
        logits, inside = assemble_mask_logits(basis, coefficients, boxes, sub_regions)
        torch.testing.assert_close(torch.sigmoid(logits) * inside, expected)
        assert torch.equal(inside, box_pixel_mask(boxes, height, width))
        assert not expected[1:7].any()  # boxes with no pixel in the map give empty masks
        assert expected[0].gt(0).all()  # the huge box covers every pixel


def test_nan_box_has_no_pixels():
    basis = torch.rand(3, 8, 8)
    boxes = torch.tensor([[float("nan"), 1.0, 5.0, 6.0], [1.0, 1.0, 5.0, 6.0]])
    masks = assemble_masks(basis, torch.randn(2, 4, 3), boxes, (2, 2))
    assert not masks[0].any() and masks[1].gt(0).sum() == 4 * 5


@pytest.mark.parametrize("coverage", ["small", "large"])
def test_sparse_and_full_map_paths_give_the_same_values_and_gradients(monkeypatch, coverage):
    import sipmask_ref.spatial_mask_prediction as smp

    generator = torch.Generator().manual_seed(7)
    num_basis, height, width, num_boxes = 5, 16, 20, 9
    boxes = _random_boxes(generator, num_boxes, height, width)
    if coverage == "small":
        boxes = boxes[2:] / 4  # boxes of a few pixels: well under FULL_MAP_COVERAGE
    basis0 = torch.rand(num_basis, height, width, generator=generator)
    coefficients0 = torch.randn(boxes.shape[0], 4, num_basis, generator=generator)
    weight = torch.rand(boxes.shape[0], height, width, generator=generator)
    results = {}
    for path, threshold in [("sparse", 2.0), ("full_map", -1.0)]:
        monkeypatch.setattr(smp, "FULL_MAP_COVERAGE", threshold)
        basis = basis0.clone().requires_grad_()
        coefficients = coefficients0.clone().requires_grad_()
        logits, inside = assemble_mask_logits(basis, coefficients, boxes, (2, 2))
        masks = assemble_masks(basis, coefficients, boxes, (2, 2))
        ((logits * inside + masks) * weight).sum().backward()
        results[path] = (logits, masks, basis.grad, coefficients.grad)
    for sparse, full_map in zip(results["sparse"], results["full_map"], strict=True):
        torch.testing.assert_close(sparse, full_map)
    torch.testing.assert_close(
        results["sparse"][1], assemble_masks_reference(basis0, coefficients0, boxes, (2, 2))
    )


def test_sparse_path_gradients_reach_only_the_selected_sub_regions():
    generator = torch.Generator().manual_seed(3)
    basis = torch.randn(4, 30, 30, generator=generator, requires_grad=True)
    # Bottom half of the first box is below the map (no pixel of sub-regions 2, 3); the second box
    # lies outside the map entirely. Together they cover far less than FULL_MAP_COVERAGE.
    boxes = torch.tensor([[2.0, 24.0, 8.0, 36.0], [40.0, 2.0, 50.0, 8.0]])
    coefficients = torch.randn(2, 4, 4, generator=generator, requires_grad=True)
    masks = assemble_masks(basis, coefficients, boxes, (2, 2))
    (masks * torch.rand(masks.shape, generator=generator)).sum().backward()
    assert (coefficients.grad[0, 2:] == 0).all() and (coefficients.grad[0, :2] != 0).all()
    assert (coefficients.grad[1] == 0).all()
    outside_all = ~box_pixel_mask(boxes, 30, 30).any(dim=0)
    assert (basis.grad[:, outside_all] == 0).all()
    assert (basis.grad[:, ~outside_all] != 0).any()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_other_dtypes(dtype):
    generator = torch.Generator().manual_seed(11)
    basis = torch.rand(4, 12, 14, generator=generator)
    coefficients = torch.randn(5, 4, 4, generator=generator)
    boxes = _random_boxes(generator, 5, 12, 14)
    expected = assemble_masks_reference(basis, coefficients, boxes, (2, 2))
    masks = assemble_masks(basis.to(dtype), coefficients.to(dtype), boxes, (2, 2))
    assert masks.dtype == dtype
    tolerance = 1e-5 if dtype == torch.float64 else 1e-2
    torch.testing.assert_close(masks.float(), expected, atol=tolerance, rtol=tolerance)
