"""The same budget for every model: step-time calibration, iterations for a budget, inference timing.

    iterations_for_budget   budget seconds / step seconds -> training iterations
    budget_config           the preset's recipe with its schedule scaled to those iterations
    time_training_steps     the calibration: seconds of one training step (data, forward, backward,
                            step) of every model, measured side by side
    time_inference          milliseconds per image at batch 1 of every model, side by side: median
                            and spread over val images

Same budget. The step times of all the models are calibrated together, before any of them trains:
CALIBRATION_WARMUP untimed steps of each, then CALIBRATION_ROUNDS rounds in which every model in turn
runs CALIBRATION_STEPS timed steps (throw-away copies of the models, the thread count the training
uses). A model's step time is the median of its timed steps. Side by side, a slow phase of the machine
hits every model alike; the median, not the mean, so that one stalled step does not cost a model
iterations (measured on 2026-12-01, when each model was calibrated alone just before it trained:
SipMask's mean of 15 steps was 220 ms and their median 175 ms, against 186 ms per step in the training
that followed). Each model then trains for iterations_for_budget(budget_s, step_s) iterations, the
models taking turns (compare/runs.py), and its measured training seconds are the table's 'train s'.
They can still differ from the budget: the calibration times the first steps of untrained models,
and a model's step time in training can differ from them (Mask R-CNN's box and mask heads, for one,
see more positive proposals as its RPN learns). On 2026-12-01, calibrated together and trained in
turns, SipMask used 263 s of its 290 (calibrated 187 ms per step, 169 ms in training), the baseline
306 s (131 and 138 ms) and Mask R-CNN 302 s (726 and 757 ms).

Timing. torch.set_num_threads(threads) for everything (calibration, training, timing, evaluation).
Inference: eval mode under torch.no_grad(), batch 1, INFERENCE_WARMUP untimed images of each model,
then the wall time of model([image]) on the first INFERENCE_IMAGES val images, every model in turn
on each image: median, 25th and 75th percentile, min, max. Each model's time includes its own resize
/ normalisation and mask pasting to the image size (both kinds of model do them inside forward), not
the COCO encoding. The models run one after another, never in parallel, so that they do not slow each
other down, and side by side, so that a slow phase of the machine hits them alike: run nothing else
on the machine meanwhile.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Mapping

import torch
from torch import nn

from .. import engine
from ..config import SipMaskConfig
from ..data.coco import CocoInstances
from ..data.transforms import collate

CALIBRATION_WARMUP = 5  # untimed training steps of each model before the calibration
CALIBRATION_ROUNDS = 5  # rounds; in each, every model in turn runs CALIBRATION_STEPS timed steps
CALIBRATION_STEPS = 4  # timed steps per model and round: the median of all of them is the step time
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


class _Trainer:
    """Training steps of one model as engine.train takes them, for the calibration: read and flip a
    batch of config.batch_size images (engine.TrainSamples, stream positions of steps 0, 1, ...),
    forward, backward, optimizer step (engine.build_optimizer) and, when config.ema_decay > 0, the
    weight average."""

    def __init__(self, model: nn.Module, config: SipMaskConfig, train_set: CocoInstances) -> None:
        self.model, self.batch_size = model, config.batch_size
        self.samples = engine.TrainSamples(train_set, config.seed, config.hflip_prob)
        self.optimizer = engine.build_optimizer(model, config)
        self.average = engine.WeightAverage(model, config.ema_decay) if config.ema_decay > 0 else None
        self.done = 0  # steps run so far

    def run(self, steps: int) -> list[float]:
        """Run `steps` training steps; returns the wall seconds of each."""
        self.model.train()
        times = []
        for _ in range(steps):
            started = time.perf_counter()
            batch = [self.samples[p] for p in engine.batch_positions(self.done, self.batch_size)]
            losses = self.model(*collate(batch))
            self.optimizer.zero_grad(set_to_none=True)
            sum(losses.values()).backward()
            self.optimizer.step()
            self.done += 1
            if self.average is not None:
                self.average.update(self.model, self.done)
            times.append(time.perf_counter() - started)
        return times


def time_training_steps(
    models: Mapping[str, tuple[nn.Module, SipMaskConfig]],
    train_set: CocoInstances,
    warmup: int = CALIBRATION_WARMUP,
    rounds: int = CALIBRATION_ROUNDS,
    steps: int = CALIBRATION_STEPS,
) -> dict[str, dict[str, float]]:
    """Seconds per training step of each model of `models` ({name: (model, its config)}), side by side.

    `warmup` untimed steps of each model, then `rounds` rounds in which each model in turn runs
    `steps` timed steps (see the module docstring). The models are changed: pass throw-away copies.
    Returns {name: {'median_s' (the step time), 'mean_s', 'min_s', 'max_s', 'steps' (timed)}}.
    """
    if warmup < 0 or rounds < 1 or steps < 1:
        raise ValueError(
            f"calibration: warmup must be >= 0, rounds and steps >= 1, got {warmup}, {rounds}, {steps}"
        )
    trainers = {name: _Trainer(model, config, train_set) for name, (model, config) in models.items()}
    for trainer in trainers.values():
        trainer.run(warmup)
    times: dict[str, list[float]] = {name: [] for name in trainers}
    for _ in range(rounds):
        for name, trainer in trainers.items():
            times[name] += trainer.run(steps)
    return {
        name: {
            "median_s": statistics.median(t),
            "mean_s": statistics.fmean(t),
            "min_s": min(t),
            "max_s": max(t),
            "steps": len(t),
        }
        for name, t in times.items()
    }


@torch.no_grad()
def time_inference(
    models: Mapping[str, nn.Module],
    dataset: CocoInstances,
    images: int = INFERENCE_IMAGES,
    warmup: int = INFERENCE_WARMUP,
) -> dict[str, dict[str, float]]:
    """Milliseconds of model([image]) (eval mode, no_grad, batch 1) of each model of `models`
    ({name: model}), side by side: `warmup` untimed passes of each (on the first items), then on each
    of the first `images` items of `dataset` every model in turn. Returns {name: {median_ms, p25_ms,
    p75_ms, min_ms, max_ms, mean_ms, images (the count timed)}}."""
    count = min(images, len(dataset))
    if count < 1:
        raise ValueError("time_inference: no images to time")
    pictures = [dataset[i][0] for i in range(count)]  # [3, H, W] each, read before the clock starts
    for model in models.values():
        model.eval()
        for k in range(warmup):
            model([pictures[k % count]])
    times: dict[str, list[float]] = {name: [] for name in models}
    for picture in pictures:
        for name, model in models.items():
            started = time.perf_counter()
            model([picture])
            times[name].append(1000.0 * (time.perf_counter() - started))
    return {name: _spread_ms(t) for name, t in times.items()}


def _spread_ms(times: list[float]) -> dict[str, float]:
    """Median, quartiles, min, max and mean of milliseconds, and their count ('images')."""
    quartiles = statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1 else [times[0]] * 3
    return {
        "median_ms": statistics.median(times),
        "p25_ms": quartiles[0],
        "p75_ms": quartiles[2],
        "min_ms": min(times),
        "max_ms": max(times),
        "mean_ms": statistics.fmean(times),
        "images": len(times),
    }
