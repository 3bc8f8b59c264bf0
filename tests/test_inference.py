"""Inference: Fast NMS against a plain reference, both detection paths, mask pasting."""

from dataclasses import replace

import torch
from torchvision.ops import box_iou

from sipmask_ref.config import preset
from sipmask_ref.inference import detect, fast_nms, paste_masks, scale_boxes_to_original


def fast_nms_reference(boxes, scores, iou_threshold, score_threshold, top_k, max_detections):
    """YOLACT Fast NMS written plainly: one class, one box at a time."""
    kept = []  # (score, index, class)
    for c in range(scores.shape[1]):
        order = torch.sort(scores[:, c], descending=True, stable=True).indices[:top_k].tolist()
        for rank, j in enumerate(order):
            higher = order[:rank]
            max_iou = max((box_iou(boxes[i : i + 1], boxes[j : j + 1]).item() for i in higher), default=0.0)
            if max_iou <= iou_threshold and scores[j, c].item() > score_threshold:
                kept.append((scores[j, c].item(), j, c))
    kept.sort(key=lambda item: -item[0])
    kept = kept[:max_detections]
    return [j for _, j, _ in kept], [c for _, _, c in kept], [s for s, _, _ in kept]


def _random_boxes(n, generator):
    xy = torch.rand(n, 2, generator=generator) * 80
    wh = torch.rand(n, 2, generator=generator) * 40 + 2
    return torch.cat([xy, xy + wh], dim=1)


def test_fast_nms_equals_the_plain_reference():
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        boxes = _random_boxes(60, generator)
        scores = torch.rand(60, 4, generator=generator) ** 2
        index, labels, kept_scores = fast_nms(boxes, scores, 0.5, 0.1, top_k=25, max_detections=30)
        ref_index, ref_labels, ref_scores = fast_nms_reference(boxes, scores, 0.5, 0.1, 25, 30)
        assert index.tolist() == ref_index and labels.tolist() == ref_labels
        torch.testing.assert_close(kept_scores, torch.tensor(ref_scores))
        assert labels.dtype == torch.int64 and len(index) > 0


def test_fast_nms_lets_a_suppressed_box_suppress_others():
    # A > B > C in score; A suppresses B, B overlaps C but A does not: Fast NMS drops C too
    # (standard NMS would keep it), as YOLACT.
    boxes = torch.tensor([[0.0, 0, 10, 10], [4, 0, 14, 10], [8, 0, 18, 10]])
    scores = torch.tensor([[0.9], [0.8], [0.7]])
    index, labels, _ = fast_nms(boxes, scores, iou_threshold=0.3, score_threshold=0.1)
    assert index.tolist() == [0] and labels.tolist() == [0]


def test_fast_nms_with_no_candidates_or_low_scores():
    index, labels, scores = fast_nms(torch.zeros(0, 4), torch.zeros(0, 3))
    assert index.shape == labels.shape == scores.shape == (0,)
    index, _, _ = fast_nms(_random_boxes(5, torch.Generator().manual_seed(1)), torch.full((5, 2), 0.05))
    assert index.numel() == 0


def _one_level(probs, centerness, boxes):
    """Inputs of `detect` for one level whose points sit at the boxes' centres (stride 1)."""
    points = (boxes[:, :2] + boxes[:, 2:]) / 2
    ltrb = torch.cat([points - boxes[:, :2], boxes[:, 2:] - points], dim=1)
    return dict(
        cls_logits=[torch.logit(probs)],
        box_regression=[ltrb],
        centerness=[torch.logit(centerness)],
        coefficients=[torch.arange(len(boxes), dtype=torch.float32)[:, None, None].expand(-1, 4, 2)],
        points=[points],
        strides=(1,),
        image_size=(100, 100),
    )


def test_standard_path_thresholds_raw_probability_then_multiplies_centerness():
    config = replace(preset("paper_r50_800"), num_classes=2)
    boxes = torch.tensor([[10.0, 10, 30, 30], [11, 11, 31, 31], [50, 50, 70, 70], [60, 10, 80, 30]])
    probs = torch.tensor([[0.9, 0.01], [0.8, 0.01], [0.01, 0.06], [0.04, 0.01]])
    centerness = torch.tensor([0.5, 0.9, 0.1, 0.9])
    found = detect(**_one_level(probs, centerness, boxes), config=config)
    # Box 0 (0.9 x 0.5) loses NMS to box 1 (0.8 x 0.9); box 2's raw 0.06 passes 0.05 (its score
    # 0.006 is kept); box 3's raw 0.04 does not, although 0.04 x 0.9 would.
    assert found.labels.tolist() == [1, 2]
    torch.testing.assert_close(found.scores, torch.tensor([0.8 * 0.9, 0.06 * 0.1]))
    torch.testing.assert_close(found.boxes, boxes[[1, 2]])
    torch.testing.assert_close(found.coefficients[:, 0, 0], torch.tensor([1.0, 2.0]))


def test_fast_path_multiplies_centerness_first():
    config = replace(preset("paper_r50_544"), num_classes=2)
    boxes = torch.tensor([[10.0, 10, 30, 30], [50, 50, 70, 70], [60, 10, 80, 30]])
    probs = torch.tensor([[0.9, 0.01], [0.01, 0.5], [0.3, 0.01]])
    centerness = torch.tensor([0.5, 0.1, 0.9])
    found = detect(**_one_level(probs, centerness, boxes), config=config)
    # 0.5 x 0.1 = 0.05 is below the 0.1 threshold once centerness is multiplied in.
    assert found.labels.tolist() == [1, 1]
    torch.testing.assert_close(found.scores, torch.tensor([0.45, 0.27]))


def test_detect_clips_boxes_to_the_image():
    config = replace(preset("paper_r50_800"), num_classes=1)
    inputs = _one_level(torch.tensor([[0.9]]), torch.tensor([0.9]), torch.tensor([[-10.0, 80, 40, 130]]))
    found = detect(**inputs, config=config)
    torch.testing.assert_close(found.boxes, torch.tensor([[0.0, 80, 40, 100]]))


def test_paste_masks_returns_probabilities_at_the_original_size():
    basis = torch.ones(2, 32, 32)  # stride-2 maps of a 64 x 64 padded input
    coefficients = torch.full((1, 4, 2), 1.5)  # logit 3 in every sub-region
    boxes = torch.tensor([[16.0, 16, 48, 48]])  # resized-input pixels
    masks = paste_masks(basis, coefficients, boxes, (2, 2), image_size=(64, 60), original_size=(128, 120))
    assert masks.shape == (1, 1, 128, 120) and masks.dtype == torch.float32
    assert abs(masks[0, 0, 64, 60].item() - torch.sigmoid(torch.tensor(3.0)).item()) < 1e-6
    assert masks[0, 0, :20].abs().max() == 0 and masks[0, 0, 110:].abs().max() == 0
    empty = paste_masks(basis, torch.zeros(0, 4, 2), torch.zeros(0, 4), (2, 2), (64, 60), (128, 120))
    assert empty.shape == (0, 1, 128, 120)


def test_boxes_go_back_to_original_pixels_and_are_clipped():
    boxes = torch.tensor([[10.0, 20, 60, 64]])
    out = scale_boxes_to_original(boxes, (0.5, 0.25), (200, 100))
    torch.testing.assert_close(out, torch.tensor([[20.0, 80, 100, 200]]))


def _paste_whole_maps(basis, coefficients, boxes, sub_regions, image_size, original_size):
    """paste_masks written plainly: upsample every whole map x2, crop the padding, resize."""
    from sipmask_ref.spatial_mask_prediction import assemble_masks

    masks = assemble_masks(basis, coefficients, boxes / 2, sub_regions)[:, None]  # [N, 1, H, W]
    masks = torch.nn.functional.interpolate(masks, scale_factor=2, mode="bilinear", align_corners=False)
    masks = masks[:, :, : image_size[0], : image_size[1]]
    return torch.nn.functional.interpolate(masks, size=original_size, mode="bilinear", align_corners=False)


def test_paste_masks_windows_equal_whole_map_upsampling():
    generator = torch.Generator().manual_seed(4)
    basis = torch.rand(3, 24, 32, generator=generator)  # a 48 x 64 padded input
    boxes = torch.tensor(
        [
            [0.0, 0.0, 64.0, 48.0],  # the whole padded input
            [-30.0, -20.0, 90.0, 70.0],  # larger than it
            [50.5, 30.25, 70.0, 60.0],  # over the bottom-right corner, partly in the padding
            [61.0, 45.0, 64.0, 48.0],  # only in the padding (the image is 44 x 60)
            [10.5, 10.0, 11.5, 30.0],  # no stride-2 pixel inside (5.25 <= x < 5.75)
            [5.0, 7.5, 21.0, 19.0],
            [33.3, 1.7, 47.9, 40.2],
        ]
    )
    coefficients = torch.randn(boxes.shape[0], 4, 3, generator=generator)
    for original_size in [(44, 60), (88, 120), (30, 41)]:
        masks = paste_masks(basis, coefficients, boxes, (2, 2), (44, 60), original_size)
        expected = _paste_whole_maps(basis, coefficients, boxes, (2, 2), (44, 60), original_size)
        assert masks.shape == expected.shape == (boxes.shape[0], 1, *original_size)
        torch.testing.assert_close(masks, expected, atol=1e-6, rtol=0)
        assert masks[3:5].abs().max() == 0  # boxes with no pixel in the image
