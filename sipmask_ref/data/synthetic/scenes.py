"""One image of the benchmark: a background, shapes placed against same-class neighbours, occlusion.

This is where the benchmark makes its point (the package docstring says why): with probability
``adjacency`` a new shape takes the class of a shape already placed and is put against it, touching
or overlapping. Shapes are painted bottom to top; a pixel belongs to the top-most shape, and a shape
left mostly hidden is removed from the scene. Top to bottom:

    random_background                       gradient, blotches and clutter that is not an instance
    compose                                 shapes over a background: the image and the visible masks
    finish_image                            pixel noise, then float [0, 1] -> uint8
    SyntheticImage, place_shapes, sample_image
                                            image ``index`` of a split, as generate_image_dataset writes it
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .config import IMAGE_DOMAIN, SyntheticConfig, random_stream
from .shapes import Appearance, Shape, log_uniform, paint, random_appearance, random_shape, rasterize


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency RGB noise float [H, W, 3] (H = W = size) in [0, 1]: a random grid, upsampled."""
    grid = rng.random((cells + 1, cells + 1, 3))
    t = (np.arange(size) + 0.5) / size * cells
    i0 = np.minimum(np.floor(t).astype(np.int64), cells - 1)
    f = (t - i0)[:, None, None]
    rows = grid[i0] * (1 - f) + grid[i0 + 1] * f  # [H, cells + 1, 3]
    f = (t - i0)[None, :, None]
    return rows[:, i0] * (1 - f) + rows[:, i0 + 1] * f


def random_background(rng: np.random.Generator, size: int, clutter: tuple[int, int]) -> np.ndarray:
    """A background float [H, W, 3] (H = W = size): gradient, blotches, clutter that is not an instance.

    Clutter is thin (half-width at most 1.2 px) lines and arcs and dots of radius below 2 px: it
    competes for attention without looking like any of the shape classes.
    """
    y = (np.arange(size)[:, None] + 0.5) / size
    x = (np.arange(size)[None, :] + 0.5) / size
    a = rng.uniform(0, 2 * math.pi)
    t = np.clip(0.5 + (x - 0.5) * math.cos(a) + (y - 0.5) * math.sin(a), 0, 1)[..., None]
    image = (1 - t) * rng.random(3) + t * rng.random(3)
    image = image + rng.uniform(0, 0.3) * (_smooth_noise(rng, size, int(rng.integers(2, 6))) - 0.5)
    px, py = x * size, y * size  # pixel centres in pixels
    for _ in range(int(rng.integers(clutter[0], clutter[1] + 1))):
        kind = rng.integers(3)
        if kind == 0:  # line segment p -> q
            p, q = rng.uniform(0, size, 2), rng.uniform(0, size, 2)
            d = q - p
            s = np.clip(((px - p[0]) * d[0] + (py - p[1]) * d[1]) / max(d @ d, 1e-9), 0, 1)
            mask = np.hypot(px - p[0] - s * d[0], py - p[1] - s * d[1]) <= rng.uniform(0.5, 1.2)
        elif kind == 1:  # arc of a circle
            c, radius = rng.uniform(0, size, 2), rng.uniform(6, 40)
            start, span = rng.uniform(0, 2 * math.pi), rng.uniform(0.5, 3.5)
            on_circle = np.abs(np.hypot(px - c[0], py - c[1]) - radius) <= rng.uniform(0.5, 1.2)
            mask = on_circle & (np.mod(np.arctan2(py - c[1], px - c[0]) - start, 2 * math.pi) <= span)
        else:  # dot
            c = rng.uniform(0, size, 2)
            mask = np.hypot(px - c[0], py - c[1]) <= rng.uniform(0.8, 1.8)
        image[mask] = rng.random(3)
    return image


def compose(
    background: np.ndarray,
    shapes: Sequence[Shape],
    appearances: Sequence[Appearance],
    min_visible_area: int,
    min_visible_fraction: float,
) -> tuple[np.ndarray, list[np.ndarray | None]]:
    """Paint ``shapes`` (listed bottom to top) over ``background``, respecting occlusion.

    Going from the top shape down, a shape's visible mask is its pixels not covered by a kept shape
    above it. A shape with fewer than ``min_visible_area`` visible pixels, or with a visible share of
    its (in-image) pixels below ``min_visible_fraction``, is removed from the scene: it is not painted,
    so it cannot hide the shapes below it, and no unlabelled instance pixels remain in the image.

    Returns (image float [H, W, 3], visible): ``visible[k]`` is bool [H, W] for a kept shape, None for a
    removed one. Visible masks of kept shapes never overlap.
    """
    size = background.shape[0]
    rasters = [rasterize(shape, size) for shape in shapes]
    covered = np.zeros((size, size), dtype=bool)
    visible: list[np.ndarray | None] = [None] * len(shapes)
    for k in reversed(range(len(shapes))):
        raster = rasters[k]
        seen = raster.mask & ~covered[raster.window]
        area = int(seen.sum())
        if area < min_visible_area or area < min_visible_fraction * raster.mask.sum():
            continue
        covered[raster.window] |= raster.mask
        mask = np.zeros((size, size), dtype=bool)
        mask[raster.window] = seen
        visible[k] = mask
    image = background.copy()
    for k, (shape, raster) in enumerate(zip(shapes, rasters, strict=True)):
        if visible[k] is not None:
            region = image[raster.window]  # a view: writing into it paints the image
            region[raster.mask] = paint(appearances[k], raster, shape.size)[raster.mask]
    return image, visible


def finish_image(image: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Add Gaussian pixel noise of std ``sigma`` and convert float [H, W, 3] in [0, 1] to uint8."""
    noisy = image + rng.normal(0.0, sigma, image.shape) if sigma > 0 else image
    return np.round(np.clip(noisy, 0.0, 1.0) * 255).astype(np.uint8)


@dataclass
class SyntheticImage:
    """One generated image with its instances (bottom-to-top drawing order)."""

    image: np.ndarray  # uint8 [H, W, 3] RGB
    masks: np.ndarray  # bool [G, H, W], visible parts, never overlapping
    class_names: list[str]  # [G]


def place_shapes(rng: np.random.Generator, config: SyntheticConfig) -> list[Shape]:
    """Draw the shapes of one image, bottom to top.

    With probability ``config.adjacency`` (once a first shape exists) a new shape copies the class of
    a random existing shape (its partner), takes a similar size, and is placed against it: its centre
    at ``config.contact`` (0.6-1.0) times the sum of the two radii from the partner's centre, so the
    two touch or overlap.
    Otherwise the class, size and centre are drawn uniformly. Centres always lie inside the image;
    shapes may be cut by the border.
    """
    size = config.image_size
    lo, hi = config.size_range
    shapes: list[Shape] = []
    for _ in range(int(rng.integers(config.instances_per_image[0], config.instances_per_image[1] + 1))):
        if shapes and rng.random() < config.adjacency:
            partner = shapes[int(rng.integers(len(shapes)))]
            kind = partner.kind
            diameter = float(np.clip(partner.size * math.exp(rng.uniform(-0.4, 0.4)), lo, hi))
            distance = (partner.size + diameter) / 2 * rng.uniform(*config.contact)
            for _attempt in range(4):  # a few directions, to keep the centre inside the image
                a = rng.uniform(0, 2 * math.pi)
                cx, cy = partner.cx + distance * math.cos(a), partner.cy + distance * math.sin(a)
                if 0 <= cx < size and 0 <= cy < size:
                    break
            cx, cy = float(np.clip(cx, 0, size - 1e-3)), float(np.clip(cy, 0, size - 1e-3))
        else:
            kind = config.classes[int(rng.integers(len(config.classes)))]
            diameter = log_uniform(rng, lo, hi)
            cx, cy = rng.uniform(0, size, 2)
        shapes.append(random_shape(rng, kind, cx, cy, diameter))
    return shapes


def sample_image(config: SyntheticConfig, index: int, split: str = "train") -> SyntheticImage:
    """Image ``index`` of ``split``, exactly as :func:`generate_image_dataset` writes it."""
    rng = random_stream(config.seed, IMAGE_DOMAIN, split, index)
    background = random_background(rng, config.image_size, config.clutter)
    shapes = place_shapes(rng, config)
    appearances = [random_appearance(rng, shape.size) for shape in shapes]
    image, visible = compose(
        background, shapes, appearances, config.min_visible_area, config.min_visible_fraction
    )
    kept = [k for k, mask in enumerate(visible) if mask is not None]
    kept_masks = [mask for mask in visible if mask is not None]  # the masks of `kept`, in order
    masks = np.stack(kept_masks) if kept else np.zeros((0,) + image.shape[:2], bool)
    image = finish_image(image, rng, rng.uniform(0, config.noise))
    return SyntheticImage(image=image, masks=masks, class_names=[shapes[k].kind for k in kept])
