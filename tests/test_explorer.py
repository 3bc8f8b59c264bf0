"""Explorer callbacks (sipmask_ref/explorer.py) on a small untrained model and a two-image dataset."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from matplotlib.figure import Figure

from conftest import ExplorerImages, explorer_model
from sipmask_ref import explorer as ex
from sipmask_ref.inference import paste_masks


@pytest.fixture(scope="module")
def setup():
    dataset = ExplorerImages()
    models = {"2x2": explorer_model(), "1x1": explorer_model((1, 1))}
    return ex.Explorer(models, dataset), dataset


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
    assert len(figure.axes) == 1 + 9 + 2 + 1  # input, 3 x 3 maps, pruned sum, mask, colour bar
    assert len(ex.render(ex.ExplorerState(0, 1, "1x1"), explorer).axes) == 1 + 1 + 2 + 1


def test_explorer_without_detections_and_bad_states():
    dataset = ExplorerImages()
    explorer = ex.Explorer({"2x2": explorer_model(score_threshold=1.0)}, dataset)  # nothing scores > 1
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


def test_render_outlines_the_same_class_neighbour_on_the_mask():
    """The final-mask panel carries the instance's contour (red) and, only when the image holds another
    instance of its class, the neighbour's (dashed blue): where a leak would show."""
    model = explorer_model(score_threshold=0.0)

    def contour_colours(dataset) -> list[tuple[float, ...]]:
        explorer = ex.Explorer({"2x2": model}, dataset)
        figure = ex.render(ex.ExplorerState(image_index=1, instance=0, model="2x2"), explorer)
        (final_axis,) = [ax for ax in figure.axes if ax.get_title().startswith("final mask")]
        return [tuple(c.get_edgecolor()[0][:3]) for c in final_axis.collections]

    different = ExplorerImages()  # labels 1 and 2: no same-class neighbour
    same = ExplorerImages()
    for _, target in same.items:
        target["labels"] = torch.tensor([1, 1])
    red, blue = (1.0, 0.0, 0.0), tuple(int("1e90ff"[i : i + 2], 16) / 255 for i in (0, 2, 4))
    assert contour_colours(different) == [red]
    assert contour_colours(same) == [red, pytest.approx(blue)]
