"""model_input.py: the detector's input preparation (resize in the two regimes, normalize, padding)."""

from __future__ import annotations

import pytest
import torch

from conftest import empty_target, make_sample, mask_extent
from sipmask_ref.data.transforms import horizontal_flip
from sipmask_ref.model_input import normalize, pad_batch, pad_masks, resize, resized_size

# ---------------------------------------------------------------------------------------------------------
# Resize
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("height", "width", "expected"),
    [
        (480, 640, (800, 1067)),  # short side limited: 800 / 480
        (427, 640, (800, 1199)),
        (500, 1500, (444, 1333)),  # long side limited: 1333 / 1500
        (800, 1333, (800, 1333)),
        (1000, 1000, (800, 800)),
        (640, 480, (1067, 800)),  # portrait
    ],
)
def test_keep_ratio_sizes(height: int, width: int, expected: tuple[int, int]) -> None:
    assert resized_size(height, width, (1333, 800), keep_ratio=True) == expected
    assert (
        resized_size(height, width, (800, 1333), keep_ratio=True) == expected
    )  # order of the limits is free


def test_resize_keep_ratio_640x480() -> None:
    image = torch.rand(3, 480, 640)
    resized, target, (sx, sy) = resize(image, None, (1333, 800), keep_ratio=True)
    assert resized.shape == (3, 800, 1067) and target is None
    assert sx == pytest.approx(1067 / 640) and sy == pytest.approx(800 / 480)


@pytest.mark.parametrize(("height", "width"), [(480, 640), (20, 30), (600, 400)])
def test_resize_fixed_544(height: int, width: int) -> None:
    image = torch.rand(3, height, width)
    resized, _, (sx, sy) = resize(image, None, (544, 544), keep_ratio=False)
    assert resized.shape == (3, 544, 544)
    assert (sx, sy) == (544 / width, 544 / height)
    resized, _, _ = resize(image, None, (600, 400), keep_ratio=False)  # (W, H)
    assert resized.shape == (3, 400, 600)


@pytest.mark.parametrize(
    ("size", "keep_ratio"), [((1333, 800), True), ((544, 544), False), ((15, 10), False)]
)
def test_boxes_scale_consistently_with_masks(size, keep_ratio) -> None:
    image, target = make_sample()
    resized, out, (sx, sy) = resize(image, target, size, keep_ratio)
    height, width = resized.shape[1:]
    assert out["masks"].shape == (2, height, width) and out["masks"].dtype == torch.uint8
    assert set(out["masks"].unique().tolist()) <= {0, 1}
    for box, old_box, mask in zip(out["boxes"], target["boxes"], out["masks"], strict=True):
        torch.testing.assert_close(box, old_box * torch.tensor([sx, sy, sx, sy]))
        # nearest-exact keeps each mask within one output pixel of its scaled box
        for got, want in zip(mask_extent(mask), box.tolist(), strict=True):
            assert abs(got - want) <= 1.0
    assert out["labels"] is target["labels"] and out["image_id"] == 5


def test_resize_integer_factor_is_exact_for_masks() -> None:
    image, target = make_sample()
    _, out, scale = resize(image, target, (60, 40), keep_ratio=False)
    assert scale == (2.0, 2.0)
    torch.testing.assert_close(out["masks"], target["masks"].repeat_interleave(2, 1).repeat_interleave(2, 2))
    for box, mask in zip(out["boxes"], out["masks"], strict=True):
        assert box.tolist() == mask_extent(mask)


def test_resize_without_instances() -> None:
    image = torch.rand(3, 8, 12)
    _, target, _ = resize(image, empty_target(8, 12), (544, 544), keep_ratio=False)
    assert target["boxes"].shape == (0, 4) and target["masks"].shape == (0, 544, 544)


# ---------------------------------------------------------------------------------------------------------
# Normalize, pad, collate
# ---------------------------------------------------------------------------------------------------------


def test_normalize() -> None:
    image = torch.rand(3, 4, 5)
    out = normalize(image, [0.5, 0.25, 0.0], [2.0, 1.0, 0.5])
    torch.testing.assert_close(out[0], (image[0] - 0.5) / 2.0)
    torch.testing.assert_close(out[2], image[2] / 0.5)
    with pytest.raises(ValueError, match="one value per channel"):
        normalize(image, [0.5], [1.0])


def test_pad_batch_multiple_of_32_and_content_preserved() -> None:
    images = [torch.rand(3, 50, 70), torch.rand(3, 64, 33), torch.rand(3, 10, 10)]
    batch, sizes = pad_batch(images, size_divisible=32)
    assert batch.shape == (3, 3, 64, 96)
    assert sizes == [(50, 70), (64, 33), (10, 10)]
    for k, image in enumerate(images):
        height, width = image.shape[1:]
        torch.testing.assert_close(batch[k, :, :height, :width], image)
        assert batch[k, :, height:, :].abs().sum() == 0 and batch[k, :, :, width:].abs().sum() == 0
    batch, _ = pad_batch(images, size_divisible=1)
    assert batch.shape == (3, 3, 64, 70)
    with pytest.raises(ValueError, match="at least one image"):
        pad_batch([])


def test_pad_masks() -> None:
    _, target = make_sample()
    padded = pad_masks(target["masks"], (32, 64))
    assert padded.shape == (2, 32, 64) and padded.dtype == torch.uint8
    torch.testing.assert_close(padded[:, :20, :30], target["masks"])
    assert padded[:, 20:].sum() == 0 and padded[:, :, 30:].sum() == 0
    assert pad_masks(torch.zeros(0, 5, 5, dtype=torch.uint8), (8, 8)).shape == (0, 8, 8)
    with pytest.raises(ValueError, match="smaller"):
        pad_masks(target["masks"], (10, 64))


def test_input_preparation_follows_the_device() -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    image, target = make_sample()
    image = image.to(device)
    target = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in target.items()}
    flipped, flipped_target = horizontal_flip(image, target)
    resized, resized_target, _ = resize(flipped, flipped_target, (64, 48), keep_ratio=True)
    batch, _ = pad_batch([normalize(resized, [0.5] * 3, [0.5] * 3)])
    assert batch.device == image.device
    assert resized_target["boxes"].device == image.device and resized_target["masks"].device == image.device
