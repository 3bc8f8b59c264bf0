"""Eager PyTorch against the exported ONNX model under ONNX Runtime, CPU (a benchmark, not a test).

For each preset (random weights, nothing is downloaded): export the network with `export.export_onnx`
into a temporary folder, then time, batch 1, on one random image at the preset's input size:

- network: `SipMask.run_network` (eager) against `OnnxSipMask.run_network` (one ONNX Runtime run);
- whole model: `model([image])` of both, the same torch pre- and post-processing around each network.

score_threshold is 0 so that both fill their `max_detections` slots (the post-processing then does the
same work in both). Torch and ONNX Runtime get the same thread count; the four timings are interleaved
round by round so that machine noise hits them alike; medians are printed.

    python benchmarks/export.py [--threads N] [--repeats 20] [--presets cpu_tiny paper_r50_544]

Needs the `export` extra (onnx, onnxruntime, onnxscript).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import onnxruntime
import torch

from sipmask_ref import SipMask, preset
from sipmask_ref.export import OnnxSipMask, export_onnx, input_shape


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(name: str, threads: int, repeats: int, folder: Path) -> None:
    config = dataclasses.replace(preset(name), score_threshold=0.0, pretrained_backbone=False)
    model = SipMask(config).eval()
    start = time.perf_counter()
    path = export_onnx(model, folder / f"{name}.onnx")
    export_s = time.perf_counter() - start
    onnx_model = OnnxSipMask(path, threads=threads)
    _, _, height, width = input_shape(config)
    image = torch.rand(3, height, width, generator=torch.Generator().manual_seed(0))
    batch = model.preprocess([image]).images  # [1, 3, Hp, Wp]
    runs: dict[str, Callable[[], object]] = {
        "network, eager": lambda: model.run_network(batch),
        "network, onnxruntime": lambda: onnx_model.run_network(batch),
        "whole model, eager": lambda: model([image]),
        "whole model, onnxruntime": lambda: onnx_model([image]),
    }
    times: dict[str, list[float]] = {label: [] for label in runs}
    with torch.inference_mode():
        for run in runs.values():  # warm-up
            run()
        for _ in range(repeats):
            for label, run in runs.items():
                times[label].append(_timed(run))
    medians = {label: statistics.median(t) for label, t in times.items()}
    print(f"{name}: input {height}x{width}, export {export_s:.1f} s, {path.stat().st_size / 2**20:.1f} MiB")
    for part in ("network", "whole model"):
        eager, ort = medians[f"{part}, eager"], medians[f"{part}, onnxruntime"]
        print(
            f"  {part:<12} eager {eager * 1000:8.2f} ms   onnxruntime {ort * 1000:8.2f} ms   "
            f"eager / onnxruntime {eager / ort:.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--presets", nargs="+", default=["cpu_tiny", "paper_r50_544"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, CPU, {args.threads} threads, "
        f"batch 1, median of {args.repeats}"
    )
    with tempfile.TemporaryDirectory() as folder:
        for name in args.presets:
            bench(name, args.threads, args.repeats, Path(folder))


if __name__ == "__main__":
    main()
