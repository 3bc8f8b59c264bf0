"""A toy detector and dataset that follow the engine's contracts, for the tests of sipmask_ref/engine/.

The model contract: train mode -> dict of scalar losses; eval mode -> list of dicts. The toys make a
training run take well under a second. `run` trains one with `engine.train`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from sipmask_ref import engine
from sipmask_ref.config import preset


class ToyDetector(nn.Module):
    """Regresses the mean box and the instance count of an image from a conv feature.

    nan_at / interrupt_at: the training call (1-based, counted in this process) that returns a NaN
    loss_box / raises KeyboardInterrupt, to simulate a diverging or an interrupted run.
    """

    def __init__(self, nan_at: int | None = None, interrupt_at: int | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 5)
        self.nan_at, self.interrupt_at, self.calls = nan_at, interrupt_at, 0

    def features(self, images: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(
            [self.head(self.conv(image[None]).relu().mean((2, 3)))[0] for image in images]
        )  # [B, 5]

    def forward(self, images, targets=None):
        out = self.features(images)
        if not self.training:
            return [
                {
                    "boxes": torch.tensor([[0.0, 0.0, float(im.shape[-1]), float(im.shape[-2])]]),
                    "labels": torch.tensor([1]),
                    "scores": torch.tensor([0.9]),
                    "masks": torch.full((1, 1, *im.shape[-2:]), 0.8),
                }
                for im in images
            ]
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        mean_boxes = torch.stack(
            [t["boxes"].mean(0) / 32 if len(t["boxes"]) else torch.zeros(4) for t in targets]
        )  # [B, 4]
        counts = torch.tensor([float(len(t["labels"])) for t in targets])  # [B]
        loss_box = ((out[:, :4] - mean_boxes) ** 2).mean()
        if self.calls == self.nan_at:
            loss_box = loss_box * float("nan")
        return {"loss_cls": ((out[:, 4] - counts) ** 2).mean(), "loss_box": loss_box}


class ToyDataset(torch.utils.data.Dataset):
    """n images of varying size with 0-2 rectangles each (deterministic per index)."""

    class_names: ClassVar[list[str]] = ["a", "b"]
    label_to_cat_id: ClassVar[dict[int, int]] = {1: 7, 2: 9}

    def __init__(self, n: int = 10) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, idx: int):
        g = torch.Generator().manual_seed(idx)
        h, w = 24 + 4 * (idx % 3), 32
        image = torch.rand(3, h, w, generator=g)
        count = idx % 3
        boxes = torch.tensor([[2.0 + 3 * k, 2.0, 12.0 + 5 * k, 10.0 + k] for k in range(count)]).reshape(
            -1, 4
        )
        masks = torch.zeros(count, h, w, dtype=torch.uint8)
        for k, (x1, y1, x2, y2) in enumerate(boxes.int().tolist()):
            masks[k, y1:y2, x1:x2] = 1
        target = {
            "boxes": boxes,
            "labels": torch.tensor([1 + k % 2 for k in range(count)], dtype=torch.int64),
            "masks": masks,
            "image_id": 100 + idx,
            "iscrowd": torch.zeros(count, dtype=torch.uint8),
        }
        return image, target


def toy_config(**changes):
    base = dataclasses.replace(
        preset("cpu_tiny"),
        lr=0.01,
        warmup_iters=3,
        warmup_factor=0.1,
        lr_steps=(5,),
        max_iters=8,
        batch_size=3,
        seed=3,
    )
    return dataclasses.replace(base, **changes)


def fresh_model(config, **kwargs) -> ToyDetector:
    engine.seed_everything(config.seed)
    return ToyDetector(**kwargs)


def run(tmp: Path, config, *, model=None, **kwargs):
    model = model or fresh_model(config)
    summary = engine.train(model, config, ToyDataset(), tmp, progress=False, **kwargs)
    return model, summary


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
