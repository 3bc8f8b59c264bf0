"""Training transforms of images + targets: flip, paired application to video frames, collate.

Every function takes an image ``float32 [3, H, W]`` and a target dict in the data contract
(``boxes [G, 4]`` xyxy pixels, ``masks uint8 [G, H, W]``, other keys copied unchanged) and returns new
tensors; inputs are never modified in place. The target may be ``None`` (inference). Tensors stay on the
device they came on.

The model's own input preparation (resize to the paper's input size, normalise, pad to 32) is not
here: it belongs to the detector and lives in ``sipmask_ref/model_input.py``.

Random transforms draw from torch's global CPU generator (``torch.rand``). To apply the *same* random
draw to several frames of a video (a training frame and its reference frame, §3.5), use
:func:`apply_same_transform`: it replays one seed for every frame, so a flip flips all frames or none.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

Target = dict[str, Any] | None
Transform = Callable[[Tensor, Target], tuple[Tensor, Target]]


def transformed_target(target: Target, owner: str) -> dict[str, Any]:
    """The target a dataset's transform returned, which must not be None for an item with a target."""
    if target is None:
        raise ValueError(f"{owner}: the transform returned no target (None) for an item that has one")
    return target


def _copy_target(target: dict[str, Any]) -> dict[str, Any]:
    """A shallow copy: new dict, same tensors (each transform replaces the tensors it changes)."""
    return dict(target)


def horizontal_flip(image: Tensor, target: Target) -> tuple[Tensor, Target]:
    """Mirror the image left-right, with its boxes and masks.

    A box [x1, y1, x2, y2] in an image of width W becomes [W - x2, y1, W - x1, y2] (pixel edges, so a mask
    covering columns x1..x2-1 covers W-x2..W-x1-1 after the flip). Works with G = 0.
    """
    width = image.shape[-1]
    flipped = image.flip(-1)
    if target is None:
        return flipped, None
    out = _copy_target(target)
    if "boxes" in target:
        boxes = target["boxes"]  # [G, 4]
        out["boxes"] = torch.stack(
            [width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1
        )
    if "masks" in target:
        out["masks"] = target["masks"].flip(-1)  # [G, H, W]
    return flipped, out


class RandomHorizontalFlip:
    """Flip with probability ``p`` (one draw of ``torch.rand`` per call)."""

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"flip probability must be in [0, 1], got {p}")
        self.p = p

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        if torch.rand(()).item() < self.p:
            return horizontal_flip(image, target)
        return image, target

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class Compose:
    """Apply transforms ``(image, target) -> (image, target)`` one after the other."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        for transform in self.transforms:
            image, target = transform(image, target)
        return image, target

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Compose([{inner}])"


def transform_with_seed(
    transform: Transform, image: Tensor, target: Target, seed: int
) -> tuple[Tensor, Target]:
    """Run ``transform`` with torch's CPU generator seeded to ``seed``, then restore the generator.

    Two calls with the same seed make the same random draws, whatever happened to the generator in between.
    """
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        return transform(image, target)


def apply_same_transform(
    transform: Transform, frames: Sequence[tuple[Tensor, Target]]
) -> list[tuple[Tensor, Target]]:
    """Apply one random transform to several frames with the same random draws (e.g. flip all or none).

    One seed is drawn from the global generator (so runs stay reproducible under ``torch.manual_seed``)
    and replayed for each frame with :func:`transform_with_seed`. This works for any transform whose
    randomness comes from torch's CPU generator, as all transforms of this module do; a transform that
    uses Python's ``random`` or NumPy would not be synchronised.
    """
    seed = int(torch.randint(0, 2**62, ()).item())
    return [transform_with_seed(transform, image, target, seed) for image, target in frames]


def collate(batch: Sequence[tuple[Any, ...]]) -> tuple[list[Any], ...]:
    """DataLoader ``collate_fn``: a list of items -> a tuple of lists, one list per item field.

    Items of (image, target) give (images, targets); training pairs (image, target, ref_image, ref_target)
    give four lists. Images keep their own sizes (the model pads them: model_input.pad_batch).
    """
    if len(batch) == 0:
        raise ValueError("collate got an empty batch")
    lengths = {len(item) for item in batch}
    if len(lengths) != 1:
        raise ValueError(f"collate got items of different lengths {sorted(lengths)}")
    return tuple(list(field) for field in zip(*batch, strict=True))
