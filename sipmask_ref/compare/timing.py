"""The same budget for every model: step-time calibration, iterations for a budget, inference timing.

    iterations_for_budget   budget seconds / step seconds -> training iterations
    budget_config           the preset's recipe with its schedule scaled to those iterations
    time_training_steps     the calibration: seconds of one training step (data, forward, backward, step)
    time_inference          milliseconds per image at batch 1: median and spread over val images

Same budget. Each model's step time is calibrated first: CALIBRATION_WARMUP untimed steps, then the
mean wall time of CALIBRATION_STEPS steps of a throw-away copy of the model (the mean, not the median,
because the budget is a sum of steps), with the thread count the training uses. The model is then
trained for iterations_for_budget(budget_s, step_s) iterations; its measured training seconds are the
table's 'train s' (the step time can drift during training: Mask R-CNN's box and mask heads, for one,
see more positive proposals as its RPN learns).

Timing. torch.set_num_threads(threads) for everything (calibration, training, timing, evaluation).
Inference: eval mode under torch.no_grad(), batch 1, INFERENCE_WARMUP untimed images, then the wall
time of model([image]) on the first INFERENCE_IMAGES val images: median, 25th and 75th percentile,
min, max. Each model's time includes its own resize / normalisation and mask pasting to the image
size (both models do them inside forward), not the COCO encoding. The models run one after another,
never in parallel, so that they do not slow each other down: run nothing else on the machine meanwhile.
"""

from __future__ import annotations

import dataclasses
import statistics
import time

import torch
from torch import nn

from .. import engine
from ..config import SipMaskConfig
from ..data.coco import CocoInstances
from ..data.transforms import collate

CALIBRATION_WARMUP = 5  # untimed training steps before the calibration
CALIBRATION_STEPS = 15  # timed training steps: their mean is the step time
INFERENCE_WARMUP = 5  # untimed batch-1 forward passes before the timing
INFERENCE_IMAGES = 100  # val images timed at batch 1 (fewer if the split is smaller)


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
    (cpu_tiny: 1800 of 1900 -> 95%), rounded, within 1..iters, duplicates merged;
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
