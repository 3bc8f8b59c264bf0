"""The ablation study's pretrained body (sipmask_ref/reproduce/pretrain.py, runs.load_body): the box
detector's losses, the weights a run starts from, and a run never resumed from another start."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from conftest import tiny_synthetic
from sipmask_ref import engine, reproduce
from sipmask_ref.data.transforms import collate
from sipmask_ref.files import read_json
from sipmask_ref.model import SipMask
from sipmask_ref.reproduce import BASELINE, FULL


def _batch(data: Path, count: int = 2) -> tuple[list[torch.Tensor], list[dict]]:
    train, _ = reproduce.synthetic_datasets(data)
    images, targets = collate([train[k] for k in range(count)])
    return list(images), list(targets)


def test_box_detector_trains_the_detector_losses_only(tmp_path: Path) -> None:
    tiny_synthetic(tmp_path / "data")
    config = dataclasses.replace(reproduce.pretrain_config(10, num_classes=6), input_size=(64, 64))
    images, targets = _batch(tmp_path / "data")
    engine.seed_everything(0)
    detector = reproduce.BoxDetector(config).train()
    engine.seed_everything(0)
    sipmask = SipMask(config).train()
    assert detector.state_dict().keys() == sipmask.state_dict().keys()  # its body loads into SipMask

    losses = detector(images, targets)
    full = sipmask(images, targets)
    assert list(losses) == ["loss_cls", "loss_box", "loss_centerness"]  # no loss_mask
    for name, value in losses.items():  # the same values as SipMask's, which adds the mask loss
        torch.testing.assert_close(value, full[name], rtol=0, atol=0)
    sum(losses.values()).backward()
    assert all(p.grad is None for p in detector.basis_masks.parameters())  # nothing reaches the masks
    assert all(p.grad is None for p in detector.head.spatial_coefficients.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in detector.backbone.body.parameters())


def test_pretraining_and_load_body(tmp_path: Path) -> None:
    data, work = tiny_synthetic(tmp_path / "data"), tmp_path / "work"
    lines: list[str] = []
    body, record = reproduce.pretrain_body(work, data, iters=2, threads=1, log=lines.append, progress=False)
    assert body == reproduce.expected_body(work, 2, num_classes=6)
    assert record["iters"] == 2
    assert 0.0 <= record["box_AP"] <= 1.0 or record["box_AP"] == -1  # COCOeval's -1: nothing to score
    assert read_json(work / "pretrain" / "record.json", "record") == json.loads(json.dumps(record))
    again, _ = reproduce.pretrain_body(work, data, iters=2, threads=1, log=lines.append, progress=False)
    assert again == body and "done already" in lines[-1]  # trained once

    # load_body copies the body's weights, and only those
    trained = torch.load(body.checkpoint, map_location="cpu", weights_only=True)["model"]
    engine.seed_everything(5)
    model = SipMask(reproduce.ablation_config(FULL, 5, 3, num_classes=6))
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    reproduce.load_body(model, body)
    for key, value in model.state_dict().items():
        expected = trained[key] if key.startswith("backbone.body.") else fresh[key]
        torch.testing.assert_close(value, expected, rtol=0, atol=0, msg=key)

    # a checkpoint other than the one named is refused, naming the file
    other = dataclasses.replace(body, iters=3)
    with pytest.raises(ValueError, match="not the pretrained body"):
        reproduce.load_body(model, other)


@pytest.mark.filterwarnings("ignore:.*will be overwritten by this fresh run")
def test_run_is_not_resumed_from_another_start(tmp_path: Path) -> None:
    data, work = tiny_synthetic(tmp_path / "data"), tmp_path / "work"
    scratch = reproduce.run_one(BASELINE, 0, 2, work, data, threads=1)
    assert scratch["pretrained_body"] is None
    body, _ = reproduce.pretrain_body(work, data, iters=2, threads=1, log=lambda line: None, progress=False)
    reproduce.run_record_path(work, BASELINE, 0).unlink()  # as if stopped before its evaluation
    # the checkpoint on disk is a finished run of the same config, but from scratch: trained again
    pretrained = reproduce.run_one(BASELINE, 0, 2, work, data, threads=1, body=body)
    assert pretrained["resumed_from_iteration"] == 0
    assert pretrained["pretrained_body"] == body.identity()
    # a record from one start is not taken for the other
    config = reproduce.ablation_config(BASELINE, 0, 2, num_classes=6)
    with pytest.warns(UserWarning, match="another configuration"):
        assert reproduce.load_finished_run(reproduce.run_record_path(work, BASELINE, 0), config, None) is None
    assert reproduce.load_finished_run(reproduce.run_record_path(work, BASELINE, 0), config, body) is not None
