"""Explorer callbacks (sipmask_ref/explorer.py) on a small untrained model and a two-image dataset."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import pytest
import torch
from matplotlib.figure import Figure

from sipmask_ref import explorer as ex
from sipmask_ref.config import preset
from sipmask_ref.inference import paste_masks
from sipmask_ref.model import SipMask
from sipmask_ref.spatial_mask_prediction import assemble_masks

SIZE = 64


class TinyDataset:
    """Two 64 x 64 images with two square instances each (labels 1 and 2)."""

    class_names: ClassVar[list[str]] = ["a", "b"]

    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(0)
        self.items = []
        for k in range(2):
            image = torch.rand(3, SIZE, SIZE, generator=generator)
            boxes = torch.tensor([[4.0 + k, 6.0, 30.0, 28.0], [34.0, 30.0 + k, 60.0, 58.0]])
            masks = torch.zeros(2, SIZE, SIZE, dtype=torch.uint8)
            for g, (x1, y1, x2, y2) in enumerate(boxes.int().tolist()):
                masks[g, y1:y2, x1:x2] = 1
            self.items.append(
                (image, {"boxes": boxes, "labels": torch.tensor([1, 2]), "masks": masks, "image_id": k + 1})
            )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        return self.items[index]


def make_model(sub_regions=(2, 2), score_threshold: float = 0.0) -> SipMask:
    torch.manual_seed(0)
    config = dataclasses.replace(
        preset("cpu_tiny"),
        num_classes=2,
        input_size=(SIZE, SIZE),
        sub_regions=sub_regions,
        score_threshold=score_threshold,
        max_detections=8,
    )
    return SipMask(config).eval()


@pytest.fixture(scope="module")
def setup():
    dataset = TinyDataset()
    models = {"2x2": make_model(), "1x1": make_model((1, 1))}
    return ex.Explorer(models, dataset), dataset


def test_grid_names_round_trip_and_reject_garbage():
    assert ex.parse_grid("2x3") == (2, 3)
    assert ex.grid_name((3, 1)) == "3x1"
    for bad in ("2", "0x2", "ax2", "2x2x2"):
        with pytest.raises(ValueError, match="a grid is written"):
            ex.parse_grid(bad)


def test_regrid_coefficients_weights_by_overlap():
    coefficients = torch.randn(3, 4, 5)  # [N, Q, M], 2x2
    torch.testing.assert_close(ex.regrid_coefficients(coefficients, (2, 2), (2, 2)), coefficients)
    torch.testing.assert_close(
        ex.regrid_coefficients(coefficients, (2, 2), (1, 1)), coefficients.mean(dim=1, keepdim=True)
    )
    nine = ex.regrid_coefficients(coefficients, (2, 2), (3, 3))  # [N, 9, M]
    top_left, top_right, bottom_left, bottom_right = coefficients.unbind(dim=1)
    torch.testing.assert_close(nine[:, 0], top_left)  # corner cells lie in one quadrant
    torch.testing.assert_close(nine[:, 8], bottom_right)
    torch.testing.assert_close(nine[:, 1], (top_left + top_right) / 2)  # top-middle straddles two
    torch.testing.assert_close(nine[:, 4], coefficients.mean(dim=1))  # the centre touches all four
    halves = ex.regrid_coefficients(coefficients, (2, 2), (1, 2))
    torch.testing.assert_close(halves[:, 0], (top_left + bottom_left) / 2)
    with pytest.raises(ValueError, match="coefficients must be"):
        ex.regrid_coefficients(coefficients, (1, 1), (2, 2))


def test_instance_maps_own_grid_is_the_models_mask(setup):
    explorer, dataset = setup
    model = explorer.models["2x2"]
    image, _ = dataset[0]
    inter = explorer.intermediates("2x2", 0)
    assert inter["detections"][0]["scores"].numel() > 0
    maps = ex.instance_maps(model, image, 0, threshold=0.3, intermediates=inter)
    half = SIZE // 2
    assert maps.real and maps.sub_regions == (2, 2)
    assert maps.sub_region_maps.shape == (4, half, half)
    assert (
        maps.image.shape == (3, SIZE, SIZE) and float(maps.image.min()) >= 0 and float(maps.image.max()) <= 1
    )
    torch.testing.assert_close(maps.instance_map, inter["detections"][0]["masks"][0])
    torch.testing.assert_close(maps.sub_region_maps, inter["detections"][0]["sub_region_maps"][0])
    assert torch.equal(maps.mask, maps.instance_map > 0.3)
    with pytest.raises(ValueError, match="detection 99"):
        ex.instance_maps(model, image, 99, intermediates=inter)


def test_instance_maps_thought_experiment_uses_regridded_coefficients(setup):
    explorer, dataset = setup
    model = explorer.models["2x2"]
    image, _ = dataset[0]
    inter = explorer.intermediates("2x2", 0)
    maps = ex.instance_maps(model, image, 1, grid=(1, 1), intermediates=inter)
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
    j, overlap = ex.match_detection(result, torch.tensor([0.0, 0, 10, 10]), 1)
    assert j == 1 and 0.5 <= overlap < 1  # detection 0 has the wrong class
    j, overlap = ex.match_detection(result, torch.tensor([0.0, 0, 10, 10]), 3)  # no class-3 detection
    assert j == 0 and overlap == pytest.approx(1.0)
    assert ex.match_detection(result, torch.tensor([30.0, 30, 40, 40]), 1) == (None, 0.0)
    empty = {
        "boxes": torch.zeros(0, 4),
        "labels": torch.zeros(0, dtype=torch.int64),
        "scores": torch.zeros(0),
    }
    assert ex.match_detection(empty, torch.tensor([0.0, 0, 10, 10]), 1) == (None, 0.0)


def test_explorer_maps_describe_and_render(setup):
    explorer, _ = setup
    state = ex.ExplorerState(image_index=1, instance=0, model="2x2", threshold=0.3)
    maps, facts = explorer.maps(state)
    assert maps is not None and facts["real"] and facts["grid"] == "2x2"
    assert 0.0 <= facts["gt_mask_iou"] <= 1.0
    # naming the model's own grid is the real path too
    same, same_facts = explorer.maps(dataclasses.replace(state, pruning="2x2"))
    assert same.real and same_facts["gt_mask_iou"] == facts["gt_mask_iou"]
    torch.testing.assert_close(same.instance_map, maps.instance_map)
    # a thought-experiment grid is pasted exactly as the model pastes its own masks
    thought, thought_facts = explorer.maps(dataclasses.replace(state, pruning="1x1"))
    assert not thought.real and not thought_facts["real"]
    inter = explorer.intermediates("2x2", 1)
    coefficients = inter["detections"][0]["coefficients"][facts["detection"]][None].mean(dim=1, keepdim=True)
    pasted = paste_masks(
        inter["basis_masks"][0],
        coefficients,
        thought.box[None] * 2,
        (1, 1),
        inter["image_sizes"][0],
        inter["original_sizes"][0],
    )[0, 0]
    gt = explorer.item(1)[1]["masks"][0].bool()
    assert thought_facts["gt_mask_iou"] == pytest.approx(ex.mask_iou(pasted > 0.3, gt))

    text = ex.describe(state, explorer)
    assert "model trained 2x2" in text and "(real)" in text and "mask IoU" in text
    assert "thought experiment" in ex.describe(dataclasses.replace(state, pruning="3x3"), explorer)
    figure = ex.render(dataclasses.replace(state, pruning="3x3"), explorer)
    assert isinstance(figure, Figure)
    assert len(figure.axes) == 1 + 9 + 2  # input, 3 x 3 maps, pruned sum, mask
    assert len(ex.render(ex.ExplorerState(0, 1, "1x1"), explorer).axes) == 1 + 1 + 2


def test_explorer_without_detections_and_bad_states():
    dataset = TinyDataset()
    explorer = ex.Explorer({"2x2": make_model(score_threshold=1.0)}, dataset)  # nothing scores > 1
    state = ex.ExplorerState(0, 0, "2x2")
    maps, facts = explorer.maps(state)
    assert maps is None and facts["detection"] is None and facts["gt_mask_iou"] is None
    assert "no detection" in ex.describe(state, explorer)
    assert isinstance(ex.render(state, explorer), Figure)
    with pytest.raises(ValueError, match="instance 5"):
        explorer.maps(ex.ExplorerState(0, 5, "2x2"))
    with pytest.raises(ValueError, match="unknown model"):
        explorer.maps(ex.ExplorerState(0, 0, "3x3"))
    with pytest.raises(ValueError, match="image_index"):
        explorer.maps(ex.ExplorerState(7, 0, "2x2"))
    with pytest.raises(ValueError, match="at least one model"):
        ex.Explorer({}, dataset)


def test_first_matched_instances_and_widgets(setup):
    explorer, _ = setup
    found = ex.first_matched_instances(explorer, ["2x2"], limit=2, images=[0, 1])
    assert len(found) <= 2 and all(0 <= i < 2 and 0 <= g < 2 for i, g in found)
    box = ex.build_widgets(explorer, ex.ExplorerState(0, 0, "2x2"))
    assert type(box).__name__ == "VBox"


def test_widgets_show_the_own_grid_and_the_threshold_the_user_sees(setup, monkeypatch):
    """Two bugs the browser test found (tests/browser/): the pruning menu was empty for the model's own
    grid (ipywidgets reads a value of None as "nothing selected"), and the browser's slider sent back
    0.39999999999999997 for 0.40, which the figure's title printed."""
    explorer, _ = setup
    shown: list[ex.ExplorerState] = []
    monkeypatch.setattr(ex, "render", lambda state, explorer: shown.append(state))
    box = ex.build_widgets(explorer, ex.ExplorerState(0, 0, "2x2"))
    model, pruning, threshold = box.children[1].children
    assert pruning.label == "model's own (real)" and pruning.index == 0
    assert shown[-1].pruning is None
    pruning.value = "3x3"
    assert shown[-1].pruning == "3x3"
    pruning.label = "model's own (real)"
    assert shown[-1].pruning is None
    threshold.value = 0.39999999999999997  # what the browser's slider sent back for 0.40
    assert shown[-1].threshold == 0.4
    threshold.value = 0.45000000000000007
    assert shown[-1].threshold == 0.45
    assert model.value == "2x2"
