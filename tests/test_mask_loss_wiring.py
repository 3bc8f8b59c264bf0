"""Wiring of `SipMask._mask_loss` (§3.4 mask alignment weighting loss, the mean over a batch's images).

`losses.mask_loss`, `losses.batch_mask_loss` and `losses.mask_alignment_weight` are tested on their
own in test_losses.py. This file checks what `_mask_loss`, given the positives `mask_positives` picks
in each image, feeds them, against a plain hand loop over the images written here:

- which boxes crop and split the masks: the PREDICTED boxes (decoded from the regression at the
  positive points), / 2 -> basis-map pixels, boxes of area <= 1 dropped;
- which GT mask each positive uses: its assigned GT's, halved as the authors (2 x 2 block mean,
  > 0.5);
- alpha_j = sigmoid(logit of the GT class) x IoU(predicted box, GT box), the IoU in INPUT pixels,
  normalised over the kept positives to mean ~1: alpha / (sum alpha + 1e-4) * N;
- L = sum_j alpha_j l_j / N, l_j = BCE summed inside box j / its area, per image; the batch's loss
  is the mean over its images (each normalised on its own).

The second test recomputes the hand loss with three wrong wirings and shows that each one moves the
value far beyond the tolerance of the equality check, so that the equality really pins the wiring.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from sipmask_ref.config import preset
from sipmask_ref.model import BatchAssignment, SipMask, mask_positives

INPUT = 32  # input (padded image) size; the basis masks are INPUT / 2
BASIS = INPUT // 2
NUM_BASIS = 4  # M
K_H, K_W = 2, 2  # sub-regions per box

# Ground truths, input pixels. GT 0 has no positive, so that a wiring which ignored matched_gt (and
# took the GTs in order) would pick the wrong masks and boxes.
GT_BOXES = [(0.0, 0.0, 8.0, 8.0), (4.0, 6.0, 18.0, 20.0), (14.0, 10.0, 30.0, 28.0)]
GT_LABELS = [1, 2, 3]

# Points (x, y) in input pixels, their label (0 = background), matched GT (-1 for background), the
# PREDICTED box in input pixels (turned into the regression l, t, r, b below) and the class logits.
# The predicted boxes differ clearly from the GT boxes; their coordinates are multiples of 0.25 whose
# halves are not integers and whose sub-region splits fall between pixels (no float ties).
# Class logits: for points 0 and 3 the GT class is NOT the highest-scoring class, for 1 and 2 it is,
# so a max-class score changes the RELATIVE weights (which survive the normalisation to mean 1).
POINTS = [
    # (x, y),     label, gt, predicted box (input px),     class logits
    ((10.0, 12.0), 2, 1, (5.5, 7.5, 19.5, 18.5), (1.5, -0.5, 0.3)),
    ((22.0, 18.0), 3, 2, (12.5, 13.5, 28.5, 29.5), (-1.0, 0.2, 2.0)),
    ((12.0, 14.0), 2, 1, (3.0, 4.5, 15.5, 21.5), (-2.0, 0.8, 0.1)),
    ((20.0, 20.0), 3, 2, (15.5, 9.5, 31.5, 24.5), (2.5, 0.0, -1.5)),
    # A positive whose predicted box is 1 x 1 input pixels = 0.25 basis pixels^2 <= 1: dropped
    # (from the loss, from N and from alpha's normalisation).
    ((16.0, 16.0), 2, 1, (15.5, 15.5, 16.5, 16.5), (0.4, 0.9, -0.2)),
    # Background points: large boxes and logits that would matter if they leaked in.
    ((2.0, 30.0), 0, -1, (0.0, 0.0, 16.0, 31.0), (3.0, 3.0, 3.0)),
    ((30.0, 2.0), 0, -1, (20.0, 0.0, 31.0, 12.0), (-3.0, 1.0, 2.0)),
    ((6.0, 26.0), 0, -1, (1.0, 20.0, 11.0, 31.0), (0.0, 0.0, 0.0)),
]


def _gt_masks() -> torch.Tensor:
    """uint8 [3, INPUT, INPUT] masks inside their boxes, not rectangles (a square, a disc, a triangle)."""
    ys, xs = torch.meshgrid(torch.arange(INPUT), torch.arange(INPUT), indexing="ij")
    masks = torch.zeros(3, INPUT, INPUT, dtype=torch.uint8)
    masks[0, 0:8, 0:8] = 1
    masks[1] = ((xs - 11) ** 2 + (ys - 13) ** 2 <= 6.5**2) & (xs >= 4) & (xs < 18) & (ys >= 6) & (ys < 20)
    masks[2] = (xs >= 14) & (xs < 30) & (ys >= 10) & (ys < 28) & ((xs - 14) * 18 >= (ys - 10) * 16)
    return masks


def _inputs(seed: int = 0):
    """One image's points, outputs and target (all float32 / int64), in the order `_hand_loss` reads them.
    The seed draws the coefficients and basis masks."""
    generator = torch.Generator().manual_seed(seed)
    points = torch.tensor([p[0] for p in POINTS])  # [P, 2]
    reg = torch.tensor(
        [
            [x - x1, y - y1, x2 - x, y2 - y]  # [P, 4] (l, t, r, b) pixels
            for (x, y), _, _, (x1, y1, x2, y2), _ in POINTS
        ]
    )
    cls = torch.tensor([p[4] for p in POINTS])  # [P, C]
    labels = torch.tensor([p[1] for p in POINTS])  # [P]
    matched_gt = torch.tensor([p[2] for p in POINTS])  # [P]
    # Per-point scales spread the positives' instance losses l_j (about 0.75 to 2.7), so that a wrong
    # weighting of them moves the loss visibly.
    scales = torch.tensor([0.5, 3.0, 0.5, 2.0, 1.0, 1.0, 1.0, 1.0])[:, None, None]
    coefficients = scales * torch.randn(len(POINTS), K_H * K_W, NUM_BASIS, generator=generator)
    basis_masks = torch.randn(NUM_BASIS, BASIS, BASIS, generator=generator)  # [M, H, W]
    target = {"boxes": torch.tensor(GT_BOXES), "labels": torch.tensor(GT_LABELS), "masks": _gt_masks()}
    return points, cls, reg, coefficients, basis_masks, labels, matched_gt, target


def _method_loss(model: SipMask, images) -> torch.Tensor:
    """`_mask_loss` of a batch of images (each as `_inputs` gives it), with the positives and boxes
    `mask_positives` chooses in each."""
    chosen = [mask_positives(points, reg, labels > 0) for points, _, reg, _, _, labels, _, _ in images]
    assigned = BatchAssignment(
        points=images[0][0],
        strides=None,
        labels=torch.stack([image[5] for image in images]),  # [B, P]
        box_targets=None,
        matched_gt=torch.stack([image[6] for image in images]),  # [B, P]
        positive=None,
        mask_positives=[index for index, _ in chosen],
        mask_boxes=[boxes for _, boxes in chosen],
    )
    return model._mask_loss(
        assigned,
        torch.stack([image[1] for image in images]),  # cls [B, P, C]
        torch.stack([image[3] for image in images]),  # coefficients [B, P, Q, M]
        torch.stack([image[4] for image in images]),  # basis masks [B, M, H, W]
        [image[7] for image in images],
    )


def _model() -> SipMask:
    config = replace(preset("cpu_tiny"), num_classes=3, num_basis=NUM_BASIS)
    # The hand loop below is written for the paper's setting.
    assert config.sub_regions == (K_H, K_W) and config.alignment_weight == "cls+loc"
    return SipMask(config)


# ---- the hand loop ---------------------------------------------------------------------------------


def _sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def _iou(a, b) -> float:
    """IoU of two xyxy boxes, widths without +1."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _halved_mask(mask: torch.Tensor) -> list[list[float]]:
    """GT mask [INPUT, INPUT] -> basis size: 1 where the 2 x 2 block's mean is > 0.5 (3 or 4 of 4)."""
    m = mask.tolist()
    return [
        [
            1.0
            if (m[2 * y][2 * x] + m[2 * y][2 * x + 1] + m[2 * y + 1][2 * x] + m[2 * y + 1][2 * x + 1]) / 4
            > 0.5
            else 0.0
            for x in range(BASIS)
        ]
        for y in range(BASIS)
    ]


def _instance_loss(box, coefficients, basis_masks, gt_mask) -> float:
    """l_j: BCE-with-logits over the basis pixels inside `box` (x1 <= x < x2, y1 <= y < y2), each
    pixel's logit from its own sub-region's coefficients (exact box fraction), / box area."""
    x1, y1, x2, y2 = box
    # logits[q][y][x] = sum_m c_qm B_m(y, x), computed in float64 for every sub-region q.
    logits = torch.einsum("qm,mhw->qhw", coefficients.double(), basis_masks.double()).tolist()
    total = 0.0
    for y in range(BASIS):
        for x in range(BASIS):
            if not (x1 <= x < x2 and y1 <= y < y2):
                continue  # outside the box prediction and target are both 0: no loss
            column = min(K_W - 1, math.floor((x - x1) * K_W / (x2 - x1)))
            row = min(K_H - 1, math.floor((y - y1) * K_H / (y2 - y1)))
            z, t = logits[row * K_W + column][y][x], gt_mask[y][x]
            total += max(z, 0.0) - z * t + math.log1p(math.exp(-abs(z)))
    return total / ((x2 - x1) * (y2 - y1))


def _hand_loss(inputs, crop="predicted", score="gt_class", iou="input_pixels") -> float:
    """The loss of one image by hand. The defaults are the right wiring; the others are wrong:
    crop='gt' crops/splits with the GT box / 2; score='max_class' takes the highest class
    probability; iou='mixed_scales' compares the basis-pixel predicted box with the input-pixel GT."""
    points, cls, reg, coefficients, basis_masks, labels, matched_gt, target = inputs
    gt_masks = [_halved_mask(m) for m in target["masks"]]
    gt_boxes = target["boxes"].tolist()
    alphas, losses = [], []
    for p in range(points.shape[0]):
        if labels[p] <= 0:
            continue  # background
        (x, y), (l, t, r, b) = points[p].tolist(), reg[p].tolist()
        predicted = (x - l, y - t, x + r, y + b)  # input pixels
        predicted_basis = tuple(v / 2 for v in predicted)  # basis-map pixels
        w, h = predicted_basis[2] - predicted_basis[0], predicted_basis[3] - predicted_basis[1]
        if not (w > 0 and h > 0 and w * h > 1):
            continue  # dropped: too small a box at basis scale
        g = int(matched_gt[p])
        logits = cls[p].tolist()
        s = _sigmoid(logits[int(labels[p]) - 1] if score == "gt_class" else max(logits))
        o = _iou(predicted if iou == "input_pixels" else predicted_basis, gt_boxes[g])
        box = predicted_basis if crop == "predicted" else tuple(v / 2 for v in gt_boxes[g])
        alphas.append(s * o)
        losses.append(_instance_loss(box, coefficients[p], basis_masks, gt_masks[g]))
    n = len(losses)
    alpha_sum = sum(alphas)
    weights = [a / (alpha_sum + 1e-4) * n for a in alphas]  # mean ~1 over the kept positives
    return sum(a * l for a, l in zip(weights, losses, strict=True)) / n


# ---- tests -----------------------------------------------------------------------------------------


def test_mask_loss_equals_the_hand_loop():
    """The method's value is the hand loop's: predicted boxes crop, GT-class score x input-pixel IoU
    weights, assigned GT masks halved, dropped tiny box, N = kept positives."""
    inputs = _inputs()
    points, cls, reg, coefficients, basis_masks, labels, matched_gt, target = inputs
    # As in training: gradients are recorded for the coefficients and basis masks.
    coefficients = coefficients.clone().requires_grad_()
    basis_masks = basis_masks.clone().requires_grad_()
    loss = _method_loss(_model(), [(points, cls, reg, coefficients, basis_masks, labels, matched_gt, target)])
    assert loss.requires_grad  # still connected to the coefficients and basis masks
    expected = _hand_loss(inputs)
    torch.testing.assert_close(loss.detach(), torch.tensor(expected, dtype=loss.dtype), rtol=1e-5, atol=1e-6)


def test_mask_loss_of_a_batch_is_the_mean_of_its_images():
    """Three images in one batch: the mean of their hand losses, each image's alpha normalised over its
    own positives and divided by its own N. The second image's GTs come second in the batch (its
    positives must read GT rows 3-5 of the batch), the third has no positive (it adds 0 to the mean)."""
    first, second = _inputs(0), _inputs(1)
    points, cls, reg, coefficients, basis_masks, labels, matched_gt, target = _inputs(2)
    # The second image's GT masks differ from the first's, so that reading the first image's masks fails.
    second_target = dict(second[7], masks=second[7]["masks"].flip(-1))
    second = (*second[:7], second_target)
    empty = (
        points,
        cls,
        reg,
        coefficients,
        basis_masks,
        torch.zeros_like(labels),
        -torch.ones_like(matched_gt),
        target,
    )
    loss = _method_loss(_model(), [first, second, empty])
    expected = (_hand_loss(first) + _hand_loss(second)) / 3
    torch.testing.assert_close(loss, torch.tensor(expected, dtype=loss.dtype), rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def method_loss() -> tuple[tuple, float]:
    """The inputs and the method's loss, computed once for the parametrised test below."""
    inputs = _inputs()
    return inputs, float(_method_loss(_model(), [inputs]))


@pytest.mark.parametrize(
    "wrong",
    [
        {"crop": "gt"},  # (a) crop / split with the GT boxes instead of the predicted ones
        {"score": "max_class"},  # (b) alpha from the max-class score instead of the GT class's
        {"iou": "mixed_scales"},  # (c) alpha's IoU with the predicted box at basis scale vs GT in input px
    ],
)
def test_hand_loop_discriminates_wrong_wirings(method_loss, wrong):
    """Each wrong wiring moves the hand loss by > 5 % of the method's value, far beyond the 1e-5 to
    which the right wiring matches it (measured: (a) -9.5 %, (b) +9.8 %, (c) -44.5 %)."""
    inputs, loss = method_loss
    wrong_value = _hand_loss(inputs, **wrong)
    assert abs(wrong_value - loss) > 0.05 * loss, (wrong, loss, wrong_value)
