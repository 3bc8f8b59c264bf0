"""benchmarks/gpu_check.py: its CPU dry run (tiny sizes, a few iterations) runs every step and writes the
report that a GPU session reads. The figures of a dry run mean nothing; only the layout is checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import sipmask_ref

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def test_dry_run_exercises_every_step_and_writes_the_report(tmp_path):
    # the script imports the sipmask_ref this test imports (an installed copy or the source tree)
    package_parent = str(Path(sipmask_ref.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": package_parent + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--out", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert set(report) == {
        "environment",
        "settings",
        "failed",
        "seconds",
        "forward_backward",
        "parity",
        "amp_training",
        "latency",
    }
    assert report["failed"] == [] and report["settings"]["mode"] == "dry run"
    assert {"torch", "torchvision", "device", "device_name", "cuda"} <= set(report["environment"])

    step = report["forward_backward"]
    assert step["ok"] and step["parameters_without_gradient"] == [] and step["losses_finite"]
    assert step["torchvision_deform_conv2d_calls"] == 0  # 'auto' on a CPU: the grid_sample kernel
    step = report["parity"]
    assert step["ok"] and step["worst_relative"] <= step["tolerance"] == 1e-3
    assert {"basis_masks", "cls_logits/P3", "coefficients/P7", "loss_mask"} <= set(step["outputs"])
    step = report["amp_training"]
    assert step["ok"] and step["iterations"] == report["settings"]["amp_iters"]
    assert not step["amp_active"] and 0 <= step["mask_AP"] <= 1  # autocast + GradScaler run on CUDA only
    assert (tmp_path / "amp_run" / "checkpoint.pt").is_file() and (tmp_path / "data" / "synthetic").is_dir()
    step = report["latency"]
    assert set(step["544"]["models"]) == {
        "paper_r50_544",
        "torchvision FCOS R50",
        "torchvision Mask R-CNN R50",
    }
    assert {"paper_r50_800", "paper_r101_800"} <= set(step["800"]["models"])
    row = step["800"]["models"]["paper_r101_800"]
    assert row["paper_titan_xp_ms"] == 89 and row["median_ms"] > 0 and row["x_fcos"] > 0
    text = (tmp_path / "gpu_check.md").read_text()
    assert "Failed steps: none" in text and "| paper_r101_800 |" in text
