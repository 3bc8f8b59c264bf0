"""Video inference speed of SipMask-VIS against the image model, side by side in one run (not a test).

§4.4 claims real-time video instance segmentation (30 fps on a Titan Xp); the tracking branch (§3.5)
should cost little next to the detector. For each preset, three pipelines run on the same frames:

    image        SipMask (the same config with task='image'): the detector alone
    vis network  SipMaskVIS forward: the detector + tracking branch + an embedding per detection
    vis video    SipMaskVIS forward + TrackMatcher + VideoResultAccumulator (RLE per frame): what
                 `evaluate --task vis` does per frame

Presets: cpu_tiny_vis at 128 x 128 and paper_vis_r50 at 640 x 360 (ResNet-50, 40 classes, padded to
640 x 384). Random weights, nothing downloaded; the score threshold is 0 so that every frame fills its
10 detection slots (max_detections of the VIS presets), as a trained model on a busy video would.

    python benchmarks/video.py [--device cpu|cuda] [--frames 6] [--repeats 3] [--threads N]

Prints, per preset, the median time per frame of each pipeline (frames per second) and the ratios to
the image model. Pipelines are interleaved frame by frame so that machine noise hits them alike.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable

import torch

from sipmask_ref import SipMask, preset
from sipmask_ref.trackers import TrackMatcher, VideoResultAccumulator
from sipmask_ref.video_model import SipMaskVIS

CASES = {"cpu_tiny_vis": (128, 128), "paper_vis_r50": (640, 360)}  # preset -> frame (W, H)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(name: str, device: torch.device) -> tuple[torch.nn.Module, SipMaskVIS]:
    """(image model, VIS model) of a preset, random weights, score threshold 0."""
    config = dataclasses.replace(preset(name), score_threshold=0.0, pretrained_backbone=False)
    torch.manual_seed(0)
    image_model = SipMask(dataclasses.replace(config, task="image"))
    torch.manual_seed(0)
    vis_model = SipMaskVIS(config)
    return image_model.eval().to(device), vis_model.eval().to(device)


def bench(name: str, device: torch.device, frames: int, repeats: int) -> dict[str, float]:
    """Median seconds per frame of the three pipelines for one preset."""
    width, height = CASES[name]
    image_model, vis_model = build(name, device)
    generator = torch.Generator().manual_seed(0)
    video = [torch.rand(3, height, width, generator=generator).to(device) for _ in range(frames)]
    matcher = TrackMatcher()
    accumulator: list[VideoResultAccumulator] = []

    def image_step(frame: torch.Tensor) -> None:
        image_model([frame])

    def network_step(frame: torch.Tensor) -> None:
        vis_model([frame])

    def video_step(frame: torch.Tensor) -> None:
        found = vis_model([frame])[0]
        ids = matcher.match(found["embeds"], found["boxes"], found["labels"], found["scores"])
        accumulator[0].add_frame(
            len(accumulator[0].frames_added), ids, found["labels"], found["scores"], found["masks"]
        )

    steps: dict[str, Callable[[torch.Tensor], None]] = {
        "image": image_step,
        "vis network": network_step,
        "vis video": video_step,
    }
    times: dict[str, list[float]] = {key: [] for key in steps}
    with torch.inference_mode():
        image_step(video[0])  # warm-up
        network_step(video[0])
        detections = len(vis_model([video[0]])[0]["boxes"])
        for _ in range(repeats):
            matcher.reset()
            accumulator[:] = [VideoResultAccumulator(1, frames, {k: k for k in range(1, 41)})]
            for frame in video:
                for key, step in steps.items():
                    _sync(device)
                    start = time.perf_counter()
                    step(frame)
                    _sync(device)
                    times[key].append(time.perf_counter() - start)
    medians = {key: statistics.median(values) for key, values in times.items()}
    print(f"{name} at {width} x {height} ({detections} detections per frame, {frames} frames x {repeats}):")
    for key, seconds in medians.items():
        ratio = medians["image"] / seconds
        print(
            f"  {key:<12} {seconds * 1000:8.1f} ms/frame  {1 / seconds:7.2f} fps   "
            f"fps ratio to image {ratio:.3f}"
        )
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=6, help="frames of the random video")
    parser.add_argument("--repeats", type=int, default=3, help="passes over the video")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--presets", nargs="+", default=list(CASES), choices=list(CASES))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    for name in args.presets:
        bench(name, device, args.frames, args.repeats)


if __name__ == "__main__":
    main()
