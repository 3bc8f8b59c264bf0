"""Image files as the datasets read them (sipmask_ref/data/image_files.py): PIL modes to RGB, and a missing,
mis-sized or unreadable file named with its image id."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import HEIGHT, WIDTH, CocoFiles, item_by_image_id, load_coco


def test_image_modes_are_converted_to_rgb(coco_files: CocoFiles) -> None:
    dataset = load_coco(coco_files)
    pixels = coco_files.pixels
    image, _ = item_by_image_id(dataset, 1)
    np.testing.assert_allclose(image.permute(1, 2, 0).numpy(), pixels["rgb.png"] / 255.0, atol=1e-6)
    image, _ = item_by_image_id(dataset, 2)  # grayscale: the same value in R, G and B
    for channel in range(3):
        np.testing.assert_allclose(image[channel].numpy(), pixels["gray.png"] / 255.0, atol=1e-6)
    image, _ = item_by_image_id(dataset, 3)  # RGBA: alpha dropped, stored colours kept
    np.testing.assert_allclose(
        image.permute(1, 2, 0).numpy(), pixels["rgba.png"][:, :, :3] / 255.0, atol=1e-6
    )


def test_palette_cmyk_and_16_bit_images(coco_files: CocoFiles) -> None:
    rgb = Image.open(coco_files.image_dir / "rgb.png")
    rgb.convert("P").save(coco_files.image_dir / "rgb.png")
    gray16 = coco_files.pixels["gray.png"].astype(np.uint16) * 257
    Image.fromarray(gray16).save(coco_files.image_dir / "gray.png")
    rgb.convert("CMYK").save(coco_files.image_dir / "rgba.png", format="TIFF")
    dataset = load_coco(coco_files)
    image, _ = item_by_image_id(dataset, 1)
    assert image.shape == (3, HEIGHT, WIDTH)
    image, _ = item_by_image_id(dataset, 2)
    np.testing.assert_allclose(image[1].numpy(), coco_files.pixels["gray.png"] / 255.0, atol=1e-6)
    image, _ = item_by_image_id(dataset, 3)
    assert image.shape == (3, HEIGHT, WIDTH) and image.dtype == torch.float32


def test_missing_image_file_raises_when_loaded(coco_files: CocoFiles) -> None:
    (coco_files.image_dir / "gray.png").unlink()
    dataset = load_coco(coco_files)  # construction does not read images
    dataset[0]
    with pytest.raises(FileNotFoundError, match=r"gray\.png \(image id 2\) does not exist"):
        dataset[1]
    with pytest.raises(
        FileNotFoundError, match=r"1 of 3 image files .* missing, e\.g\. .*gray\.png \(image id 2\)"
    ):
        dataset.check_files()


def test_image_size_mismatch(coco_files: CocoFiles) -> None:
    Image.new("RGB", (50, 30)).save(coco_files.image_dir / "rgba.png")
    dataset = load_coco(coco_files)
    message = "rgba.png (image id 3) is 50x30 (width x height) but the annotation file says 48x32"
    with pytest.raises(ValueError, match=re.escape(message)):
        dataset[2]
    dataset.check_files()  # existence only
    with pytest.raises(ValueError, match=r"rgba\.png \(image id 3\): 50x30 in the file, 48x32 in the JSON"):
        dataset.check_files(check_sizes=True)


def test_unreadable_image_file(coco_files: CocoFiles) -> None:
    (coco_files.image_dir / "rgb.png").write_bytes(b"not an image")
    with pytest.raises(OSError, match=r"cannot read image file .*rgb\.png \(image id 1\)"):
        load_coco(coco_files)[0]
