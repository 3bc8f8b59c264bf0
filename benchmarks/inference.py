"""Inference speed, measured side by side in one run (a benchmark, not a test).

1. SipMask (`paper_r50_544`) against torchvision's `fcos_resnet50_fpn` and `maskrcnn_resnet50_fpn` at
   544 x 544, batch 1, eval mode, about 100 detections each (score thresholds at 0 so that every model
   fills its 100 slots: random weights, nothing is downloaded). Goals: <= 1.10x FCOS, <= 0.5x Mask R-CNN.
2. `assemble_masks` (vectorised, §3.3) for 100 boxes on 136 x 136 basis maps against the plainly
   written per-box reference. Goal: >= 20x faster.

    python benchmarks/inference.py [--device cpu|cuda] [--repeats 10] [--threads N]

Prints the median wall time of each model and the ratios. All models run on the same device with the
same thread count, interleaved round by round so that machine noise hits them alike.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import statistics
import time
from collections.abc import Callable

import torch
import torchvision

from sipmask_ref import SipMask, preset
from sipmask_ref.spatial_mask_prediction import assemble_masks, assemble_masks_reference

SIZE = 544
DETECTIONS = 100


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def build_models(device: torch.device) -> dict[str, torch.nn.Module]:
    config = dataclasses.replace(
        preset("paper_r50_544"),
        score_threshold=0.0,  # fill all 100 detection slots with random weights
        pretrained_backbone=False,  # random weights: nothing is downloaded
    )
    sipmask = SipMask(config)
    fcos = torchvision.models.detection.fcos_resnet50_fpn(
        weights=None,
        weights_backbone=None,
        num_classes=81,
        min_size=SIZE,
        max_size=SIZE,
        score_thresh=0.0,
        detections_per_img=DETECTIONS,
    )
    maskrcnn = torchvision.models.detection.maskrcnn_resnet50_fpn(
        weights=None,
        weights_backbone=None,
        num_classes=81,
        min_size=SIZE,
        max_size=SIZE,
        box_score_thresh=0.0,
        box_detections_per_img=DETECTIONS,
    )
    models = {
        "SipMask paper_r50_544": sipmask,
        "torchvision FCOS R50": fcos,
        "torchvision Mask R-CNN R50": maskrcnn,
    }
    return {name: model.eval().to(device) for name, model in models.items()}


def bench_models(device: torch.device, repeats: int) -> dict[str, float]:
    models = build_models(device)
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(3, SIZE, SIZE, generator=generator).to(device)
    times: dict[str, list[float]] = {name: [] for name in models}
    detections: dict[str, int] = {}
    with torch.inference_mode():
        for name, model in models.items():  # warm-up, and count what each model returns
            detections[name] = len(model([image])[0]["boxes"])
        for _ in range(repeats):
            for name, model in models.items():
                times[name].append(_timed(functools.partial(model, [image]), device))
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name in models:
        print(f"  {name:<28} {medians[name] * 1000:8.1f} ms   ({detections[name]} detections)")
    return medians


def bench_assemble(device: torch.device, repeats: int) -> tuple[float, float]:
    generator = torch.Generator().manual_seed(0)
    m, h, w, n = 32, 136, 136, 100
    basis = torch.rand(m, h, w, generator=generator).to(device)  # [M, H, W]
    coefficients = torch.randn(n, 4, m, generator=generator).to(device)  # [N, Q, M]
    xy = torch.rand(n, 2, generator=generator) * 100
    wh = torch.rand(n, 2, generator=generator) * 60 + 4
    boxes = torch.cat([xy, xy + wh], dim=1).to(device)  # [N, 4]
    fast = lambda: assemble_masks(basis, coefficients, boxes, (2, 2))  # noqa: E731
    reference = lambda: assemble_masks_reference(basis, coefficients, boxes, (2, 2))  # noqa: E731
    torch.testing.assert_close(fast(), reference())
    fast_t = statistics.median(_timed(fast, device) for _ in range(repeats))
    ref_t = statistics.median(_timed(reference, device) for _ in range(max(3, repeats // 3)))
    return fast_t, ref_t


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, device {device}, "
        f"{torch.get_num_threads()} threads, batch 1, {SIZE}x{SIZE}, median of {args.repeats}"
    )

    print("Whole models (eval mode):")
    t = bench_models(device, args.repeats)
    sip = t["SipMask paper_r50_544"]
    fcos_ratio = sip / t["torchvision FCOS R50"]
    mrcnn_ratio = sip / t["torchvision Mask R-CNN R50"]
    print(f"  SipMask / FCOS       = {fcos_ratio:.2f}x   (goal <= 1.10x)")
    print(f"  SipMask / Mask R-CNN = {mrcnn_ratio:.2f}x   (goal <= 0.50x)")

    print("assemble_masks, 100 boxes, 2x2 sub-regions, 32 x 136 x 136 basis maps:")
    fast_t, ref_t = bench_assemble(device, args.repeats)
    print(
        f"  vectorised {fast_t * 1000:.2f} ms, per-box reference {ref_t * 1000:.2f} ms, "
        f"speed-up {ref_t / fast_t:.1f}x   (goal >= 20x)"
    )


if __name__ == "__main__":
    main()
