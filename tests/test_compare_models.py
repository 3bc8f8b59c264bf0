"""The three models of the comparison (sipmask_ref/compare/models.py): the Mask R-CNN builder on our
body + FPN, its checkpoints, the base configurations."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torchvision.models.detection import MaskRCNN

from sipmask_ref import compare, engine
from sipmask_ref.backbone import BackboneWithFPN
from sipmask_ref.config import preset
from sipmask_ref.model import SipMask
from sipmask_ref.reproduce import BASELINE


def _tiny_config(num_classes: int = 3):
    return dataclasses.replace(preset("cpu_tiny"), num_classes=num_classes)


# ----------------------------------------------------------------------------------------------------
# Mask R-CNN on our body + FPN
# ----------------------------------------------------------------------------------------------------
def test_mask_rcnn_builder_follows_the_model_contract() -> None:
    torch.manual_seed(0)
    config = _tiny_config(3)
    model = compare.build_mask_rcnn(config)
    assert isinstance(model, MaskRCNN) and isinstance(model.backbone, compare.PyramidAdapter)
    assert isinstance(model.backbone.body_fpn, BackboneWithFPN) and model.backbone.out_channels == 64
    assert model.roi_heads.box_predictor.cls_score.out_features == 4  # C + 1 with the background
    assert model.rpn.head.cls_logits.out_channels == 3  # one size x three ratios per level
    # the same body + FPN as SipMask: equal parameter counts
    assert compare.count_parameters(model.backbone) == compare.count_parameters(SipMask(config).backbone)

    features = model.backbone(torch.rand(1, 3, 128, 128))  # P3..P7 under torchvision's names
    assert list(features) == ["0", "1", "2", "3", "pool"]
    assert [f.shape[-1] for f in features.values()] == [16, 8, 4, 2, 1]

    images = [torch.rand(3, 96, 128), torch.rand(3, 128, 128)]  # [3, H, W] in [0, 1]
    masks = torch.zeros(2, 96, 128, dtype=torch.uint8)
    masks[0, 10:40, 20:60], masks[1, 50:90, 70:120] = 1, 1
    targets = [
        {
            "boxes": torch.tensor([[20.0, 10.0, 60.0, 40.0], [70.0, 50.0, 120.0, 90.0]]),
            "labels": torch.tensor([1, 3]),
            "masks": masks,
        },
        {
            "boxes": torch.zeros(0, 4),
            "labels": torch.zeros(0, dtype=torch.int64),  # a negative image
            "masks": torch.zeros(0, 128, 128, dtype=torch.uint8),
        },
    ]
    model.train()
    losses = model(images, targets)
    assert {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"} == set(
        losses
    )
    assert all(torch.isfinite(v) and v.dim() == 0 for v in losses.values())
    sum(losses.values()).backward()

    model.eval()
    with torch.no_grad():
        outputs = model(images)
    for image, output in zip(images, outputs, strict=True):
        assert {"boxes", "labels", "scores", "masks"} <= set(output)
        n = len(output["scores"])
        assert output["boxes"].shape == (n, 4) and output["labels"].shape == (n,)
        assert output["masks"].shape == (n, 1, *image.shape[-2:])  # probabilities at the image size
        assert n == 0 or (0 <= float(output["masks"].min()) and float(output["masks"].max()) <= 1)
        assert n == 0 or (1 <= int(output["labels"].min()) and int(output["labels"].max()) <= 3)


def test_load_mask_rcnn_prefers_the_averaged_weights(tmp_path: Path) -> None:
    config = _tiny_config(2)
    torch.manual_seed(0)
    live = compare.build_mask_rcnn(config).state_dict()
    averaged = {k: v + 1 if v.is_floating_point() else v for k, v in live.items()}
    state = {
        "format": engine.CHECKPOINT_FORMAT,
        "iteration": 3,
        "model": live,
        "ema": averaged,
        "config": dataclasses.asdict(config),
    }
    engine.save_checkpoint(state, tmp_path / "a.pt")
    loaded = compare.load_mask_rcnn(tmp_path / "a.pt")
    assert not loaded.training
    name = "roi_heads.box_head.fc6.weight"
    assert torch.equal(loaded.state_dict()[name], averaged[name])
    engine.save_checkpoint(state | {"ema": None}, tmp_path / "b.pt")
    assert torch.equal(compare.load_mask_rcnn(tmp_path / "b.pt").state_dict()[name], live[name])


def test_base_configs_of_the_three_models() -> None:
    specs = {spec.name: spec for spec in compare.MODELS}
    assert list(specs) == ["sipmask", "yolact_baseline", "mask_rcnn"]
    sipmask = compare.base_config(specs["sipmask"], 6)
    assert sipmask == dataclasses.replace(preset("cpu_tiny"), num_classes=6)
    baseline = compare.base_config(specs["yolact_baseline"], 6)
    assert specs["yolact_baseline"].variant is BASELINE
    assert baseline == dataclasses.replace(sipmask, **BASELINE.switches())
    assert (baseline.sub_regions, baseline.basis_source) == ((1, 1), "p3")
    mask_rcnn = compare.base_config(specs["mask_rcnn"], 6)
    assert mask_rcnn.lr == compare.MASK_RCNN_LR and mask_rcnn == dataclasses.replace(sipmask, lr=mask_rcnn.lr)
    assert compare.base_config(specs["mask_rcnn"], 6, lr=1e-3).lr == 1e-3
    with pytest.raises(ValueError, match="learning rate"):
        compare.base_config(specs["sipmask"], 6, lr=0.0)
