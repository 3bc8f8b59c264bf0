"""Engine, loop.py: the NaN guard, what a run writes (checkpoint contents, log, metrics during training)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from engine_toys import ToyDataset, ToyDetector, assert_same_weights, fresh_model, run, toy_config
from sipmask_ref import engine


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    c = toy_config(max_iters=8)
    with pytest.raises(engine.NonFiniteLossError, match=r"step 5 of 8.*loss_box = nan") as info:
        run(tmp_path, c, model=fresh_model(c, nan_at=5), checkpoint_every=2)
    assert "step 4" in str(info.value)  # the message names the checkpoint that is kept
    state = engine.read_checkpoint(tmp_path / "checkpoint.pt")
    assert state["iteration"] == 4
    model = ToyDetector()
    model.load_state_dict(state["model"])
    assert all(torch.isfinite(p).all() for p in model.parameters())
    reference, _ = run(tmp_path / "ref", c, iters=4)  # the checkpoint is the good step-4 state
    assert_same_weights(reference, model)


def test_checkpoint_contents_and_metrics(tmp_path):
    c = toy_config(max_iters=4, lr_steps=(3,))
    calls = []

    def eval_fn(model, dataset):
        calls.append(len(dataset))
        return {"bbox": {"AP": 0.25}}

    _, summary = run(tmp_path, c, val_dataset=ToyDataset(3), eval_fn=eval_fn, eval_every=2)
    assert calls == [3, 3]  # evaluated at step 2 and at the end
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics == {"bbox": {"AP": 0.25}} == summary["metrics"]
    logged = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [r["metrics"] for r in logged if "metrics" in r] == [{"bbox": {"AP": 0.25}}] * 2
    state = engine.read_checkpoint(tmp_path / "checkpoint.pt")
    assert {"model", "optimizer", "scheduler", "scaler", "iteration", "config", "rng"} <= set(state)
    assert set(state["rng"]) >= {"torch", "numpy", "python"}
    assert state["config"] == dataclasses.asdict(c)
    assert state["dataset"] == {"class_names": ["a", "b"], "label_to_cat_id": {1: 7, 2: 9}}
    assert engine.config_from_dict(state["config"]) == c
