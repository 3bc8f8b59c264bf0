"""Backbone + FPN: P3-P7 strides and channels, frozen stages, the offline weights error."""

import copy
import os
import urllib.error
from dataclasses import replace

import pytest
import torch
import torch.hub
from torchvision.ops.misc import FrozenBatchNorm2d

from sipmask_ref import backbone
from sipmask_ref.backbone import ResNetBody, build_backbone, load_imagenet_weights
from sipmask_ref.config import preset


def _strides(features, height, width):
    return [(height // f.shape[-2], width // f.shape[-1]) for f in features]


def test_tiny_backbone_gives_p3_to_p7_at_strides_8_to_128():
    torch.manual_seed(0)
    backbone = build_backbone(preset("cpu_tiny"))
    features = backbone(torch.randn(2, 3, 128, 256))
    assert len(features) == 5
    assert _strides(features, 128, 256) == [(8, 8), (16, 16), (32, 32), (64, 64), (128, 128)]
    assert all(f.shape[:2] == (2, 64) for f in features)


@pytest.mark.parametrize("arch", ["tiny", "resnet18"])
def test_backbone_also_returns_the_bodys_c2_at_stride_4(arch):
    torch.manual_seed(0)
    config = replace(preset("cpu_tiny"), backbone=arch)
    backbone = build_backbone(config).eval()
    images = torch.randn(1, 3, 64, 96)
    features, c2 = backbone.forward_with_c2(images)
    assert c2.shape == (1, backbone.body.c2_channels, 16, 24)
    assert backbone.body.c2_channels == (32 if arch == "tiny" else 64)
    for a, b in zip(features, backbone(images), strict=True):
        torch.testing.assert_close(a, b)


def test_tiny_body_in_channels_last_computes_what_the_default_format_does():
    """TinyBody's first two stages run channels-last (a speed choice): the same C2-C5 and the same
    gradients as every stage in the default format, with the same weights; C2-C5 come back in the
    default format."""
    torch.manual_seed(0)
    fast = backbone.TinyBody().train()
    plain = copy.deepcopy(fast).use_channels_last(0)
    first_conv = fast.stages[0][0][0].weight
    assert first_conv.is_contiguous(memory_format=torch.channels_last) and not first_conv.is_contiguous()
    assert plain.stages[0][0][0].weight.is_contiguous()
    images = torch.randn(2, 3, 64, 96)
    outputs = fast(images)
    expected = plain(images)
    for a, b in zip(outputs, expected, strict=True):
        assert a.is_contiguous()
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    weights = [torch.randn_like(b) for b in expected]
    sum((o * w).sum() for o, w in zip(outputs, weights, strict=True)).backward()
    sum((o * w).sum() for o, w in zip(expected, weights, strict=True)).backward()
    for (name, a), b in zip(fast.named_parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-3, atol=1e-3, msg=name)


def test_resnet_backbone_shapes_frozen_stem_and_stage1():
    torch.manual_seed(0)
    config = replace(preset("paper_r50_544"), backbone="resnet18", pretrained_backbone=False, fpn_channels=32)
    backbone = build_backbone(config)
    features = backbone(torch.randn(1, 3, 64, 96))
    assert [tuple(f.shape) for f in features] == [
        (1, 32, 8, 12),
        (1, 32, 4, 6),
        (1, 32, 2, 3),
        (1, 32, 1, 2),
        (1, 32, 1, 1),
    ]
    body = backbone.body
    assert isinstance(body, ResNetBody)
    assert not any(p.requires_grad for p in body.stem.parameters())
    assert not any(p.requires_grad for p in body.stages[0].parameters())
    assert all(p.requires_grad for p in body.stages[1].parameters())
    assert any(isinstance(m, FrozenBatchNorm2d) for m in body.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in body.modules())
    # P6 is computed from P5 (D channels), not from C5.
    assert backbone.fpn.extra_blocks.p6.in_channels == 32 and backbone.fpn.extra_blocks.use_P5


def test_frozen_stages_stay_in_eval_mode_with_trainable_batchnorm():
    config = replace(
        preset("paper_r50_544"),
        backbone="resnet18",
        pretrained_backbone=False,
        frozen_bn=False,
        frozen_stages=1,
    )
    backbone = build_backbone(config).train()
    assert not backbone.body.stem.training and not backbone.body.stages[0].training
    assert backbone.body.stages[1].training


def test_offline_weights_give_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "urlopen", no_network)
    with pytest.raises(RuntimeError) as info:
        load_imagenet_weights("resnet18")
    message = str(info.value)
    expected_file = os.path.join(str(tmp_path), "hub", "checkpoints", "resnet18-f37072fd.pth")
    assert "Could not fetch the ImageNet weights of resnet18" in message
    assert expected_file in message
    assert "TORCH_HOME" in message and "pretrained_backbone=False" in message
    assert info.value.__suppress_context__  # raised `from None`: no urllib traceback chain

    with pytest.raises(RuntimeError, match="pretrained_backbone=False"):
        build_backbone(replace(preset("paper_r50_544"), backbone="resnet18"))


def test_frozen_batch_norm_equals_torchvisions_and_keeps_its_state_dict():
    ours, theirs = backbone.FrozenBatchNorm2d(8), FrozenBatchNorm2d(8)  # ours is a subclass of torchvision's
    generator = torch.Generator().manual_seed(0)
    for buffer in theirs.buffers():
        buffer.copy_(torch.rand(8, generator=generator) + 0.5)
    ours.load_state_dict(theirs.state_dict())  # the same keys
    x = torch.randn(2, 8, 5, 7, generator=generator, requires_grad=True)
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-6)
    ours(x).sum().backward()  # gradients reach the input, nothing else learns
    assert x.grad is not None and not any(p.requires_grad for p in ours.parameters())
