"""Engine, run.py: determinism and resume (fresh seed or checkpoint), with the toy detector and SipMask."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from engine_toys import ToyDetector, assert_same_weights, fresh_model, run, toy_config
from sipmask_ref import engine
from sipmask_ref.config import preset
from sipmask_ref.data.coco import CocoInstances


def test_same_seed_same_weights(tmp_path):
    c = toy_config()
    a, _ = run(tmp_path / "a", c)
    b, _ = run(tmp_path / "b", c)
    assert_same_weights(a, b)
    other, _ = run(tmp_path / "c", dataclasses.replace(c, seed=4))
    assert not torch.equal(a.head.weight, other.head.weight)


def test_resume_reaches_the_uninterrupted_weights(tmp_path):
    c = toy_config(max_iters=8)
    full, _ = run(tmp_path / "full", c, checkpoint_every=100)

    _part, summary = run(tmp_path / "part", c, iters=3)
    assert summary["iteration"] == 3
    assert engine.read_checkpoint(tmp_path / "part" / "checkpoint.pt")["iteration"] == 3
    resumed = ToyDetector()  # a new process: fresh weights, restored from the checkpoint
    _, summary = run(tmp_path / "part", c, model=resumed, resume=True)
    assert summary["iteration"] == 8
    assert_same_weights(full, resumed)
    saved_full = engine.read_checkpoint(tmp_path / "full" / "checkpoint.pt")
    saved_resumed = engine.read_checkpoint(tmp_path / "part" / "checkpoint.pt")
    torch.testing.assert_close(saved_full["optimizer"], saved_resumed["optimizer"], rtol=0, atol=0)
    logged = [
        json.loads(line)["iteration"]
        for line in (tmp_path / "part" / "train_log.jsonl").read_text().splitlines()
    ]
    assert logged == [3, 8]


def test_resume_after_a_crash_mid_run(tmp_path):
    c = toy_config(max_iters=8)
    full, _ = run(tmp_path / "full", c)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "crash", c, model=fresh_model(c, interrupt_at=6), checkpoint_every=2, log_every=1)
    assert engine.read_checkpoint(tmp_path / "crash" / "checkpoint.pt")["iteration"] == 4
    resumed = ToyDetector()
    run(tmp_path / "crash", c, model=resumed, resume=True, log_every=1)
    assert_same_weights(full, resumed)
    logged = [
        json.loads(line)["iteration"]
        for line in (tmp_path / "crash" / "train_log.jsonl").read_text().splitlines()
    ]
    assert logged == list(range(1, 9))  # step 5, logged before the crash, is not duplicated


def test_weight_average_resumes_and_is_what_a_checkpoint_evaluates(tmp_path):
    c = toy_config(max_iters=8, ema_decay=0.9)
    full, _ = run(tmp_path / "full", c, checkpoint_every=100)
    run(tmp_path / "part", c, iters=3)
    resumed = ToyDetector()
    run(tmp_path / "part", c, model=resumed, resume=True)
    assert_same_weights(full, resumed)  # both end holding the average
    saved = engine.read_checkpoint(tmp_path / "full" / "checkpoint.pt")
    torch.testing.assert_close(
        saved["ema"], engine.read_checkpoint(tmp_path / "part" / "checkpoint.pt")["ema"], rtol=0, atol=0
    )
    assert engine.evaluation_weights(saved) is saved["ema"]
    torch.testing.assert_close(full.state_dict(), saved["ema"], rtol=0, atol=0)
    assert any(not torch.equal(saved["model"][k], saved["ema"][k]) for k in saved["model"])
    assert engine.evaluation_weights(dict(saved, ema=None)) is saved["model"]


def test_resume_without_checkpoint_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume from"):
        run(tmp_path, toy_config(), resume=True)


def test_real_model_resume_is_bit_identical(tmp_path):
    """The same check with SipMask itself (cpu_tiny) on 4 synthetic images: no hidden randomness."""
    from sipmask_ref.data.synthetic import make_data
    from sipmask_ref.model import SipMask

    made = make_data(root=tmp_path, num_train=4, num_val=1, video=False, progress=False, verbose=False)
    made = made["synthetic"]
    dataset = CocoInstances(made["train_annotations"], made["train_images"])
    c = dataclasses.replace(preset("cpu_tiny"), batch_size=2)

    def fresh():
        engine.seed_everything(c.seed)
        return SipMask(c)

    full = fresh()
    engine.train(full, c, dataset, tmp_path / "full", iters=3, progress=False)
    engine.train(fresh(), c, dataset, tmp_path / "part", iters=1, progress=False)
    resumed = SipMask(c)
    engine.train(resumed, c, dataset, tmp_path / "part", iters=3, resume=True, progress=False)
    assert_same_weights(full, resumed)
