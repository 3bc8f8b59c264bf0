"""The speed / accuracy comparison (sipmask_ref/compare.py): the Mask R-CNN builder, the budget
arithmetic, the report writer and one tiny end-to-end run of all three models."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from torchvision.models.detection import MaskRCNN

from conftest import tiny_synthetic
from sipmask_ref import cli, compare, engine
from sipmask_ref.backbone import BackboneWithFPN
from sipmask_ref.config import preset
from sipmask_ref.model import SipMask
from sipmask_ref.reproduce import BASELINE


def _tiny_config(num_classes: int = 3):
    return dataclasses.replace(preset("cpu_tiny"), num_classes=num_classes)


# ----------------------------------------------------------------------------------------------------
# Mask R-CNN on our body + FPN
# ----------------------------------------------------------------------------------------------------
def test_mask_rcnn_builder_follows_the_model_contract() -> None:
    torch.manual_seed(0)
    config = _tiny_config(3)
    model = compare.build_mask_rcnn(config)
    assert isinstance(model, MaskRCNN) and isinstance(model.backbone, compare.PyramidAdapter)
    assert isinstance(model.backbone.body_fpn, BackboneWithFPN) and model.backbone.out_channels == 64
    assert model.roi_heads.box_predictor.cls_score.out_features == 4  # C + 1 with the background
    assert model.rpn.head.cls_logits.out_channels == 3  # one size x three ratios per level
    # the same body + FPN as SipMask: equal parameter counts
    assert compare.count_parameters(model.backbone) == compare.count_parameters(SipMask(config).backbone)

    features = model.backbone(torch.rand(1, 3, 128, 128))  # P3..P7 under torchvision's names
    assert list(features) == ["0", "1", "2", "3", "pool"]
    assert [f.shape[-1] for f in features.values()] == [16, 8, 4, 2, 1]

    images = [torch.rand(3, 96, 128), torch.rand(3, 128, 128)]  # [3, H, W] in [0, 1]
    masks = torch.zeros(2, 96, 128, dtype=torch.uint8)
    masks[0, 10:40, 20:60], masks[1, 50:90, 70:120] = 1, 1
    targets = [
        {
            "boxes": torch.tensor([[20.0, 10.0, 60.0, 40.0], [70.0, 50.0, 120.0, 90.0]]),
            "labels": torch.tensor([1, 3]),
            "masks": masks,
        },
        {
            "boxes": torch.zeros(0, 4),
            "labels": torch.zeros(0, dtype=torch.int64),  # a negative image
            "masks": torch.zeros(0, 128, 128, dtype=torch.uint8),
        },
    ]
    model.train()
    losses = model(images, targets)
    assert {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"} == set(
        losses
    )
    assert all(torch.isfinite(v) and v.dim() == 0 for v in losses.values())
    sum(losses.values()).backward()

    model.eval()
    with torch.no_grad():
        outputs = model(images)
    for image, output in zip(images, outputs, strict=True):
        assert {"boxes", "labels", "scores", "masks"} <= set(output)
        n = len(output["scores"])
        assert output["boxes"].shape == (n, 4) and output["labels"].shape == (n,)
        assert output["masks"].shape == (n, 1, *image.shape[-2:])  # probabilities at the image size
        assert n == 0 or (0 <= float(output["masks"].min()) and float(output["masks"].max()) <= 1)
        assert n == 0 or (1 <= int(output["labels"].min()) and int(output["labels"].max()) <= 3)


def test_load_mask_rcnn_prefers_the_averaged_weights(tmp_path: Path) -> None:
    config = _tiny_config(2)
    torch.manual_seed(0)
    live = compare.build_mask_rcnn(config).state_dict()
    averaged = {k: v + 1 if v.is_floating_point() else v for k, v in live.items()}
    state = {
        "format": engine.CHECKPOINT_FORMAT,
        "iteration": 3,
        "model": live,
        "ema": averaged,
        "config": dataclasses.asdict(config),
    }
    engine.save_checkpoint(state, tmp_path / "a.pt")
    loaded = compare.load_mask_rcnn(tmp_path / "a.pt")
    assert not loaded.training
    name = "roi_heads.box_head.fc6.weight"
    assert torch.equal(loaded.state_dict()[name], averaged[name])
    engine.save_checkpoint(state | {"ema": None}, tmp_path / "b.pt")
    assert torch.equal(compare.load_mask_rcnn(tmp_path / "b.pt").state_dict()[name], live[name])


def test_base_configs_of_the_three_models() -> None:
    specs = {spec.name: spec for spec in compare.MODELS}
    assert list(specs) == ["sipmask", "yolact_baseline", "mask_rcnn"]
    sipmask = compare.base_config(specs["sipmask"], 6)
    assert sipmask == dataclasses.replace(preset("cpu_tiny"), num_classes=6)
    baseline = compare.base_config(specs["yolact_baseline"], 6)
    assert specs["yolact_baseline"].variant is BASELINE
    assert baseline == dataclasses.replace(sipmask, **BASELINE.switches())
    assert (baseline.sub_regions, baseline.basis_source) == ((1, 1), "p3")
    mask_rcnn = compare.base_config(specs["mask_rcnn"], 6)
    assert mask_rcnn.lr == compare.MASK_RCNN_LR and mask_rcnn == dataclasses.replace(sipmask, lr=mask_rcnn.lr)
    assert compare.base_config(specs["mask_rcnn"], 6, lr=1e-3).lr == 1e-3
    with pytest.raises(ValueError, match="learning rate"):
        compare.base_config(specs["sipmask"], 6, lr=0.0)


# ----------------------------------------------------------------------------------------------------
# the budget
# ----------------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------------
# the report
# ----------------------------------------------------------------------------------------------------
def _fake_record(name: str, title: str, box: float, mask: float, ms: float) -> dict:
    return {
        "name": name,
        "title": title,
        "parameters": 1_639_968,
        "iterations": 480,
        "train_s": 241.3,
        "lr": 4e-3,
        "mask_threshold": 0.4,
        "box_AP": box,
        "box_AP50": box + 0.2,
        "mask_AP": mask,
        "mask_AP50": -1.0,
        "threads": 2,
        "inference": {
            "median_ms": ms,
            "p25_ms": ms - 1,
            "p75_ms": ms + 2,
            "min_ms": ms - 2,
            "max_ms": ms + 9,
            "mean_ms": ms,
            "images": 100,
        },
    }


def _fake_report(records: list[dict]) -> dict:
    return {
        "format": compare.FORMAT,
        "settings": {
            "command": "python -m sipmask_ref compare --budget-s 240 --threads 2",
            "models": {s.name: s.title for s in compare.MODELS},
            "base_preset": "cpu_tiny",
            "budget_s": 240.0,
            "threads": 2,
            "batch_size": 8,
            "data": "data/synthetic",
            "train_images": 600,
            "val_images": 150,
            "calibration": {"warmup": 5, "steps": 15},
            "inference": {"warmup": 5, "images": 100},
        },
        "environment": {
            "date": "2025-01-02",
            "python": "3.11.7",
            "torch": "2.x",
            "torchvision": "0.y",
            "processor": "x86_64",
            "cpu_count": 2,
            "failed": [],
        },
        "records": records,
    }


def test_report_writer_on_fake_records(tmp_path: Path) -> None:
    report = _fake_report(
        [
            _fake_record("sipmask", "SipMask (cpu_tiny)", 0.251, 0.2049, 12.34),
            _fake_record("mask_rcnn", "Mask R-CNN (torchvision)", 0.3, 0.22, 30.0),
        ]
    )
    json_path, markdown_path = compare.write_report(report, tmp_path / "out")
    assert json.loads(json_path.read_text()) == report
    text = markdown_path.read_text()
    assert text.startswith("# Speed vs accuracy (paper Table 1)")
    assert (
        "| SipMask (cpu_tiny) | 1.64 M | 480 | 241 | 25.1 | 45.1 | 20.5 | - | 12.3 | 11.3-14.3 | 2 |" in text
    )
    assert "| YOLACT-like baseline (Table 2) | not run |" in text  # listed, without a record
    assert "`python -m sipmask_ref compare --budget-s 240 --threads 2`" in text
    assert "2025-01-02" in text and "torch 2.x, torchvision 0.y" in text and "`data/synthetic`" in text
    assert (
        text.index("SipMask (cpu_tiny)")
        < text.index("YOLACT-like")
        < text.index("Mask R-CNN (torchvision) |")
    )


# ----------------------------------------------------------------------------------------------------
# one tiny end-to-end run of all three models, a rerun that skips them, the CLI
# ----------------------------------------------------------------------------------------------------
def _small_preset(name: str):
    """cpu_tiny at 64x64 input and 2 images per step: the tiny run takes seconds, not minutes."""
    return dataclasses.replace(preset(name), batch_size=2, input_size=(64, 64))


def test_compare_tiny_run_writes_both_files_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny_synthetic(tmp_path / "data")
    (tmp_path / "cwd").mkdir()  # the data lies outside the working directory, wherever pytest runs from
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setattr(compare, "preset", _small_preset)
    monkeypatch.setattr(compare, "CALIBRATION_WARMUP", 1)
    monkeypatch.setattr(compare, "CALIBRATION_STEPS", 1)
    monkeypatch.setattr(compare, "INFERENCE_WARMUP", 1)
    monkeypatch.setattr(compare, "CHECKPOINT_EVERY", 2)  # several engine.train chunks per model
    threads = torch.get_num_threads()
    kwargs = dict(
        out=tmp_path / "results",
        budget_s=0.4,
        threads=1,
        work_dir=tmp_path / "work",
        data_root=tmp_path / "data",
        inference=(1, 2),
        log=lambda line: None,
    )
    report = compare.compare(**kwargs)
    assert torch.get_num_threads() == threads  # 1 thread inside, the caller's count restored
    assert not report["environment"]["failed"]
    records = {r["name"]: r for r in report["records"]}
    assert list(records) == ["sipmask", "yolact_baseline", "mask_rcnn"]
    for name, record in records.items():
        assert record["iterations"] >= 1 and record["threads"] == 1 and record["train_s"] > 0
        assert record["iterations"] == compare.iterations_for_budget(0.4, record["calibration"]["mean_s"])
        assert record["inference"]["images"] == 2 and record["inference"]["median_ms"] > 0
        assert -1 <= record["mask_AP"] <= 1 and -1 <= record["box_AP"] <= 1
        assert (compare.model_dir(tmp_path / "work", name) / engine.CHECKPOINT_NAME).is_file()
    assert records["mask_rcnn"]["mask_threshold"] == 0.5 and records["sipmask"]["mask_threshold"] == 0.4
    assert records["mask_rcnn"]["lr"] == compare.MASK_RCNN_LR
    assert (
        records["mask_rcnn"]["parameters"]
        > records["sipmask"]["parameters"]
        > records["yolact_baseline"]["parameters"]
    )

    text = (tmp_path / "results" / "speed_accuracy.md").read_text()
    raw = (tmp_path / "results" / "speed_accuracy.json").read_text()
    assert "| Mask R-CNN (torchvision) |" in text and "not run" not in text
    assert str(tmp_path) not in text and str(tmp_path) not in raw  # no machine paths in the reports
    assert json.loads(raw)["settings"]["data"] == "synthetic"

    stamps = {n: compare.record_path(tmp_path / "work", n).stat().st_mtime_ns for n in records}
    again = compare.compare(**kwargs)  # same settings: every model skipped
    assert {n: compare.record_path(tmp_path / "work", n).stat().st_mtime_ns for n in records} == stamps
    assert [r["mask_AP"] for r in again["records"]] == [r["mask_AP"] for r in report["records"]]

    # stopped during the evaluation: the finished training is only evaluated again, with its seconds
    compare.record_path(tmp_path / "work", "sipmask").unlink()
    third = compare.compare(**kwargs | {"only": ["sipmask"]})
    redone = third["records"][0]
    assert redone["resumed_from_iteration"] == redone["iterations"] == records["sipmask"]["iterations"]
    assert redone["train_s"] == records["sipmask"]["train_s"] and not redone["train_s_estimated"]
    assert redone["mask_AP"] == records["sipmask"]["mask_AP"]
    assert redone["final_losses"] == records["sipmask"]["final_losses"] != {}
    assert len(third["records"]) == 3  # the others' finished records are still reported

    # the CLI: the same settings skip everything and write the files; mistakes are usage errors
    monkeypatch.setattr(compare, "INFERENCE_IMAGES", 2)
    argv = [
        "compare",
        "--budget-s",
        "0.4",
        "--threads",
        "1",
        "--out",
        str(tmp_path / "cli"),
        "--work-dir",
        str(tmp_path / "work"),
        "--data-root",
        str(tmp_path / "data"),
    ]
    assert cli.main(argv) == 0
    written = json.loads((tmp_path / "cli" / "speed_accuracy.json").read_text())
    assert written["records"] == json.loads(json.dumps(third["records"]))
    assert cli.main(argv + ["--only", "nope"]) == 2
    assert cli.main(argv + ["--lr", "mask_rcnn"]) == 2
    assert cli.main(argv + ["--lr", "mask_rcnn=0"]) == 2
    assert cli.main(argv + ["--budget-s", "0"]) == 2
