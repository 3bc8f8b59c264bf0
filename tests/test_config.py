"""SipMaskConfig presets and field validation."""

import dataclasses
from dataclasses import replace

import pytest

from sipmask_ref.config import PRESETS, SipMaskConfig, preset


def test_every_preset_constructs_and_is_frozen():
    assert PRESETS == (
        "paper_r50_800",
        "paper_r101_800",
        "paper_r50_544",
        "paper_r101_544",
        "cpu_tiny",
        "paper_vis_r50",
        "cpu_tiny_vis",
    )
    for name in PRESETS:
        config = preset(name)
        assert isinstance(config, SipMaskConfig)
        assert config.num_sub_regions == 4
        assert config.strides == (8, 16, 32, 64, 128)
    first = preset("cpu_tiny")
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.num_basis = 8  # type: ignore[misc]
    changed = dataclasses.replace(first, num_basis=8)  # a changed config is a new, validated one
    assert (changed.num_basis, first.num_basis, preset("cpu_tiny").num_basis) == (8, 16, 16)
    with pytest.raises(ValueError, match="num_basis"):
        dataclasses.replace(first, num_basis=0)


def test_preset_table_matches_the_authors_settings():
    r50 = preset("paper_r50_800")
    assert (r50.backbone, r50.stacked_convs, r50.use_gn, r50.num_basis) == ("resnet50", 4, True, 32)
    assert (r50.input_size, r50.keep_ratio, r50.nms) == ((1333, 800), True, "standard")
    assert r50.regress_ranges[0] == (-1.0, 64.0) and r50.center_sampling_radius == 1.5
    assert (r50.lr, r50.bias_lr_factor, r50.warmup_method) == (0.01, 2.0, "constant")
    assert len(r50.lr_steps) == 2 and r50.lr_steps[1] < r50.max_iters
    assert preset("paper_r101_800").backbone == "resnet101"

    fast = preset("paper_r50_544")
    assert (fast.stacked_convs, fast.input_size, fast.keep_ratio) == (2, (544, 544), False)
    assert (fast.nms, fast.score_threshold, fast.nms_iou, fast.fast_nms_top_k) == ("fast", 0.1, 0.5, 200)
    assert fast.max_detections == 100 and fast.mask_threshold == 0.4
    assert preset("paper_r101_544").backbone == "resnet101"

    tiny = preset("cpu_tiny")
    assert (tiny.backbone, tiny.pretrained_backbone, tiny.fpn_channels) == ("tiny", False, 64)
    assert (tiny.input_size, tiny.num_classes, tiny.nms) == ((128, 128), 6, "fast")
    assert tiny.regress_ranges[:3] == ((-1.0, 32.0), (32.0, 64.0), (64.0, 128.0))

    vis = preset("paper_vis_r50")  # the authors' VIS recipe: SGD lr 0.005, bias lr x2, no bias decay
    assert (vis.optimizer, vis.lr, vis.bias_lr_factor, vis.bias_weight_decay) == ("sgd", 0.005, 2.0, 0.0)
    assert (vis.warmup_method, vis.warmup_iters, vis.warmup_factor) == ("linear", 1000, 1.0 / 80)


def test_unknown_preset_lists_the_names():
    with pytest.raises(ValueError, match="paper_r50_544"):
        preset("r50")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("sub_regions", (0, 2), "sub_regions must be a positive int"),
        ("sub_regions", (2.0, 2), "sub_regions must be a positive int"),
        ("sub_regions", (2, 2, 2), r"sub_regions must be \(k_h, k_w\)"),
        ("basis_source", "p4", "basis_source must be one of"),
        ("alignment_weight", "iou", "alignment_weight must be one of"),
        ("feature_alignment", 1, "feature_alignment must be True or False"),
        ("backbone", "vgg16", "backbone must be one of"),
        ("num_basis", 0, "num_basis must be a positive int"),
        ("stacked_convs", True, "stacked_convs must be a positive int"),
        ("nms", "soft", "nms must be one of"),
        ("score_threshold", 1.5, r"score_threshold must lie in \[0, 1\]"),
        ("regress_ranges", ((0, 64),) * 4, "one \\(lo, hi\\) per level"),
        ("lr_steps", (200, 100), "lr_steps must be increasing"),
        ("size_divisible", 16, "multiple of 32"),
    ],
)
def test_bad_fields_are_rejected_with_the_field_name(field, value, message):
    with pytest.raises(ValueError, match=message):
        replace(preset("cpu_tiny"), **{field: value})


def test_tiny_backbone_cannot_be_pretrained():
    with pytest.raises(ValueError, match="pretrained_backbone"):
        replace(preset("cpu_tiny"), pretrained_backbone=True)


def test_ablation_switches_accept_every_documented_value_and_lists_become_tuples():
    for sub_regions in [(1, 1), (1, 2), (2, 1), (3, 3)]:
        assert replace(preset("cpu_tiny"), sub_regions=list(sub_regions)).sub_regions == sub_regions
    for source in ("p3", "p3-p5"):
        assert replace(preset("cpu_tiny"), basis_source=source).basis_source == source
    for mode in ("none", "cls", "loc", "cls+loc"):
        assert replace(preset("cpu_tiny"), alignment_weight=mode).alignment_weight == mode
    assert replace(preset("cpu_tiny"), feature_alignment=False).feature_alignment is False
    config = replace(preset("cpu_tiny"), input_size=[96, 64])
    assert config.input_size == (96, 64) and config == replace(preset("cpu_tiny"), input_size=(96, 64))
