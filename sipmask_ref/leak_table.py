"""The leak table: the §3.3 claim (Figs. 1, 4, 6) measured on the 1x1 and 2x2 models of Table 4.

Not a paper section: an experiment. `make reproduce` trains every row of Table 4 (the number of
sub-regions, the rest full SipMask) with several seeds and keeps each run's checkpoint. This file
takes the 1x1 and 2x2 checkpoints of those runs, measures on the val split how much of each predicted
mask lies on same-class neighbours (leak) and how much of its own instance it misses (miss), with the
measure of `eval/leak.py`, and writes the means per seed and their spread to `results/leak.{json,md}`.

The paper's claim predicts that the 2x2 model's masks leak less onto same-class neighbours than the
1x1 model's (one set of coefficients per box cannot cut a neighbour away that lies in the box). The
table reports what the runs show, whatever it is.

Held here: `measure_leak` (one model over a dataset), `leak_table` (the checkpoints of a
reproduction -> the report), `to_markdown`, `LEAK_ROWS`, `FORMAT`.
"""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from . import engine, reproduce
from .data.coco import CocoInstances
from .eval.leak import LEAK_IOU_THRESHOLD, image_leaks, summarize_leaks
from .files import relative_path, write_atomic, write_json

FORMAT = "sipmask_ref.leak/1"  # marker of results/leak.json
LEAK_ROWS = ("1x1", "2x2")  # the rows of Table 4 compared
COMMAND = "python -m sipmask_ref leak"


def measure_leak(
    model: nn.Module,
    dataset: CocoInstances,
    device: str | torch.device = "cpu",
    batch_size: int = 8,
    *,
    mask_threshold: float | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Leak and miss (eval/leak.py) of `model`'s masks over `dataset`: summarize_leaks' dict.

    mask_threshold: binarisation of the mask probabilities (default: the model's config, as evaluation).
    """
    if mask_threshold is None:
        mask_threshold = float(getattr(getattr(model, "config", None), "mask_threshold", 0.4))
    leaks, unmatched = [], 0
    starts = range(0, len(dataset), batch_size)
    for first in tqdm(starts, desc="leak", dynamic_ncols=True, disable=not progress, leave=False):
        batch = [dataset[i] for i in range(first, min(first + batch_size, len(dataset)))]
        outputs = engine.predict_images(model, [image for image, _ in batch], device)
        for output, (_, target) in zip(outputs, batch, strict=True):
            found, missed = image_leaks(output, target, mask_threshold)
            leaks += found
            unmatched += missed
    return summarize_leaks(leaks, unmatched)


def _table4_variant(label: str) -> reproduce.Variant:
    """The variant of Table 4's row `label` (e.g. '2x2'): reproduce.TABLES is its one home."""
    table = next(t for t in reproduce.TABLES if t.key == "table4")
    return next(row.variant for row in table.rows if row.label == label)


def leak_table(
    work_dir: str | os.PathLike[str] = "outputs/ablations",
    data_root: str | os.PathLike[str] = "data",
    seeds: int = 3,
    out: str | os.PathLike[str] | None = "results",
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Measure the leak of the Table 4 runs 1x1 and 2x2 (seeds 0..seeds-1) found in `work_dir`.

    The checkpoints are those `reproduce` writes (reproduce.run_checkpoint_path); a missing one is a
    FileNotFoundError that names the reproduce command which trains it. Writes OUT/leak.json and
    OUT/leak.md when `out` is given. Returns the report: per row, the per-seed values and their
    mean / std / min / max (reproduce.summarize).
    """
    work_dir, data_root = Path(work_dir), Path(data_root)
    runs = [(label, _table4_variant(label), seed) for label in LEAK_ROWS for seed in range(seeds)]
    missing = [
        reproduce.run_checkpoint_path(work_dir, v, s)
        for _, v, s in runs
        if not reproduce.run_checkpoint_path(work_dir, v, s).is_file()
    ]
    if missing:
        keys = " ".join(sorted({_table4_variant(label).key for label in LEAK_ROWS}))
        raise FileNotFoundError(
            f"leak table: no checkpoint at {missing[0]} ({len(missing)} missing); train them with "
            f"`python -m sipmask_ref reproduce --only {keys} --seeds {seeds} --work-dir {work_dir}`"
        )
    val = CocoInstances(
        data_root / "synthetic" / "annotations" / "instances_val.json",
        data_root / "synthetic" / "images" / "val",
    )
    started = time.perf_counter()
    per_run: list[dict[str, Any]] = []
    for label, variant, seed in runs:
        checkpoint = reproduce.run_checkpoint_path(work_dir, variant, seed)
        model, _ = engine.load_checkpoint(checkpoint, device)
        measured = measure_leak(model, val, device, reproduce.EVAL_BATCH, progress=progress)
        per_run.append(
            {
                "row": label,
                "variant": variant.key,
                "seed": seed,
                "checkpoint": relative_path(checkpoint, work_dir.parent) or str(checkpoint),
            }
            | measured
        )
        if progress:
            print(
                f"leak: {label} seed {seed}: leak {100 * measured['leak']:.1f}%, miss "
                f"{100 * measured['miss']:.1f}% over {measured['matched']} matched adjacent instances"
            )
    rows = {}
    for label in LEAK_ROWS:
        mine = [run for run in per_run if run["row"] == label]
        rows[label] = {
            key: reproduce.summarize([run[key] for run in mine]) for key in ("leak", "miss", "matched")
        }
    report = {
        "format": FORMAT,
        "command": COMMAND,
        "rows": rows,
        "runs": [{k: v for k, v in run.items() if k != "instances"} for run in per_run],
        "instances": {f"{run['row']}/seed{run['seed']}": run["instances"] for run in per_run},
        "seeds": seeds,
        "iou_threshold": LEAK_IOU_THRESHOLD,
        "val_images": len(val),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if out is not None:
        out = Path(out)
        write_json(report, out / "leak.json", indent=1, end="\n")
        text = to_markdown(report)
        write_atomic(out / "leak.md", lambda f: f.write(text.encode()))
    return report


def _pm(summary: dict[str, Any], scale: float = 100.0, digits: int = 1) -> str:
    """'mean ± std' of a summarize() dict, scaled (percent by default)."""
    return f"{scale * summary['mean']:.{digits}f} ± {scale * summary['std']:.{digits}f}"


def to_markdown(report: dict[str, Any]) -> str:
    """The leak table as Markdown: one row per model, the per-seed values beside the mean ± std."""
    about = (
        f"Written by `{report['command']}` from the Table 4 runs of `make reproduce` (the 1x1 and 2x2 "
        f"rows, the rest full SipMask; {report['seeds']} seeds), on the {report['val_images']} images of "
        "the synthetic val split. For each ground-truth instance with a same-class neighbour (>= 10% of "
        "its box on other instances of its class), the detection matched to it (same class, box IoU >= "
        f"{report['iou_threshold']}, greedy by score): leak = share of the predicted mask on the "
        "same-class neighbours, miss = share of the instance the mask does not cover "
        "(`sipmask_ref/eval/leak.py`). Means over the matched instances; mean ± std over seeds, then "
        "each seed's value."
    )
    lines = [
        "# The leak of masks onto same-class neighbours (§3.3, Figs. 1, 4 and 6)",
        "",
        *textwrap.wrap(about, 100),
        "",
        "| model | leak % | miss % | matched instances | leak % per seed | miss % per seed |",
        "|---|---|---|---|---|---|",
    ]
    for label, row in report["rows"].items():
        leak_seeds = ", ".join(f"{100 * v:.1f}" for v in row["leak"]["values"])
        miss_seeds = ", ".join(f"{100 * v:.1f}" for v in row["miss"]["values"])
        lines.append(
            f"| {label} | {_pm(row['leak'])} | {_pm(row['miss'])} | "
            f"{_pm(row['matched'], 1.0, 0)} | {leak_seeds} | {miss_seeds} |"
        )
    return "\n".join(lines) + "\n"
