"""geometry.py: box and mask IoU, the tightest box of a mask, RLE encoding; the names kept elsewhere."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from torchvision.ops import box_iou

from sipmask_ref import explorer, geometry, model
from sipmask_ref.data.coco import decode_segmentation
from sipmask_ref.eval import coco as eval_coco


def test_paired_box_iou_is_the_diagonal_of_torchvisions():
    a = torch.tensor([[0.0, 0, 10, 10], [5, 5, 15, 25]])
    b = torch.tensor([[5.0, 0, 15, 10], [5, 5, 15, 25]])
    torch.testing.assert_close(geometry.paired_box_iou(a, b), box_iou(a, b).diagonal())
    empty = torch.tensor([[3.0, 3, 3, 3]])
    assert geometry.paired_box_iou(empty, empty).tolist() == [0.0]  # not NaN


def test_pairwise_box_iou_matches_torchvision_in_every_group():
    generator = torch.Generator().manual_seed(0)
    corners = torch.rand(3, 7, 2, generator=generator) * 50
    boxes = torch.cat([corners, corners + torch.rand(3, 7, 2, generator=generator) * 30], dim=2)  # [C, N, 4]
    found = geometry.pairwise_box_iou(boxes.clone())
    for c in range(3):
        torch.testing.assert_close(found[c], box_iou(boxes[c], boxes[c]))


def test_mask_iou_and_mask_box():
    a = torch.zeros(6, 8, dtype=torch.bool)
    b = torch.zeros(6, 8, dtype=torch.bool)
    a[1:3, 2:6] = True  # 8 pixels
    b[2:4, 2:6] = True  # 8 pixels, 4 shared
    assert geometry.mask_iou(a, b) == pytest.approx(4 / 12)
    assert geometry.mask_iou(a & False, b & False) == 0.0
    assert geometry.mask_box(a.numpy()) == (2, 1, 6, 3)
    assert geometry.mask_box(np.zeros((4, 4), dtype=bool)) is None
    x, y, w, h = mask_utils.toBbox(geometry.encode_mask(a)).tolist()
    assert (x, y, x + w, y + h) == geometry.mask_box(a.numpy())


def test_encode_masks_round_trips_and_matches_pycocotools():
    generator = torch.Generator().manual_seed(1)
    probabilities = torch.rand(3, 1, 9, 11, generator=generator)
    rles = geometry.encode_masks(probabilities, threshold=0.4)
    for rle, p in zip(rles, probabilities[:, 0], strict=True):
        assert rle["size"] == [9, 11] and isinstance(rle["counts"], str)
        np.testing.assert_array_equal(mask_utils.decode(rle), (p > 0.4).numpy().astype(np.uint8))
    single = (probabilities[0, 0] > 0.4).numpy()
    direct = mask_utils.encode(np.asfortranarray(single.astype(np.uint8)))
    assert geometry.encode_mask(single)["counts"] == direct["counts"].decode("ascii") == rles[0]["counts"]
    assert geometry.encode_mask(torch.from_numpy(single)) == geometry.encode_mask(single)
    assert geometry.encode_masks(torch.zeros(0, 1, 4, 4), 0.5) == []
    with pytest.raises(ValueError, match=r"\[N, 1, H, W\] or \[N, H, W\]"):
        geometry.encode_masks(torch.zeros(2, 3, 4, 4), 0.5)


def test_decode_segmentation_names_a_malformed_one():
    mask = np.zeros((5, 6), dtype=np.uint8)
    mask[1:4, 2:5] = 1
    np.testing.assert_array_equal(decode_segmentation(geometry.encode_mask(mask), 5, 6), mask)
    with pytest.raises(ValueError, match="annotation 7: cannot decode segmentation"):
        decode_segmentation({"size": [5, 6], "counts": 3.5}, 5, 6, "annotation 7")


def test_the_old_homes_keep_their_names():
    assert model.paired_box_iou is geometry.paired_box_iou
    assert explorer.mask_iou is geometry.mask_iou
    assert eval_coco.encode_masks is geometry.encode_masks
