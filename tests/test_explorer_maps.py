"""The explorer's computations (sipmask_ref/explorer_maps.py) on a small untrained model and two images."""

from __future__ import annotations

import pytest
import torch

from conftest import EXPLORER_SIZE, ExplorerImages, explorer_model
from sipmask_ref import explorer_maps as em
from sipmask_ref.spatial_mask_prediction import assemble_masks


@pytest.fixture(scope="module")
def setup():
    """The 2x2 model, its forward pass on image 0 (as Explorer caches it), and that image."""
    model = explorer_model()
    image, _ = ExplorerImages()[0]
    return model, em.image_intermediates(model, image), image


def test_grid_names_round_trip_and_reject_garbage():
    assert em.parse_grid("2x3") == (2, 3)
    assert em.grid_name((3, 1)) == "3x1"
    for bad in ("2", "0x2", "ax2", "2x2x2"):
        with pytest.raises(ValueError, match="a grid is written"):
            em.parse_grid(bad)


def test_regrid_coefficients_weights_by_overlap():
    coefficients = torch.randn(3, 4, 5)  # [N, Q, M], 2x2
    torch.testing.assert_close(em.regrid_coefficients(coefficients, (2, 2), (2, 2)), coefficients)
    torch.testing.assert_close(
        em.regrid_coefficients(coefficients, (2, 2), (1, 1)), coefficients.mean(dim=1, keepdim=True)
    )
    nine = em.regrid_coefficients(coefficients, (2, 2), (3, 3))  # [N, 9, M]
    top_left, top_right, bottom_left, bottom_right = coefficients.unbind(dim=1)
    torch.testing.assert_close(nine[:, 0], top_left)  # corner cells lie in one quadrant
    torch.testing.assert_close(nine[:, 8], bottom_right)
    torch.testing.assert_close(nine[:, 1], (top_left + top_right) / 2)  # top-middle straddles two
    torch.testing.assert_close(nine[:, 4], coefficients.mean(dim=1))  # the centre touches all four
    halves = em.regrid_coefficients(coefficients, (2, 2), (1, 2))
    torch.testing.assert_close(halves[:, 0], (top_left + bottom_left) / 2)
    with pytest.raises(ValueError, match="coefficients must be"):
        em.regrid_coefficients(coefficients, (1, 1), (2, 2))


def test_instance_maps_own_grid_is_the_models_mask(setup):
    model, inter, image = setup
    assert inter["detections"][0]["scores"].numel() > 0
    maps = em.instance_maps(model, image, 0, threshold=0.3, intermediates=inter)
    half = EXPLORER_SIZE // 2
    assert maps.real and maps.sub_regions == (2, 2)
    assert maps.sub_region_maps.shape == (4, half, half)
    assert (
        maps.image.shape == (3, EXPLORER_SIZE, EXPLORER_SIZE)
        and float(maps.image.min()) >= 0
        and float(maps.image.max()) <= 1
    )
    torch.testing.assert_close(maps.instance_map, inter["detections"][0]["masks"][0])
    torch.testing.assert_close(maps.sub_region_maps, inter["detections"][0]["sub_region_maps"][0])
    assert torch.equal(maps.mask, maps.instance_map > 0.3)
    with pytest.raises(ValueError, match="detection 99"):
        em.instance_maps(model, image, 99, intermediates=inter)


def test_instance_maps_thought_experiment_uses_regridded_coefficients(setup):
    model, inter, image = setup
    maps = em.instance_maps(model, image, 1, grid=(1, 1), intermediates=inter)
    assert not maps.real and maps.sub_region_maps.shape[0] == 1
    detection = inter["detections"][0]
    expected = assemble_masks(
        inter["basis_masks"][0],
        detection["coefficients"][1:2].mean(dim=1, keepdim=True),
        detection["boxes"][1:2],
        (1, 1),
    )[0]
    torch.testing.assert_close(maps.instance_map, expected)


def test_match_detection_prefers_the_best_scored_good_match():
    result = {
        "boxes": torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 9, 10]]),
        "labels": torch.tensor([2, 1, 1, 1]),
        "scores": torch.tensor([0.9, 0.8, 0.7, 0.6]),
    }
    j, overlap = em.match_detection(result, torch.tensor([0.0, 0, 10, 10]), 1)
    assert j == 1 and 0.5 <= overlap < 1  # detection 0 has the wrong class
    j, overlap = em.match_detection(result, torch.tensor([0.0, 0, 10, 10]), 3)  # no class-3 detection
    assert j == 0 and overlap == pytest.approx(1.0)
    assert em.match_detection(result, torch.tensor([30.0, 30, 40, 40]), 1) == (None, 0.0)
    empty = {
        "boxes": torch.zeros(0, 4),
        "labels": torch.zeros(0, dtype=torch.int64),
        "scores": torch.zeros(0),
    }
    assert em.match_detection(empty, torch.tensor([0.0, 0, 10, 10]), 1) == (None, 0.0)
