"""af.py: the paper's Fig. 3 with measured shapes."""

from __future__ import annotations

import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from sipmask_ref import architecture_figure as af


def test_plot_architecture_draws_every_node_edge_and_given_shape():
    shapes = {"input": torch.Size([1, 3, 128, 128]), "P7": (1, 64, 1, 1), "masks": "[N, H, W] = [5, 64, 64]"}
    figure = af.plot_architecture(shapes, title="Fig. 3")
    (ax,) = figure.axes
    texts = [t.get_text() for t in ax.texts]
    for expected in ("[1, 3, 128, 128]", "[1, 64, 1, 1]", "[N, H, W] = [5, 64, 64]"):
        assert texts.count(expected) == 1  # every shape given appears once, as text
    for _, _, label in af.ARCHITECTURE_NODES.values():
        assert label in texts
    boxes = [p for p in ax.patches if isinstance(p, FancyBboxPatch)]
    arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
    assert len(boxes) == len(af.ARCHITECTURE_NODES) and len(arrows) == len(af.ARCHITECTURE_EDGES)
    names = set(af.ARCHITECTURE_NODES)
    assert all(start in names and end in names for start, end in af.ARCHITECTURE_EDGES)
    assert figure.dpi >= 100
    canvas = FigureCanvasAgg(figure)
    canvas.draw()  # renders without error
    with pytest.raises(ValueError, match="unknown node"):
        af.plot_architecture({"P8": (1, 64, 1, 1)})
