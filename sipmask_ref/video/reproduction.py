"""§3.5 / §4.4 the tracker comparison (results/video/README.md) on the synthetic videos -> results/video/.

    python -m sipmask_ref reproduce-video [--seeds 0 1 2] [--iters N] [--out results/video]
    (python -m sipmask_ref.video reproduce, the old command, still runs it)

Per seed, cpu_tiny_vis is fine-tuned from one image checkpoint (train_vis, training.py) and every
tracker of TRACKERS runs on the same detections of the val videos (evaluate_vis, tracks.py). Read top
to bottom:

    _environment         versions, CPU, threads and git commit, recorded with the numbers
    summarize            mean / std / min / max over seeds, per tracker and metric (REPORTED, SWITCHES)
    markdown_table       the README table
    reproduce            seeds x trackers -> OUT/reproduce.json and OUT/README.md
    _results_markdown    OUT/README.md: what was run, the table, how to regenerate it (REPRODUCE_COMMAND)
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import checkpoints, engine, workspace
from ..config import preset
from ..data.synthetic import make_data
from ..data.ytvis import YTVISDataset
from ..eval.coco import save_metrics
from ..files import relative_path
from ..reproduce.runs import machine
from ..video_model import SipMaskVIS
from .tracks import SWITCHES, TRACKER_DESCRIPTIONS, TRACKERS, evaluate_vis
from .training import train_vis

# The command that regenerates results/video/ (written into its README.md).
REPRODUCE_COMMAND = "python -m sipmask_ref reproduce-video"


def _environment(device: str | torch.device) -> dict[str, Any]:
    import pycocotools

    # the commit of the working directory's repository (the command runs from the repository root)
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
            ).stdout.strip()
            or None
        )
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit, changed = None, ""
    return {
        **machine(),  # Python, torch, torchvision, platform, CPUs: as the image reproductions record
        "numpy": np.__version__,
        "pycocotools": getattr(pycocotools, "__version__", "unknown"),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "git_commit": commit,
        "git_uncommitted_changes": bool(changed),
    }


def _mean_spread(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for one value), min and max."""
    values = [float(v) for v in values]
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": spread, "min": min(values), "max": max(values)}


REPORTED = ("AP", "AP50", "AP75", "AR1", "AR10")


def summarize(per_seed: Sequence[dict[str, dict[str, Any]]]) -> dict[str, dict[str, dict[str, float]]]:
    """{tracker: {metric: mean/std/min/max over seeds}} from evaluate_vis outputs (one per seed)."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for name in per_seed[0]:
        rows = {m: [100 * run[name]["metrics"][m] for run in per_seed] for m in REPORTED}
        for key in SWITCHES:
            rows[key] = [run[name][key] for run in per_seed]
        summary[name] = {m: _mean_spread(v) for m, v in rows.items()}
    return summary


def markdown_table(summary: dict[str, dict[str, dict[str, float]]], num_seeds: int) -> str:
    """The README table: mean ± standard deviation over seeds, one row per tracker."""
    header = [
        "tracker",
        *REPORTED,
        "IDSW det. (all)",
        "IDSW det. (crossing)",
        "IDSW GT boxes (all)",
        "IDSW GT boxes (crossing)",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, rows in summary.items():
        cells = [f"{rows[m]['mean']:.1f} ± {rows[m]['std']:.1f}" for m in (*REPORTED, *SWITCHES)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Mean ± sample standard deviation over {num_seeds} seed(s); AP and AR in percent.")
    return "\n".join(lines)


def reproduce(
    out_dir: str | os.PathLike = "results/video",
    seeds: Sequence[int] = (0, 1, 2),
    iters: int | None = None,
    data_root: str | os.PathLike = "data",
    image_checkpoint: str | os.PathLike | None = None,
    work_dir: str | os.PathLike = "outputs/video_reproduce",
    num_val_videos: int = 40,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Train cpu_tiny_vis once per seed on the synthetic videos, evaluate every tracker on it.

    Data: the synthetic video benchmark generated with `num_val_videos` validation videos into
    <data_root>/video_reproduce (its training videos and its first 10 validation videos are the
    default benchmark's; more validation videos make the table less noisy).

    Per seed: SipMaskVIS (cpu_tiny_vis, that seed) starts from ONE image checkpoint (default: the
    notebooks' cpu_tiny model, workspace.trained_checkpoint(root="."), i.e.
    outputs/tutorial/cpu_tiny[_fast]/checkpoint.pt under the working directory, trained once with
    seed 0 on data/ if missing) and is fine-tuned on frame pairs for `iters` steps (default the
    preset's max_iters); the val videos are detected once and every tracker of TRACKERS runs on the
    same detections (the matcher ablations are inference-only). Writes OUT/reproduce.json (per-seed
    numbers, summary, environment, wall time) and OUT/README.md (the table). Runs go to work_dir.
    Every default path is relative to the working directory (run it from the repository root); the
    paths in the record are relative to it too.
    """
    started = time.perf_counter()
    root, work = Path(data_root), Path(work_dir)
    made = make_data(
        root=root / "video_reproduce",
        num_train=1,
        num_val=1,
        num_val_videos=num_val_videos,
        progress=progress,
        verbose=False,
    )["synthetic_video"]  # (1 image each: unused)
    paths = {
        "train_ann": made["train_annotations"],
        "train_dir": made["train_videos"],
        "val_ann": made["val_annotations"],
        "val_dir": made["val_videos"],
    }
    if image_checkpoint is None:
        image_checkpoint = workspace.trained_checkpoint(root=Path.cwd())
    image_state = checkpoints.read_checkpoint(image_checkpoint)
    val_set = YTVISDataset(paths["val_ann"], paths["val_dir"], mode="frames")
    runs = []
    for seed in seeds:
        train_set = YTVISDataset(paths["train_ann"], paths["train_dir"], mode="pairs", seed=int(seed))
        config = dataclasses.replace(
            preset("cpu_tiny_vis"), seed=int(seed), num_classes=len(train_set.class_names)
        )
        seed_start = time.perf_counter()
        summary = train_vis(
            config,
            train_set,
            work / f"seed_{seed}",
            init_from=image_checkpoint,
            iters=iters,
            device=device,
            progress=progress,
            checkpoint_every=10**9,
            log_every=max(1, (iters or config.max_iters) // 10),
        )
        train_seconds = time.perf_counter() - seed_start
        model, _ = engine.load_checkpoint(summary["checkpoint"], device)
        if not isinstance(model, SipMaskVIS):
            raise checkpoints.CheckpointError(f"{summary['checkpoint']} holds an image model, not SipMaskVIS")
        found = evaluate_vis(model, val_set, device, TRACKERS, frame_ap=True, progress=progress)
        runs.append(
            {
                "seed": int(seed),
                "iterations": summary["iteration"],
                "train_seconds": train_seconds,
                "eval_seconds": time.perf_counter() - seed_start - train_seconds,
                "final_losses": summary["losses"],
                "frame_metrics": found["sipmask"]["frame_metrics"],
                "trackers": {
                    name: {k: v for k, v in r.items() if k not in ("results", "frame_metrics")}
                    for name, r in found.items()
                },
            }
        )
        if progress:
            print(
                f"seed {seed}: "
                + ", ".join(f"{n} AP {100 * r['metrics']['AP']:.1f}" for n, r in found.items())
            )
    summary_table = summarize([run["trackers"] for run in runs])
    record = {
        "what": "video AP of SipMask-VIS (cpu_tiny_vis) on the synthetic video val split, per tracker",
        "trackers": {name: TRACKER_DESCRIPTIONS[name] for name in TRACKERS},
        "seeds": [int(s) for s in seeds],
        "config": dataclasses.asdict(
            dataclasses.replace(preset("cpu_tiny_vis"), num_classes=len(val_set.class_names))
        ),
        "iterations": runs[0]["iterations"] if runs else 0,
        "image_checkpoint": {
            "path": _shown(image_checkpoint),
            "iteration": int(image_state["iteration"]),
            "seed": image_state["config"].get("seed"),
        },
        "data": {
            "train": _shown(paths["train_ann"]),
            "val": _shown(paths["val_ann"]),
            "val_videos": len(val_set.videos),
            "val_objects": runs[0]["trackers"]["sipmask"]["num_gt_objects"] if runs else 0,
            "val_crossing_objects": runs[0]["trackers"]["sipmask"]["num_crossing_objects"] if runs else 0,
        },
        "summary": summary_table,
        "frame_ap": {
            kind: _mean_spread([100 * run["frame_metrics"][kind]["AP"] for run in runs])
            for kind in ("bbox", "segm")
        }
        if runs
        else {},
        "runs": runs,
        "environment": _environment(device),
        "wall_seconds": time.perf_counter() - started,
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_metrics(record, out / "reproduce.json")
    (out / "README.md").write_text(_results_markdown(record))
    if progress:
        print(markdown_table(summary_table, len(seeds)))
        print(f"written: {out / 'reproduce.json'}, {out / 'README.md'} ({record['wall_seconds']:.0f} s)")
    return record


def _shown(path: str | os.PathLike) -> str:
    """`path` as the record shows it: relative to the working directory when inside it, else as given."""
    return relative_path(path, Path.cwd()) or str(path)


def _results_markdown(record: dict[str, Any]) -> str:
    """results/video/README.md: what was run, the table, and how to regenerate it."""
    data, image = record["data"], record["image_checkpoint"]
    env = record["environment"]
    lines = [
        "# SipMask-VIS on the synthetic videos (§3.5, §4.4)",
        "",
        f"Generated by `{REPRODUCE_COMMAND}` (do not edit by hand).",
        "",
        (
            f"- Model: `cpu_tiny_vis` (embedding {record['config']['embed_dim']} channels), initialised "
            f"from the image checkpoint `{Path(image['path']).parent.name}` ({image['iteration']} "
            f"iterations, seed {image['seed']}, shared by all seeds), fine-tuned on frame pairs for "
            f"{record['iterations']} iterations of {record['config']['batch_size']} pairs, once per seed "
            f"({len(record['seeds'])} seeds: {', '.join(map(str, record['seeds']))})."
        ),
        (
            f"- Evaluation: {data['val_videos']} val videos, {data['val_objects']} objects of which "
            f"{data['val_crossing_objects']} cross a same-class object. Each seed's model detects every "
            "video once; all trackers run on those same detections."
        ),
        (
            f"- The detector alone, every val frame scored as a COCO image (at most 10 detections, "
            f"score > 0.03): box AP {record['frame_ap']['bbox']['mean']:.1f} ± "
            f"{record['frame_ap']['bbox']['std']:.1f}, mask AP {record['frame_ap']['segm']['mean']:.1f} ± "
            f"{record['frame_ap']['segm']['std']:.1f}. Video AP is limited mainly by these detections; the "
            "'GT boxes' switch counts below isolate the tracker."
        ),
        (
            "- ID switches (IDSW): trackers.count_id_switches (mask IoU >= 0.5), summed over the val "
            "videos; 'crossing' counts only the objects that overlap a same-class object in some frame. "
            "'det.': on the tracked detections (all of them, score > 0.03). 'GT boxes': the tracker is fed "
            "the ground truth as detections, with the model's embeddings at its boxes, so the count "
            "measures association alone."
        ),
        "",
        markdown_table(record["summary"], len(record["seeds"])),
        "",
        "Trackers:",
        "",
    ]
    lines += [f"- `{name}`: {text}" for name, text in record["trackers"].items()]
    lines += [
        "",
        (
            f"Environment: Python {env['python']}, torch {env['torch']}, torchvision {env['torchvision']}, "
            f"{env['cpu_count']} CPU(s), {env['torch_threads']} torch threads, device {env['device']}; "
            f"wall time {record['wall_seconds'] / 60:.1f} min (training and evaluation of all seeds)."
        ),
        "",
    ]
    return "\n".join(lines)
