"""data/transforms.py: flip, paired application to video frames, collate."""

from __future__ import annotations

import pytest
import torch

from conftest import empty_target, make_sample, mask_extent
from sipmask_ref.data.transforms import (
    Compose,
    RandomHorizontalFlip,
    apply_same_transform,
    collate,
    horizontal_flip,
    transform_with_seed,
)

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
    assert flipped.device == image.device
    assert flipped_target["boxes"].device == image.device and flipped_target["masks"].device == image.device
