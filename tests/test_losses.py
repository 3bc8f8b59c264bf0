"""Tests for sipmask_ref/losses.py (§3.4)."""

import math

import pytest
import torch
import torch.nn.functional as F

from sipmask_ref.losses import (
    IOU_EPS,
    batch_mask_loss,
    box_loss,
    centerness_loss,
    focal_loss,
    mask_alignment_weight,
    mask_loss,
    valid_mask_boxes,
)
from sipmask_ref.spatial_mask_prediction import assemble_masks_reference


def test_focal_loss_against_formula_3x2():
    logits = torch.tensor([[0.5, -1.0], [2.0, 0.0], [-0.3, 1.5]])
    labels = torch.tensor([1, 0, 2])  # point 0 is class 1, point 1 background, point 2 class 2
    targets = [[1, 0], [0, 0], [0, 1]]
    gamma, alpha = 2.0, 0.25
    total = 0.0
    for p in range(3):
        for c in range(2):
            prob = 1 / (1 + math.exp(-float(logits[p, c])))
            if targets[p][c] == 1:
                total += -alpha * (1 - prob) ** gamma * math.log(prob)
            else:
                total += -(1 - alpha) * prob**gamma * math.log(1 - prob)
    result = focal_loss(logits, labels, normalizer=4.0, gamma=gamma, alpha=alpha)
    torch.testing.assert_close(result, torch.tensor(total / 4.0))


def test_focal_loss_bad_input():
    with pytest.raises(ValueError, match="labels"):
        focal_loss(torch.zeros(2, 2), torch.tensor([0, 3]), 1.0)
    with pytest.raises(ValueError, match="normalizer"):
        focal_loss(torch.zeros(2, 2), torch.tensor([0, 1]), 0.0)


def test_box_loss_iou_and_giou_by_hand():
    # Positive 0: predicted box [-2, -2, 2, 2] (area 16) and target [-1, -3, 3, 1] (area 16)
    # around the point: intersection [-1, -2, 2, 1] = 3 x 3 = 9, union 23, enclosure 5 x 5 = 25.
    # Positive 1: identical boxes, IoU 1.
    pred = torch.tensor([[2.0, 2.0, 2.0, 2.0], [1.0, 1.0, 1.0, 1.0]])
    target = torch.tensor([[1.0, 3.0, 3.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    weight = torch.tensor([0.5, 0.25])
    iou = 9 / 23
    expected_iou = (0.5 * -math.log(iou) + 0.25 * 0.0) / 0.75
    torch.testing.assert_close(box_loss(pred, target, weight, "iou"), torch.tensor(expected_iou))
    giou = iou - (25 - 23) / 25
    expected_giou = (0.5 * (1 - giou) + 0.25 * 0.0) / 0.75
    torch.testing.assert_close(box_loss(pred, target, weight, "giou"), torch.tensor(expected_giou))


def test_box_loss_inverted_prediction_and_empty():
    # l + r < 0: the predicted box is empty, IoU is clamped at IOU_EPS.
    pred = torch.tensor([[-3.0, 1.0, 1.0, 1.0]], requires_grad=True)
    target = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    loss = box_loss(pred, target, torch.ones(1), "iou")
    torch.testing.assert_close(loss, torch.tensor(-math.log(IOU_EPS)))
    giou = box_loss(pred, target, torch.ones(1), "giou")
    # GIoU = 0 - (enclosure - union) / enclosure; enclosure x: max(-3,1)+max(1,1) = 2, y: 2 -> 4,
    # union = 0 + 4 - 0 = 4 -> GIoU = 0, loss 1.
    torch.testing.assert_close(giou, torch.tensor(1.0))
    empty_pred = torch.zeros(0, 4, requires_grad=True)
    empty = box_loss(empty_pred, torch.zeros(0, 4), torch.zeros(0), "iou")
    assert float(empty.detach()) == 0.0
    empty.backward()
    assert empty_pred.grad is not None
    with pytest.raises(ValueError, match="kind"):
        box_loss(pred, target, torch.ones(1), "l1")


def test_centerness_loss_against_manual_bce():
    logits = torch.tensor([0.3, -1.2, 2.0])
    target = torch.tensor([0.5, 0.1, 0.9])
    prob = torch.sigmoid(logits)
    manual = -(target * torch.log(prob) + (1 - target) * torch.log(1 - prob)).mean()
    torch.testing.assert_close(centerness_loss(logits, target), manual)
    empty_logits = torch.zeros(0, requires_grad=True)
    empty = centerness_loss(empty_logits, torch.zeros(0))
    empty.backward()
    assert float(empty.detach()) == 0.0


def test_mask_alignment_weight_modes():
    scores = torch.tensor([0.9, 0.5, 0.2], requires_grad=True)
    ious = torch.tensor([0.8, 0.4, 0.6])
    raw = {
        "cls+loc": scores.detach() * ious,
        "cls": scores.detach(),
        "loc": ious,
        "none": torch.ones(3),
    }
    for mode, alpha in raw.items():
        weights = mask_alignment_weight(scores, ious, mode)
        assert not weights.requires_grad
        torch.testing.assert_close(weights, alpha / (alpha.sum() + 1e-4) * 3)
        assert abs(float(weights.mean()) - 1.0) < 1e-3
    # s * o = 0.72, 0.20, 0.12: the ranking survives the normalisation.
    product = mask_alignment_weight(scores, ious, "cls+loc")
    assert product[0] > product[1] > product[2]
    with pytest.raises(ValueError, match="alignment_weight must be one of"):
        mask_alignment_weight(scores, ious, "both")


def _explicit_mask_loss(basis, coefficients, boxes, gt_masks, weights, sub_regions):
    """Per-instance loop: probability BCE over the pixels inside the box / area, weighted, / N."""
    height, width = basis.shape[1:]
    kept = [
        j
        for j in range(boxes.shape[0])
        if (boxes[j, 2] - boxes[j, 0]) * (boxes[j, 3] - boxes[j, 1]) > 1
        and boxes[j, 2] > boxes[j, 0]
        and boxes[j, 3] > boxes[j, 1]
    ]
    total = 0.0
    for j in kept:
        prob = assemble_masks_reference(basis, coefficients[j : j + 1], boxes[j : j + 1], sub_regions)[0]
        x1, y1, x2, y2 = boxes[j].tolist()
        instance = 0.0
        for y in range(height):
            for x in range(width):
                if x1 <= x < x2 and y1 <= y < y2:
                    instance = instance + F.binary_cross_entropy(prob[y, x], gt_masks[j, y, x].float())
        total = total + weights[j] * instance / ((x2 - x1) * (y2 - y1))
    return total / len(kept)


def test_mask_loss_against_explicit_loop():
    generator = torch.Generator().manual_seed(3)
    num_basis, height, width = 3, 10, 12
    basis = torch.rand(num_basis, height, width, generator=generator)
    coefficients = torch.randn(4, 4, num_basis, generator=generator)
    boxes = torch.tensor(
        [
            [1.0, 1.0, 7.0, 8.0],
            [3.5, 0.0, 12.0, 10.0],  # touches the right and bottom edges
            [5.0, 5.0, 5.5, 6.0],  # area 0.5: dropped
            [-2.0, 4.0, 4.0, 13.0],  # partly outside the map
        ]
    )
    gt_masks = (torch.rand(4, height, width, generator=generator) > 0.5).to(torch.uint8)
    weights = torch.tensor([1.2, 0.5, 3.0, 0.8])
    result = mask_loss(basis, coefficients, boxes, gt_masks, weights, (2, 2))
    expected = _explicit_mask_loss(basis, coefficients, boxes, gt_masks, weights, (2, 2))
    torch.testing.assert_close(result, expected)
    # The GT outside the box does not matter (CropSplitGt).
    outside_changed = gt_masks.clone()
    outside_changed[:, :, 0] = 1 - outside_changed[:, :, 0]  # column x = 0 is outside boxes 0-2
    outside_changed[3] = gt_masks[3]
    torch.testing.assert_close(
        mask_loss(basis, coefficients, boxes, outside_changed, weights, (2, 2)), result
    )


def test_valid_mask_boxes():
    boxes = torch.tensor(
        [
            [0.0, 0.0, 2.0, 2.0],  # area 4: kept
            [0.0, 0.0, 1.0, 1.0],  # area 1: dropped
            [2.0, 2.0, 0.0, 0.0],  # negative sides, positive product: dropped
        ]
    )
    assert valid_mask_boxes(boxes).tolist() == [True, False, False]


def test_all_degenerate_returns_connected_zero():
    basis = torch.rand(3, 6, 6, requires_grad=True)
    coefficients = torch.randn(2, 4, 3, requires_grad=True)
    boxes = torch.tensor([[1.0, 1.0, 1.5, 2.0], [3.0, 3.0, 2.0, 4.0]])
    loss = mask_loss(basis, coefficients, boxes, torch.ones(2, 6, 6), torch.ones(2), (2, 2))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert (coefficients.grad == 0).all() and (basis.grad == 0).all()
    empty = mask_loss(
        basis, torch.zeros(0, 4, 3), torch.zeros(0, 4), torch.zeros(0, 6, 6), torch.zeros(0), (2, 2)
    )
    assert float(empty.detach()) == 0.0


def test_mask_loss_gradient_flows_and_shapes_checked():
    basis = torch.rand(3, 6, 6, requires_grad=True)
    coefficients = torch.randn(1, 4, 3, requires_grad=True)
    boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0]])
    loss = mask_loss(basis, coefficients, boxes, torch.ones(1, 6, 6), torch.ones(1), (2, 2))
    loss.backward()
    assert (coefficients.grad != 0).all()
    assert (basis.grad[:, 4:, :] == 0).all() and (basis.grad[:, :, 4:] == 0).all()
    with pytest.raises(ValueError, match="gt_masks"):
        mask_loss(basis, coefficients, boxes, torch.ones(1, 5, 6), torch.ones(1), (2, 2))


def _batch_inputs(generator: torch.Generator, num_images: int = 3):
    """Basis masks of `num_images` images, boxes spread over images 0 and 2 (image 1 has none), GT
    masks of all images as one stack and each box's GT row."""
    num_basis, height, width = 3, 10, 12
    basis = torch.rand(num_images, num_basis, height, width, generator=generator)
    boxes = torch.tensor(
        [
            [1.0, 1.0, 7.0, 8.0],
            [3.5, 0.0, 12.0, 10.0],
            [5.0, 5.0, 5.5, 6.0],  # area 0.5: dropped
            [-2.0, 4.0, 4.0, 13.0],
            [0.25, 2.5, 9.75, 7.5],
        ]
    )
    box_image = torch.tensor([0, 2, 2, 0, 2])
    coefficients = torch.randn(5, 4, num_basis, generator=generator)
    gt_masks = (torch.rand(4, height, width, generator=generator) > 0.5).float()  # 4 GTs in the batch
    box_gt = torch.tensor([1, 3, 2, 0, 3])
    weights = torch.tensor([1.2, 0.5, 3.0, 0.8, 1.1])
    return basis, coefficients, boxes, box_image, gt_masks, box_gt, weights


@pytest.mark.parametrize("coverage", ["sparse", "full map"])
def test_batch_mask_loss_equals_mask_loss_image_by_image(monkeypatch, coverage):
    """Each image's loss, and the gradients of their sum, are `mask_loss` called once per image; an
    image without boxes gets a zero. Both paths of the assembly (FULL_MAP_COVERAGE forced)."""
    import sipmask_ref.spatial_mask_prediction as smp

    monkeypatch.setattr(smp, "FULL_MAP_COVERAGE", 1.0 if coverage == "sparse" else 0.0)
    inputs = _batch_inputs(torch.Generator().manual_seed(4))
    basis, coefficients, boxes, box_image, gt_masks, box_gt, weights = inputs
    basis_a, coefficients_a = basis.clone().requires_grad_(), coefficients.clone().requires_grad_()
    per_image = batch_mask_loss(basis_a, coefficients_a, boxes, box_image, gt_masks, box_gt, weights, (2, 2))
    per_image.sum().backward()

    basis_b, coefficients_b = basis.clone().requires_grad_(), coefficients.clone().requires_grad_()
    expected = []
    for image in range(basis.shape[0]):
        chosen = (box_image == image).nonzero().squeeze(1)
        expected.append(
            mask_loss(
                basis_b[image],
                coefficients_b[chosen],
                boxes[chosen],
                gt_masks[box_gt[chosen]],
                weights[chosen],
                (2, 2),
            )
        )
    torch.stack(expected).sum().backward()
    torch.testing.assert_close(per_image, torch.stack(expected).detach())
    assert float(per_image[1].detach()) == 0.0  # image 1 has no box
    torch.testing.assert_close(basis_a.grad, basis_b.grad)
    torch.testing.assert_close(coefficients_a.grad, coefficients_b.grad)


def test_batch_mask_loss_without_kept_boxes_and_shape_checks():
    basis = torch.rand(2, 3, 6, 6, requires_grad=True)
    coefficients = torch.randn(1, 4, 3, requires_grad=True)
    tiny = torch.tensor([[1.0, 1.0, 1.5, 2.0]])  # area 0.5: dropped
    one = torch.zeros(1, dtype=torch.int64)
    losses = batch_mask_loss(basis, coefficients, tiny, one, torch.ones(1, 6, 6), one, torch.ones(1), (2, 2))
    assert losses.shape == (2,) and (losses == 0).all()
    losses.sum().backward()  # still connected
    assert (basis.grad == 0).all() and (coefficients.grad == 0).all()
    with pytest.raises(ValueError, match="box_gt must be"):
        batch_mask_loss(basis, coefficients, tiny, one, torch.ones(1, 6, 6), one[:0], torch.ones(1), (2, 2))
    with pytest.raises(ValueError, match="gt_masks must be"):
        batch_mask_loss(basis, coefficients, tiny, one, torch.ones(1, 5, 6), one, torch.ones(1), (2, 2))


def test_alignment_weight_of_a_batch_is_normalised_image_by_image():
    scores = torch.tensor([0.9, 0.5, 0.2, 0.7, 0.6])
    ious = torch.tensor([0.8, 0.4, 0.6, 0.9, 0.3])
    box_image = torch.tensor([0, 1, 0, 2, 2])
    for mode in ("cls+loc", "cls", "loc", "none"):
        batched = mask_alignment_weight(scores, ious, mode, box_image)
        for image in range(3):
            chosen = box_image == image
            torch.testing.assert_close(
                batched[chosen], mask_alignment_weight(scores[chosen], ious[chosen], mode)
            )
    with pytest.raises(ValueError, match="box_image must be"):
        mask_alignment_weight(scores, ious, "cls+loc", box_image[:2])
