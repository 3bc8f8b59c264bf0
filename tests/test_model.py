"""The whole detector: training losses, the eval output contract, teaching outputs, overfitting."""

from dataclasses import replace

import pytest
import torch

from conftest import without_gradient
from sipmask_ref.config import preset
from sipmask_ref.model import SipMask, basis_size_gt_masks

LOSS_KEYS = {"loss_cls", "loss_box", "loss_centerness", "loss_mask"}


def _scene(height, width, squares, shade_seed=0):
    """An image with filled squares (x, y, side, label) and its target (data contract)."""
    generator = torch.Generator().manual_seed(shade_seed)
    image = torch.full((3, height, width), 0.1)
    masks = torch.zeros(len(squares), height, width, dtype=torch.uint8)
    boxes, labels = [], []
    for k, (x, y, side, label) in enumerate(squares):
        image[:, y : y + side, x : x + side] = torch.rand(3, 1, 1, generator=generator) * 0.8 + 0.2
        masks[k, y : y + side, x : x + side] = 1
        boxes.append([x, y, x + side, y + side])
        labels.append(label)
    target = {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "masks": masks,
        "image_id": 7,
        "iscrowd": torch.zeros(len(squares), dtype=torch.uint8),
    }
    return image, target


def _tiny(**changes):
    torch.manual_seed(0)
    return SipMask(replace(preset("cpu_tiny"), **changes))


def test_paper_r50_544_trains_on_cpu_one_image():
    torch.manual_seed(0)
    model = SipMask(replace(preset("paper_r50_544"), pretrained_backbone=False)).train()
    image, target = _scene(544, 544, [(40, 60, 200, 3), (240, 60, 200, 3), (400, 400, 40, 80)])
    losses = model([image], [target])
    assert set(losses) == LOSS_KEYS
    assert all(v.ndim == 0 and v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    assert losses["loss_mask"] > 0  # the initial one-stride boxes already reach the mask loss
    sum(losses.values()).backward()
    head_grad = model.head.spatial_coefficients.conv.weight.grad
    assert head_grad is not None and head_grad.abs().sum() > 0
    assert model.basis_masks.predict.weight.grad.abs().sum() > 0
    assert model.basis_masks.refine is None  # the paper's branch: no stride-4 refinement
    assert model.backbone.body.stages[1][0].conv1.weight.grad is not None
    assert model.backbone.body.stem[0].weight.grad is None  # frozen stem
    assert without_gradient(model) == []  # DistributedDataParallel needs no find_unused_parameters


@pytest.mark.parametrize(
    "changes",
    [
        {},  # with the stride-4 basis refinement (cpu_tiny's basis_detail)
        {
            "sub_regions": (1, 1),
            "basis_source": "p3",
            "feature_alignment": False,
            "use_gn": False,
            "basis_detail": False,
        },
    ],
)
def test_every_trainable_parameter_gets_a_gradient_with_or_without_positives(changes):
    """engine.train wraps the model in DDP without find_unused_parameters: one backward must reach every
    trainable parameter, also for a batch with no positive location (no object, or one too small)."""
    image, target = _scene(128, 128, [(20, 20, 40, 2), (70, 60, 30, 5)])
    empty_image, empty_target = _scene(100, 120, [])
    tiny_image, tiny_target = _scene(1000, 1000, [(600, 600, 1, 2)])  # 0.13 px after resize: no positive
    for images, targets in [([image], [target]), ([empty_image, tiny_image], [empty_target, tiny_target])]:
        model = _tiny(**changes).train()
        sum(model(images, targets).values()).backward()
        assert without_gradient(model) == []


def test_eval_output_contract_at_the_original_non_square_size():
    model = _tiny(score_threshold=0.0, input_size=(160, 96), keep_ratio=True).eval()
    images = [torch.rand(3, 90, 150), torch.rand(3, 120, 100)]
    with torch.no_grad():
        results = model(images)
    assert len(results) == 2
    for image, result in zip(images, results, strict=True):
        height, width = image.shape[1:]
        assert set(result) == {"boxes", "labels", "scores", "masks"}
        n = result["boxes"].shape[0]
        assert n == 100  # max_detections, with every candidate above threshold 0
        assert result["boxes"].shape == (n, 4) and result["boxes"].dtype == torch.float32
        assert result["labels"].shape == (n,) and result["labels"].dtype == torch.int64
        assert result["scores"].shape == (n,) and result["scores"].dtype == torch.float32
        assert result["masks"].shape == (n, 1, height, width) and result["masks"].dtype == torch.float32
        assert result["labels"].min() >= 1 and result["labels"].max() <= 6
        assert (result["scores"][:-1] >= result["scores"][1:]).all()
        boxes = result["boxes"]
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= width).all()
        assert (boxes[:, 1] >= 0).all() and (boxes[:, 3] <= height).all()
        assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
        assert result["masks"].min() >= 0 and result["masks"].max() <= 1


def test_zero_detections_give_empty_tensors_of_the_right_shapes():
    model = _tiny().eval()  # untrained: prob 0.01 x centerness ~0.5 < 0.05
    with torch.no_grad():
        (result,) = model([torch.rand(3, 70, 110)])
    assert result["boxes"].shape == (0, 4) and result["boxes"].dtype == torch.float32
    assert result["labels"].shape == (0,) and result["labels"].dtype == torch.int64
    assert result["scores"].shape == (0,)
    assert result["masks"].shape == (0, 1, 70, 110)


def test_images_without_objects_train():
    model = _tiny().train()
    empty_image, empty_target = _scene(100, 120, [])
    assert empty_target["boxes"].shape == (0, 4) and empty_target["masks"].shape == (0, 100, 120)
    losses = model([empty_image], [empty_target])
    assert set(losses) == LOSS_KEYS and all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_cls"] > 0
    assert losses["loss_box"] == 0 and losses["loss_centerness"] == 0 and losses["loss_mask"] == 0
    sum(losses.values()).backward()

    image, target = _scene(128, 128, [(20, 20, 40, 2)])
    mixed = model([image, empty_image], [target, empty_target])
    assert all(torch.isfinite(v) for v in mixed.values()) and mixed["loss_box"] > 0


def test_degenerate_boxes_after_resize_are_handled():
    model = _tiny().train()
    image, target = _scene(1000, 1000, [(100, 100, 300, 1), (600, 600, 1, 2)])
    target["boxes"] = torch.cat([target["boxes"], torch.tensor([[500.0, 500, 500, 700]])])  # zero width
    target["labels"] = torch.cat([target["labels"], torch.tensor([3])])
    target["masks"] = torch.cat([target["masks"], torch.zeros(1, 1000, 1000, dtype=torch.uint8)])
    prepared = model.preprocess([image], [target])
    assert prepared.targets[0]["boxes"].shape == (2, 4)  # the zero-width box is dropped
    assert prepared.targets[0]["masks"].shape == (2, 128, 128)
    losses = model([image], [target])  # the 1-pixel square becomes 0.13 px: no positive
    assert all(torch.isfinite(v) for v in losses.values())


def test_bad_targets_raise_clear_errors():
    model = _tiny().train()
    image, target = _scene(64, 64, [(10, 10, 20, 1)])
    with pytest.raises(ValueError, match="targets are required"):
        model([image])
    bad_box = dict(target, boxes=torch.tensor([[30.0, 10, 10, 30]]))
    with pytest.raises(ValueError, match=r"image_id 7.*x2 >= x1"):
        model([image], [bad_box])
    with pytest.raises(ValueError, match=r"labels must be in 1\.\.6"):
        model([image], [dict(target, labels=torch.tensor([0]))])
    with pytest.raises(ValueError, match="masks"):
        model([image], [dict(target, masks=target["masks"][:, :32])])
    with pytest.raises(ValueError, match=r"images\[0\] must be a float tensor"):
        model([image[0]], [target])


@pytest.mark.parametrize(
    "changes",
    [
        {"sub_regions": (1, 1), "basis_source": "p3", "alignment_weight": "none", "feature_alignment": False},
        {"sub_regions": (3, 3), "alignment_weight": "cls", "use_gn": False, "nms": "standard"},
    ],
)
def test_ablation_switches_train_and_predict(changes):
    model = _tiny(**changes).train()
    image, target = _scene(128, 128, [(20, 20, 40, 2), (60, 20, 40, 2)])
    losses = model([image], [target])
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    model.eval()
    model.config = replace(model.config, score_threshold=0.0)
    with torch.no_grad():
        (result,) = model([image])
    assert result["masks"].shape[1:] == (1, 128, 128)


def test_training_and_inference_under_autocast():
    model = _tiny(score_threshold=0.0).train()
    image, target = _scene(100, 150, [(20, 20, 40, 1)])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model([image], [target])
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        (result,) = model([image])
    assert result["masks"].dtype == torch.float32 and result["boxes"].dtype == torch.float32


def test_forward_intermediates_expose_basis_masks_and_quadrant_coefficients():
    model = _tiny(score_threshold=0.0, max_detections=5).eval()
    image = torch.rand(3, 128, 128)
    inside = model.forward_intermediates([image])
    assert inside["images"].shape == (1, 3, 128, 128)
    assert inside["basis_masks"].shape == (1, 16, 64, 64)
    assert [f.shape[-1] for f in inside["features"]] == [16, 8, 4, 2, 1]
    assert inside["coefficients"][0].shape == (1, 4, 16, 16, 16)
    found = inside["detections"][0]
    assert found["boxes"].shape == (5, 4) and found["coefficients"].shape == (5, 4, 16)
    assert found["sub_region_maps"].shape == (5, 4, 64, 64) and found["masks"].shape == (5, 64, 64)
    # The boxes in basis-map pixels are the returned boxes (original = input pixels here) / 2.
    torch.testing.assert_close(found["boxes"] * 2, inside["results"][0]["boxes"])


def test_gt_masks_are_halved_like_the_authors():
    masks = torch.zeros(1, 8, 8, dtype=torch.uint8)
    masks[0, 0:2, 0:2] = 1  # full 2 x 2 block -> 1
    masks[0, 0:2, 2:4] = torch.tensor([[1, 1], [1, 0]], dtype=torch.uint8)  # 3 of 4 -> 1
    masks[0, 2:4, 0:2] = torch.tensor([[1, 1], [0, 0]], dtype=torch.uint8)  # 2 of 4 -> 0
    half = basis_size_gt_masks(masks, (5, 4))  # padded with a zero row
    assert half.shape == (1, 5, 4)
    assert half[0, 0, :2].tolist() == [1.0, 1.0] and half[0, 1, 0] == 0 and half[0, 4].sum() == 0


def test_overfits_two_touching_squares_of_one_class():
    """Two touching same-class squares per image: loss falls and each predicted mask fits its GT.

    Recipe: cpu_tiny as it is, SGD with the preset's lr 0.01 / momentum 0.9 / weight decay, no
    warm-up and no gradient clipping, 2 images in one batch, 150 iterations (~15 s on one core).
    """
    torch.manual_seed(0)
    config = preset("cpu_tiny")
    model = SipMask(config).train()
    scenes = [
        _scene(128, 128, [(20, 40, 40, 1), (60, 40, 40, 1)], shade_seed=1),
        _scene(128, 128, [(30, 20, 30, 1), (60, 20, 30, 1)], shade_seed=2),
    ]
    images, targets = [s[0] for s in scenes], [s[1] for s in scenes]
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    history = []
    for _ in range(150):
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    assert sum(history[-10:]) / 10 < 0.4 * history[0]

    model.eval()
    with torch.no_grad():
        results = model(images)
    for result, target in zip(results, targets, strict=True):
        predicted = result["masks"][:, 0] > config.mask_threshold  # [N, H, W]
        truth = target["masks"].bool()  # [G, H, W]
        intersection = (predicted[:, None] & truth[None]).flatten(2).sum(-1)
        union = (predicted[:, None] | truth[None]).flatten(2).sum(-1).clamp(min=1)
        best_iou = (intersection / union).max(dim=0).values  # [G]
        assert (best_iou > 0.5).all(), best_iou
        assert (result["labels"][:2] == 1).all()
