"""The notebooks' helpers (tutorial.py) and the Fig. 4 drawing (viz.plot_spatial_mask_prediction)."""

import numpy as np
import pytest
import torch

from sipmask_ref import assemble_masks, tutorial
from sipmask_ref.viz import _zoom_window, plot_spatial_mask_prediction


@pytest.mark.parametrize("value, expected", [("", False), ("0", False), ("false", False), ("1", True),
                                             ("yes", True)])
def test_fast_mode_reads_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv(tutorial.FAST_ENV, value)
    assert tutorial.fast_mode() is expected


def test_repo_root_holds_the_project():
    assert (tutorial.repo_root() / "pyproject.toml").is_file()


@pytest.mark.parametrize("sub_regions", [(2, 2), (1, 1), (3, 3)])
def test_spatial_mask_prediction_figure_has_one_panel_per_sub_region(sub_regions):
    generator = torch.Generator().manual_seed(0)
    k_h, k_w = sub_regions
    basis = torch.rand(8, 32, 32, generator=generator)  # [M, H, W]
    coefficients = torch.randn(2, k_h * k_w, 8, generator=generator)  # [N, Q, M]
    boxes = torch.tensor([[4.0, 6.0, 20.0, 18.0], [10.0, 2.0, 30.0, 30.0]])
    detection = {
        "boxes": boxes,
        "sub_region_maps": torch.sigmoid(torch.einsum("nqm,mhw->nqhw", coefficients, basis)),
        "masks": assemble_masks(basis, coefficients, boxes, sub_regions),
    }
    figure = plot_spatial_mask_prediction(torch.rand(3, 64, 64, generator=generator), detection, 0, sub_regions,
                                          single_map=torch.rand(32, 32, generator=generator))
    # input + k_h*k_w sub-region maps + pruned sum + final mask + the two 1x1 panels
    assert len(figure.axes) == 1 + k_h * k_w + 2 + 2
    # the final-mask panel shows exactly the pruned sum thresholded at 0.4, inside the zoom window
    x0, y0, x1, y1 = _zoom_window(boxes[0].tolist(), 32, 32)
    final = np.asarray(figure.axes[2 + k_h * k_w].images[0].get_array())
    expected = (detection["masks"][0].numpy() > 0.4)[y0:y1, x0:x1]
    np.testing.assert_array_equal(final, expected.astype(np.float32))
