"""Reading image files as RGB arrays, with the checks and messages of the datasets.

``CocoInstances`` (coco.py), ``YTVISDataset`` (ytvis.py), the ``predict`` command and the scan before
training (``dataset_check.scan_images``) read every image through these functions, so an image is
decoded the same way everywhere and a bad one is named the same way (its path and, in ``owner``,
its image id). The conversions (PIL modes to RGB, alpha dropped, 16-bit grayscale) are listed in
the docstring of ``coco.py``. Top to bottom:

    load_rgb_image      file -> float32 tensor [3, H, W] in [0, 1], size checked against the JSON
    read_rgb_array      the same without torch: float32 [H, W, 3]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor


def load_rgb_image(path: Path, expected_size: tuple[int, int] | None, owner: str) -> Tensor:
    """Read an image file as float32 [3, H, W], RGB in [0, 1] (conversions: coco.py's docstring).

    ``expected_size`` is (width, height) from the annotation file (None: not checked); ``owner`` names the
    image in error messages, e.g. "image id 3".
    """
    array = read_rgb_array(path, expected_size, owner)  # [H, W, 3]
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def read_rgb_array(path: Path, expected_size: tuple[int, int] | None, owner: str) -> np.ndarray:
    """:func:`load_rgb_image` without the tensor: float32 [H, W, 3], with the same checks and errors.

    Scanning a dataset before training calls this: it decodes the file as training will, without torch.
    """
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} ({owner}) does not exist")
    try:
        with Image.open(path) as img:
            if expected_size is not None and tuple(img.size) != tuple(expected_size):
                raise ValueError(
                    f"image file {path} ({owner}) is {img.size[0]}x{img.size[1]} (width x height) "
                    f"but the annotation file says {expected_size[0]}x{expected_size[1]}"
                )
            return _pil_to_rgb_array(img, path)  # [H, W, 3]
    except OSError as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise OSError(f"cannot read image file {path} ({owner}): {err}") from err


def _pil_to_rgb_array(img: Image.Image, path: Path) -> np.ndarray:
    """PIL image of any common mode -> float32 [H, W, 3] in [0, 1]."""
    if img.mode.startswith("I;16"):  # 16-bit grayscale
        gray = np.asarray(img).astype(np.float32) / 65535.0  # [H, W]
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode in ("I", "F"):
        raise ValueError(
            f"image file {path} has PIL mode {img.mode!r} (32-bit integer / float pixels), whose range "
            f"is unknown; convert it to 8-bit RGB"
        )
    try:
        rgb = img.convert("RGB")  # L, P, 1: replicated gray / palette colours; RGBA, LA: alpha dropped
    except ValueError as err:
        raise ValueError(f"image file {path}: cannot convert PIL mode {img.mode!r} to RGB") from err
    return np.asarray(rgb, dtype=np.float32) / 255.0
