"""The Fig. 4 comparison of a 1x1 and a 2x2 model on one instance, with the leak of each mask (§3.3).

Not a paper section: a teaching figure (notebook 04). `plot_leak_comparison` draws, one row per model,
the input with that model's own detection box, its sub-region maps on one shared 0..1 scale with a
colour bar, and its final mask, with the instance and its same-class neighbours outlined on every
panel and the leak and miss of `eval/leak.py` written under each mask.

    LeakView                one model's side: its detection, the mask, its leak and miss
    LEAK_COLORS             outline colours (instance, neighbours, box, sub-region cell)
    plot_leak_comparison    the figure (Agg, dpi >= 100)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from . import viz


@dataclass(frozen=True)
class LeakView:
    """One model's side of `plot_leak_comparison`: its detection of the instance and that mask's numbers.

    detection: one entry of `SipMask.forward_intermediates(...)["detections"]` (boxes [N, 4] in
    basis-map pixels, sub_region_maps [N, Q, H/2, W/2]); index: the detection j drawn; mask: its final
    binary mask [H, W] at image resolution (the one leak and miss were measured on); leak, miss: the
    numbers of `eval/leak.py` for it; sub_regions: (k_h, k_w) of the model.
    """

    name: str
    detection: dict[str, Any]
    index: int
    mask: Any
    leak: float
    miss: float
    sub_regions: tuple[int, int]


# outline colours of plot_leak_comparison: they contrast with the grey maps and with each other
LEAK_COLORS = {"instance": "#ff2a2a", "neighbours": "#1e90ff", "box": "#ffd700", "cell": "#00d000"}
_QUADRANTS = ("top-left", "top-right", "bottom-left", "bottom-right")  # 2x2, row-major


def _cell_name(q: int, k_h: int, k_w: int) -> str:
    """Where sub-region q of a k_h x k_w grid lies in the box, in words."""
    if k_h * k_w == 1:
        return "whole box"
    if (k_h, k_w) == (2, 2):
        return _QUADRANTS[q]
    return f"row {q // k_w + 1}, column {q % k_w + 1}"


def _union(masks: Any) -> np.ndarray:
    """The union of masks [N, H, W] (or one mask [H, W]) as bool [H, W]."""
    return np.asarray(viz.to_bool_masks(masks).any(axis=0))


def _outline(ax: Axes, mask: np.ndarray, window: tuple[int, int, int, int], **style: Any) -> None:
    """The contour of a bool [H, W] mask inside the window, at the pixel edges (level 0.5)."""
    x0, y0, x1, y1 = window
    crop = np.pad(mask[y0:y1, x0:x1].astype(np.float32), 1)  # padded: a mask cut by the window is closed
    if crop.any():
        ax.contour(np.arange(x0 - 1, x1 + 1), np.arange(y0 - 1, y1 + 1), crop, levels=[0.5], **style)


def plot_leak_comparison(
    image: Any,
    instance: Any,
    neighbours: Any,
    views: Sequence[LeakView],
    scale: float = 2.0,
    title: str | None = None,
) -> Figure:
    """Paper Fig. 4, measured: for each model its own detection's box, its sub-region maps, its final mask.

    One row per model: the input with the detection's box; the Q maps sigma(B x c_qj) (unpruned: 4 for
    2x2, 1 for 1x1) on one shared colour scale 0..1 with a colour bar, the detection's sub-region q
    outlined on map q; the final binary mask with its leak and miss (eval/leak.py) printed under it.
    Every panel outlines the ground-truth instance (red) and its same-class neighbours (blue, dashed),
    so a map that responds on the neighbour inside the box, and a mask that leaks onto it, show.

    image: [3, H, W] in [0, 1] (or H x W x 3) at the resolution of the masks; instance: bool [H, W];
    neighbours: bool [K, H, W] or [H, W] (their union is drawn); scale: image pixels per basis-map
    pixel (2 when the model does not resize the image). All panels show one window around the
    instance and both boxes.
    """
    if not views:
        raise ValueError("plot_leak_comparison: no model to draw (views is empty)")
    picture = viz.to_uint8_image(image)
    height, width = picture.shape[:2]
    gt = _union(instance)  # [H, W]
    others = _union(neighbours)  # [H, W]
    sizes = {"instance": gt.shape, "neighbours": others.shape}
    sizes |= {f"the mask of {view.name!r}": _union(view.mask).shape for view in views}
    for what, size in sizes.items():
        if size != (height, width):
            raise ValueError(
                f"plot_leak_comparison: {what} is {size}, not the image's size {(height, width)}"
            )
    boxes = [scale * viz.to_numpy(view.detection["boxes"][view.index]).astype(np.float64) for view in views]
    ys, xs = np.nonzero(gt)
    corners = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], *boxes] if len(xs) else boxes)
    window = viz.zoom_window((*corners[:, :2].min(0), *corners[:, 2:].max(0)), height, width, margin=0.4)
    x0, y0, x1, y1 = window
    extent = (x0 - 0.5, x1 - 0.5, y1 - 0.5, y0 - 0.5)  # image pixels, centres at integers
    most = max(view.sub_regions[0] * view.sub_regions[1] for view in views)
    figure = Figure(figsize=(2.1 * (most + 2) + 1.0, 2.5 * len(views) + 0.9), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(len(views), most + 2)
    map_axes: list[Axes] = []
    shown = None  # the last map drawn: its colour scale, shared by all, makes the colour bar

    def outlined(ax: Axes, panel_title: str, box: np.ndarray, cell: np.ndarray | None = None) -> None:
        _outline(ax, gt, window, colors=LEAK_COLORS["instance"], linewidths=1.6)
        _outline(ax, others, window, colors=LEAK_COLORS["neighbours"], linewidths=1.6, linestyles="--")
        for rect, color, width_ in ((box, LEAK_COLORS["box"], 1.4), (cell, LEAK_COLORS["cell"], 2.0)):
            if rect is not None:  # on top of the outlines (zorder 3)
                corner, size = (rect[0] - 0.5, rect[1] - 0.5), (rect[2] - rect[0], rect[3] - rect[1])
                ax.add_patch(Rectangle(corner, *size, fill=False, ec=color, lw=width_, zorder=3))
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
        ax.set_title(panel_title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])

    for row, (view, box) in enumerate(zip(views, boxes, strict=True)):
        k_h, k_w = view.sub_regions
        ax = figure.add_subplot(grid[row, 0])
        ax.imshow(picture[y0:y1, x0:x1], extent=extent)
        outlined(ax, f"{view.name}: input, its box j", box)
        maps = viz.to_numpy(view.detection["sub_region_maps"][view.index]).astype(np.float32)  # [Q, h, w]
        map_extent = (-0.5, scale * maps.shape[2] - 0.5, scale * maps.shape[1] - 0.5, -0.5)
        for q in range(k_h * k_w):
            r, c = divmod(q, k_w)
            bw, bh = (box[2] - box[0]) / k_w, (box[3] - box[1]) / k_h
            cell = np.array([box[0] + c * bw, box[1] + r * bh, box[0] + (c + 1) * bw, box[1] + (r + 1) * bh])
            ax = figure.add_subplot(grid[row, 1 + q])
            shown = ax.imshow(
                maps[q], cmap="gray", vmin=0.0, vmax=1.0, extent=map_extent, interpolation="nearest"
            )
            where = _cell_name(q, k_h, k_w)
            outlined(ax, f"M_{q + 1}j = σ(B·c_{q + 1}j): {where}", box, cell if k_h * k_w > 1 else None)
            map_axes.append(ax)
        ax = figure.add_subplot(grid[row, most + 1])
        final = _union(view.mask)[y0:y1, x0:x1].astype(np.float32)
        ax.imshow(final, cmap="gray", vmin=0.0, vmax=1.0, extent=extent, interpolation="nearest")
        outlined(ax, "final mask (binary)", box)
        ax.set_xlabel(f"leak {100 * view.leak:.1f}%   miss {100 * view.miss:.1f}%", fontsize=9)
    assert shown is not None  # every model has at least one map
    colorbar = figure.colorbar(shown, ax=map_axes, shrink=0.8, pad=0.02)
    colorbar.set_label("map value σ(B·c) (shared scale)", fontsize=8)
    handles = [
        Line2D([], [], color=LEAK_COLORS["instance"], lw=1.6, label="the instance g (ground truth)"),
        Line2D([], [], color=LEAK_COLORS["neighbours"], lw=1.6, ls="--", label="same-class neighbour(s)"),
        Line2D([], [], color=LEAK_COLORS["box"], lw=1.4, label="the model's own box j"),
        Line2D([], [], color=LEAK_COLORS["cell"], lw=2.0, label="sub-region the map is kept in"),
    ]
    figure.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=8, frameon=False)
    if title:
        figure.suptitle(title, fontsize=9)
    return figure
