"""The GPU check, prepared for a session that has one CUDA GPU (a check with figures, not a test).

    benchmarks/gpu_check.sh OUT                                  # <= 8 minutes on one GPU
    python benchmarks/gpu_check.py --device cuda --out OUT       # what the script runs
    python benchmarks/gpu_check.py --device cpu --out OUT        # dry run: tiny sizes, < 1 min on 2 cores

Every model has random weights and nothing is downloaded. The steps, each run even when an earlier one
failed (its traceback is recorded and the exit code becomes 1):

1. forward_backward  one training step of `paper_r50_544` on the device: the losses are finite, every
                     trainable parameter gets a gradient, and the deformable conv of §3.1 ran on
                     torchvision's kernel (config 'auto' picks it on CUDA, `grid_sample` on a CPU; the
                     calls of torchvision's `deform_conv2d` are counted). Time of a second step, peak memory.
2. parity            the same `paper_r50_544` weights on one fixed input: the CPU with its default kernel
                     ('sampled') against the device with 'auto' (on a CPU dry run: torchvision's CPU
                     kernel), TF32 off. Every network output (per level: class logits, box regression,
                     centerness, coefficients; the basis masks) and the four training losses must agree
                     to max |device - cpu| <= 1e-3 x max |cpu| (PARITY_TOLERANCE).
3. amp_training      200 iterations of `cpu_tiny` with config.amp (autocast + GradScaler, active on CUDA
                     only) on a small synthetic set generated under OUT/data when missing (200 train /
                     50 val images of 128 x 128), then its COCO box and mask AP on the val split (low
                     after 200 iterations: the step shows that AMP training runs and stays finite).
4. latency           eval-mode latency at batch 1 (median over rounds, the models interleaved) of
                     `paper_r50_544` beside torchvision's FCOS R50 and Mask R-CNN R50 at 544 x 544, and
                     of `paper_r50_800` and `paper_r101_800` beside the same two at a 640 x 480 image
                     resized to 1067 x 800; score thresholds 0 so that every model returns its 100
                     detections (the dry run: 10). The paper's Table 1 (Titan Xp): 24 ms for R50@544,
                     89 ms for R101@800.

Writes OUT/gpu_check.json (after every step, so a run cut short keeps what it measured) and
OUT/gpu_check.md. Keys of the JSON: environment, settings, forward_backward, parity, amp_training,
latency, failed (the names of the steps that raised), seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import Tensor, nn

from sipmask_ref import SipMask, engine, preset, spatial_preservation
from sipmask_ref.data.coco import CocoInstances
from sipmask_ref.data.synthetic import make_data

STEPS = ("forward_backward", "parity", "amp_training", "latency")
PARITY_TOLERANCE = 1e-3  # max |device - cpu| / max |cpu|, per output, float32 with TF32 off
PAPER_MS = {"paper_r50_544": 24.0, "paper_r101_800": 89.0}  # Table 1, one Titan Xp


@dataclasses.dataclass(frozen=True)
class Sizes:
    """What the check runs at: the full check on a GPU, or the dry run on a CPU."""

    fast_side: int  # the 544 presets' square input
    short_side: int  # the 800 presets' short side ...
    long_side: int  # ... and the limit of their long side
    image_800: tuple[int, int]  # (H, W) of the image given to the 800 presets
    amp_iters: int
    amp_images: tuple[int, int]  # synthetic (train, val) images of 128 x 128
    detections: int  # latency: detections per image (score thresholds 0 fill them all)
    warmup: int  # latency: untimed rounds (>= 1: the first counts the detections)
    rounds: int  # latency: timed rounds


FULL = Sizes(544, 800, 1333, (480, 640), 200, (200, 50), detections=100, warmup=10, rounds=50)
DRY = Sizes(64, 64, 107, (48, 64), 2, (2, 1), detections=10, warmup=1, rounds=1)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _scene(height: int, width: int) -> tuple[Tensor, dict[str, Any]]:
    """A fixed image with three filled rectangles and its training target (the model contract)."""
    image = torch.full((3, height, width), 0.2)
    rects = [(0.1, 0.1, 0.4, 0.5, 1), (0.45, 0.1, 0.8, 0.45, 1), (0.3, 0.6, 0.9, 0.95, 2)]  # fractions
    boxes, masks = [], torch.zeros(len(rects), height, width, dtype=torch.uint8)
    for k, (x1, y1, x2, y2, _) in enumerate(rects):
        box = [round(x1 * width), round(y1 * height), round(x2 * width), round(y2 * height)]
        image[:, box[1] : box[3], box[0] : box[2]] = torch.tensor([0.9, 0.3 + 0.2 * k, 0.5])[:, None, None]
        masks[k, box[1] : box[3], box[0] : box[2]] = 1
        boxes.append(box)
    target = {
        "boxes": torch.tensor(boxes, dtype=torch.float32),
        "labels": torch.tensor([r[4] for r in rects]),
        "masks": masks,
    }
    return image, target


def _model(name: str, seed: int = 0, **changes: Any) -> SipMask:
    """Preset `name` with random weights (nothing downloaded), built after seeding `seed`."""
    torch.manual_seed(seed)
    return SipMask(dataclasses.replace(preset(name), pretrained_backbone=False, **changes))


@contextmanager
def _counting_torchvision_deform() -> Iterator[list[int]]:
    """Count the calls of torchvision's deform_conv2d made by FeatureAlignment (one-element list)."""
    calls = [0]
    original = spatial_preservation.deform_conv2d

    def counted(*args: Any, **kwargs: Any) -> Tensor:
        calls[0] += 1
        return original(*args, **kwargs)

    spatial_preservation.deform_conv2d = counted
    try:
        yield calls
    finally:
        spatial_preservation.deform_conv2d = original


@contextmanager
def _no_tf32() -> Iterator[None]:
    """Full float32 matmuls and convolutions on CUDA (TF32 would dominate a parity check)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


# ----------------------------------------------------------------------------------------------------
# the steps
# ----------------------------------------------------------------------------------------------------
def forward_backward(device: torch.device, sizes: Sizes) -> dict[str, Any]:
    side = sizes.fast_side
    model = _model("paper_r50_544", input_size=(side, side)).to(device).train()
    image, target = _scene(side, side)
    image, target = image.to(device), {k: v.to(device) for k, v in target.items()}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with _counting_torchvision_deform() as calls:
        sum(model([image], [target]).values()).backward()  # the first step warms the kernels up
        model.zero_grad(set_to_none=True)
        _sync(device)
        started = time.perf_counter()
        losses = model([image], [target])
        sum(losses.values()).backward()
        _sync(device)
        step_ms = 1000 * (time.perf_counter() - started)
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    values = {k: float(v.detach()) for k, v in losses.items()}
    return {
        "preset": "paper_r50_544",
        "input": [side, side],
        "deform_implementation": model.config.deform_implementation,
        "torchvision_deform_conv2d_calls": calls[0],  # 2 steps x 5 levels when torchvision's kernel ran
        "losses": values,
        "losses_finite": all(torch.isfinite(torch.tensor(list(values.values())))),
        "parameters_without_gradient": missing,
        "step_ms": round(step_ms, 2),
        "peak_memory_mib": round(torch.cuda.max_memory_allocated(device) / 2**20)
        if device.type == "cuda"
        else None,
        "ok": not missing and all(torch.isfinite(v) for v in losses.values()),
    }


def _outputs(model: SipMask, image: Tensor, target: dict[str, Any]) -> dict[str, Tensor]:
    """Every network output of one image (eval mode) and the four training losses, on the CPU."""
    device = next(model.parameters()).device
    image, target = image.to(device), {k: v.to(device) for k, v in target.items()}
    with torch.no_grad():
        model.eval()
        _, head, basis = model.run_network(model.preprocess([image]).images)
        named = {"basis_masks": basis}
        for field in ("cls_logits", "box_regression", "centerness", "coefficients"):
            for level, value in enumerate(getattr(head, field)):
                named[f"{field}/P{level + 3}"] = value
        model.train()
        named |= model([image], [target])
    return {name: value.float().cpu() for name, value in named.items()}


def parity(device: torch.device, sizes: Sizes) -> dict[str, Any]:
    side = sizes.fast_side
    cpu_model = _model("paper_r50_544", input_size=(side, side), deform_implementation="sampled")
    kernel = "auto" if device.type == "cuda" else "torchvision"  # a CPU dry run compares the two kernels
    device_model = _model("paper_r50_544", input_size=(side, side), deform_implementation=kernel)
    device_model.load_state_dict(cpu_model.state_dict())
    device_model.to(device)
    image, target = _scene(side, side)
    with _no_tf32():
        expected = _outputs(cpu_model, image, target)
        got = _outputs(device_model, image, target)
    rows = {}
    for name, reference in expected.items():
        scale = float(reference.abs().max())
        difference = float((got[name] - reference).abs().max())
        rows[name] = {
            "max_abs_difference": difference,
            "max_abs_cpu": scale,
            "relative": difference / scale if scale > 0 else difference,
        }
    worst = max(rows, key=lambda n: rows[n]["relative"])
    return {
        "preset": "paper_r50_544",
        "input": [side, side],
        "kernels": {"reference": "sampled on cpu", "checked": f"{kernel} on {device}"},
        "tolerance": PARITY_TOLERANCE,
        "worst": worst,
        "worst_relative": rows[worst]["relative"],
        "outputs": rows,
        "ok": rows[worst]["relative"] <= PARITY_TOLERANCE,
    }


def amp_training(device: torch.device, sizes: Sizes, out: Path) -> dict[str, Any]:
    num_train, num_val = sizes.amp_images
    made = make_data(
        root=out / "data", num_train=num_train, num_val=num_val, video=False, progress=False, verbose=False
    )["synthetic"]
    train_set = CocoInstances(made["train_annotations"], made["train_images"])
    val_set = CocoInstances(made["val_annotations"], made["val_images"])
    config = dataclasses.replace(preset("cpu_tiny"), amp=True)
    engine.seed_everything(config.seed)
    model = SipMask(config)
    iters = sizes.amp_iters
    summary = engine.train(
        model,
        config,
        train_set,
        out / "amp_run",
        iters=iters,
        device=device,
        log_every=max(1, iters // 10),
        checkpoint_every=iters,
        progress=False,
    )
    saved = engine.read_checkpoint(out / "amp_run" / engine.CHECKPOINT_NAME)
    _, metrics = engine.evaluate(model, val_set, device, batch_size=8, progress=False)
    finite = all(
        torch.isfinite(torch.tensor(v)) for r in summary["log"] for k, v in r.items() if k.startswith("loss")
    )
    return {
        "preset": "cpu_tiny",
        "iterations": summary["iteration"],
        "train_images": num_train,
        "amp_active": config.amp and device.type == "cuda",
        "grad_scaler_scale": saved["scaler"].get("scale") if saved["scaler"] else None,
        "seconds": round(summary["seconds"], 2),
        "iterations_per_s": round(iters / summary["seconds"], 2),
        "last_losses": summary["losses"],
        "losses_finite": finite,
        "val_images": num_val,
        "box_AP": metrics["bbox"]["AP"],
        "mask_AP": metrics["segm"]["AP"],
        "ok": finite and summary["iteration"] == iters,
    }


def _torchvision_models(min_size: int, max_size: int, detections: int) -> dict[str, nn.Module]:
    common = dict(weights=None, weights_backbone=None, num_classes=81, min_size=min_size, max_size=max_size)
    detection = torchvision.models.detection
    return {
        "torchvision FCOS R50": detection.fcos_resnet50_fpn(
            **common, score_thresh=0.0, detections_per_img=detections
        ),
        "torchvision Mask R-CNN R50": detection.maskrcnn_resnet50_fpn(
            **common, box_score_thresh=0.0, box_detections_per_img=detections
        ),
    }


def _median_ms(models: dict[str, nn.Module], image: Tensor, device: torch.device, sizes: Sizes) -> dict:
    """Median eval latency (ms) of each model on `image`, the models interleaved round by round."""
    times: dict[str, list[float]] = {name: [] for name in models}
    detections = {}
    with torch.inference_mode():
        for _ in range(sizes.warmup):
            for name, model in models.items():
                detections[name] = len(model([image])[0]["boxes"])
        for _ in range(sizes.rounds):
            for name, model in models.items():
                _sync(device)
                started = time.perf_counter()
                model([image])
                _sync(device)
                times[name].append(1000 * (time.perf_counter() - started))
    return {
        name: {"median_ms": round(statistics.median(t), 2), "detections": detections[name]}
        for name, t in times.items()
    }


def latency(device: torch.device, sizes: Sizes) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(0)
    families = {
        "544": (
            {"paper_r50_544": dict(input_size=(sizes.fast_side, sizes.fast_side))},
            (sizes.fast_side, sizes.fast_side),
            (sizes.fast_side, sizes.fast_side),
        ),
        "800": (
            {
                name: dict(input_size=(sizes.long_side, sizes.short_side))
                for name in ("paper_r50_800", "paper_r101_800")
            },
            sizes.image_800,
            (sizes.short_side, sizes.long_side),
        ),
    }
    result: dict[str, Any] = {"warmup_rounds": sizes.warmup, "timed_rounds": sizes.rounds}
    for family, (presets, (height, width), (min_size, max_size)) in families.items():
        models: dict[str, nn.Module] = {
            name: _model(name, score_threshold=0.0, max_detections=sizes.detections, **changes)
            for name, changes in presets.items()
        }
        models |= _torchvision_models(min_size, max_size, sizes.detections)
        models = {name: model.eval().to(device) for name, model in models.items()}
        image = torch.rand(3, height, width, generator=generator).to(device)
        rows = _median_ms(models, image, device, sizes)
        for name in presets:
            own = rows[name]["median_ms"]
            rows[name]["x_fcos"] = round(own / rows["torchvision FCOS R50"]["median_ms"], 3)
            rows[name]["x_mask_rcnn"] = round(own / rows["torchvision Mask R-CNN R50"]["median_ms"], 3)
            rows[name]["paper_titan_xp_ms"] = PAPER_MS.get(name)
        result[family] = {"image": [height, width], "models": rows}
        del models
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return result


# ----------------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------------
def environment(device: torch.device) -> dict[str, Any]:
    cuda = device.type == "cuda"
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu",
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "threads": torch.get_num_threads(),
    }


def markdown(report: dict[str, Any]) -> str:
    """The report as a short markdown page (the JSON holds everything)."""
    env, device = report["environment"], report["environment"]["device"]
    failed = ", ".join(report["failed"]) or "none"
    lines = [
        "# GPU check",
        "",
        (
            f"{env['device_name']} ({device}), torch {env['torch']}, torchvision {env['torchvision']}, "
            f"CUDA {env['cuda']}, Python {env['python']}; mode: {report['settings']['mode']}; "
            f"{report.get('seconds', 0):.0f} s. Failed steps: {failed}."
        ),
        "",
    ]
    step = report.get("forward_backward", {})
    if "ok" in step:
        lines.append(
            f"**forward/backward** `paper_r50_544` at {step['input'][0]}: ok={step['ok']}, "
            f"{step['step_ms']} ms per step, peak memory {step['peak_memory_mib']} MiB, "
            f"torchvision deform_conv2d calls {step['torchvision_deform_conv2d_calls']}, "
            f"parameters without gradient: {len(step['parameters_without_gradient'])}.\n"
        )
    step = report.get("parity", {})
    if "ok" in step:
        lines.append(
            f"**parity** CPU vs {device} ({step['kernels']}): ok={step['ok']}, worst output "
            f"{step['worst']} at {step['worst_relative']:.2e} of its max (tolerance {step['tolerance']:g}).\n"
        )
    step = report.get("amp_training", {})
    if "ok" in step:
        lines.append(
            f"**AMP training** `cpu_tiny`, {step['iterations']} iterations (AMP active: "
            f"{step['amp_active']}): ok={step['ok']}, {step['iterations_per_s']} it/s, box AP "
            f"{100 * step['box_AP']:.1f}, mask AP {100 * step['mask_AP']:.1f} on {step['val_images']} "
            f"val images.\n"
        )
    step = report.get("latency", {})
    for family in ("544", "800"):
        if family not in step:
            continue
        height, width = step[family]["image"]
        lines += [
            f"**latency**, batch 1, image {width} x {height}, median of {step['timed_rounds']} rounds:",
            "",
            "| model | ms | detections | x FCOS | x Mask R-CNN | paper (Titan Xp) |",
            "|---|---|---|---|---|---|",
        ]
        for name, row in step[family]["models"].items():
            paper = row.get("paper_titan_xp_ms")
            lines.append(
                f"| {name} | {row['median_ms']} | {row['detections']} | {row.get('x_fcos', '')} | "
                f"{row.get('x_mask_rcnn', '')} | {f'{paper:g} ms' if paper else ''} |"
            )
        lines.append("")
    for name in report["failed"]:
        lines += [f"**{name} failed**:", "", "```", report[name].get("error", "not ok").rstrip(), "```", ""]
    return "\n".join(lines)


def write(report: dict[str, Any], out: Path) -> None:
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "gpu_check.md").write_text(markdown(report))


def run(device: torch.device, out: Path, sizes: Sizes, mode: str) -> dict[str, Any]:
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "environment": environment(device),
        "settings": {"mode": mode, **dataclasses.asdict(sizes)},
        "failed": [],
    }
    steps: dict[str, Callable[[], dict[str, Any]]] = {
        "forward_backward": lambda: forward_backward(device, sizes),
        "parity": lambda: parity(device, sizes),
        "amp_training": lambda: amp_training(device, sizes, out),
        "latency": lambda: latency(device, sizes),
    }
    for name, step in steps.items():
        step_started = time.perf_counter()
        print(f"== {name}", flush=True)
        try:
            report[name] = step()
            if not report[name].get("ok", True):
                report["failed"].append(name)
        except Exception:  # noqa: BLE001 - one step's failure is recorded; the next steps still run
            report[name] = {"error": traceback.format_exc()}
            report["failed"].append(name)
        report[name]["step_seconds"] = round(time.perf_counter() - step_started, 2)
        report["seconds"] = round(time.perf_counter() - started, 2)
        print(json.dumps(report[name])[:2000], flush=True)
        write(report, out)
    return report


def main(argv: list[str] | None = None) -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--device", default="cuda", help="cuda (the check) or cpu (a dry run, tiny sizes)")
    parser.add_argument("--out", required=True, help="folder of gpu_check.json / .md, data/, amp_run/")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: CUDA is not available here; --device cpu runs the dry run", file=sys.stderr)
        return 2
    sizes, mode = (FULL, "full") if device.type == "cuda" else (DRY, "dry run")
    report = run(device, Path(args.out), sizes, mode)
    print(f"gpu_check: {mode} in {report['seconds']:.0f} s; failed steps: {report['failed'] or 'none'}")
    print(f"wrote {Path(args.out) / 'gpu_check.json'} and gpu_check.md")
    return 1 if report["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
