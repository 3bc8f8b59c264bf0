"""The comparison's report: OUT/speed_accuracy.md (a Markdown table and how it was made) and .json.

FORMAT        the marker of OUT/speed_accuracy.json
to_markdown   the records as a Markdown table plus one paragraph on how they were produced
write_report  OUT/speed_accuracy.json (atomically) and OUT/speed_accuracy.md
relative      a path as a report may name it (relative to the working directory)
command_line  the command that reproduces a report
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..files import relative_path
from ..reproduce.runs import write_record
from .models import BOX_REPRESENTATION, BOX_ROIS_PER_IMAGE, MASK_HEAD_LAYERS

FORMAT = "sipmask_ref.speed_accuracy/1"  # marker of OUT/speed_accuracy.json


def _ap(value: float) -> str:
    """A COCOeval fraction in points; '-' for COCOeval's -1 (no ground truth)."""
    return "-" if value < 0 else f"{100 * value:.1f}"


def to_markdown(report: dict[str, Any]) -> str:
    """The report written to speed_accuracy.json as a Markdown table and one paragraph on how it was made."""
    settings, env = report["settings"], report["environment"]
    lines = [
        "# Speed vs accuracy (paper Table 1) on the synthetic benchmark",
        "",
        (
            "| model | parameters | iterations | train s | box AP | box AP50 | mask AP | mask AP50 | "
            "ms / image (median) | ms / image (p25-p75) | threads |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    by_name = {r["name"]: r for r in report["records"]}
    for name, title in settings["models"].items():
        r = by_name.get(name)
        if r is None:
            lines.append(f"| {title} | not run | | | | | | | | | |")
            continue
        speed = r["inference"]
        lines.append(
            f"| {r['title']} | {r['parameters'] / 1e6:.2f} M | {r['iterations']} | {r['train_s']:.0f} | "
            f"{_ap(r['box_AP'])} | {_ap(r['box_AP50'])} | {_ap(r['mask_AP'])} | {_ap(r['mask_AP50'])} | "
            f"{speed['median_ms']:.1f} | {speed['p25_ms']:.1f}-{speed['p75_ms']:.1f} | {r['threads']} |"
        )
    lrs = ", ".join(f"{r['name']} {r['lr']:g}" for r in report["records"])
    thresholds = ", ".join(f"{r['name']} {r['mask_threshold']:g}" for r in report["records"])
    calibration = settings["calibration"]
    lines += [
        "",
        (
            f"Produced by `{settings['command']}` (sipmask_ref/compare/) on {env['date']} with Python "
            f"{env['python']}, torch {env['torch']}, torchvision {env['torchvision']}, on {env['cpu_count']} "
            f"visible CPU cores ({env['processor']}), {settings['threads']} torch thread(s) for everything. "
            f"Each model was trained from scratch on the {settings['train_images']} training images of "
            f"`{settings['data']}` for the same budget of {settings['budget_s']:g} s: its step time "
            f"({settings['batch_size']} images) was calibrated side by side with the others' "
            f"({calibration['warmup']} warm-up steps each, then {calibration['rounds']} rounds of "
            f"{calibration['steps']} steps of each model in turn; the median) and it trained for "
            f"int(budget / step) iterations, the models taking turns of {settings['checkpoint_every']} "
            f"iterations ('train s' is the measured time), with the "
            f"{settings['base_preset']} recipe (AdamW, schedule scaled to the iterations; lr: {lrs or '-'}). "
            f"AP: COCOeval on the "
            f"{settings['val_images']} val images (points; mask threshold: {thresholds or '-'}). Speed: "
            f"model([image]) at batch 1 in eval mode under no_grad, after "
            f"{settings['inference']['warmup']} warm-up pass(es) of each, every model in turn on each of "
            f"{settings['inference']['images']} val images (median and interquartile range); it includes "
            f"each model's resizing, "
            f"normalisation and mask pasting. Mask R-CNN is torchvision's MaskRCNN on the same tiny body + "
            f"FPN as SipMask (anchors 16-256 px on P3-P7, RoIAlign on P3-P6, box head 2 x "
            f"{BOX_REPRESENTATION}, {BOX_ROIS_PER_IMAGE} sampled RoIs per training image, mask head "
            f"{MASK_HEAD_LAYERS} x conv3x3 of D channels)."
        ),
    ]
    if env.get("failed"):
        lines += ["", "Failed (left out of the table): " + "; ".join(env["failed"])]
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out: str | os.PathLike) -> tuple[Path, Path]:
    """Write OUT/speed_accuracy.json (atomically) and OUT/speed_accuracy.md; return both paths."""
    out = Path(out)
    json_path = write_record(report, out / "speed_accuracy.json")
    markdown_path = out / "speed_accuracy.md"
    markdown_path.write_text(to_markdown(report))
    return json_path, markdown_path


def relative(path: str | os.PathLike) -> str:
    """`path` relative to the working directory (the repository root, where the command runs) when
    inside it, else only its last component (a report must not name one machine's folders)."""
    return relative_path(path, Path.cwd()) or Path(path).name


def command_line(budget_s: float, threads: int, only: Sequence[str] | None, lrs: dict[str, float]) -> str:
    """The command line that reproduces a report (paths left at their defaults)."""
    parts = ["python -m sipmask_ref compare", f"--budget-s {budget_s:g}", f"--threads {threads}"]
    if only:
        parts.append("--only " + " ".join(only))
    if lrs:
        parts.append("--lr " + " ".join(f"{k}={v:g}" for k, v in lrs.items()))
    return " ".join(parts)
