"""The paper's Table 1 (speed vs accuracy) on this machine: SipMask, the YOLACT-like baseline and Mask R-CNN.

Paper §4.2 / Table 1 sets SipMask against two-stage Mask R-CNN and single-stage YOLACT-like methods
in accuracy (COCO mask AP) and speed (ms per image). Here the three models are trained on the
synthetic benchmark for the same CPU budget and timed on the same CPU threads:

    sipmask           preset('cpu_tiny'): full SipMask (2x2 spatial coefficients, P3-P5 basis,
                      cls+loc weighting, feature alignment)
    yolact_baseline   preset('cpu_tiny') with reproduce.BASELINE's switches: the YOLACT-like baseline
                      of Table 2 (one set of coefficients, P3 basis, no weighting, no alignment)
    mask_rcnn         torchvision's MaskRCNN on the same tiny body + FPN (build_mask_rcnn)

What this module does, top to bottom:

    ModelSpec / MODELS      the three models: name, kind, ablation variant, default lr, mask threshold
    PyramidAdapter          BackboneWithFPN's list [P3..P7] -> the OrderedDict torchvision's detectors read
    build_mask_rcnn         torchvision's MaskRCNN on that adapter (every choice in its docstring)
    load_mask_rcnn          a Mask R-CNN checkpoint written by engine.train -> model in eval mode
    base_config             a model's configuration before the budget: preset, switches, class count, lr
    build_model / load_model  a fresh model of a spec / the trained one from its checkpoint
    iterations_for_budget   budget seconds / step seconds -> training iterations
    budget_config           the preset's recipe with its schedule scaled to those iterations
    time_training_steps     the calibration: seconds of one training step (data, forward, backward, step)
    time_inference          milliseconds per image at batch 1: median and spread over val images
    load_finished_record    a model's record, if it was finished under the same settings
    run_model               calibrate, train (resumable), time and evaluate one model -> its record
    to_markdown             the records as a Markdown table plus how they were produced
    write_report            OUT/speed_accuracy.json and OUT/speed_accuracy.md
    compare                 all of it, one model after another; writes OUT/speed_accuracy.{json,md}

Same budget. Each model's step time is calibrated first: CALIBRATION_WARMUP untimed steps, then the
mean wall time of CALIBRATION_STEPS steps of a throw-away copy of the model (the mean, not the median,
because the budget is a sum of steps), with the thread count the training uses. The model is then
trained for iterations_for_budget(budget_s, step_s) iterations; its measured training seconds are the
table's 'train s' (the step time can drift during training: Mask R-CNN's box and mask heads, for one,
see more positive proposals as its RPN learns).

Same recipe. Every model trains with preset('cpu_tiny')'s optimizer recipe (AdamW, weight decay, batch
8, flips, seed, weight averaging if the preset has it) and its schedule scaled to the budget
(budget_config). The learning rate is per model (ModelSpec.lr, overridable); Mask R-CNN's default is
lower, see MASK_RCNN_LR.

Timing. torch.set_num_threads(threads) for everything (calibration, training, timing, evaluation).
Inference: eval mode under torch.no_grad(), batch 1, INFERENCE_WARMUP untimed images, then the wall
time of model([image]) on the first INFERENCE_IMAGES val images: median, 25th and 75th percentile,
min, max. Each model's time includes its own resize / normalisation and mask pasting to the image
size (both models do them inside forward), not the COCO encoding. The models run one after another,
never in parallel, so that they do not slow each other down: run nothing else on the machine meanwhile.

Resuming. A model's finished record is WORK/records/<name>.json; a rerun skips every record whose
settings (budget, threads, lr, configuration, calibration and timing constants, data sizes) equal the
ones it would use. The calibration is kept in WORK/<name>/calibration.json under the same rule, so a
rerun trains for the same number of iterations; training runs in chunks of CHECKPOINT_EVERY iterations
(engine.train with resume=True from the second chunk on, which engine.py documents as bit-identical
on CPU to one uninterrupted call), and WORK/<name>/progress.json adds up the measured seconds of the
finished chunks, so an interrupted run continues from its last checkpoint and its training seconds
count each iteration once. Records, calibrations and checkpoints are per model name: a rerun with
another --lr for a model retrains that model and replaces its record (use another --work-dir and --out
to keep both).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign

from . import checkpoints, engine
from .backbone import BackboneWithFPN, build_backbone
from .config import SipMaskConfig, preset
from .data.coco import CocoInstances
from .data.transforms import collate
from .files import read_json_or_none, relative_path
from .model import SipMask
from .reproduce import BASELINE, Variant, _config_json, _datasets, _write_json

FORMAT = "sipmask_ref.speed_accuracy/1"  # marker of OUT/speed_accuracy.json
RUN_FORMAT = "sipmask_ref.compare_run/1"  # marker of one model's record
BASE_PRESET = "cpu_tiny"
DEFAULT_BUDGET_S = 290.0  # training seconds per model (about what cpu_tiny's 1700 iterations take)
DEFAULT_THREADS = 2
CALIBRATION_WARMUP = 5  # untimed training steps before the calibration
CALIBRATION_STEPS = 15  # timed training steps: their mean is the step time
INFERENCE_WARMUP = 5  # untimed batch-1 forward passes before the timing
INFERENCE_IMAGES = 100  # val images timed at batch 1 (fewer if the split is smaller)
CHECKPOINT_EVERY = 50  # iterations per engine.train call (resume granularity)
EVAL_BATCH = 8  # images per forward pass in the AP evaluation (not in the timing)
MASK_RCNN_MASK_THRESHOLD = 0.5  # torchvision's convention for its mask probabilities

# Mask R-CNN heads (see build_mask_rcnn)
ANCHOR_SIZES = ((16,), (32,), (64,), (128,), (256,))  # one size per level, P3..P7, pixels
ANCHOR_RATIOS = (0.5, 1.0, 2.0)  # height / width of the anchors, at every level
ROI_LEVELS = ("0", "1", "2", "3")  # P3-P6: what RoIAlign reads (torchvision's FPN default, shifted)
BOX_REPRESENTATION = 128  # width of the two fully connected layers of the box head
BOX_ROIS_PER_IMAGE = 128  # proposals sampled per training image for the box / mask heads (torchvision: 512)
MASK_HEAD_LAYERS = 2  # conv3x3 layers of D channels in the mask head (torchvision: 4 of 256)

# AdamW learning rate of Mask R-CNN (SipMask keeps the preset's 4e-3). A stability check only, not a
# tuning: build_mask_rcnn as here, 20 iterations of batch 8 on the synthetic train split from seed 0,
# one thread, warm-up switched OFF (harsher than the real schedule, whose linear warm-up starts at
# 0.1 x lr), mean total loss per 2 iterations:
#   4e-3: 3.92 11.75 2.87 2.72 1.82 1.84 2.23 1.93 1.70 1.94  (a spike x3 at steps 3-4, then recovers)
#   2e-3: 3.80  3.82 2.66 2.51 2.19 1.99 1.94 1.95 2.15 2.35  (no spike)
#   1e-3: 3.89  2.88 2.68 2.58 1.91 2.11 1.96 2.15 1.88 1.97
# None diverged. The late rises are loss_classifier / loss_box_reg (0.85 / 0.68 at 2e-3, 0.64 / 0.52
# at 1e-3), which grow as the RPN learns and more sampled proposals are positives. 2e-3 is the largest
# value without the early spike, half of SipMask's: a margin for a from-scratch two-stage model that
# does not starve it in a schedule of a few hundred iterations. Which value gives the best AP was not
# measured: compare --lr mask_rcnn=4e-3 and mask_rcnn=1e-3 gives the sensitivity.
MASK_RCNN_LR = 2e-3


# ----------------------------------------------------------------------------------------------------
# the models
# ----------------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------------
# the budget
# ----------------------------------------------------------------------------------------------------
def iterations_for_budget(budget_s: float, step_s: float) -> int:
    """int(budget_s / step_s), at least 1: the training iterations that fit the budget."""
    if not budget_s > 0:
        raise ValueError(f"the budget must be > 0 seconds, got {budget_s}")
    if not step_s > 0:
        raise ValueError(f"the step time must be > 0 seconds, got {step_s}")
    return max(1, int(budget_s / step_s))


def budget_config(config: SipMaskConfig, iters: int) -> SipMaskConfig:
    """`config` trained for `iters` iterations: its schedule scaled to that length.

    max_iters = iters; every lr step lands at the same fraction of the run as in `config`
    (cpu_tiny: 1320 and 1600 of 1700 -> 78% and 94%), rounded, within 1..iters, duplicates merged;
    the warm-up keeps `config`'s method, factor and length (cpu_tiny: linear from 0.1 over 100
    iterations), cut at the first lr step so that it never overlaps a decay. Everything else
    (optimizer, lr, weight decay, batch, seed, weight averaging) is `config`'s.
    """
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    steps = tuple(
        sorted({min(iters, max(1, round(step / config.max_iters * iters))) for step in config.lr_steps})
    )
    warmup = min([config.warmup_iters, *steps])
    return dataclasses.replace(config, max_iters=iters, lr_steps=steps, warmup_iters=warmup)


def time_training_steps(
    model: nn.Module,
    config: SipMaskConfig,
    train_set: CocoInstances,
    warmup: int = CALIBRATION_WARMUP,
    steps: int = CALIBRATION_STEPS,
) -> dict[str, float]:
    """Seconds per training step of `model` as engine.train takes it: read and flip a batch of
    config.batch_size images (engine.TrainSamples, stream positions of steps 0, 1, ...), forward,
    backward, optimizer step (engine.build_optimizer) and, when config.ema_decay > 0, the weight
    average. `warmup` untimed steps first, then `steps` timed ones. The model is changed: pass a
    throw-away copy. Returns {'mean_s', 'median_s', 'min_s', 'max_s', 'steps'}.
    """
    if warmup < 0 or steps < 1:
        raise ValueError(f"calibration: warmup must be >= 0 and steps >= 1, got {warmup}, {steps}")
    samples = engine.TrainSamples(train_set, config.seed, config.hflip_prob)
    optimizer = engine.build_optimizer(model, config)
    average = engine.WeightAverage(model, config.ema_decay) if config.ema_decay > 0 else None
    model.train()
    times = []
    for step in range(warmup + steps):
        started = time.perf_counter()
        images, targets = collate([samples[p] for p in engine.batch_positions(step, config.batch_size)])
        losses = model(images, targets)
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()
        if average is not None:
            average.update(model, step + 1)
        if step >= warmup:
            times.append(time.perf_counter() - started)
    return {
        "mean_s": statistics.fmean(times),
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "steps": steps,
    }


@torch.no_grad()
def time_inference(
    model: nn.Module, dataset: CocoInstances, images: int = INFERENCE_IMAGES, warmup: int = INFERENCE_WARMUP
) -> dict[str, float]:
    """Milliseconds of model([image]) (eval mode, no_grad, batch 1) on the first `images` items of
    `dataset` after `warmup` untimed passes (on the first items too). Returns median_ms, p25_ms,
    p75_ms, min_ms, max_ms, mean_ms and images (the count timed)."""
    count = min(images, len(dataset))
    if count < 1:
        raise ValueError("time_inference: no images to time")
    model.eval()
    pictures = [dataset[i][0] for i in range(count)]  # [3, H, W] each, read before the clock starts
    for k in range(warmup):
        model([pictures[k % count]])
    times = []
    for picture in pictures:
        started = time.perf_counter()
        model([picture])
        times.append(1000.0 * (time.perf_counter() - started))
    quartiles = statistics.quantiles(times, n=4, method="inclusive") if count > 1 else [times[0]] * 3
    return {
        "median_ms": statistics.median(times),
        "p25_ms": quartiles[0],
        "p75_ms": quartiles[2],
        "min_ms": min(times),
        "max_ms": max(times),
        "mean_ms": statistics.fmean(times),
        "images": count,
    }


# ----------------------------------------------------------------------------------------------------
# one model
# ----------------------------------------------------------------------------------------------------
def record_path(work_dir: str | os.PathLike, name: str) -> Path:
    """WORK/records/<name>.json: the record of a finished model."""
    return Path(work_dir) / "records" / f"{name}.json"


def model_dir(work_dir: str | os.PathLike, name: str) -> Path:
    """WORK/<name>: checkpoint.pt, train_log.jsonl, calibration.json, progress.json of a model."""
    return Path(work_dir) / name


def run_settings(
    spec: ModelSpec,
    config: SipMaskConfig,
    budget_s: float,
    threads: int,
    train_set: CocoInstances,
    val_set: CocoInstances,
    calibration: tuple[int, int],
    inference: tuple[int, int],
) -> dict[str, Any]:
    """Everything a model's record depends on: a rerun with equal settings skips the model."""
    return {
        "model": spec.name,
        "kind": spec.kind,
        "budget_s": float(budget_s),
        "threads": threads,
        "config": _config_json(config),  # before budget_config: the preset, switches, classes, lr
        "mask_threshold": spec.mask_threshold,
        "calibration": {"warmup": calibration[0], "steps": calibration[1]},
        "inference": {"warmup": inference[0], "images": inference[1]},
        "checkpoint_every": CHECKPOINT_EVERY,
        "train_images": len(train_set),
        "val_images": len(val_set),
    }


def load_finished_record(path: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The record at `path` if it is a finished model of exactly these settings; None otherwise."""
    record = read_json_or_none(path)
    if isinstance(record, dict) and record.get("format") == RUN_FORMAT and record.get("settings") == settings:
        return record
    return None


def _calibrate(
    spec: ModelSpec,
    config: SipMaskConfig,
    train_set: CocoInstances,
    settings: dict[str, Any],
    folder: Path,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """The step time of the model: read from folder/calibration.json when measured under the same
    settings, else measured on a throw-away model and written there."""
    path = folder / "calibration.json"
    saved = read_json_or_none(path)
    if isinstance(saved, dict) and saved.get("settings") == settings:
        return saved["timing"]
    engine.seed_everything(config.seed)
    warmup, steps = settings["calibration"]["warmup"], settings["calibration"]["steps"]
    timing = time_training_steps(build_model(spec, config), config, train_set, warmup, steps)
    _write_json({"settings": settings, "timing": timing}, path)
    log(
        f"{spec.name}: calibrated {timing['mean_s']:.3f} s per step of {config.batch_size} images "
        f"(mean of {timing['steps']}; median {timing['median_s']:.3f} s)"
    )
    return timing


def _train(
    spec: ModelSpec,
    config: SipMaskConfig,
    train_set: CocoInstances,
    folder: Path,
    step_s: float,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Train to config.max_iters in chunks of CHECKPOINT_EVERY iterations, continuing a checkpoint of
    the same config; returns {'train_s', 'resumed_from_iteration', 'train_s_estimated', 'losses'}."""
    iters = config.max_iters
    checkpoint, progress_path = folder / checkpoints.CHECKPOINT_NAME, folder / "progress.json"
    config_json = _config_json(config)
    done, seconds, estimated = 0, 0.0, False
    if checkpoint.is_file():
        state = checkpoints.read_checkpoint(checkpoint)
        if state["config"] == dataclasses.asdict(config) and 0 < state["iteration"] <= iters:
            done = int(state["iteration"])
        del state
    if done:
        progress = read_json_or_none(progress_path)
        if (
            isinstance(progress, dict)
            and progress.get("config") == config_json
            and progress.get("iteration") == done
        ):
            seconds = float(progress["train_s"])
        else:  # stopped between the checkpoint and the progress file: the calibration's estimate
            seconds, estimated = done * step_s, True
        log(f"{spec.name}: resuming at iteration {done} of {iters}")
    resumed_from = done
    engine.seed_everything(config.seed)  # the initial weights depend on the seed only
    model = build_model(spec, config)
    losses: dict[str, float] = {}
    while done < iters:
        stop = min(iters, done + CHECKPOINT_EVERY)
        started = time.perf_counter()
        summary = engine.train(
            model,
            config,
            train_set,
            folder,
            iters=stop,
            device="cpu",
            resume=done > 0,
            checkpoint_every=CHECKPOINT_EVERY,
            log_every=max(1, min(25, stop - done)),
            progress=False,
        )
        seconds += time.perf_counter() - started
        done, losses = stop, summary["losses"]
        _write_json({"config": config_json, "iteration": done, "train_s": seconds}, progress_path)
        log(f"{spec.name}: {done}/{iters} iterations, {seconds:.0f} s, loss {sum(losses.values()):.3f}")
    if not losses:  # nothing left to train: the last losses the log holds
        log_path = folder / engine.LOG_NAME
        lines = log_path.read_text().splitlines() if log_path.is_file() else []
        logged = [json.loads(line) for line in lines if line.strip()]
        last: dict[str, Any] = next((r for r in reversed(logged) if "loss" in r), {})
        losses = {k: v for k, v in last.items() if k.startswith("loss_")}
    return {
        "train_s": seconds,
        "resumed_from_iteration": resumed_from,
        "train_s_estimated": estimated,
        "losses": losses,
    }


def run_model(
    spec: ModelSpec,
    budget_s: float,
    threads: int,
    train_set: CocoInstances,
    val_set: CocoInstances,
    work_dir: str | os.PathLike,
    lr: float | None = None,
    calibration: tuple[int, int] | None = None,
    inference: tuple[int, int] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Calibrate, train for the budget, time and evaluate one model; write and return its record.

    Returns the finished record of the same settings from WORK/records/<name>.json instead when
    there is one (with 'skipped': True). Runs under torch.set_num_threads(threads) (restored after).
    calibration: (warm-up, timed) steps, default (CALIBRATION_WARMUP, CALIBRATION_STEPS);
    inference: (warm-up, timed) images, default (INFERENCE_WARMUP, INFERENCE_IMAGES).
    """
    calibration = calibration or (CALIBRATION_WARMUP, CALIBRATION_STEPS)
    inference = inference or (INFERENCE_WARMUP, INFERENCE_IMAGES)
    config = base_config(spec, len(train_set.class_names), lr)
    settings = run_settings(spec, config, budget_s, threads, train_set, val_set, calibration, inference)
    path = record_path(work_dir, spec.name)
    done = load_finished_record(path, settings)
    if done is not None:
        return done | {"skipped": True}

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        folder = model_dir(work_dir, spec.name)
        timing = _calibrate(spec, config, train_set, settings, folder, log)
        iters = iterations_for_budget(budget_s, timing["mean_s"])
        trained_config = budget_config(config, iters)
        log(
            f"{spec.name}: {iters} iterations fit {budget_s:g} s (lr {trained_config.lr:g}, "
            f"lr steps {list(trained_config.lr_steps)}, warm-up {trained_config.warmup_iters})"
        )
        training = _train(spec, trained_config, train_set, folder, timing["mean_s"], log)

        model = load_model(spec, folder / checkpoints.CHECKPOINT_NAME)
        speed = time_inference(model, val_set, images=inference[1], warmup=inference[0])
        started = time.perf_counter()
        threshold = spec.mask_threshold if spec.mask_threshold is not None else trained_config.mask_threshold
        _, metrics = engine.evaluate(
            model, val_set, "cpu", EVAL_BATCH, mask_threshold=threshold, progress=False
        )
        record = {
            "format": RUN_FORMAT,
            "name": spec.name,
            "title": spec.title,
            "parameters": count_parameters(model),
            "iterations": iters,
            "batch_size": trained_config.batch_size,
            "lr": trained_config.lr,
            "lr_steps": list(trained_config.lr_steps),
            "warmup_iters": trained_config.warmup_iters,
            "calibration": timing,
            "train_s": round(training["train_s"], 2),
            "train_s_estimated": training["train_s_estimated"],
            "resumed_from_iteration": training["resumed_from_iteration"],
            "final_losses": training["losses"],
            "mask_threshold": threshold,
            "box_AP": metrics["bbox"]["AP"],
            "box_AP50": metrics["bbox"]["AP50"],
            "mask_AP": metrics["segm"]["AP"],
            "mask_AP50": metrics["segm"]["AP50"],
            "metrics": metrics,  # the 12 COCOeval numbers per type, fractions in [0, 1]
            "inference": speed,
            "eval_s": round(time.perf_counter() - started, 2),
            "threads": torch.get_num_threads(),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "settings": settings,
        }
        _write_json(record, path)
        log(
            f"{spec.name}: box AP {100 * record['box_AP']:.1f}, mask AP {100 * record['mask_AP']:.1f}, "
            f"{speed['median_ms']:.1f} ms/image"
        )
        return record | {"skipped": False}
    finally:
        torch.set_num_threads(previous_threads)


# ----------------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------------
def _ap(value: float) -> str:
    """A COCOeval fraction in points; '-' for COCOeval's -1 (no ground truth)."""
    return "-" if value < 0 else f"{100 * value:.1f}"


def to_markdown(report: dict[str, Any]) -> str:
    """The report written to speed_accuracy.json as a Markdown table and one paragraph on how it was made."""
    settings, env = report["settings"], report["environment"]
    lines = [
        "# Speed vs accuracy (paper Table 1) on the synthetic benchmark",
        "",
        (
            "| model | parameters | iterations | train s | box AP | box AP50 | mask AP | mask AP50 | "
            "ms / image (median) | ms / image (p25-p75) | threads |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    by_name = {r["name"]: r for r in report["records"]}
    for name, title in settings["models"].items():
        r = by_name.get(name)
        if r is None:
            lines.append(f"| {title} | not run | | | | | | | | | |")
            continue
        speed = r["inference"]
        lines.append(
            f"| {r['title']} | {r['parameters'] / 1e6:.2f} M | {r['iterations']} | {r['train_s']:.0f} | "
            f"{_ap(r['box_AP'])} | {_ap(r['box_AP50'])} | {_ap(r['mask_AP'])} | {_ap(r['mask_AP50'])} | "
            f"{speed['median_ms']:.1f} | {speed['p25_ms']:.1f}-{speed['p75_ms']:.1f} | {r['threads']} |"
        )
    lrs = ", ".join(f"{r['name']} {r['lr']:g}" for r in report["records"])
    thresholds = ", ".join(f"{r['name']} {r['mask_threshold']:g}" for r in report["records"])
    lines += [
        "",
        (
            f"Produced by `{settings['command']}` (sipmask_ref/compare.py) on {env['date']} with Python "
            f"{env['python']}, torch {env['torch']}, torchvision {env['torchvision']}, on {env['cpu_count']} "
            f"visible CPU cores ({env['processor']}), {settings['threads']} torch thread(s) for everything. "
            f"Each model was trained from scratch on the {settings['train_images']} training images of "
            f"`{settings['data']}` for the same budget of {settings['budget_s']:g} s: its step time "
            f"({settings['batch_size']} images) was calibrated ({settings['calibration']['warmup']} warm-up, "
            f"then the mean of {settings['calibration']['steps']} steps) and it trained for "
            f"int(budget / step) iterations ('train s' is the measured time), with the "
            f"{settings['base_preset']} recipe (AdamW, schedule scaled to the iterations; lr: {lrs or '-'}). "
            f"AP: COCOeval on the "
            f"{settings['val_images']} val images (points; mask threshold: {thresholds or '-'}). Speed: "
            f"model([image]) at batch 1 in eval mode under no_grad, after "
            f"{settings['inference']['warmup']} warm-up pass(es), median and interquartile range over "
            f"{settings['inference']['images']} val images; it includes each model's resizing, "
            f"normalisation and mask pasting. Mask R-CNN is torchvision's MaskRCNN on the same tiny body + "
            f"FPN as SipMask (anchors 16-256 px on P3-P7, RoIAlign on P3-P6, box head 2 x "
            f"{BOX_REPRESENTATION}, {BOX_ROIS_PER_IMAGE} sampled RoIs per training image, mask head "
            f"{MASK_HEAD_LAYERS} x conv3x3 of D channels)."
        ),
    ]
    if env.get("failed"):
        lines += ["", "Failed (left out of the table): " + "; ".join(env["failed"])]
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out: str | os.PathLike) -> tuple[Path, Path]:
    """Write OUT/speed_accuracy.json (atomically) and OUT/speed_accuracy.md; return both paths."""
    out = Path(out)
    json_path = _write_json(report, out / "speed_accuracy.json")
    markdown_path = out / "speed_accuracy.md"
    markdown_path.write_text(to_markdown(report))
    return json_path, markdown_path


def _relative(path: str | os.PathLike) -> str:
    """`path` relative to the working directory (the repository root, where the command runs) when
    inside it, else only its last component (a report must not name one machine's folders)."""
    return relative_path(path, Path.cwd()) or Path(path).name


def _command(budget_s: float, threads: int, only: Sequence[str] | None, lrs: dict[str, float]) -> str:
    """The command line that reproduces a report (paths left at their defaults)."""
    parts = ["python -m sipmask_ref compare", f"--budget-s {budget_s:g}", f"--threads {threads}"]
    if only:
        parts.append("--only " + " ".join(only))
    if lrs:
        parts.append("--lr " + " ".join(f"{k}={v:g}" for k, v in lrs.items()))
    return " ".join(parts)


# ----------------------------------------------------------------------------------------------------
# all of it
# ----------------------------------------------------------------------------------------------------
def compare(
    out: str | os.PathLike = "results",
    budget_s: float = DEFAULT_BUDGET_S,
    threads: int = DEFAULT_THREADS,
    work_dir: str | os.PathLike = "outputs/compare",
    data_root: str | os.PathLike = "data",
    only: Sequence[str] | None = None,
    lrs: dict[str, float] | None = None,
    calibration: tuple[int, int] | None = None,
    inference: tuple[int, int] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run every model of MODELS (or `only` those) one after another; write OUT/speed_accuracy.{json,md}.

    budget_s: training seconds per model. threads: torch threads for everything. work_dir: records,
    calibrations and checkpoints (finished models with the same settings are skipped, unfinished
    ones continue). data_root: the folder holding synthetic/. lrs: {model name: learning rate}
    overriding ModelSpec.lr. The report also lists models outside `only` that have a finished
    record of the same settings. A model that fails (e.g. a NaN loss) is reported and left out.
    Returns the report written to speed_accuracy.json.
    """
    lrs = dict(lrs or {})
    known = {spec.name: spec for spec in MODELS}
    unknown = sorted((set(only or ()) | set(lrs)) - set(known))
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; choose from {sorted(known)}")
    bad_lrs = {name: lr for name, lr in lrs.items() if not lr > 0}
    if bad_lrs:
        raise ValueError(f"learning rates must be > 0, got {bad_lrs}")
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if not budget_s > 0:
        raise ValueError(f"the budget must be > 0 seconds, got {budget_s}")
    data_root = Path(data_root)
    if not (data_root / "synthetic" / "annotations" / "instances_train.json").is_file():
        raise FileNotFoundError(
            f"no synthetic benchmark under {data_root / 'synthetic'} "
            f"(python -m sipmask_ref make-data --root {data_root})"
        )
    calibration = calibration or (CALIBRATION_WARMUP, CALIBRATION_STEPS)
    inference = inference or (INFERENCE_WARMUP, INFERENCE_IMAGES)
    train_set, val_set = _datasets(data_root)
    selected = [known[name] for name in only] if only else list(MODELS)
    log(
        f"compare: {', '.join(s.name for s in selected)}; {budget_s:g} s of training each, {threads} "
        f"thread(s); records in {record_path(work_dir, '*')}"
    )

    records, failed = [], []
    for spec in MODELS:
        if spec in selected:
            try:
                records.append(
                    run_model(
                        spec,
                        budget_s,
                        threads,
                        train_set,
                        val_set,
                        work_dir,
                        lrs.get(spec.name),
                        calibration,
                        inference,
                        log,
                    )
                )
            except Exception as error:  # noqa: BLE001 - one failing model must not lose the others
                failed.append(f"{spec.name}: {type(error).__name__}: {error}")
                log(f"{spec.name} FAILED: {error}")
        else:  # not asked for: shown when already finished under the same settings
            config = base_config(spec, len(train_set.class_names), lrs.get(spec.name))
            settings = run_settings(
                spec, config, budget_s, threads, train_set, val_set, calibration, inference
            )
            done = load_finished_record(record_path(work_dir, spec.name), settings)
            if done is not None:
                records.append(done | {"skipped": True})

    report = {
        "format": FORMAT,
        "settings": {
            "command": _command(budget_s, threads, only, lrs),
            "models": {spec.name: spec.title for spec in MODELS},
            "base_preset": BASE_PRESET,
            "budget_s": float(budget_s),
            "threads": threads,
            "batch_size": preset(BASE_PRESET).batch_size,
            "data": _relative(data_root / "synthetic"),
            "train_images": len(train_set),
            "val_images": len(val_set),
            "calibration": {"warmup": calibration[0], "steps": calibration[1]},
            "inference": {"warmup": inference[0], "images": min(inference[1], len(val_set))},
        },
        "environment": {
            "date": time.strftime("%Y-%m-%d"),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "device": "cpu",
            "failed": failed,
        },
        "records": [{k: v for k, v in r.items() if k not in ("settings", "skipped")} for r in records],
    }
    json_path, markdown_path = write_report(report, out)
    log(f"wrote {json_path} and {markdown_path}")
    return report
