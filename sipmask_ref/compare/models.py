"""The three models of the comparison: SipMask, the YOLACT-like baseline and torchvision's Mask R-CNN.

    ModelSpec / MODELS      the three models: name, kind, ablation variant, default lr, mask threshold
    PyramidAdapter          BackboneWithFPN's list [P3..P7] -> the OrderedDict torchvision's detectors read
    build_mask_rcnn         torchvision's MaskRCNN on that adapter (every choice in its docstring)
    load_mask_rcnn          a Mask R-CNN checkpoint written by engine.train -> model in eval mode
    base_config             a model's configuration before the budget: preset, switches, class count, lr
    build_model / load_model  a fresh model of a spec / the trained one from its checkpoint
    count_parameters        the parameter count the table reports

Same recipe. Every model trains with preset('cpu_tiny')'s optimizer recipe (AdamW, weight decay, batch
8, flips, seed, weight averaging if the preset has it) and its schedule scaled to the budget
(timing.budget_config). The learning rate is per model (ModelSpec.lr, overridable); Mask R-CNN's
default is lower, see MASK_RCNN_LR.
"""

from __future__ import annotations

import dataclasses
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign

from .. import checkpoints, engine
from ..backbone import BackboneWithFPN, build_backbone
from ..config import SipMaskConfig, preset
from ..model import SipMask
from ..reproduce.tables import BASELINE, Variant

BASE_PRESET = "cpu_tiny"
MASK_RCNN_MASK_THRESHOLD = 0.5  # torchvision's convention for its mask probabilities

# Mask R-CNN heads (see build_mask_rcnn)
ANCHOR_SIZES = ((16,), (32,), (64,), (128,), (256,))  # one size per level, P3..P7, pixels
ANCHOR_RATIOS = (0.5, 1.0, 2.0)  # height / width of the anchors, at every level
ROI_LEVELS = ("0", "1", "2", "3")  # P3-P6: what RoIAlign reads (torchvision's FPN default, shifted)
BOX_REPRESENTATION = 128  # width of the two fully connected layers of the box head
BOX_ROIS_PER_IMAGE = 128  # proposals sampled per training image for the box / mask heads (torchvision: 512)
MASK_HEAD_LAYERS = 2  # conv3x3 layers of D channels in the mask head (torchvision: 4 of 256)

# AdamW learning rate of Mask R-CNN (SipMask keeps the preset's 3e-3). A stability check only, not a
# tuning: build_mask_rcnn as here, 20 iterations of batch 8 on the synthetic train split from seed 0,
# one thread, warm-up switched OFF (harsher than the real schedule, whose linear warm-up starts at
# 0.1 x lr), mean total loss per 2 iterations:
#   4e-3: 3.92 11.75 2.87 2.72 1.82 1.84 2.23 1.93 1.70 1.94  (a spike x3 at steps 3-4, then recovers)
#   2e-3: 3.80  3.82 2.66 2.51 2.19 1.99 1.94 1.95 2.15 2.35  (no spike)
#   1e-3: 3.89  2.88 2.68 2.58 1.91 2.11 1.96 2.15 1.88 1.97
# None diverged. The late rises are loss_classifier / loss_box_reg (0.85 / 0.68 at 2e-3, 0.64 / 0.52
# at 1e-3), which grow as the RPN learns and more sampled proposals are positives. 2e-3 is the largest
# value without the early spike, below SipMask's: a margin for a from-scratch two-stage model that
# does not starve it in a schedule of a few hundred iterations. Which value gives the best AP was not
# measured: compare --lr mask_rcnn=4e-3 and mask_rcnn=1e-3 gives the sensitivity.
MASK_RCNN_LR = 2e-3


@dataclass(frozen=True)
class ModelSpec:
    """One column of the comparison."""

    name: str  # file-name-safe key, also the --only / --lr name
    title: str  # the row label of the table
    kind: str  # 'sipmask' (our SipMask with `variant`'s switches) | 'mask_rcnn' (torchvision's)
    variant: Variant | None = None  # ablation switches on top of the preset (None: the preset's own)
    lr: float | None = None  # AdamW learning rate (None: the preset's)
    mask_threshold: float | None = None  # mask binarisation in evaluation (None: the config's)


MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("sipmask", "SipMask (cpu_tiny)", "sipmask"),
    ModelSpec("yolact_baseline", "YOLACT-like baseline (Table 2)", "sipmask", variant=BASELINE),
    ModelSpec(
        "mask_rcnn",
        "Mask R-CNN (torchvision)",
        "mask_rcnn",
        lr=MASK_RCNN_LR,
        mask_threshold=MASK_RCNN_MASK_THRESHOLD,
    ),
)


class PyramidAdapter(nn.Module):
    """Our BackboneWithFPN as the backbone of a torchvision detector.

    images [B, 3, H, W] -> OrderedDict {"0": P3, "1": P4, "2": P5, "3": P6, "pool": P7}, each
    [B, D, H/s, W/s] for s = 8 ... 128, with `out_channels` = D. torchvision's RPN reads every entry
    (one anchor size each); its RoIAlign reads the entries it is told to (ROI_LEVELS). The names are
    the ones torchvision's own resnet_fpn_backbone gives P2..P6, so its defaults would fit too.
    """

    def __init__(self, backbone: BackboneWithFPN) -> None:
        super().__init__()
        self.body_fpn = backbone
        self.out_channels = backbone.out_channels

    def forward(self, images: Tensor) -> OrderedDict[str, Tensor]:
        p3, p4, p5, p6, p7 = self.body_fpn(images)
        return OrderedDict([("0", p3), ("1", p4), ("2", p5), ("3", p6), ("pool", p7)])


def build_mask_rcnn(config: SipMaskConfig) -> MaskRCNN:
    """torchvision's MaskRCNN on the backbone + FPN of `config` (cpu_tiny: the tiny body, D = 64).

    Only torchvision's classes are used; what is set and why:

    - backbone: PyramidAdapter(build_backbone(config)), the very body + FPN SipMask trains (same
      initialisation, P3-P7 with D = config.fpn_channels channels).
    - classes: num_classes = C + 1 (torchvision counts the background, label 0; our labels are 1..C,
      as torchvision's). It goes into the two predictors below, which is why MaskRCNN itself gets
      num_classes=None (torchvision refuses both).
    - input: min_size = min(config.input_size), max_size = max(config.input_size) (128 / 128: the
      128x128 synthetic images pass unresized; torchvision keeps the aspect ratio where SipMask's
      cpu_tiny stretches, the same for square images), normalised with config.pixel_mean / pixel_std,
      padded to 32 (torchvision's default, as SipMask).
    - RPN: AnchorGenerator with one size per level, ANCHOR_SIZES = 16, 32, 64, 128, 256 px on
      P3..P7, ratios 0.5, 1, 2 (the synthetic objects are 16-90 px; torchvision's default of 32-512
      px for 800-pixel COCO images would miss the small ones); torchvision's RPNHead (one conv3x3 of
      D channels). At 128x128 that is 1023 anchors in all, so torchvision's proposal counts
      (2000 per level before NMS and 2000 after it in training, 1000 / 1000 in testing) practically
      never bind: every anchor is a candidate and NMS (0.7, per level) decides. torchvision's
      defaults otherwise.
    - RoIAlign: MultiScaleRoIAlign on ROI_LEVELS = P3-P6 (the four finest levels, as torchvision's
      FPN default P2-P5), 7x7 for boxes and 14x14 for masks, sampling ratio 2. Its level mapper puts
      a box of side 224 px on the 2nd level and halves from there, so every box below 224 px, i.e.
      every synthetic object, is read from P3 (stride 8).
    - box head: TwoMLPHead(D x 7 x 7 -> BOX_REPRESENTATION = 128 -> 128) and FastRCNNPredictor
      (torchvision: 1024 wide on 256 x 7 x 7; scaled down with D so that the heads stay comparable
      in size to SipMask's tiny head; the first layer, D x 49 x 128, is most of the parameters).
      Training samples BOX_ROIS_PER_IMAGE = 128 proposals per image at 25% positives (torchvision:
      512, for COCO images; 128 is Detectron2's choice for small datasets, and a synthetic image
      holds 3-10 objects, so 32 positives cover them). It halves the training step on a CPU
      (1.96 -> 1.00 s per batch of 8, one thread, measured while other work shared the machine):
      torchvision's CPU RoIAlign backward alone took 42% of a 512-RoI step in torch.profiler.
      Inference: score > config.score_threshold (0.05), NMS 0.5 per class, at most
      config.max_detections (100) detections: torchvision's defaults, which equal SipMask's settings.
    - mask head: MaskRCNNHeads with MASK_HEAD_LAYERS = 2 conv3x3 layers of D channels (torchvision:
      4 of 256; SipMask's cpu_tiny likewise halves its towers to S = 2) and MaskRCNNPredictor (a
      2x up-convolution of D channels, then one 28x28 mask logit map per class).

    Parameters (cpu_tiny, 6 classes): 1.41 M body + FPN (the same as SipMask's), 0.55 M heads
    (RPN 0.04 M, box head 0.42 M, mask head 0.09 M; SipMask's tiny head + basis masks: 0.23 M), 1.96 M
    in all against SipMask's 1.64 M. Eval-mode output (torchvision's, our model contract):
    boxes [N, 4] xyxy, labels [N], scores [N], masks [N, 1, H, W] probabilities at the image size.
    """
    channels = config.fpn_channels
    classes = config.num_classes + 1
    levels = list(ROI_LEVELS)
    return MaskRCNN(
        PyramidAdapter(build_backbone(config)),
        num_classes=None,  # given to the predictors instead (torchvision refuses both)
        min_size=min(config.input_size),
        max_size=max(config.input_size),
        image_mean=list(config.pixel_mean),
        image_std=list(config.pixel_std),
        rpn_anchor_generator=AnchorGenerator(ANCHOR_SIZES, (ANCHOR_RATIOS,) * len(ANCHOR_SIZES)),
        box_roi_pool=MultiScaleRoIAlign(levels, output_size=7, sampling_ratio=2),
        box_head=TwoMLPHead(channels * 7 * 7, BOX_REPRESENTATION),
        box_predictor=FastRCNNPredictor(BOX_REPRESENTATION, classes),
        box_score_thresh=config.score_threshold,
        box_batch_size_per_image=BOX_ROIS_PER_IMAGE,
        box_detections_per_img=config.max_detections,
        mask_roi_pool=MultiScaleRoIAlign(levels, output_size=14, sampling_ratio=2),
        mask_head=MaskRCNNHeads(channels, [channels] * MASK_HEAD_LAYERS, 1),
        mask_predictor=MaskRCNNPredictor(channels, channels, classes),
    )


def load_mask_rcnn(path: str | os.PathLike) -> MaskRCNN:
    """The Mask R-CNN of a checkpoint written by engine.train (its config: the recipe, class count
    and backbone that build_mask_rcnn reads), in eval mode on the CPU.

    engine.load_checkpoint cannot do this: it builds SipMask from the stored config.
    """
    state = checkpoints.read_checkpoint(path)
    model = build_mask_rcnn(checkpoints.config_from_dict(state["config"], source=str(path)))
    try:
        model.load_state_dict(checkpoints.evaluation_weights(state))
    except RuntimeError as error:
        raise checkpoints.CheckpointError(
            f"{path}: the weights do not fit build_mask_rcnn: {error}"
        ) from None
    return model.eval()


def base_config(spec: ModelSpec, num_classes: int, lr: float | None = None) -> SipMaskConfig:
    """preset('cpu_tiny') with the spec's ablation switches, `num_classes` and the learning rate
    (`lr`, else the spec's, else the preset's); the schedule is the preset's until budget_config."""
    config = preset(BASE_PRESET)
    changes: dict[str, Any] = {"num_classes": num_classes}
    if spec.variant is not None:
        changes |= spec.variant.switches()
    lr = lr if lr is not None else spec.lr
    if lr is not None:
        if not lr > 0:
            raise ValueError(f"{spec.name}: the learning rate must be > 0, got {lr}")
        changes["lr"] = float(lr)
    return dataclasses.replace(config, **changes)


def build_model(spec: ModelSpec, config: SipMaskConfig) -> nn.Module:
    """A freshly initialised model of `spec` (seed the generators first for a reproducible init)."""
    return build_mask_rcnn(config) if spec.kind == "mask_rcnn" else SipMask(config)


def load_model(spec: ModelSpec, checkpoint: str | os.PathLike) -> nn.Module:
    """The trained model of `spec` from its checkpoint, with the weights to evaluate, in eval mode."""
    if spec.kind == "mask_rcnn":
        return load_mask_rcnn(checkpoint)
    return engine.load_checkpoint(checkpoint)[0]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
