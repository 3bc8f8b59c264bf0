"""The models of the comparison calibrated, trained for the budget, evaluated and timed, side by side.

    record_path, model_dir  where a model's record and its run (checkpoint, log, calibration) live
    run_settings            everything a model's record depends on
    load_finished_record    a model's record, if it was finished under the same settings
    calibrate               the step times of several models, measured side by side (or read back)
    run_model               calibrate, train (resumable) and evaluate one model alone -> its record
    compare                 all of it, side by side: the models calibrated together, trained in
                            turns of CHECKPOINT_EVERY iterations, evaluated, then timed image by
                            image in turn; writes OUT/speed_accuracy.{json,md}

Resuming. A model's finished record is WORK/records/<name>.json; a rerun skips every record whose
settings (budget, threads, lr, configuration, calibration and timing constants, data sizes) equal the
ones it would use. The calibration is kept in WORK/<name>/calibration.json under the same rule, so a
rerun trains for the same number of iterations (the models without one are calibrated together).
Training runs in chunks of CHECKPOINT_EVERY iterations (engine.train with resume=True from the second
chunk on, which engine.py documents as bit-identical on CPU to one uninterrupted call), and
WORK/<name>/progress.json adds up the measured seconds of the finished chunks, so an interrupted run
continues from its last checkpoint and its training seconds count each iteration once. Records,
calibrations and checkpoints are per model name: a rerun with another --lr for a model retrains that
model and replaces its record (use another --work-dir and --out to keep both).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from .. import checkpoints, engine
from ..config import SipMaskConfig, preset
from ..data.coco import CocoInstances
from ..files import read_json_or_none
from ..reproduce.runs import config_json, machine, synthetic_datasets, write_record
from .models import BASE_PRESET, MODELS, ModelSpec, base_config, build_model, count_parameters, load_model
from .report import FORMAT, command_line, relative, write_report
from .timing import (
    CALIBRATION_ROUNDS,
    CALIBRATION_STEPS,
    CALIBRATION_WARMUP,
    INFERENCE_IMAGES,
    INFERENCE_WARMUP,
    budget_config,
    iterations_for_budget,
    time_inference,
    time_training_steps,
)

RUN_FORMAT = "sipmask_ref.compare_run/1"  # marker of one model's record
DEFAULT_BUDGET_S = 290.0  # training seconds per model (about what cpu_tiny's iterations take)
DEFAULT_THREADS = 2
CHECKPOINT_EVERY = 50  # iterations per engine.train call (resume granularity)
EVAL_BATCH = 8  # images per forward pass in the AP evaluation (not in the timing)


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
    calibration: tuple[int, int, int],
) -> dict[str, Any]:
    """Everything a model's record depends on: a rerun with equal settings skips the model."""
    return {
        "model": spec.name,
        "kind": spec.kind,
        "budget_s": float(budget_s),
        "threads": threads,
        "config": config_json(config),  # before budget_config: the preset, switches, classes, lr
        "mask_threshold": spec.mask_threshold,
        "calibration": _calibration_json(calibration),
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


def _calibration_json(calibration: tuple[int, int, int]) -> dict[str, Any]:
    """(warm-up, rounds, steps per round) as a record holds them; the step time is the median."""
    return {
        "warmup": calibration[0],
        "rounds": calibration[1],
        "steps": calibration[2],
        "statistic": "median",
    }


def calibrate(
    models: Sequence[tuple[ModelSpec, SipMaskConfig, dict[str, Any]]],
    train_set: CocoInstances,
    work_dir: str | os.PathLike,
    log: Callable[[str], None],
) -> dict[str, dict[str, Any]]:
    """The step time of each model of `models` ((spec, config, run_settings) each): read from
    WORK/<name>/calibration.json when measured under the same settings; the others are measured
    together, side by side (timing.time_training_steps, on throw-away models built after
    seed_everything(config.seed)), and written there. Returns {name: timing}."""
    timings: dict[str, dict[str, Any]] = {}
    to_measure = []
    for spec, config, settings in models:
        saved = read_json_or_none(model_dir(work_dir, spec.name) / "calibration.json")
        if isinstance(saved, dict) and saved.get("settings") == settings:
            timings[spec.name] = saved["timing"]
        else:
            to_measure.append((spec, config, settings))
    if not to_measure:
        return timings
    warmup, rounds, steps = (to_measure[0][2]["calibration"][k] for k in ("warmup", "rounds", "steps"))
    log(
        f"calibrating {', '.join(spec.name for spec, _, _ in to_measure)} side by side: {warmup} warm-up "
        f"steps each, then {rounds} rounds of {steps} steps of each"
    )
    throwaway = {}
    for spec, config, _ in to_measure:
        engine.seed_everything(config.seed)
        throwaway[spec.name] = (build_model(spec, config), config)
    measured = time_training_steps(throwaway, train_set, warmup, rounds, steps)
    for spec, config, settings in to_measure:
        timing = measured[spec.name]
        write_record(
            {"settings": settings, "timing": timing}, model_dir(work_dir, spec.name) / "calibration.json"
        )
        log(
            f"{spec.name}: calibrated {timing['median_s']:.3f} s per step of {config.batch_size} images "
            f"(median of {timing['steps']}; mean {timing['mean_s']:.3f} s, max {timing['max_s']:.3f} s)"
        )
        timings[spec.name] = timing
    return timings


class _Training:
    """One model's training to config.max_iters in chunks of CHECKPOINT_EVERY iterations (engine.train,
    resume=True from the second chunk on), continuing a checkpoint of the same config in `folder`;
    folder/progress.json adds up the measured seconds of the finished chunks."""

    def __init__(
        self,
        spec: ModelSpec,
        config: SipMaskConfig,
        train_set: CocoInstances,
        folder: Path,
        step_s: float,
        log: Callable[[str], None],
    ) -> None:
        self.spec, self.config, self.train_set, self.folder, self.log = spec, config, train_set, folder, log
        self.checkpoint, self.progress_path = folder / checkpoints.CHECKPOINT_NAME, folder / "progress.json"
        self.recorded_config = config_json(config)
        self.done, self.seconds, self.estimated = 0, 0.0, False
        if self.checkpoint.is_file():
            state = checkpoints.read_checkpoint(self.checkpoint)
            if state["config"] == dataclasses.asdict(config) and 0 < state["iteration"] <= config.max_iters:
                self.done = int(state["iteration"])
            del state
        if self.done:
            progress = read_json_or_none(self.progress_path)
            if (
                isinstance(progress, dict)
                and progress.get("config") == self.recorded_config
                and progress.get("iteration") == self.done
            ):
                self.seconds = float(progress["train_s"])
            else:  # stopped between the checkpoint and the progress file: the calibration's estimate
                self.seconds, self.estimated = self.done * step_s, True
            log(f"{spec.name}: resuming at iteration {self.done} of {config.max_iters}")
        self.resumed_from = self.done
        self.model: torch.nn.Module | None = None  # built at the first chunk (see chunk)
        self.losses: dict[str, float] = {}

    @property
    def finished(self) -> bool:
        return self.done >= self.config.max_iters

    def chunk(self) -> None:
        """Train the next CHECKPOINT_EVERY iterations (fewer at the end of the run)."""
        if self.model is None:  # seeded just before its first chunk: the same weights in any order
            engine.seed_everything(self.config.seed)
            self.model = build_model(self.spec, self.config)
        stop = min(self.config.max_iters, self.done + CHECKPOINT_EVERY)
        started = time.perf_counter()
        summary = engine.train(
            self.model,
            self.config,
            self.train_set,
            self.folder,
            iters=stop,
            device="cpu",
            resume=self.done > 0,
            checkpoint_every=CHECKPOINT_EVERY,
            log_every=max(1, min(25, stop - self.done)),
            progress=False,
        )
        self.seconds += time.perf_counter() - started
        self.done, self.losses = stop, summary["losses"]
        progress = {"config": self.recorded_config, "iteration": self.done, "train_s": self.seconds}
        write_record(progress, self.progress_path)
        self.log(
            f"{self.spec.name}: {self.done}/{self.config.max_iters} iterations, {self.seconds:.0f} s, "
            f"loss {sum(self.losses.values()):.3f}"
        )

    def result(self) -> dict[str, Any]:
        """{'train_s', 'resumed_from_iteration', 'train_s_estimated', 'losses'} of the finished run."""
        losses = self.losses
        if not losses:  # nothing left to train: the last losses the log holds
            log_path = self.folder / engine.LOG_NAME
            lines = log_path.read_text().splitlines() if log_path.is_file() else []
            logged = [json.loads(line) for line in lines if line.strip()]
            last: dict[str, Any] = next((r for r in reversed(logged) if "loss" in r), {})
            losses = {k: v for k, v in last.items() if k.startswith("loss_")}
        return {
            "train_s": self.seconds,
            "resumed_from_iteration": self.resumed_from,
            "train_s_estimated": self.estimated,
            "losses": losses,
        }


def _start(
    spec: ModelSpec,
    config: SipMaskConfig,
    budget_s: float,
    timing: dict[str, Any],
    train_set: CocoInstances,
    work_dir: str | os.PathLike,
    log: Callable[[str], None],
) -> _Training:
    """The training of a calibrated model: its iterations for the budget, its schedule scaled to them."""
    iters = iterations_for_budget(budget_s, timing["median_s"])
    trained_config = budget_config(config, iters)
    log(
        f"{spec.name}: {iters} iterations fit {budget_s:g} s (lr {trained_config.lr:g}, "
        f"lr steps {list(trained_config.lr_steps)}, warm-up {trained_config.warmup_iters})"
    )
    return _Training(spec, trained_config, train_set, model_dir(work_dir, spec.name), timing["median_s"], log)


def _finish(
    training: _Training,
    timing: dict[str, Any],
    settings: dict[str, Any],
    val_set: CocoInstances,
    work_dir: str | os.PathLike,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Evaluate a trained model on the val split; write and return its record (no speed: compare
    times every model of the table side by side)."""
    spec, config = training.spec, training.config
    model = load_model(spec, training.checkpoint)
    started = time.perf_counter()
    threshold = spec.mask_threshold if spec.mask_threshold is not None else config.mask_threshold
    _, metrics = engine.evaluate(model, val_set, "cpu", EVAL_BATCH, mask_threshold=threshold, progress=False)
    trained = training.result()
    record = {
        "format": RUN_FORMAT,
        "name": spec.name,
        "title": spec.title,
        "parameters": count_parameters(model),
        "iterations": config.max_iters,
        "batch_size": config.batch_size,
        "lr": config.lr,
        "lr_steps": list(config.lr_steps),
        "warmup_iters": config.warmup_iters,
        "calibration": timing,
        "train_s": round(trained["train_s"], 2),
        "train_s_estimated": trained["train_s_estimated"],
        "resumed_from_iteration": trained["resumed_from_iteration"],
        "final_losses": trained["losses"],
        "mask_threshold": threshold,
        "box_AP": metrics["bbox"]["AP"],
        "box_AP50": metrics["bbox"]["AP50"],
        "mask_AP": metrics["segm"]["AP"],
        "mask_AP50": metrics["segm"]["AP50"],
        "metrics": metrics,  # the 12 COCOeval numbers per type, fractions in [0, 1]
        "eval_s": round(time.perf_counter() - started, 2),
        "threads": torch.get_num_threads(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "settings": settings,
    }
    write_record(record, record_path(work_dir, spec.name))
    log(f"{spec.name}: box AP {100 * record['box_AP']:.1f}, mask AP {100 * record['mask_AP']:.1f}")
    return record


def run_model(
    spec: ModelSpec,
    budget_s: float,
    threads: int,
    train_set: CocoInstances,
    val_set: CocoInstances,
    work_dir: str | os.PathLike,
    lr: float | None = None,
    calibration: tuple[int, int, int] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Calibrate, train for the budget and evaluate one model, alone; write and return its record.

    Returns the finished record of the same settings from WORK/records/<name>.json instead when
    there is one (with 'skipped': True). Runs under torch.set_num_threads(threads) (restored after).
    The step time is WORK/<name>/calibration.json's when it was measured under the same settings,
    else the model is calibrated here. compare() does the same for several models side by side.
    calibration: (warm-up, rounds, steps per round), default (CALIBRATION_WARMUP, CALIBRATION_ROUNDS,
    CALIBRATION_STEPS).
    """
    calibration = calibration or (CALIBRATION_WARMUP, CALIBRATION_ROUNDS, CALIBRATION_STEPS)
    config = base_config(spec, len(train_set.class_names), lr)
    settings = run_settings(spec, config, budget_s, threads, train_set, val_set, calibration)
    done = load_finished_record(record_path(work_dir, spec.name), settings)
    if done is not None:
        return done | {"skipped": True}
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        timing = calibrate([(spec, config, settings)], train_set, work_dir, log)[spec.name]
        training = _start(spec, config, budget_s, timing, train_set, work_dir, log)
        while not training.finished:
            training.chunk()
        return _finish(training, timing, settings, val_set, work_dir, log) | {"skipped": False}
    finally:
        torch.set_num_threads(previous_threads)


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
    calibration: tuple[int, int, int] | None = None,
    inference: tuple[int, int] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run every model of MODELS (or `only` those); write OUT/speed_accuracy.{json,md}.

    Side by side, so that a slow phase of the machine hits every model alike: the models without a
    finished record are calibrated together (`calibrate`), then trained in turns of CHECKPOINT_EVERY
    iterations, each for the iterations its step time fits into the budget, then evaluated; at the
    end every model of the table is timed at batch 1, image by image in turn (time_inference).

    budget_s: training seconds per model. threads: torch threads for everything. work_dir: records,
    calibrations and checkpoints (finished models with the same settings are skipped, unfinished
    ones continue). data_root: the folder holding synthetic/. lrs: {model name: learning rate}
    overriding ModelSpec.lr. inference: (warm-up, timed) images, default (INFERENCE_WARMUP,
    INFERENCE_IMAGES). The report also lists models outside `only` that have a finished record of
    the same settings. A model that fails (e.g. a NaN loss) is reported and left out.
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
    calibration = calibration or (CALIBRATION_WARMUP, CALIBRATION_ROUNDS, CALIBRATION_STEPS)
    inference = inference or (INFERENCE_WARMUP, INFERENCE_IMAGES)
    train_set, val_set = synthetic_datasets(data_root)
    selected = [known[name] for name in only] if only else list(MODELS)
    log(
        f"compare: {', '.join(s.name for s in selected)}; {budget_s:g} s of training each, {threads} "
        f"thread(s); records in {record_path(work_dir, '*')}"
    )
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        records, failed = _run_side_by_side(
            selected, budget_s, threads, train_set, val_set, work_dir, lrs, calibration, log
        )
        trained = {
            r["name"]: load_model(
                known[r["name"]], model_dir(work_dir, r["name"]) / checkpoints.CHECKPOINT_NAME
            )
            for r in records
        }
        speeds = time_inference(trained, val_set, images=inference[1], warmup=inference[0]) if trained else {}
    finally:
        torch.set_num_threads(previous_threads)
    for name, speed in speeds.items():
        log(f"{name}: {speed['median_ms']:.1f} ms/image (median of {speed['images']}, side by side)")

    report = {
        "format": FORMAT,
        "settings": {
            "command": command_line(budget_s, threads, only, lrs),
            "models": {spec.name: spec.title for spec in MODELS},
            "base_preset": BASE_PRESET,
            "budget_s": float(budget_s),
            "threads": threads,
            "batch_size": preset(BASE_PRESET).batch_size,
            "data": relative(data_root / "synthetic"),
            "train_images": len(train_set),
            "val_images": len(val_set),
            "calibration": _calibration_json(calibration),
            "checkpoint_every": CHECKPOINT_EVERY,  # iterations per turn in training
            "inference": {"warmup": inference[0], "images": min(inference[1], len(val_set))},
        },
        "environment": {
            "date": time.strftime("%Y-%m-%d"),
            **machine(),
            "device": "cpu",
            "failed": failed,
        },
        "records": [
            {k: v for k, v in r.items() if k not in ("settings", "skipped")}
            | {"inference": speeds[r["name"]]}
            for r in records
        ],
    }
    json_path, markdown_path = write_report(report, out)
    log(f"wrote {json_path} and {markdown_path}")
    return report


def _run_side_by_side(
    selected: Sequence[ModelSpec],
    budget_s: float,
    threads: int,
    train_set: CocoInstances,
    val_set: CocoInstances,
    work_dir: str | os.PathLike,
    lrs: dict[str, float],
    calibration: tuple[int, int, int],
    log: Callable[[str], None],
) -> tuple[list[dict[str, Any]], list[str]]:
    """compare's training: (the records of the table in MODELS' order, the failures). The selected
    models without a finished record are calibrated together, then trained in turns of a chunk each,
    then evaluated; models outside `selected` are listed when finished under the same settings."""
    plans, finished = [], {}
    for spec in MODELS:
        config = base_config(spec, len(train_set.class_names), lrs.get(spec.name))
        settings = run_settings(spec, config, budget_s, threads, train_set, val_set, calibration)
        done = load_finished_record(record_path(work_dir, spec.name), settings)
        if done is not None:
            finished[spec.name] = done
        elif spec in selected:
            plans.append((spec, config, settings))
    failed: list[str] = []

    def failure(spec: ModelSpec, error: Exception) -> None:
        failed.append(f"{spec.name}: {type(error).__name__}: {error}")
        log(f"{spec.name} FAILED: {error}")

    timings = calibrate(plans, train_set, work_dir, log)
    trainings = {}
    for spec, config, _ in plans:
        trainings[spec.name] = _start(spec, config, budget_s, timings[spec.name], train_set, work_dir, log)
    while any(not t.finished for t in trainings.values()):
        for name, training in list(trainings.items()):
            if training.finished:
                continue
            try:
                training.chunk()
            except Exception as error:  # noqa: BLE001 - one failing model must not lose the others
                failure(training.spec, error)
                del trainings[name]
    for spec, _, settings in plans:
        if spec.name in trainings:
            try:
                finished[spec.name] = _finish(
                    trainings[spec.name], timings[spec.name], settings, val_set, work_dir, log
                )
            except Exception as error:  # noqa: BLE001 - as above
                failure(spec, error)
    return [finished[spec.name] for spec in MODELS if spec.name in finished], failed
