"""One model and all of them (sipmask_ref/compare/runs.py): one tiny end-to-end run of the three
models, a rerun that skips them, a resumed evaluation, and the `compare` command."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from conftest import tiny_synthetic
from sipmask_ref import cli, compare, engine
from sipmask_ref.config import preset


def _small_preset(name: str):
    """cpu_tiny at 64x64 input and 2 images per step: the tiny run takes seconds, not minutes."""
    return dataclasses.replace(preset(name), batch_size=2, input_size=(64, 64))


def test_compare_tiny_run_writes_both_files_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny_synthetic(tmp_path / "data")
    (tmp_path / "cwd").mkdir()  # the data lies outside the working directory, wherever pytest runs from
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setattr(compare.models, "preset", _small_preset)  # base_config
    monkeypatch.setattr(compare.runs, "preset", _small_preset)  # compare: the report's batch size
    monkeypatch.setattr(compare.runs, "CALIBRATION_WARMUP", 1)
    monkeypatch.setattr(compare.runs, "CALIBRATION_ROUNDS", 2)
    monkeypatch.setattr(compare.runs, "CALIBRATION_STEPS", 1)
    monkeypatch.setattr(compare.runs, "INFERENCE_WARMUP", 1)
    monkeypatch.setattr(compare.runs, "CHECKPOINT_EVERY", 2)  # several engine.train chunks per model
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
    lines: list[str] = []
    report = compare.compare(**kwargs | {"log": lines.append})
    assert torch.get_num_threads() == threads  # 1 thread inside, the caller's count restored
    # side by side: one calibration of the three, then the models train in turns of a chunk each
    assert sum(line.startswith("calibrating ") for line in lines) == 1
    chunks = [line.split(":")[0] for line in lines if "iterations, " in line]
    assert chunks[:3] == ["sipmask", "yolact_baseline", "mask_rcnn"]
    assert not report["environment"]["failed"]
    records = {r["name"]: r for r in report["records"]}
    assert list(records) == ["sipmask", "yolact_baseline", "mask_rcnn"]
    for name, record in records.items():
        assert record["iterations"] >= 1 and record["threads"] == 1 and record["train_s"] > 0
        assert record["iterations"] == compare.iterations_for_budget(0.4, record["calibration"]["median_s"])
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
    monkeypatch.setattr(compare.runs, "INFERENCE_IMAGES", 2)
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
    # the same records; the speeds are measured again, side by side, by every run
    assert [{k: v for k, v in r.items() if k != "inference"} for r in written["records"]] == json.loads(
        json.dumps([{k: v for k, v in r.items() if k != "inference"} for r in third["records"]])
    )
    assert all(r["inference"]["images"] == 2 for r in written["records"])
    assert cli.main(argv + ["--only", "nope"]) == 2
    assert cli.main(argv + ["--lr", "mask_rcnn"]) == 2
    assert cli.main(argv + ["--lr", "mask_rcnn=0"]) == 2
    assert cli.main(argv + ["--budget-s", "0"]) == 2
