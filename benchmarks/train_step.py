"""Pieces of a cpu_tiny training step, each against what it replaced, side by side in one run.

1. The §3.4 mask loss of a batch, forward + backward: `losses.batch_mask_loss` (all images in one pass,
   logits only at the pixels inside the boxes) against `losses.mask_loss` called once per image (the
   plainly written path, what training ran before). The batch looks like a cpu_tiny batch on the
   synthetic benchmark: 8 images, M = 16 basis masks of 64 x 64, 2 x 2 sub-regions, 40 positives per
   image with boxes of 12 to 40 basis pixels (measured in training: boxes cover about 12% of the map).
2. The optimizer step over cpu_tiny's parameters: AdamW with fused=True (what engine.build_optimizer
   builds) against the default multi-tensor AdamW.
3. The data of one step (8 training images of the synthetic benchmark read, flipped as in training and
   collated): from a CocoInstances with cache=True, every item already read once (the later epochs
   of a run), against one without (decoding every image and mask). Needs the synthetic benchmark
   (`python -m sipmask_ref make-data`); skipped without it.
4. What the stride-4 refinement of the basis masks (`basis_detail`, on in cpu_tiny) costs: the forward
   and backward pass of cpu_tiny on 8 training images of the synthetic benchmark (losses included), with
   and without it (a cost, not a speed-up). Needs the synthetic benchmark too.
5. The tiny body's first two stages in the channels-last memory format (TinyBody's default) against
   all stages in the default format: the same forward and backward pass of cpu_tiny, the same weights.
   Needs the synthetic benchmark too.

    python benchmarks/train_step.py [--threads 2] [--repeats 30] [--data-root data]

Prints the median milliseconds of each and the ratios. The two sides of each pair alternate round by
round, so that machine noise hits them alike.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from sipmask_ref import SipMask, preset
from sipmask_ref.data.coco import CocoInstances
from sipmask_ref.data.transforms import collate
from sipmask_ref.engine.samples import TrainSamples
from sipmask_ref.losses import batch_mask_loss, mask_loss

IMAGES, BASIS, SIZE, POSITIVES = 8, 16, 64, 40


def mask_loss_inputs(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A cpu_tiny-like batch for the mask loss (see the module docstring)."""
    num = IMAGES * POSITIVES
    size = 12 + 28 * torch.rand(num, 2, generator=generator)  # [N, 2] box width, height
    corner = torch.rand(num, 2, generator=generator) * (SIZE - size)  # [N, 2]
    return {
        "basis": torch.rand(IMAGES, BASIS, SIZE, SIZE, generator=generator),
        "coefficients": torch.randn(num, 4, BASIS, generator=generator),
        "boxes": torch.cat([corner, corner + size], dim=1),  # [N, 4]
        "box_image": torch.arange(IMAGES).repeat_interleave(POSITIVES),  # [N]
        "gt_masks": (torch.rand(num, SIZE, SIZE, generator=generator) > 0.5).float(),  # one GT each
        "weights": torch.rand(num, generator=generator) + 0.5,
    }


def batched(inputs: dict[str, torch.Tensor]) -> None:
    basis = inputs["basis"].clone().requires_grad_()
    coefficients = inputs["coefficients"].clone().requires_grad_()
    box_gt = torch.arange(coefficients.shape[0])
    losses = batch_mask_loss(
        basis,
        coefficients,
        inputs["boxes"],
        inputs["box_image"],
        inputs["gt_masks"],
        box_gt,
        inputs["weights"],
        (2, 2),
    )
    losses.mean().backward()


def image_by_image(inputs: dict[str, torch.Tensor]) -> None:
    basis = inputs["basis"].clone().requires_grad_()
    coefficients = inputs["coefficients"].clone().requires_grad_()
    losses = []
    for image in range(IMAGES):
        chosen = slice(image * POSITIVES, (image + 1) * POSITIVES)
        losses.append(
            mask_loss(
                basis[image],
                coefficients[chosen],
                inputs["boxes"][chosen],
                inputs["gt_masks"][chosen],
                inputs["weights"][chosen],
                (2, 2),
            )
        )
    torch.stack(losses).mean().backward()


def optimizer_steps() -> dict[str, Callable[[], None]]:
    """One step of each AdamW over cpu_tiny's parameters (random gradients)."""
    model = SipMask(preset("cpu_tiny"))
    for parameter in model.parameters():
        parameter.grad = torch.randn_like(parameter)
    fused = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    default = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return {"AdamW fused": fused.step, "AdamW default": default.step}


def data_steps(data_root: Path) -> dict[str, Callable[[], None]] | None:
    """Reading the next step's 8 items (cached / not cached), or None without the synthetic data."""
    ann = data_root / "synthetic" / "annotations" / "instances_train.json"
    images = data_root / "synthetic" / "images" / "train"
    if not ann.is_file():
        return None
    cached = CocoInstances(ann, images, cache=True)
    for index in range(len(cached)):
        cached.load_item(index)  # the first epoch: every item read once
    streams = {
        "data cached": TrainSamples(cached, 0, 0.5),
        "data decoded": TrainSamples(CocoInstances(ann, images), 0, 0.5),
    }
    positions = {name: iter(range(10**9)) for name in streams}

    def step(name: str) -> None:
        collate([streams[name][next(positions[name])] for _ in range(IMAGES)])

    return {name: (lambda name=name: step(name)) for name in streams}


def _training_batch(data_root: Path) -> tuple[list, list] | None:
    """The first 8 training images of the synthetic benchmark, collated; None without it."""
    ann = data_root / "synthetic" / "annotations" / "instances_train.json"
    if not ann.is_file():
        return None
    data = CocoInstances(ann, data_root / "synthetic" / "images" / "train")
    return collate([data[index] for index in range(IMAGES)])


def _forward_backward(models: dict[str, SipMask], batch: tuple[list, list]) -> dict[str, Callable[[], None]]:
    """For each model, a callable running its training forward pass (losses included) and backward."""

    def step(model: SipMask) -> None:
        losses = model(*batch)
        assert isinstance(losses, dict)  # train mode: the losses
        sum(losses.values()).backward()
        model.zero_grad(set_to_none=True)

    return {name: (lambda model=model: step(model)) for name, model in models.items()}


def refinement_steps(data_root: Path) -> dict[str, Callable[[], None]] | None:
    """Forward + backward of cpu_tiny on 8 training images with / without basis_detail, or None."""
    batch = _training_batch(data_root)
    if batch is None:
        return None
    torch.manual_seed(0)
    models = {
        "step, basis_detail": SipMask(preset("cpu_tiny")).train(),
        "step, paper's branch": SipMask(replace(preset("cpu_tiny"), basis_detail=False)).train(),
    }
    return _forward_backward(models, batch)


def body_format_steps(data_root: Path) -> dict[str, Callable[[], None]] | None:
    """Forward + backward of cpu_tiny on 8 training images, its body's first two stages in channels-last
    format / every stage in the default format (the same weights), or None."""
    batch = _training_batch(data_root)
    if batch is None:
        return None
    torch.manual_seed(0)
    channels_last = SipMask(preset("cpu_tiny")).train()
    default = copy.deepcopy(channels_last)
    default.backbone.body.use_channels_last(0)
    return _forward_backward(
        {"step, body channels-last": channels_last, "step, body default": default}, batch
    )


def median_ms(pair: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median milliseconds of each callable, the callables alternating round by round."""
    for fn in pair.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in pair}
    for _ in range(repeats):
        for name, fn in pair.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: 1000 * statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--data-root", type=Path, default=Path("data"), help="holds synthetic/ (make-data)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    inputs = mask_loss_inputs(torch.Generator().manual_seed(0))
    print(f"{args.threads} threads, median of {args.repeats} rounds")
    loss_ms = median_ms(
        {"batch_mask_loss": lambda: batched(inputs), "mask_loss per image": lambda: image_by_image(inputs)},
        args.repeats,
    )
    optimizer_ms = median_ms(optimizer_steps(), args.repeats)
    data = data_steps(args.data_root)
    data_ms = median_ms(data, args.repeats) if data is not None else {}
    refinement = refinement_steps(args.data_root)
    refinement_ms = median_ms(refinement, args.repeats) if refinement is not None else {}
    body_format = body_format_steps(args.data_root)
    body_ms = median_ms(body_format, args.repeats) if body_format is not None else {}
    for name, ms in (loss_ms | optimizer_ms | data_ms | refinement_ms | body_ms).items():
        print(f"  {name:<26} {ms:7.2f} ms")
    loss_ratio = loss_ms["mask_loss per image"] / loss_ms["batch_mask_loss"]
    optimizer_ratio = optimizer_ms["AdamW default"] / optimizer_ms["AdamW fused"]
    print(
        f"mask loss, forward + backward: {loss_ratio:.2f}x faster in one pass; "
        f"optimizer step: {optimizer_ratio:.2f}x faster fused"
    )
    if data_ms:
        data_ratio = data_ms["data decoded"] / data_ms["data cached"]
        print(f"data of a step: {data_ratio:.2f}x faster from the cache")
    else:
        print(f"data of a step: skipped, no synthetic benchmark under {args.data_root}")
    if refinement_ms:
        cost = refinement_ms["step, basis_detail"] / refinement_ms["step, paper's branch"]
        print(f"basis refinement: forward + backward {cost:.2f}x the time of the paper's branch")
    if body_ms:
        body_ratio = body_ms["step, body default"] / body_ms["step, body channels-last"]
        print(f"tiny body, first two stages channels-last: forward + backward {body_ratio:.2f}x faster")


if __name__ == "__main__":
    main()
