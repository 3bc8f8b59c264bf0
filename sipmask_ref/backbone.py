"""§3 Backbone and neck: a ResNet (or a tiny CNN) and an FPN giving P3-P7.

"We adopt ResNet [22] (ResNet50/ResNet101) with FPN pre-trained on ImageNet [38] as the backbone"
(§4.1). The FPN takes C3-C5 (strides 8, 16, 32) and adds P6 = conv3x3/2(P5) and
P7 = conv3x3/2(ReLU(P6)), so the head sees five levels with strides 8, 16, 32, 64, 128.

Deliberate differences from the authors' code:
- torchvision's pytorch-style ResNet (stride in the 3x3 conv of a bottleneck) with torchvision's
  ImageNet weights, fed RGB images normalised by torchvision's ImageNet mean/std; the authors use a
  caffe-style ResNet (stride in the 1x1 conv) fed BGR images in [0, 255] minus a caffe mean.
- torchvision's `FeaturePyramidNetwork` initialises its convs with kaiming-uniform (a=1); mmdet's
  FPN uses xavier-uniform.
- A 'tiny' backbone of our own (below) that trains from scratch on a CPU in minutes.

Both bodies also return C2 (stride 4), which the FPN does not use: the optional stride-4 refinement
of the basis masks reads it (`SipMaskConfig.basis_detail`, basis_masks.py).
"""

from __future__ import annotations

import http.client
import os
from collections import OrderedDict
from urllib.parse import urlparse

import torch
import torchvision
from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops import misc as torchvision_misc
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from .config import SipMaskConfig

# Channels of C2, C3, C4, C5 (outputs of ResNet stages 1, 2, 3, 4).
RESNET_CHANNELS = {  # C2, C3, C4, C5
    "resnet18": (64, 128, 256, 512),
    "resnet34": (64, 128, 256, 512),
    "resnet50": (256, 512, 1024, 2048),
    "resnet101": (256, 512, 1024, 2048),
}


def load_imagenet_weights(arch: str) -> dict[str, Tensor]:
    """torchvision's ImageNet state dict of `arch` ('resnet50', ...), downloaded once and cached.

    The file is cached in `<torch hub dir>/checkpoints` (the hub dir is `$TORCH_HOME/hub`, by
    default `~/.cache/torch/hub`). Offline, a clear RuntimeError says where to put the file.
    """
    weights = torchvision.models.get_model_weights(arch).IMAGENET1K_V1
    try:
        state_dict: dict[str, Tensor] = weights.get_state_dict(progress=True, check_hash=True)
        return state_dict
    except (OSError, http.client.HTTPException) as error:  # URLError and timeouts are OSErrors
        checkpoint_dir = os.path.join(torch.hub.get_dir(), "checkpoints")
        file_name = os.path.basename(urlparse(weights.url).path)
        raise RuntimeError(
            f"Could not fetch the ImageNet weights of {arch} from {weights.url} "
            f"({type(error).__name__}: {error}).\n"
            f"  - To use them offline, download that file elsewhere and place it at "
            f"{os.path.join(checkpoint_dir, file_name)} (torchvision's cache; set TORCH_HOME to "
            f"move the cache, the file then goes to $TORCH_HOME/hub/checkpoints/{file_name}).\n"
            f"  - Or train without them: SipMaskConfig(pretrained_backbone=False) (random init; "
            f"expect much lower accuracy on COCO; with random init also set frozen_bn=False, "
            f"frozen_stages=0 so that BatchNorm and the stem can learn)."
        ) from None


class FrozenBatchNorm2d(torchvision_misc.FrozenBatchNorm2d):  # type: ignore[misc]  # torchvision is untyped
    """torchvision's FrozenBatchNorm2d (same buffers, same state dict) computed in one fused pass.

    y = (x - running_mean) / sqrt(running_var + eps) * weight + bias, with nothing learned or updated.
    torchvision's version writes it as x * scale + shift, two passes over the feature map; the
    eval-mode `batch_norm` kernel does the same arithmetic in one (about 5% of a ResNet-50 forward on a
    CPU). tests/test_backbone.py checks the two agree.
    """

    def forward(self, x: Tensor) -> Tensor:
        return torch.nn.functional.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, training=False, eps=self.eps
        )


class ResNetBody(nn.Module):
    """A torchvision ResNet cut after stage 4, returning C2, C3, C4, C5 (strides 4, 8, 16, 32).

    As the authors: the stem and the first `frozen_stages` stages get no gradient, and BatchNorm is
    frozen (FrozenBatchNorm2d keeps ImageNet statistics and affine parameters fixed).
    """

    def __init__(self, arch: str, pretrained: bool, frozen_stages: int = 1, frozen_bn: bool = True) -> None:
        super().__init__()
        norm_layer = FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d
        resnet = getattr(torchvision.models, arch)(weights=None, norm_layer=norm_layer)
        if pretrained:
            resnet.load_state_dict(load_imagenet_weights(arch))
        self.stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool)
        self.stages = nn.ModuleList([resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4])
        self.c2_channels, *c3_to_c5 = RESNET_CHANNELS[arch]
        self.out_channels = tuple(c3_to_c5)  # of C3, C4, C5: what the FPN reads
        self.frozen_modules = [self.stem, *self.stages[:frozen_stages]] if frozen_stages > 0 else []
        for module in self.frozen_modules:
            module.requires_grad_(False)

    def train(self, mode: bool = True) -> ResNetBody:
        """Frozen stages stay in eval mode (their BatchNorm statistics must not move)."""
        super().train(mode)
        for module in self.frozen_modules:
            module.eval()
        return self

    def forward(self, images: Tensor) -> list[Tensor]:
        x = self.stem(images)  # stride 4
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features  # C2, C3, C4, C5


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class TinyBody(nn.Module):
    """A small from-scratch CNN with the ResNet interface: C2, C3, C4, C5 at strides 4, 8, 16, 32.

    Five stages of two conv3x3-BN-ReLU blocks (the first with stride 2), 32-256 channels. About
    1.2 M parameters; at 128x128 input a forward pass costs a few milliseconds on a CPU.
    Not in the paper: it exists so that the whole method can be trained and inspected on a CPU.

    The first `channels_last_stages` stages (by default 2: the 64x64 and 32x32 maps at 128x128
    input) run in the channels-last memory format, weights included. It is the same function, but
    on a CPU their forward + backward is faster than in the default format (benchmarks/
    train_step.py), and the later stages, on small maps, are not. C2-C5 are returned in the
    default format.
    """

    def __init__(
        self, widths: tuple[int, ...] = (32, 32, 64, 128, 256), channels_last_stages: int = 2
    ) -> None:
        super().__init__()
        stages = []
        in_channels = 3
        for width in widths:
            stages.append(
                nn.Sequential(
                    _conv_bn_relu(in_channels, width, stride=2), _conv_bn_relu(width, width, stride=1)
                )
            )
            in_channels = width
        self.stages = nn.ModuleList(stages)  # strides 2, 4, 8, 16, 32
        self.c2_channels = widths[1]
        self.out_channels = tuple(widths[2:])  # of C3, C4, C5: what the FPN reads
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        self.use_channels_last(channels_last_stages)

    def use_channels_last(self, stages: int) -> TinyBody:
        """Run the first `stages` stages in channels-last format (weights converted in place), the rest
        in the default format; the same function either way. Returns self."""
        for index, stage in enumerate(self.stages):
            stage.to(memory_format=torch.channels_last if index < stages else torch.contiguous_format)
        self.channels_last_stages = stages
        return self

    def forward(self, images: Tensor) -> list[Tensor]:
        features = []
        x = images.contiguous(memory_format=torch.channels_last) if self.channels_last_stages else images
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index == self.channels_last_stages - 1:
                x = x.contiguous()  # back to the default format, for the later stages and for C2
            features.append(x)
        return features[1:]  # C2, C3, C4, C5


class BackboneWithFPN(nn.Module):
    """Body (C3-C5) + FPN: images [B, 3, H, W] -> [P3, P4, P5, P6, P7], each [B, D, H/s, W/s].

    H and W must be multiples of 32 (the model pads the batch); then level l has exactly
    H / stride_l rows (P6, P7 round up: ceil(H / 64), ceil(H / 128)).
    """

    def __init__(self, body: ResNetBody | TinyBody, fpn_channels: int) -> None:
        super().__init__()
        self.body = body
        # P6 from P5 (not C5), P7 from ReLU(P6): LastLevelP6P7 uses P5 when in == out channels.
        self.fpn = FeaturePyramidNetwork(
            in_channels_list=list(body.out_channels),
            out_channels=fpn_channels,
            extra_blocks=LastLevelP6P7(fpn_channels, fpn_channels),
        )
        self.out_channels = fpn_channels

    def forward(self, images: Tensor) -> list[Tensor]:
        return self.forward_with_c2(images)[0]

    def forward_with_c2(self, images: Tensor) -> tuple[list[Tensor], Tensor]:
        """Images -> ([P3, P4, P5, P6, P7], C2): the pyramid and the body's stride-4 features."""
        c2, c3, c4, c5 = self.body(images)
        pyramid = self.fpn(OrderedDict([("p3", c3), ("p4", c4), ("p5", c5)]))
        return list(pyramid.values()), c2  # P3..P7, [B, D, H/4, W/4] (D = body.c2_channels)


def build_backbone(config: SipMaskConfig) -> BackboneWithFPN:
    """The backbone + FPN named by `config.backbone`."""
    if config.backbone == "tiny":
        body: ResNetBody | TinyBody = TinyBody()
    else:
        body = ResNetBody(
            config.backbone,
            pretrained=config.pretrained_backbone,
            frozen_stages=config.frozen_stages,
            frozen_bn=config.frozen_bn,
        )
    return BackboneWithFPN(body, config.fpn_channels)
