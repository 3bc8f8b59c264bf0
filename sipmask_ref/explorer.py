"""The interactive explorer of notebook 10: the §3.3 maps of one instance, behind a few widgets.

Not a paper section. The notebook's widgets (an image, one of its ground-truth instances, a model,
a pruning grid, a threshold) only call the functions here, and these call the computations of
`explorer_maps.py`, so everything the explorer shows can also be computed, and checked, without a
widget:

    GRIDS                    the pruning grids offered, by name
    ExplorerState            what the widgets select (a frozen dataclass)
    Explorer                 the trained models and the dataset, with a cache of forward passes
    describe                 one line of text for a state
    render                   the figure of a state (paper Fig. 4 for that instance)
    build_widgets            the ipywidgets front end (notebook only)
    first_matched_instances  instances that every named model detects

Pruning a model with its own grid is what the model does (`ExplorerState.pruning = None`); pruning
it with another grid is a thought experiment, which `explorer_maps.py` describes. The public names
of `explorer_maps.py` are re-exported here (`explorer.instance_maps`, `explorer.adjacent_example`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from .eval.leak import same_class_neighbours
from .explorer_maps import (
    MATCH_IOU,
    InstanceMaps,
    adjacent_example,
    grid_name,
    image_intermediates,
    instance_maps,
    match_detection,
    model_grid,
    network_image,
    parse_grid,
    pasted_mask,
    regrid_coefficients,
)
from .geometry import mask_iou
from .model import SipMask
from .viz import plot_spatial_mask_prediction

# Pruning grids offered by the explorer, by name.
GRIDS: dict[str, tuple[int, int]] = {
    "1x1": (1, 1),
    "1x2": (1, 2),
    "2x1": (2, 1),
    "2x2": (2, 2),
    "3x3": (3, 3),
    "4x4": (4, 4),
}
# The pruning menu's value for "the model's own grid" (ExplorerState.pruning = None). Not None itself:
# ipywidgets takes a Dropdown value of None as "nothing selected" and the browser shows an empty menu.
OWN_GRID = "own"


@dataclass(frozen=True)
class ExplorerState:
    """What the explorer shows.

    image_index: item of the dataset.
    instance:    ground-truth instance g of that image (the explorer shows the detection matched to it).
    model:       a key of `Explorer.models`, e.g. '2x2' or '1x1' (the grid the model was trained with).
    pruning:     None: prune with the model's own sub-regions (real); a grid name such as '1x1' or
                 '3x3': the thought experiment of `regrid_coefficients`.
    threshold:   binarisation threshold of the instance map (0.4 as the authors).
    """

    image_index: int = 0
    instance: int = 0
    model: str = "2x2"
    pruning: str | None = None
    threshold: float = 0.4


class Explorer:
    """Trained models and a dataset, with a cache of forward passes (one per model and image).

    models: {'2x2': model trained with 2x2 sub-regions, '1x1': ..., ...}, each a SipMask in eval mode.
    dataset: a CocoInstances-like dataset (items (image [3, H, W], target), `class_names`).
    """

    def __init__(self, models: dict[str, SipMask], dataset: Any) -> None:
        if not models:
            raise ValueError("Explorer: give at least one model")
        self.models = dict(models)
        self.dataset = dataset
        self._cache: dict[tuple[str, int], dict[str, Any]] = {}

    def item(self, image_index: int) -> tuple[Tensor, dict[str, Any]]:
        if not 0 <= image_index < len(self.dataset):
            raise ValueError(f"Explorer: image_index {image_index} outside 0..{len(self.dataset) - 1}")
        return self.dataset[image_index]

    def model(self, name: str) -> SipMask:
        if name not in self.models:
            raise ValueError(f"Explorer: unknown model {name!r}; choose one of {sorted(self.models)}")
        return self.models[name]

    def intermediates(self, model_name: str, image_index: int) -> dict[str, Any]:
        """`forward_intermediates` of one image (cached)."""
        key = (model_name, image_index)
        if key not in self._cache:
            image, _ = self.item(image_index)
            self._cache[key] = image_intermediates(self.model(model_name), image)
        return self._cache[key]

    def num_instances(self, image_index: int) -> int:
        """Ground-truth instances of an image."""
        return int(self.item(image_index)[1]["boxes"].shape[0])

    def maps(self, state: ExplorerState) -> tuple[InstanceMaps | None, dict[str, Any]]:
        """(the maps of the detection matched to the state's instance or None, facts for the title).

        The facts: model, grid (name of the pruning grid), real, instance, class_name, detection (its
        index or None), box_iou (with the instance's box), gt_mask_iou (None without a match).
        """
        image, target = self.item(state.image_index)
        count = int(target["boxes"].shape[0])
        if not 0 <= state.instance < count:
            raise ValueError(
                f"Explorer: instance {state.instance} requested, image {state.image_index} "
                f"has {count} ground-truth instances"
            )
        model = self.model(state.model)
        grid = None if state.pruning is None else parse_grid(state.pruning)
        own = model_grid(model)
        out = self.intermediates(state.model, state.image_index)
        gt_box = target["boxes"][state.instance]
        gt_label = int(target["labels"][state.instance])
        j, overlap = match_detection(out["results"][0], gt_box, gt_label)
        names = getattr(self.dataset, "class_names", None)
        facts: dict[str, Any] = {
            "model": state.model,
            "grid": grid_name(grid or own),
            "real": grid is None or grid == own,
            "instance": state.instance,
            "class_name": names[gt_label - 1] if names else str(gt_label),
            "detection": j,
            "box_iou": overlap,
            "gt_mask_iou": None,
        }
        if j is None:
            return None, facts
        found = instance_maps(model, image, j, state.threshold, grid, out)
        # Mask IoU with the ground truth at the original size: the same assembly, pasted as the model
        # pastes (model.postprocess); for the model's own grid that is exactly results["masks"].
        pasted = pasted_mask(model, j, found, out)  # [H0, W0] probabilities
        gt_mask = target["masks"][state.instance].bool()
        facts["gt_mask_iou"] = mask_iou(pasted > state.threshold, gt_mask)
        return found, facts


def describe(state: ExplorerState, explorer: Explorer) -> str:
    """One line about a state: model, grid (real or thought experiment), instance, match, mask IoU."""
    maps, facts = explorer.maps(state)
    kind = "real" if facts["real"] else "thought experiment"
    head = (
        f"image {state.image_index}, instance {state.instance} ({facts['class_name']}); "
        f"model trained {state.model}, pruned {facts['grid']} ({kind})"
    )
    if maps is None:
        return head + ": no detection overlaps this instance"
    return (
        head + f": detection {facts['detection']} (score {maps.score:.2f}, box IoU "
        f"{facts['box_iou']:.2f}), mask IoU with the ground truth {facts['gt_mask_iou']:.2f} "
        f"at threshold {state.threshold:.2f}"
    )


def render(state: ExplorerState, explorer: Explorer) -> Figure:
    """The figure of a state: paper Fig. 4 for the detection matched to the chosen instance.

    The input around the box, the k_h x k_w unpruned maps sigma(B x c_ij) (each with its own cell
    outlined), their pruned sum and the mask above the threshold with the ground-truth mask's
    outline in red and its same-class neighbours' dashed in blue (where a leak shows); the title says
    which model, which grid, whether that grid is real or a thought experiment, and the mask IoU with
    the ground truth.
    Without a matching detection: the image with the ground-truth box, and a title saying so.
    """
    maps, facts = explorer.maps(state)
    if maps is None:
        image, target = explorer.item(state.image_index)
        figure = Figure(figsize=(3.2, 3.4), dpi=90)
        FigureCanvasAgg(figure)
        ax = figure.add_subplot(1, 1, 1)
        ax.imshow(image.permute(1, 2, 0).numpy())
        x1, y1, x2, y2 = (float(v) for v in target["boxes"][state.instance])
        ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, edgecolor="yellow"))
        ax.set_axis_off()
        ax.set_title(
            f"model {state.model}: no detection overlaps\ninstance {state.instance} ({facts['class_name']})",
            fontsize=8,
        )
        return figure
    detection = {
        "boxes": maps.box[None],
        "sub_region_maps": maps.sub_region_maps[None],
        "masks": maps.instance_map[None],
    }
    kind = "real" if maps.real else "thought experiment: regridded coefficients"
    title = (
        f"model trained {state.model}, pruned {grid_name(maps.sub_regions)} ({kind}) | "
        f"instance {state.instance} ({facts['class_name']}), score {maps.score:.2f}, "
        f"mask IoU vs GT {facts['gt_mask_iou']:.2f}"
    )
    figure = plot_spatial_mask_prediction(
        maps.image,
        detection,
        0,
        maps.sub_regions,
        maps.threshold,
        title=title + " | on the mask: instance red, same-class neighbours dashed blue",
    )
    # The ground-truth masks as contours over the final mask, mapped to basis-map pixels:
    # original pixel centre (x + 0.5) -> input pixels * sx -> basis pixels / 2 -> pixel index - 0.5.
    _, target = explorer.item(state.image_index)
    gt_mask = target["masks"][state.instance].float().numpy()  # [H0, W0]
    neighbours = same_class_neighbours(
        target["masks"].numpy(), target["labels"].numpy(), state.instance
    ).astype(np.float32)  # [H0, W0]
    sx, sy = explorer.intermediates(state.model, state.image_index)["scale_factors"][0]
    xs = (np.arange(gt_mask.shape[1]) + 0.5) * sx / 2 - 0.5
    ys = (np.arange(gt_mask.shape[0]) + 0.5) * sy / 2 - 0.5
    final_axis = figure.axes[maps.sub_region_maps.shape[0] + 2]  # input, Q maps, pruned sum, mask
    limits = final_axis.get_xlim(), final_axis.get_ylim()
    if gt_mask.any():
        final_axis.contour(xs, ys, gt_mask, levels=[0.5], colors="red", linewidths=1.0)
    if neighbours.any():
        final_axis.contour(
            xs, ys, neighbours, levels=[0.5], colors="#1e90ff", linewidths=1.0, linestyles="--"
        )
    final_axis.set_xlim(limits[0])
    final_axis.set_ylim(limits[1])
    return figure


def build_widgets(explorer: Explorer, state: ExplorerState | None = None) -> Any:
    """The ipywidgets front end: sliders and menus whose every change calls `render`.

    Returns a VBox (display it in a notebook). Nothing here computes anything: a change builds a new
    ExplorerState and shows `render(state, explorer)` and `describe(state, explorer)`.
    """
    import ipywidgets as widgets
    from IPython.display import display

    state = state or ExplorerState(model=next(iter(explorer.models)))
    image = widgets.IntSlider(
        value=state.image_index, min=0, max=len(explorer.dataset) - 1, description="image"
    )
    instance = widgets.IntSlider(
        value=state.instance,
        min=0,
        max=max(explorer.num_instances(state.image_index) - 1, 0),
        description="instance",
    )
    model = widgets.Dropdown(options=list(explorer.models), value=state.model, description="model")
    pruning = widgets.Dropdown(
        options=[("model's own (real)", OWN_GRID)] + [(g, g) for g in GRIDS],
        value=state.pruning or OWN_GRID,
        description="pruning",
    )
    threshold = widgets.FloatSlider(
        value=state.threshold, min=0.05, max=0.95, step=0.05, description="threshold"
    )
    output = widgets.Output()

    def on_image(change: dict[str, Any]) -> None:
        instance.max = max(explorer.num_instances(change["new"]) - 1, 0)

    def show(*_: Any) -> None:
        # The browser's slider sends back values such as 0.39999999999999997 for 0.40: rounded to the
        # slider's step (0.05), the state holds the threshold the user sees.
        current = ExplorerState(
            image.value,
            min(instance.value, instance.max),
            model.value,
            None if pruning.value == OWN_GRID else pruning.value,
            round(threshold.value, 2),
        )
        if explorer.num_instances(current.image_index) == 0:
            text, figure = f"image {current.image_index} has no ground-truth instance", None
        else:
            text, figure = describe(current, explorer), render(current, explorer)
        with output:
            output.clear_output(wait=True)
            print(text)
            if figure is not None:
                display(figure)

    image.observe(on_image, names="value")
    for control in (image, instance, model, pruning, threshold):
        control.observe(show, names="value")
    show()
    return widgets.VBox([widgets.HBox([image, instance]), widgets.HBox([model, pruning, threshold]), output])


def first_matched_instances(
    explorer: Explorer, model_names: list[str], limit: int = 1, images: range | list[int] | None = None
) -> list[tuple[int, int]]:
    """(image_index, instance) pairs that EVERY named model detects: a detection of the instance's
    class with box IoU >= MATCH_IOU. Images are scanned in the order of `images` (default: the whole
    dataset); at most `limit` pairs are returned.
    """
    found: list[tuple[int, int]] = []
    for image_index in range(len(explorer.dataset)) if images is None else images:
        _, target = explorer.item(image_index)
        for g in range(int(target["boxes"].shape[0])):
            matched = True
            for name in model_names:
                result = explorer.intermediates(name, image_index)["results"][0]
                j, overlap = match_detection(result, target["boxes"][g], int(target["labels"][g]))
                matched = (
                    matched
                    and j is not None
                    and overlap >= MATCH_IOU
                    and int(result["labels"][j]) == int(target["labels"][g])
                )
            if matched:
                found.append((image_index, g))
                if len(found) >= limit:
                    return found
    return found


__all__ = [
    "GRIDS",
    "MATCH_IOU",
    "OWN_GRID",
    "Explorer",
    "ExplorerState",
    "InstanceMaps",
    "adjacent_example",
    "build_widgets",
    "describe",
    "first_matched_instances",
    "grid_name",
    "instance_maps",
    "mask_iou",
    "match_detection",
    "network_image",
    "parse_grid",
    "regrid_coefficients",
    "render",
]
