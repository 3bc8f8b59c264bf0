"""The same budget for every model (sipmask_ref/compare/timing.py): iterations for a budget, the
schedule scaled to them, the side-by-side calibration."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import tiny_synthetic
from sipmask_ref import compare
from sipmask_ref.cli_common import synthetic_split
from sipmask_ref.config import preset
from sipmask_ref.data.coco import CocoInstances


def test_iterations_for_budget() -> None:
    assert compare.iterations_for_budget(240, 0.5) == 480
    assert compare.iterations_for_budget(240, 0.7) == 342  # int(342.86): whole steps within the budget
    assert compare.iterations_for_budget(1, 5.0) == 1  # always at least one step
    for budget, step in ((0, 1.0), (-1, 1.0), (10, 0.0)):
        with pytest.raises(ValueError, match="must be > 0"):
            compare.iterations_for_budget(budget, step)


def test_budget_config_scales_the_presets_schedule() -> None:
    base = dataclasses.replace(preset("cpu_tiny"), max_iters=1800, lr_steps=(1400, 1700), warmup_iters=100)
    config = compare.budget_config(base, 900)
    assert (config.max_iters, config.lr_steps, config.warmup_iters) == (900, (700, 850), 100)
    assert compare.budget_config(base, 360).lr_steps == (280, 340)  # 77.8% and 94.4% of the run
    short = compare.budget_config(base, 5)
    assert short.lr_steps == (4, 5) and short.warmup_iters == 4  # the warm-up ends at the first step
    assert compare.budget_config(base, 1).lr_steps == (1,)
    schedule = {"max_iters", "lr_steps", "warmup_iters"}
    assert all(
        getattr(config, f.name) == getattr(base, f.name)
        for f in dataclasses.fields(base)
        if f.name not in schedule
    )
    with pytest.raises(ValueError, match="iters must be >= 1"):
        compare.budget_config(base, 0)


class _Recorder(nn.Module):
    """A stand-in model: one parameter, a loss, and the order in which the models were called."""

    def __init__(self, name: str, calls: list[str]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(()))
        self.name, self.calls = name, calls

    def forward(self, images: list[torch.Tensor], targets: list[dict]) -> dict[str, torch.Tensor]:
        self.calls.append(self.name)
        return {"loss": self.weight * len(images)}


def test_calibration_runs_the_models_side_by_side_in_rounds(tmp_path: Path) -> None:
    tiny_synthetic(tmp_path)
    train_set = CocoInstances(*synthetic_split(tmp_path, "train"))
    config = dataclasses.replace(preset("cpu_tiny"), batch_size=2)
    calls: list[str] = []
    models = {name: (_Recorder(name, calls), config) for name in ("a", "b")}
    timings = compare.time_training_steps(models, train_set, warmup=1, rounds=2, steps=3)
    # the warm-up of each, then the rounds: every model in turn, `steps` steps each
    assert calls == ["a", "b"] + (["a"] * 3 + ["b"] * 3) * 2
    assert set(timings) == {"a", "b"}
    for timing in timings.values():
        assert timing["steps"] == 6
        assert 0 < timing["min_s"] <= timing["median_s"] <= timing["max_s"]
        assert timing["min_s"] <= timing["mean_s"] <= timing["max_s"]
    assert models["a"][0].weight.item() != 1.0  # real optimizer steps were taken
    with pytest.raises(ValueError, match="rounds and steps >= 1"):
        compare.time_training_steps(models, train_set, warmup=0, rounds=0, steps=1)


class _Predictor(nn.Module):
    """A stand-in model at inference: records who was called, and in which mode."""

    def __init__(self, name: str, calls: list[tuple[str, bool]]) -> None:
        super().__init__()
        self.name, self.calls = name, calls

    def forward(self, images: list[torch.Tensor]) -> list[dict]:
        self.calls.append((self.name, self.training))
        return [{} for _ in images]


def test_inference_timing_takes_the_models_in_turn_image_by_image(tmp_path: Path) -> None:
    tiny_synthetic(tmp_path)  # 2 val images
    val_set = CocoInstances(*synthetic_split(tmp_path, "val"))
    calls: list[tuple[str, bool]] = []
    models = {"a": _Predictor("a", calls), "b": _Predictor("b", calls)}
    speeds = compare.time_inference(models, val_set, images=5, warmup=1)
    # one warm-up pass of each, then on each of the 2 images every model in turn, in eval mode
    assert calls == [("a", False), ("b", False)] * 3
    for speed in speeds.values():
        assert speed["images"] == 2
        assert (
            0 < speed["min_ms"] <= speed["p25_ms"] <= speed["median_ms"] <= speed["p75_ms"] <= speed["max_ms"]
        )
