"""Tests of the drawing helpers (sipmask_ref/viz.py)."""

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from sipmask_ref import leak_figure, viz
from sipmask_ref.data import synthetic as S

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _image_and_masks() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    masks = np.zeros((2, 20, 30), dtype=bool)
    masks[0, 2:8, 3:10] = True
    masks[1, 5:15, 8:20] = True  # overlaps mask 0
    return image, masks


def test_instance_colors_are_deterministic_and_distinct():
    colours = viz.instance_colors(8, seed=3)
    assert colours.shape == (8, 3) and colours.min() >= 0 and colours.max() <= 1
    np.testing.assert_array_equal(colours, viz.instance_colors(8, seed=3))
    assert not np.array_equal(colours, viz.instance_colors(8, seed=4))
    distances = np.linalg.norm(colours[:, None] - colours[None], axis=-1)
    assert distances[~np.eye(8, dtype=bool)].min() > 0.05
    assert viz.instance_colors(0).shape == (0, 3)


def test_overlay_masks_blends_inside_masks_only():
    image, masks = _image_and_masks()
    colours = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    out = viz.overlay_masks(image, masks, colours, alpha=1.0)
    assert out.dtype == np.uint8 and out.shape == image.shape
    outside = ~masks.any(axis=0)
    np.testing.assert_array_equal(out[outside], image[outside])
    assert (out[masks[1]] == [0, 0, 255]).all()  # the later mask is on top
    assert (out[masks[0] & ~masks[1]] == [255, 0, 0]).all()
    half = viz.overlay_masks(image, masks[:1], colours, alpha=0.5)
    expected = np.round(image[masks[0]] / 2 + np.array([127.5, 0, 0])).astype(np.uint8)
    np.testing.assert_allclose(half[masks[0]].astype(int), expected.astype(int), atol=1)


def test_torch_chw_image_and_probability_masks_are_accepted():
    image, masks = _image_and_masks()
    chw = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    probabilities = torch.from_numpy(masks).float()[:, None] * 0.9  # [N, 1, H, W] like the model output
    np.testing.assert_array_equal(viz.to_uint8_image(chw), image)
    np.testing.assert_array_equal(viz.overlay_masks(chw, probabilities), viz.overlay_masks(image, masks))
    with pytest.raises(ValueError, match="differ in size"):
        viz.overlay_masks(image, masks[:, :10])


def test_draw_instances_draws_one_box_and_label_per_instance():
    image, masks = _image_and_masks()
    figure = Figure()
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    boxes = torch.tensor([[3.0, 2.0, 10.0, 8.0], [8.0, 5.0, 20.0, 15.0]])
    viz.draw_instances(
        ax,
        image,
        boxes=boxes,
        masks=masks,
        labels=torch.tensor([1, 2]),
        scores=torch.tensor([0.9, 0.25]),
        class_names=["disc", "square"],
        title="t",
    )
    assert len(ax.patches) == 2
    assert ax.patches[0].get_x() == 2.5 and ax.patches[0].get_width() == 7.0  # pixel edges
    assert sorted(t.get_text() for t in ax.texts) == ["disc 0.90", "square 0.25"]
    with pytest.raises(ValueError, match="inconsistent"):
        viz.draw_instances(ax, image, boxes=boxes, labels=[1])


def test_write_sample_figure_for_images_and_videos(tmp_path):
    S.generate_image_dataset(tmp_path / "img", num_train=4, num_val=0, progress=False)
    S.generate_video_dataset(tmp_path / "vid", num_train=1, num_val=1, num_frames=3, progress=False)
    written = viz.write_sample_figure(tmp_path / "img", tmp_path / "out" / "images.png", n=4)
    assert written.read_bytes()[:8] == PNG_SIGNATURE
    assert Image.open(written).size[0] > 300
    video_png = viz.write_sample_figure(
        tmp_path / "vid" / "annotations" / "val.json", tmp_path / "videos.png", n=3
    )
    assert video_png.read_bytes()[:8] == PNG_SIGNATURE
    with pytest.raises(FileNotFoundError):
        viz.write_sample_figure(tmp_path / "missing", tmp_path / "x.png")


def _leak_scene() -> tuple[np.ndarray, np.ndarray, np.ndarray, list[leak_figure.LeakView]]:
    """A 64 x 64 image with an instance and a same-class neighbour; a 2x2 and a 1x1 model's detection."""
    image = np.full((64, 64, 3), 90, dtype=np.uint8)
    instance = np.zeros((64, 64), dtype=bool)
    instance[20:40, 10:30] = True
    neighbour = np.zeros((1, 64, 64), dtype=bool)
    neighbour[0, 24:44, 30:50] = True
    rng = np.random.default_rng(0)
    views = []
    for name, (k_h, k_w), leak in (("2x2 SipMask", (2, 2), 0.02), ("1x1", (1, 1), 0.31)):
        detection = {
            "boxes": torch.tensor([[0.0, 0.0, 4.0, 4.0], [5.0, 10.0, 15.0, 20.0]]),  # basis pixels
            "sub_region_maps": torch.from_numpy(rng.random((2, k_h * k_w, 32, 32), dtype=np.float32)),
        }
        mask = instance | (neighbour[0] & (leak > 0.1))
        views.append(leak_figure.LeakView(name, detection, 1, mask, leak, 0.05, (k_h, k_w)))
    return image, instance, neighbour, views


def test_plot_leak_comparison_structure():
    image, instance, neighbour, views = _leak_scene()
    figure = leak_figure.plot_leak_comparison(image, instance, neighbour, views, scale=2.0, title="a title")
    assert figure.dpi >= 100
    colorbars = [ax for ax in figure.axes if "shared scale" in ax.get_ylabel()]
    assert len(colorbars) == 1  # one colour bar for every map
    panels = [ax for ax in figure.axes if ax not in colorbars]
    # per model: input, its Q maps, its final mask -> (1 + 4 + 1) + (1 + 1 + 1)
    assert len(panels) == 9
    maps = [ax for ax in panels if ax.get_title().startswith("M_")]
    assert len(maps) == 5
    assert [ax.get_title() for ax in maps[:4]] == [
        f"M_{q}j = σ(B·c_{q}j): {where}"
        for q, where in zip(
            (1, 2, 3, 4), ("top-left", "top-right", "bottom-left", "bottom-right"), strict=True
        )
    ]
    assert maps[4].get_title().endswith("whole box")
    for ax in maps:  # one colour scale 0..1
        assert ax.images[0].get_clim() == (0.0, 1.0)
    for ax in panels:  # the instance and its neighbour outlined on every panel, the box drawn
        colours = {tuple(np.round(c.get_edgecolor()[0], 3)) for c in ax.collections}
        assert len(ax.collections) == 2 and len(colours) == 2
        assert len(ax.patches) >= 1
    for ax in maps[:4]:  # box and the sub-region the map is kept in
        assert len(ax.patches) == 2
    finals = [ax for ax in panels if ax.get_title() == "final mask (binary)"]
    assert [ax.get_xlabel() for ax in finals] == ["leak 2.0%   miss 5.0%", "leak 31.0%   miss 5.0%"]
    assert [ax.get_title() for ax in panels if "input" in ax.get_title()] == [
        "2x2 SipMask: input, its box j",
        "1x1: input, its box j",
    ]
    labels = [t.get_text() for legend in figure.legends for t in legend.get_texts()]
    assert "the instance g (ground truth)" in labels and "same-class neighbour(s)" in labels
    assert figure.get_suptitle() == "a title"
    figure.canvas.draw()  # lays out and renders without error


def test_plot_leak_comparison_rejects_bad_input():
    image, instance, neighbour, views = _leak_scene()
    with pytest.raises(ValueError, match="image's size"):
        leak_figure.plot_leak_comparison(image, instance[:10], neighbour, views)
    with pytest.raises(ValueError, match="views is empty"):
        leak_figure.plot_leak_comparison(image, instance, neighbour, [])
