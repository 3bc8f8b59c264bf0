"""checkpoints.py: atomic checkpoint files, validated reading; the engine's re-exports."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from sipmask_ref import checkpoints, engine
from sipmask_ref.config import preset


def test_interrupted_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    checkpoints.save_checkpoint(
        {"format": checkpoints.CHECKPOINT_FORMAT, "iteration": 1, "model": {}, "config": {}}, path
    )

    def crashing_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(OSError, match="disk full"):
        checkpoints.save_checkpoint(
            {"format": checkpoints.CHECKPOINT_FORMAT, "iteration": 2, "model": {}, "config": {}}, path
        )
    monkeypatch.undo()
    assert checkpoints.read_checkpoint(path)["iteration"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file left behind


def test_read_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        checkpoints.read_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(checkpoints.CheckpointError, match="not a sipmask_ref checkpoint"):
        checkpoints.read_checkpoint(tmp_path / "junk.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(checkpoints.CheckpointError, match="not a sipmask_ref checkpoint"):
        engine.load_checkpoint(tmp_path / "other.pt")


def test_config_from_dict_drops_unknown_fields_and_rejects_bad_values():
    values = dataclasses.asdict(preset("cpu_tiny"))
    with pytest.warns(
        UserWarning, match=r"old\.pt: ignoring config fields unknown to this version: \['gone'\]"
    ):
        config = checkpoints.config_from_dict(values | {"gone": 1}, "old.pt")
    assert config == preset("cpu_tiny")
    with pytest.raises(checkpoints.CheckpointError, match="invalid config"):
        checkpoints.config_from_dict(values | {"sub_regions": "two"})


def test_evaluation_weights_prefer_the_average():
    trained, average = {"w": torch.zeros(1)}, {"w": torch.ones(1)}
    assert checkpoints.evaluation_weights({"model": trained, "ema": average}) is average
    assert checkpoints.evaluation_weights({"model": trained, "ema": None}) is trained


def test_the_engine_keeps_the_checkpoint_names():
    for name in (
        "CHECKPOINT_NAME",
        "CheckpointError",
        "read_checkpoint",
        "save_checkpoint",
        "evaluation_weights",
    ):
        assert getattr(engine, name) is getattr(checkpoints, name)
