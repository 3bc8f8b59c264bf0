"""§3 / §4.1 The detector's input preparation: resize, normalise, pad to a multiple of 32.

Everything SipMask does to an image before the backbone sees it (SipMask.preprocess calls these),
the role torchvision's GeneralizedRCNNTransform plays for its detectors. It belongs to the model, not
to the data pipeline: a checkpoint's config (input_size, keep_ratio, pixel_mean / pixel_std,
size_divisible) decides it, and a dataset hands the model images at their original size.

Each function takes an image ``float32 [3, H, W]`` and, where it has one, a target dict in the data
contract (``boxes [G, 4]`` xyxy pixels, ``masks uint8 [G, H, W]``, other keys copied unchanged) and
returns new tensors; inputs are never modified in place. The target may be ``None`` (inference).
Tensors stay on the device they came on.

Two input regimes of the paper (§4.1, Table 1):

    keep_ratio=True,  size=(1333, 800): scale = min(1333 / long side, 800 / short side)  (mmdet "keep ratio")
    keep_ratio=False, size=(544, 544):  resize to exactly (W, H) = size

Held here, top to bottom: resized_size, resize, resize_masks, normalize, padded_size, pad_batch,
pad_masks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


def resized_size(height: int, width: int, size: tuple[int, int], keep_ratio: bool) -> tuple[int, int]:
    """Output (height, width) of :func:`resize` for an image of ``height x width``.

    keep_ratio=True: ``size`` holds the two limits in any order, e.g. (1333, 800): the long side may be at
    most max(size) and the short side at most min(size); scale = min(max(size) / long, min(size) / short)
    and each side is rounded with int(side * scale + 0.5), as mmcv's ``imrescale``.
    keep_ratio=False: ``size`` is (width, height), e.g. (544, 544), and the output is exactly that.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"cannot resize an image of size {height}x{width}")
    if min(size) <= 0:
        raise ValueError(f"resize size must be positive, got {size}")
    if not keep_ratio:
        out_width, out_height = size
        return int(out_height), int(out_width)
    scale = min(max(size) / max(height, width), min(size) / min(height, width))
    return int(height * scale + 0.5), int(width * scale + 0.5)


def resize(
    image: Tensor, target: dict[str, Any] | None, size: tuple[int, int], keep_ratio: bool
) -> tuple[Tensor, dict[str, Any] | None, tuple[float, float]]:
    """Resize an image and its target; returns ``(image, target, (sx, sy))``.

    See :func:`resized_size` for the output size. ``(sx, sy) = (new_W / W, new_H / H)`` are the exact
    factors between the two pixel grids (with keep_ratio they differ slightly because of rounding); boxes
    are multiplied by them, so ``boxes / [sx, sy, sx, sy]`` maps predictions back to the original image.

    The image is resized bilinearly (align_corners=False, no antialiasing, like cv2 in the official code).
    Masks are resized with 'nearest-exact' interpolation (the source pixel whose centre is nearest),
    which keeps them uint8 0/1 and aligned with the bilinearly resized image; the official code also
    uses nearest for masks.
    """
    height, width = image.shape[-2:]
    new_height, new_width = resized_size(height, width, size, keep_ratio)
    scale = (new_width / width, new_height / height)
    if (new_height, new_width) == (height, width):
        resized = image
    else:
        resized = F.interpolate(
            image[None], size=(new_height, new_width), mode="bilinear", align_corners=False
        )[0]
    if target is None:
        return resized, None, scale
    out = dict(target)  # a shallow copy: the tensors that change are replaced
    if "boxes" in target:
        boxes = target["boxes"]  # [G, 4]
        factors = torch.tensor(
            [scale[0], scale[1], scale[0], scale[1]], dtype=boxes.dtype, device=boxes.device
        )
        out["boxes"] = boxes * factors
    if "masks" in target:
        out["masks"] = resize_masks(target["masks"], (new_height, new_width))
    return resized, out, scale


def resize_masks(masks: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize binary masks [G, H, W] to ``size`` = (H', W') with nearest-exact interpolation; dtype kept."""
    num, height, width = masks.shape
    if (height, width) == tuple(size):
        return masks
    if num == 0:
        return masks.new_zeros((0, size[0], size[1]))
    resized = F.interpolate(masks[:, None].float(), size=tuple(size), mode="nearest-exact")
    return resized[:, 0].to(masks.dtype)  # [G, H', W']


def normalize(image: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """``(image - mean) / std`` per channel; mean and std have one value per channel."""
    if len(mean) != image.shape[0] or len(std) != image.shape[0]:
        raise ValueError(
            f"mean {list(mean)} and std {list(std)} need one value per channel ({image.shape[0]})"
        )
    mean_t = torch.as_tensor(mean, dtype=image.dtype, device=image.device)[:, None, None]
    std_t = torch.as_tensor(std, dtype=image.dtype, device=image.device)[:, None, None]
    return (image - mean_t) / std_t


def padded_size(height: int, width: int, size_divisible: int) -> tuple[int, int]:
    """Round (height, width) up to multiples of ``size_divisible`` (no rounding when it is <= 1)."""
    if size_divisible <= 1:
        return height, width
    return (
        int(math.ceil(height / size_divisible) * size_divisible),
        int(math.ceil(width / size_divisible) * size_divisible),
    )


def pad_batch(images: Sequence[Tensor], size_divisible: int = 32) -> tuple[Tensor, list[tuple[int, int]]]:
    """Stack images of different sizes into one zero-padded batch ``[B, 3, Hp, Wp]``.

    Each image sits at the top-left corner (padding is added at the bottom and right), so pixel
    coordinates are unchanged. Hp and Wp are the largest height / width rounded up to a multiple of
    ``size_divisible``. Returns the batch and each image's (h, w) before padding.
    """
    if len(images) == 0:
        raise ValueError("pad_batch needs at least one image")
    channels = images[0].shape[0]
    for k, image in enumerate(images):
        if image.dim() != 3 or image.shape[0] != channels:
            raise ValueError(
                f"image {k} has shape {tuple(image.shape)}; expected [{channels}, H, W] like image 0"
            )
    max_height = max(image.shape[1] for image in images)
    max_width = max(image.shape[2] for image in images)
    pad_height, pad_width = padded_size(max_height, max_width, size_divisible)
    first = images[0]
    batch = first.new_zeros((len(images), channels, pad_height, pad_width))  # [B, 3, Hp, Wp]
    image_sizes = []
    for k, image in enumerate(images):
        height, width = image.shape[1:]
        batch[k, :, :height, :width].copy_(image)
        image_sizes.append((int(height), int(width)))
    return batch, image_sizes


def pad_masks(masks: Tensor, size: tuple[int, int]) -> Tensor:
    """Zero-pad masks [G, H, W] at the bottom and right to ``size`` = (Hp, Wp) (like :func:`pad_batch`)."""
    num, height, width = masks.shape
    pad_height, pad_width = size
    if pad_height < height or pad_width < width:
        raise ValueError(f"cannot pad masks of size {height}x{width} to the smaller {pad_height}x{pad_width}")
    padded = masks.new_zeros((num, pad_height, pad_width))  # [G, Hp, Wp]
    padded[:, :height, :width] = masks
    return padded
