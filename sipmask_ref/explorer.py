"""The interactive explorer of notebook 10: the §3.3 maps of one instance, as plain functions.

Not a paper section. The notebook's widgets (an image, one of its ground-truth instances, a model,
a pruning grid, a threshold) only call the functions here, so everything the explorer shows can also
be computed, and checked, without a widget:

    ExplorerState          what the widgets select (a frozen dataclass)
    Explorer               the trained models and the dataset, with a cache of forward passes
    match_detection        which detection of a model stands for a ground-truth instance
    regrid_coefficients    a model's Q sets of spatial coefficients re-pooled to another grid
    instance_maps          sigma(B x c_ij) per sub-region, their pruned sum and the binary mask
    render                 the figure of a state (paper Fig. 4 for that instance)
    describe               one line of text for a state
    build_widgets          the ipywidgets front end (notebook only)
    adjacent_example       an instance beside a same-class neighbour and its detection (the demo's Fig. 4)

What is real and what is a thought experiment. A model trained with k_h x k_w sub-regions predicts
exactly k_h * k_w sets of coefficients per box; pruning its maps with its own grid is what the model
does (`ExplorerState.pruning = None`). Pruning the same model with ANOTHER grid is not something any
trained model does: `regrid_coefficients` gives each cell of the new grid the area-weighted mean of
the coefficients of the model's sub-regions that the cell overlaps (so a 2x2 model seen through a
1x1 grid uses the mean of its four sets). Because B x c is linear in c, that is the same as averaging
the sub-region logits. It shows what the spatial split buys inside one model; a model TRAINED with
1x1 (a separate checkpoint) is the real ablation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor
from torchvision.ops import box_iou

from .data.coco import CocoInstances
from .data.synthetic import adjacency_flags
from .geometry import mask_iou, paired_box_iou
from .inference import paste_masks
from .model import SipMask
from .spatial_mask_prediction import assemble_masks, sub_region_maps
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
# A detection stands for a ground-truth instance when its box overlaps it at least this much.
MATCH_IOU = 0.5
# The pruning menu's value for "the model's own grid" (ExplorerState.pruning = None). Not None itself:
# ipywidgets takes a Dropdown value of None as "nothing selected" and the browser shows an empty menu.
OWN_GRID = "own"


def grid_name(sub_regions: tuple[int, int]) -> str:
    """(2, 2) -> '2x2'."""
    return f"{int(sub_regions[0])}x{int(sub_regions[1])}"


def parse_grid(name: str) -> tuple[int, int]:
    """'2x2' -> (2, 2); a ValueError for anything that is not '<k_h>x<k_w>' with k >= 1."""
    parts = name.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) >= 1 for p in parts):
        raise ValueError(f"a grid is written '<k_h>x<k_w>', e.g. '2x2', got {name!r}")
    return int(parts[0]), int(parts[1])


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


@dataclass
class InstanceMaps:
    """The §3.3 maps of one detection (H x W = basis-map size, half the network input).

    image:           [3, 2H, 2W] network input in [0, 1] (resized and padded, not normalised).
    box:             [4] the detection's box in basis-map pixels.
    label, score:    the detection's class (1..C) and score.
    sub_regions:     the (k_h, k_w) grid used for pruning.
    real:            True when that grid is the model's own (False: thought experiment).
    sub_region_maps: [Q, H, W] sigma(B x c_ij) for each sub-region i, before pruning.
    instance_map:    [H, W] the pruned sum M^_j (0 outside the box).
    mask:            bool [H, W] instance_map > threshold.
    threshold:       that threshold.
    """

    image: Tensor
    box: Tensor
    label: int
    score: float
    sub_regions: tuple[int, int]
    real: bool
    sub_region_maps: Tensor
    instance_map: Tensor
    mask: Tensor
    threshold: float


def regrid_coefficients(coefficients: Tensor, source: tuple[int, int], target: tuple[int, int]) -> Tensor:
    """Coefficients of a `source` grid re-pooled to a `target` grid (the thought experiment).

    Cell t of the target grid gets sum_s w_ts c_s, where w_ts is the fraction of cell t's area
    that lies in source sub-region s (both grids split the same box; the weights of a cell sum to
    1). Identical grids give back the coefficients unchanged; a 2x2 -> 1x1 regrid is the mean of
    the four sets.

    Args:
        coefficients: [N, Q, M] spatial coefficients, sub-regions row-major (Q = k_h * k_w of source).
        source: (k_h, k_w) the coefficients were predicted for.
        target: (g_h, g_w) wanted.
    Returns:
        [N, g_h * g_w, M].
    """
    k_h, k_w = (int(k) for k in source)
    g_h, g_w = (int(g) for g in target)
    if min(k_h, k_w, g_h, g_w) < 1:
        raise ValueError(f"regrid_coefficients: grids must have k >= 1, got {source} and {target}")
    if coefficients.ndim != 3 or coefficients.shape[1] != k_h * k_w:
        raise ValueError(
            f"regrid_coefficients: coefficients must be [N, {k_h * k_w}, M] for a "
            f"{grid_name(source)} grid, got {tuple(coefficients.shape)}"
        )

    def overlaps(cells: int, parts: int) -> Tensor:
        """[cells, parts]: length of [c/cells, (c+1)/cells] inside [p/parts, (p+1)/parts], * cells."""
        lo = torch.arange(cells, dtype=torch.float64)[:, None] / cells
        part_lo = torch.arange(parts, dtype=torch.float64)[None, :] / parts
        length = torch.minimum(lo + 1 / cells, part_lo + 1 / parts) - torch.maximum(lo, part_lo)
        return length.clamp(min=0) * cells  # each row sums to 1

    rows, columns = overlaps(g_h, k_h), overlaps(g_w, k_w)  # [g_h, k_h], [g_w, k_w]
    weights = torch.einsum("ai,bj->abij", rows, columns).reshape(g_h * g_w, k_h * k_w)  # [Q', Q]
    weights = weights.to(dtype=coefficients.dtype, device=coefficients.device)
    return torch.einsum("ts,nsm->ntm", weights, coefficients)  # [N, Q', M]


def network_image(
    intermediates: dict[str, Any], pixel_mean: tuple[float, ...], pixel_std: tuple[float, ...], b: int = 0
) -> Tensor:
    """Image b of forward_intermediates' normalised input, back in [0, 1]: [3, Hp, Wp]."""
    images = intermediates["images"][b]  # [3, Hp, Wp]
    mean = images.new_tensor(pixel_mean)[:, None, None]
    std = images.new_tensor(pixel_std)[:, None, None]
    return (images * std + mean).clamp(0, 1)


def instance_maps(
    model: SipMask,
    image: Tensor,
    index: int,
    threshold: float = 0.4,
    grid: tuple[int, int] | None = None,
    intermediates: dict[str, Any] | None = None,
) -> InstanceMaps:
    """The sub-region maps, pruned sum and mask of detection `index` of `model` on `image`.

    Args:
        model: a SipMask in eval mode.
        image: [3, H0, W0] in [0, 1].
        index: detection j (best score first) of that image.
        threshold: mask binarisation threshold.
        grid: pruning grid; None = the model's own config.sub_regions (what the model does).
        intermediates: `model.forward_intermediates([image])` if already computed.
    """
    if intermediates is None:
        intermediates = _intermediates(model, image)
    detections = intermediates["detections"][0]
    count = int(detections["scores"].numel())
    if not 0 <= index < count:
        raise ValueError(f"instance_maps: detection {index} requested, the model found {count} in this image")
    own = _model_grid(model)
    grid = own if grid is None else (int(grid[0]), int(grid[1]))
    coefficients = detections["coefficients"][index : index + 1]  # [1, Q, M]
    if grid != own:
        coefficients = regrid_coefficients(coefficients, own, grid)  # [1, Q', M]
    basis = intermediates["basis_masks"][0].float()  # [M, H, W]
    box = detections["boxes"][index]  # [4] basis-map pixels
    maps = sub_region_maps(basis, coefficients)[0]  # [Q, H, W] Eq. (2), unpruned
    instance_map = assemble_masks(basis, coefficients, box[None], grid)[0]  # [H, W]
    return InstanceMaps(
        image=network_image(intermediates, model.config.pixel_mean, model.config.pixel_std),
        box=box,
        label=int(detections["labels"][index]),
        score=float(detections["scores"][index]),
        sub_regions=grid,
        real=grid == own,
        sub_region_maps=maps,
        instance_map=instance_map,
        mask=instance_map > threshold,
        threshold=float(threshold),
    )


def _model_grid(model: SipMask) -> tuple[int, int]:
    """The (k_h, k_w) grid the model was trained with."""
    k_h, k_w = model.config.sub_regions
    return int(k_h), int(k_w)


def _intermediates(model: SipMask, image: Tensor) -> dict[str, Any]:
    """forward_intermediates of one image, in eval mode."""
    model.eval()
    return model.forward_intermediates([image])


def match_detection(result: dict[str, Tensor], gt_box: Tensor, gt_label: int) -> tuple[int | None, float]:
    """The detection that stands for a ground-truth instance, and its box IoU with it.

    The best-scored detection of the instance's class whose box IoU is >= MATCH_IOU (as COCO
    matching would pick it); else the detection of largest box IoU, any class (a poor match);
    (None, 0.0) when no detection overlaps the instance at all.

    Args:
        result: one image of the model's output (boxes [N, 4] original pixels, labels [N], scores [N];
            best score first).
        gt_box: [4] xyxy original pixels. gt_label: 1..C.
    """
    boxes = result["boxes"]
    if boxes.shape[0] == 0:
        return None, 0.0
    ious = box_iou(boxes.float(), gt_box.to(boxes.device).float()[None])[:, 0]  # [N]
    good = ((ious >= MATCH_IOU) & (result["labels"] == gt_label)).nonzero().flatten()
    if good.numel() > 0:
        j = int(good[0])  # detections are sorted by score: the first is the best scored
        return j, float(ious[j])
    j = int(ious.argmax())
    return (j, float(ious[j])) if float(ious[j]) > 0 else (None, 0.0)


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
            self._cache[key] = _intermediates(self.model(model_name), image)
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
        own = _model_grid(model)
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
        pasted = _pasted_mask(model, j, found, out)  # [H0, W0] probabilities
        gt_mask = target["masks"][state.instance].bool()
        facts["gt_mask_iou"] = mask_iou(pasted > state.threshold, gt_mask)
        return found, facts


def _pasted_mask(model: SipMask, j: int, maps: InstanceMaps, intermediates: dict[str, Any]) -> Tensor:
    """Detection j's mask probability [H0, W0] at the original image size, for the maps' grid."""
    if maps.real:
        return intermediates["results"][0]["masks"][j, 0]
    own = _model_grid(model)
    coefficients = regrid_coefficients(
        intermediates["detections"][0]["coefficients"][j : j + 1], own, maps.sub_regions
    )  # [1, Q', M]
    return paste_masks(
        intermediates["basis_masks"][0].float(),
        coefficients,
        maps.box[None] * 2,
        maps.sub_regions,
        intermediates["image_sizes"][0],
        intermediates["original_sizes"][0],
    )[0, 0]


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
    outline in red; the title says which model, which
    grid, whether that grid is real or a thought experiment, and the mask IoU with the ground truth.
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
        maps.image, detection, 0, maps.sub_regions, maps.threshold, title=title + " (red: ground truth)"
    )
    # The ground-truth mask as a red contour over the final mask, mapped to basis-map pixels:
    # original pixel centre (x + 0.5) -> input pixels * sx -> basis pixels / 2 -> pixel index - 0.5.
    _, target = explorer.item(state.image_index)
    gt_mask = target["masks"][state.instance].float().numpy()  # [H0, W0]
    sx, sy = explorer.intermediates(state.model, state.image_index)["scale_factors"][0]
    xs = (np.arange(gt_mask.shape[1]) + 0.5) * sx / 2 - 0.5
    ys = (np.arange(gt_mask.shape[0]) + 0.5) * sy / 2 - 0.5
    final_axis = figure.axes[maps.sub_region_maps.shape[0] + 2]  # input, Q maps, pruned sum, mask
    limits = final_axis.get_xlim(), final_axis.get_ylim()
    if gt_mask.any():
        final_axis.contour(xs, ys, gt_mask, levels=[0.5], colors="red", linewidths=1.0)
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


def adjacent_example(
    model: SipMask, dataset: CocoInstances, max_images: int = 50, min_iou: float = 0.5
) -> dict | None:
    """An instance beside a same-class neighbour, and the model's detection of it (for paper Fig. 4;
    the `demo` command draws it).

    Scans the first `max_images` images for ground-truth instances that are *adjacent* (at least
    10% of their box covered by another instance of the same class, `synthetic.adjacency_flags`)
    and returns the one whose best-matching detection of the right class has the highest score,
    with that detection's IoU >= min_iou. Returns None if there is none.

    Returns a dict: image [3, H, W] (the network input, unnormalised), detection (one entry of
    `model.forward_intermediates(...)["detections"]`), index (the detection j), image_id, iou.
    """
    model.eval()
    best = None
    for k in range(min(max_images, len(dataset))):
        image, target = dataset[k]
        flags = adjacency_flags(target["masks"].bool().numpy(), target["labels"].tolist())
        if not flags.any():
            continue
        with torch.no_grad():
            found = model.forward_intermediates([image])
        detection = found["detections"][0]
        sx, sy = found["scale_factors"][0]  # original -> input pixels
        to_basis = torch.tensor([sx, sy, sx, sy]) / 2  # input -> basis-map pixels (stride 2)
        for g in flags.nonzero()[0].tolist():
            gt_box = target["boxes"][g] * to_basis  # [4] in basis-map pixels
            same = (detection["labels"] == target["labels"][g]).nonzero().squeeze(1)
            if same.numel() == 0:
                continue
            ious = paired_box_iou(detection["boxes"][same], gt_box.expand(same.numel(), 4))
            j = int(same[ious.argmax()])
            iou, score = float(ious.max()), float(detection["scores"][j])
            if iou >= min_iou and (best is None or score > best["score"]):
                h, w = found["image_sizes"][0]
                image_in = torch.nn.functional.interpolate(
                    image[None], size=(h, w), mode="bilinear", align_corners=False
                )[0]
                best = {
                    "image": image_in,
                    "detection": detection,
                    "index": j,
                    "score": score,
                    "image_id": target["image_id"],
                    "iou": iou,
                }
    return best


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
