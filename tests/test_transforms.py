"""Transforms: flip, resize (the paper's two regimes), normalize, padding, collate, paired application."""

from __future__ import annotations

import pytest
import torch

from sipmask_ref.data.transforms import (
    Compose,
    RandomHorizontalFlip,
    apply_same_transform,
    collate,
    horizontal_flip,
    normalize,
    pad_batch,
    pad_masks,
    resize,
    resized_size,
    transform_with_seed,
)


def make_sample(height: int = 20, width: int = 30) -> tuple[torch.Tensor, dict]:
    """An image with two rectangular instances whose boxes are the masks' pixel extents."""
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(3, height, width, generator=generator)
    masks = torch.zeros(2, height, width, dtype=torch.uint8)
    masks[0, 2:9, 3:11] = 1  # rows 2..8, columns 3..10
    masks[1, 10:18, 15:29] = 1
    target = {
        "boxes": torch.tensor([[3.0, 2.0, 11.0, 9.0], [15.0, 10.0, 29.0, 18.0]]),
        "labels": torch.tensor([1, 2]),
        "masks": masks,
        "image_id": 5,
        "iscrowd": torch.zeros(2, dtype=torch.uint8),
    }
    return image, target


def mask_extent(mask: torch.Tensor) -> list[float]:
    """xyxy pixel-edge box of a mask [H, W]."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def empty_target(height: int, width: int) -> dict:
    return {
        "boxes": torch.zeros(0, 4),
        "labels": torch.zeros(0, dtype=torch.int64),
        "masks": torch.zeros(0, height, width, dtype=torch.uint8),
        "image_id": 0,
        "iscrowd": torch.zeros(0, dtype=torch.uint8),
    }


# ---------------------------------------------------------------------------------------------------------
# Flip
# ---------------------------------------------------------------------------------------------------------


def test_flip_twice_is_identity_and_input_is_untouched() -> None:
    image, target = make_sample()
    original = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in target.items()}
    once_image, once_target = horizontal_flip(image, target)
    twice_image, twice_target = horizontal_flip(once_image, once_target)
    torch.testing.assert_close(twice_image, image)
    for key in ("boxes", "labels", "masks", "iscrowd"):
        torch.testing.assert_close(twice_target[key], target[key])
        torch.testing.assert_close(target[key], original[key])
    assert not torch.equal(once_image, image)
    assert once_target["image_id"] == 5


def test_flipped_box_matches_flipped_mask_extent() -> None:
    image, target = make_sample()
    _, flipped = horizontal_flip(image, target)
    assert flipped["boxes"][0].tolist() == [30.0 - 11.0, 2.0, 30.0 - 3.0, 9.0]
    for box, mask in zip(flipped["boxes"], flipped["masks"], strict=True):
        assert box.tolist() == mask_extent(mask)


def test_flip_without_instances_and_without_target() -> None:
    image = torch.rand(3, 8, 12)
    flipped, target = horizontal_flip(image, empty_target(8, 12))
    assert target["boxes"].shape == (0, 4) and target["masks"].shape == (0, 8, 12)
    flipped, none = horizontal_flip(image, None)
    assert none is None and torch.equal(flipped, image.flip(-1))


def test_random_flip_probability_and_rng() -> None:
    image, target = make_sample()
    assert torch.equal(RandomHorizontalFlip(0.0)(image, target)[0], image)
    assert torch.equal(RandomHorizontalFlip(1.0)(image, target)[0], image.flip(-1))
    torch.manual_seed(3)
    first = [torch.equal(RandomHorizontalFlip(0.5)(image, None)[0], image) for _ in range(20)]
    torch.manual_seed(3)
    second = [torch.equal(RandomHorizontalFlip(0.5)(image, None)[0], image) for _ in range(20)]
    assert first == second and any(first) and not all(first)
    with pytest.raises(ValueError, match="flip probability"):
        RandomHorizontalFlip(1.5)


def test_apply_same_transform_flips_all_frames_or_none() -> None:
    flip = Compose([RandomHorizontalFlip(0.5)])
    image, target = make_sample()
    other = image * 0.5
    outcomes = set()
    torch.manual_seed(0)
    for _ in range(16):
        (a, _), (b, _) = apply_same_transform(flip, [(image, target), (other, None)])
        a_flipped, b_flipped = torch.equal(a, image.flip(-1)), torch.equal(b, other.flip(-1))
        assert a_flipped == b_flipped
        outcomes.add(a_flipped)
    assert outcomes == {True, False}


def test_transform_with_seed_restores_the_generator() -> None:
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    image, _ = make_sample()
    transform_with_seed(RandomHorizontalFlip(0.5), image, None, seed=123)
    torch.testing.assert_close(torch.rand(3), expected)


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


def test_collate_singles_and_pairs() -> None:
    a, ta = make_sample()
    b, tb = make_sample(10, 12)
    images, targets = collate([(a, ta), (b, tb)])
    assert images == [a, b] and targets == [ta, tb]
    fields = collate([(a, ta, b, tb), (b, tb, a, ta)])
    assert len(fields) == 4 and fields[2] == [b, a]
    with pytest.raises(ValueError, match="empty batch"):
        collate([])


def test_transforms_follow_the_device() -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    image, target = make_sample()
    image = image.to(device)
    target = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in target.items()}
    flipped, flipped_target = horizontal_flip(image, target)
    resized, resized_target, _ = resize(flipped, flipped_target, (64, 48), keep_ratio=True)
    batch, _ = pad_batch([normalize(resized, [0.5] * 3, [0.5] * 3)])
    assert batch.device == image.device
    assert resized_target["boxes"].device == image.device and resized_target["masks"].device == image.device
