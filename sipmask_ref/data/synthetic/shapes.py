"""One shape of the synthetic benchmark: its geometry, its pixels, and how it is painted.

A shape is one of the six classes at a centre, with a size (the diameter of its circumscribed circle)
and a rotation. Rasterising it gives its pixels in a window around it, with each pixel's coordinates
in the shape's own rotated frame, so that a texture follows the shape as it moves and turns. Its
appearance (fill texture, colours, outline) is drawn independently of its class: a model can learn
the class only from the shape. Top to bottom:

    log_uniform                                 a size drawn log-uniformly
    Shape, random_shape, inside_shape           the geometry of one shape
    Raster, rasterize                           its pixels, in a window of the image
    Appearance, random_appearance, paint        its fill and outline, as colours of its pixels
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .config import SHAPE_CLASSES

_FILLS = ("solid", "stripes", "checker", "noise", "gradient")


def log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """A size drawn log-uniformly in [lo, hi]: as many 8-16 px shapes as 45-90 px shapes."""
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


@dataclass(frozen=True)
class Shape:
    """One shape placed in an image. Pixel (row i, column j) has its centre at (x, y) = (j + .5, i + .5)."""

    kind: str  # one of SHAPE_CLASSES
    cx: float  # centre x, pixels
    cy: float  # centre y, pixels
    size: float  # diameter of the circumscribed circle, pixels (the box side is at most this)
    angle: float  # rotation, radians
    aspect: float  # minor / major axis (ellipse only)
    inner: float  # inner / outer radius (the ring's hole, the star's valleys)


def random_shape(rng: np.random.Generator, kind: str, cx: float, cy: float, size: float) -> Shape:
    """A shape of class ``kind`` at (cx, cy) with random rotation and class-specific proportions."""
    aspect = rng.uniform(0.4, 0.65) if kind == "ellipse" else 1.0
    inner = {"ring": rng.uniform(0.45, 0.7), "star": rng.uniform(0.38, 0.5)}.get(kind, 0.0)
    return Shape(
        kind,
        float(cx),
        float(cy),
        float(size),
        float(rng.uniform(0, 2 * math.pi)),
        float(aspect),
        float(inner),
    )


def inside_shape(shape: Shape, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Which points (u, v), given in the shape's own rotated frame centred on it, lie inside it."""
    r = shape.size / 2
    rho2 = u * u + v * v
    if shape.kind == "disc":
        return rho2 <= r * r
    if shape.kind == "ring":
        return (rho2 <= r * r) & (rho2 >= (shape.inner * r) ** 2)
    if shape.kind == "ellipse":
        return (u / r) ** 2 + (v / (shape.aspect * r)) ** 2 <= 1.0
    if shape.kind == "square":  # corners on the circle: half side r / sqrt(2)
        return np.maximum(np.abs(u), np.abs(v)) <= r / math.sqrt(2)
    if shape.kind == "triangle":  # equilateral, corners on the circle: each side at distance r / 2
        inside = np.ones(u.shape, dtype=bool)
        for k in range(3):
            a = math.pi / 2 + 2 * math.pi * k / 3
            inside &= u * math.cos(a) + v * math.sin(a) <= r / 2
        return inside
    if shape.kind == "star":  # 5 points: the radius falls linearly from r (tip) to inner * r (valley)
        sector = 2 * math.pi / 5
        phase = np.mod(np.arctan2(v, u), sector) / sector  # 0 at a tip, 0.5 in a valley
        edge = r * (shape.inner + (1 - shape.inner) * np.abs(1 - 2 * phase))
        return np.sqrt(rho2) <= edge
    raise ValueError(f"unknown shape kind {shape.kind!r}; expected one of {SHAPE_CLASSES}")


@dataclass
class Raster:
    """The pixels of one shape inside the image, computed only in the window around the shape."""

    window: tuple[slice, slice]  # (rows, columns) of the image covered by the window
    mask: np.ndarray  # bool [H, W] (H x W: the window): which window pixels the shape covers
    u: np.ndarray  # float [H, W]: pixel centres in the shape's rotated frame (for its texture)
    v: np.ndarray  # float [H, W]


def rasterize(shape: Shape, image_size: int) -> Raster:
    """Rasterise ``shape`` on an ``image_size`` square image, vectorised over a numpy grid."""
    r = shape.size / 2
    x0, x1 = max(0, math.floor(shape.cx - r)), min(image_size, math.ceil(shape.cx + r) + 1)
    y0, y1 = max(0, math.floor(shape.cy - r)), min(image_size, math.ceil(shape.cy + r) + 1)
    x1, y1 = max(x0, x1), max(y0, y1)  # an empty window when the shape is outside the image
    dx = (np.arange(x0, x1) + 0.5 - shape.cx)[None, :]
    dy = (np.arange(y0, y1) + 0.5 - shape.cy)[:, None]
    c, s = math.cos(shape.angle), math.sin(shape.angle)
    u, v = c * dx + s * dy, -s * dx + c * dy
    return Raster((slice(y0, y1), slice(x0, x1)), inside_shape(shape, u, v), u, v)


@dataclass
class Appearance:
    """How an instance is painted. Drawn independently of its class."""

    fill: str  # 'solid' | 'stripes' | 'checker' | 'noise' | 'gradient'
    color_a: np.ndarray  # RGB triple in [0, 1]
    color_b: np.ndarray  # RGB triple, the second colour of the pattern
    period: float  # stripe / checker period, pixels
    direction: float  # stripe / gradient direction in the shape's frame, radians
    noise: np.ndarray  # square float array of noise, indexed by the shape's own (u, v)
    outline: np.ndarray | None  # RGB of a 1-pixel outline, or None for no outline


def random_appearance(rng: np.random.Generator, size: float) -> Appearance:
    """A random fill for a shape of diameter ``size``."""
    color_a, color_b = rng.random(3), rng.random(3)
    side = math.ceil(size) + 3
    outline = None
    if rng.random() < 0.5:  # a darker or a lighter rim: a cue that separates touching instances
        outline = color_a * 0.35 if rng.random() < 0.5 else color_a + (1 - color_a) * 0.65
    return Appearance(
        fill=_FILLS[rng.integers(len(_FILLS))],
        color_a=color_a,
        color_b=color_b,
        period=float(rng.uniform(3, 9)),
        direction=float(rng.uniform(0, 2 * math.pi)),
        noise=rng.random((side, side)),
        outline=outline,
    )


def paint(appearance: Appearance, raster: Raster, size: float) -> np.ndarray:
    """Colours float [H, W, 3] of the raster's window. Textures follow the shape as it moves and turns."""
    u, v = raster.u, raster.v
    c, s = math.cos(appearance.direction), math.sin(appearance.direction)
    if appearance.fill == "solid":
        weight = np.zeros(u.shape)
    elif appearance.fill == "stripes":
        weight = np.floor((c * u + s * v) / appearance.period) % 2
    elif appearance.fill == "checker":
        weight = (np.floor(u / appearance.period) + np.floor(v / appearance.period)) % 2
    elif appearance.fill == "noise":
        side = appearance.noise.shape[0]
        col = np.clip(np.floor(u + side / 2), 0, side - 1).astype(np.int64)
        row = np.clip(np.floor(v + side / 2), 0, side - 1).astype(np.int64)
        weight = appearance.noise[row, col]
    elif appearance.fill == "gradient":
        weight = np.clip(0.5 + (c * u + s * v) / size, 0.0, 1.0)
    else:
        raise ValueError(f"unknown fill {appearance.fill!r}; expected one of {_FILLS}")
    weight = weight[..., None]
    colours = (1 - weight) * appearance.color_a + weight * appearance.color_b
    if appearance.outline is not None:
        colours[_boundary(raster.mask)] = appearance.outline
    return colours


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with at least one of their 4 neighbours outside it."""
    padded = np.pad(mask, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior
