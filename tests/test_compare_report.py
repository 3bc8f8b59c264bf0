"""The comparison's report (sipmask_ref/compare/report.py): the writer on made-up records."""

from __future__ import annotations

import json
from pathlib import Path

from sipmask_ref import compare


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
            "calibration": {"warmup": 5, "rounds": 5, "steps": 4, "statistic": "median"},
            "checkpoint_every": 50,
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
