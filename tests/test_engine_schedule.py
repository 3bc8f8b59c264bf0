"""Engine, schedule.py: the lr schedule (by hand and as train applies it), bias groups, weight average."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn

from engine_toys import ToyDetector, run, toy_config
from sipmask_ref import engine
from sipmask_ref.config import preset


def test_lr_factor_by_hand():
    c = toy_config(
        warmup_method="linear", warmup_iters=10, warmup_factor=0.1, lr_steps=(20, 30), max_iters=40
    )
    expected = {
        0: 0.1,
        5: 0.1 + 0.9 * 0.5,
        9: 0.1 + 0.9 * 0.9,
        10: 1.0,
        19: 1.0,
        20: 0.1,
        29: 0.1,
        30: 0.01,
        39: 0.01,
    }
    for it, value in expected.items():
        assert engine.lr_factor(it, c) == pytest.approx(value), it
    c = dataclasses.replace(c, warmup_method="constant", warmup_factor=1 / 3)
    assert [engine.lr_factor(it, c) for it in (0, 9, 10)] == pytest.approx([1 / 3, 1 / 3, 1.0])


def test_train_uses_the_schedule(tmp_path):
    c = toy_config(warmup_iters=3, warmup_factor=0.1, lr_steps=(5,), max_iters=7, lr=0.02)
    _, summary = run(tmp_path, c, log_every=1)
    lrs = [r["lr"] for r in summary["log"]]
    # steps 1..7 use factors at 0..6 completed steps: warm-up 0.1, 0.4, 0.7, then 1, 1, then x0.1
    assert lrs == pytest.approx([0.002, 0.008, 0.014, 0.02, 0.02, 0.002, 0.002])
    logged = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in logged] == list(range(1, 8))


def test_bias_groups_follow_the_800_recipe():
    c = dataclasses.replace(preset("paper_r50_800"), lr=0.01)
    opt = engine.build_optimizer(ToyDetector(), c)
    weights, biases = opt.param_groups
    assert (weights["lr"], weights["weight_decay"]) == (0.01, 1e-4)
    assert (biases["lr"], biases["weight_decay"]) == (0.02, 0.0)
    assert len(biases["params"]) == 2 and all(p.dim() == 1 for p in biases["params"])


def test_weight_average_by_hand():
    model = nn.Linear(2, 1)
    average = engine.WeightAverage(model, decay=0.9)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    average.update(model, step=1)  # d_1 = min(0.9, 2 / 11)
    d = 2 / 11
    torch.testing.assert_close(average.state["weight"], d * start + (1 - d) * (start + 1.0))
    for step in range(2, 200):
        average.update(model, step)
    torch.testing.assert_close(average.state["weight"], start + 1.0)  # a constant model is its own average
