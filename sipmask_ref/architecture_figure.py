"""The paper's Fig. 3 drawn from the real model: boxes and arrows annotated with measured tensor shapes.

Not a paper section: a teaching figure (notebook 00). `plot_architecture(shapes)` lays out the whole
network (backbone, FPN P3-P7, the shared head with the SP module, the basis-mask branch, spatial mask
prediction) and writes under each box the shape the caller measured on a real forward pass, so that the
figure cannot drift from the code: a shape it is not given stays blank, an unknown name is an error.

    ARCHITECTURE_NODES / _EDGES / _GROUPS   the layout: boxes, arrows, coloured groups
    shape_text                              (1, 64, 16, 16) -> '[1, 64, 16, 16]'
    plot_architecture                       the figure (Agg, dpi >= 100)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

# Paper Fig. 3 as a layout: node name -> (x, y, title) on a 100 x 64 canvas. The names are the keys of
# `plot_architecture`'s `shapes`; per-level head outputs are the ones of P3 (the head is shared by P3-P7).
ARCHITECTURE_NODES: dict[str, tuple[float, float, str]] = {
    "input": (6, 34, "input image\n(resized, padded)"),
    "C3": (19, 46, "C3 (stride 8)"),
    "C4": (19, 34, "C4 (stride 16)"),
    "C5": (19, 22, "C5 (stride 32)"),
    "P3": (32, 56, "P3 (stride 8)"),
    "P4": (32, 45, "P4 (stride 16)"),
    "P5": (32, 34, "P5 (stride 32)"),
    "P6": (32, 23, "P6 (stride 64)"),
    "P7": (32, 12, "P7 (stride 128)"),
    "cls_tower": (46.5, 56, "cls tower"),
    "deform_conv": (59, 56, "SP module: deformable\nconv (Eq. 1), aligned"),
    "cls_logits": (74.5, 60, "classification\n(C classes)"),
    "coefficients": (74.5, 51, "spatial coefficients\n(Q sub-regions x M)"),
    "reg_tower": (46.5, 40, "reg tower"),
    "offsets": (59, 46, "kernel offsets\nfrom the box"),
    "box_regression": (59, 38, "box (l, t, r, b)"),
    "centerness": (59, 30, "centerness"),
    "basis_input": (46.5, 18, "reg tower P3-P5:\nupsample + concat"),
    "basis_masks": (60, 12, "basis masks (M)"),
    "det_coefficients": (89, 46, "NMS: N detections,\ncoefficients c_ij"),
    "sub_region_maps": (89, 30, "Eq. 2 per sub-region:\nM_ij = σ(B·c_ij)"),
    "masks": (89, 14, "crop-split: keep each map\nin its sub-region, sum"),
}
# fmt: off
ARCHITECTURE_EDGES: tuple[tuple[str, str], ...] = (
    ("input", "C3"), ("C3", "C4"), ("C4", "C5"),  # backbone body
    ("C3", "P3"), ("C4", "P4"), ("C5", "P5"), ("P5", "P4"), ("P4", "P3"), ("P5", "P6"), ("P6", "P7"),  # FPN
    ("P3", "cls_tower"), ("P3", "reg_tower"), ("cls_tower", "deform_conv"), ("reg_tower", "box_regression"),
    ("reg_tower", "centerness"), ("box_regression", "offsets"), ("offsets", "deform_conv"),
    ("deform_conv", "cls_logits"), ("deform_conv", "coefficients"),  # head
    ("reg_tower", "basis_input"), ("P4", "basis_input"), ("P5", "basis_input"),
    ("basis_input", "basis_masks"),  # basis mask branch
    ("cls_logits", "det_coefficients"), ("coefficients", "det_coefficients"),
    ("box_regression", "det_coefficients"), ("centerness", "det_coefficients"),
    ("det_coefficients", "sub_region_maps"), ("basis_masks", "sub_region_maps"), ("sub_region_maps", "masks"),
)
# fmt: on
# (title, x0, y0, x1, y1, colour) of the shaded stages behind the nodes.
ARCHITECTURE_GROUPS: tuple[tuple[str, float, float, float, float, str], ...] = (
    ("backbone", 12.6, 16, 25.4, 52, "#dde6f5"),
    ("FPN P3-P7", 25.8, 6, 38.2, 62.5, "#e3f0dc"),
    ("head, shared by P3-P7 (shapes at P3)", 39.2, 25, 81.2, 66, "#f7e9d7"),
    ("basis mask branch (§3.2)", 39.2, 6, 67.5, 24, "#efe0f3"),
    ("spatial mask\nprediction (§3.3)", 82.2, 6, 96.8, 56, "#f5dede"),
)


def shape_text(shape: Sequence[int] | str) -> str:
    """A shape as the text drawn under a node: a string as given, a sequence of ints as [a, b, c]."""
    if isinstance(shape, str):
        return shape
    return "[" + ", ".join(str(int(v)) for v in shape) + "]"


def plot_architecture(shapes: Mapping[str, Sequence[int] | str], title: str | None = None) -> Figure:
    """Paper Fig. 3 (the overall architecture) as boxes and arrows, each node with its tensor shape.

    Args:
        shapes: node name (a key of ARCHITECTURE_NODES) -> the shape of that node's output, measured on a
            real forward pass (a torch.Size, a tuple, or text such as "[N, Q, M] = [5, 4, 16]"). A node
            without an entry is drawn without a shape; an unknown name is an error.
        title: optional figure title.
    Returns:
        a matplotlib Figure (Agg, dpi 110) with one box per node and one arrow per ARCHITECTURE_EDGES entry.
    """
    unknown = sorted(set(shapes) - set(ARCHITECTURE_NODES))
    if unknown:
        raise ValueError(f"plot_architecture: unknown node(s) {unknown}; known: {sorted(ARCHITECTURE_NODES)}")
    figure = Figure(figsize=(15, 8.2), dpi=110)
    FigureCanvasAgg(figure)
    ax = figure.add_axes((0.0, 0.0, 1.0, 0.95 if title else 1.0))
    ax.set_xlim(-0.5, 97.5)
    ax.set_ylim(3, 68)
    ax.set_axis_off()
    for name, x0, y0, x1, y1, colour in ARCHITECTURE_GROUPS:
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, facecolor=colour, edgecolor="0.6", zorder=0))
        ax.text(x0 + 0.4, y1 - 0.4, name, fontsize=9, fontweight="bold", va="top", ha="left", zorder=1)
    half_width, half_height = 5.6, 3.3
    boxes: dict[str, FancyBboxPatch] = {}
    for node, (x, y, label) in ARCHITECTURE_NODES.items():
        boxes[node] = FancyBboxPatch(
            (x - half_width, y - half_height), 2 * half_width, 2 * half_height,
            boxstyle="round,pad=0.2", facecolor="white", edgecolor="0.25", zorder=2,
        )  # fmt: skip
        ax.add_patch(boxes[node])
        ax.text(x, y + 0.9, label, fontsize=8, ha="center", va="center", zorder=3)
        if node in shapes:
            shape = shape_text(shapes[node])
            ax.text(x, y - 2.0, shape, fontsize=8, ha="center", va="center", color="tab:blue", zorder=3)
    for start, end in ARCHITECTURE_EDGES:
        (x0, y0, _), (x1, y1, _) = ARCHITECTURE_NODES[start], ARCHITECTURE_NODES[end]
        ax.add_patch(
            FancyArrowPatch(
                (x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=10, color="0.3", lw=0.9,
                patchA=boxes[start], patchB=boxes[end], shrinkA=1, shrinkB=1, zorder=2.5,
            )
        )  # fmt: skip
    ax.text(
        0.5, 3.8, "blue: the output shape of each step, measured on a real forward pass ([B, D, H, W] "
        "feature maps; per-level head outputs at P3; N detections after NMS)", fontsize=8, color="tab:blue",
    )  # fmt: skip
    if title:
        figure.suptitle(title, fontsize=11)
    return figure
