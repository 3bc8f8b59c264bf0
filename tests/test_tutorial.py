"""The notebooks' helpers (tutorial.py) and the Fig. 4 drawing (viz.plot_spatial_mask_prediction)."""

import dataclasses

import numpy as np
import pytest
import torch

from sipmask_ref import assemble_masks, engine, explorer, preset, tutorial, workspace
from sipmask_ref.data.coco import CocoInstances
from sipmask_ref.data.synthetic import generate_image_dataset
from sipmask_ref.viz import plot_spatial_mask_prediction, zoom_window


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
    figure = plot_spatial_mask_prediction(
        torch.rand(3, 64, 64, generator=generator),
        detection,
        0,
        sub_regions,
        single_map=torch.rand(32, 32, generator=generator),
    )
    # input + k_h*k_w sub-region maps + pruned sum + final mask + the two 1x1 panels + the colour bar
    assert len(figure.axes) == 1 + k_h * k_w + 2 + 2 + 1
    assert figure.axes[-1].get_ylim() == (0.0, 1.0)  # the shared colour bar spans the maps' 0..1 scale
    # the final-mask panel shows exactly the pruned sum thresholded at 0.4, inside the zoom window
    x0, y0, x1, y1 = zoom_window(boxes[0].tolist(), 32, 32)
    final = np.asarray(figure.axes[2 + k_h * k_w].images[0].get_array())
    expected = (detection["masks"][0].numpy() > 0.4)[y0:y1, x0:x1]
    np.testing.assert_array_equal(final, expected.astype(np.float32))


def test_trained_model_trains_once_with_grad_off_and_again_when_the_config_changes(
    tmp_path, monkeypatch, capsys
):
    paths = generate_image_dataset(tmp_path / "data", num_train=4, num_val=1, image_size=64, progress=False)
    small = CocoInstances(paths["train_annotations"], paths["train_images"])
    monkeypatch.setenv(tutorial.REPO_ENV, str(tmp_path))  # outputs/tutorial/ goes under tmp_path
    monkeypatch.delenv(tutorial.FAST_ENV, raising=False)
    config = dataclasses.replace(
        preset("cpu_tiny"), input_size=(64, 64), batch_size=2, warmup_iters=1, lr_steps=(2,)
    )
    checkpoint = tmp_path / "outputs" / "tutorial" / "tiny" / "checkpoint.pt"
    with torch.no_grad():  # as a notebook that switched gradients off before asking for a model
        model, loaded = tutorial.trained_model(config, name="tiny", iters=2, train_set=small)
    assert checkpoint.is_file() and not model.training
    assert loaded.num_classes == len(small.class_names)
    first = checkpoint.stat().st_mtime_ns
    tutorial.trained_model(config, name="tiny", iters=2, train_set=small)  # cached: loaded, not trained
    assert checkpoint.stat().st_mtime_ns == first
    assert "training again" not in capsys.readouterr().out
    tutorial.trained_model(dataclasses.replace(config, lr=1e-3), name="tiny", iters=2, train_set=small)
    assert "training again" in capsys.readouterr().out
    assert engine.read_checkpoint(checkpoint)["config"]["lr"] == 1e-3


def test_the_notebook_names_are_one_implementation_each():
    for name in (
        "repo_root",
        "fast_mode",
        "model_dir",
        "synthetic_data",
        "trained_checkpoint",
        "training_device",
    ):
        assert getattr(tutorial, name) is getattr(workspace, name)
    assert tutorial.adjacent_example is explorer.adjacent_example
