"""The parameters of the synthetic benchmark, the constants its modules share, and its random streams.

``SyntheticConfig`` (images) and ``SyntheticVideoConfig`` (videos) hold every parameter that changes
the generated data, and check their fields at construction (a ValueError naming the field). The
shape classes and their category ids (10, 20, ..., 60: not contiguous, on purpose), the generator
version written into every file, and the random stream of each image and video are here too, so
that every other module of the package reads them from one place. Top to bottom:

    SHAPE_CLASSES, CATEGORY_IDS, GENERATOR_VERSION, SPLITS, IMAGE_DOMAIN, VIDEO_DOMAIN
    SyntheticConfig, SyntheticVideoConfig    the parameters of the two benchmarks, checked
    with_overrides                           dataclasses.replace with a clear error for a wrong field
    random_stream                            the numpy Generator of image or video ``index`` of a split
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

SHAPE_CLASSES: tuple[str, ...] = ("disc", "square", "triangle", "ellipse", "ring", "star")
CATEGORY_IDS: dict[str, int] = {name: 10 * (k + 1) for k, name in enumerate(SHAPE_CLASSES)}
GENERATOR_VERSION = 2  # bump when the drawing changes, so that make_data regenerates old data
SPLITS: tuple[str, ...] = ("train", "val")
IMAGE_DOMAIN, VIDEO_DOMAIN = 0, 1  # keep image and video random streams apart


@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of the image benchmark. Each field changes the generated data."""

    image_size: int = 128  # height = width of every image, pixels
    num_train: int = 2000  # images in the train split
    num_val: int = 150  # images in the val split
    classes: tuple[str, ...] = SHAPE_CLASSES  # shape classes to draw, a subset of SHAPE_CLASSES
    adjacency: float = 0.9  # probability that a new instance is placed against a same-class instance
    instances_per_image: tuple[int, int] = (3, 8)  # instances attempted per image (min, max), inclusive
    size_range: tuple[float, float] = (24.0, 80.0)  # circumscribed diameter, pixels, drawn log-uniform
    min_visible_area: int = 20  # an instance with fewer visible pixels is removed from the scene
    min_visible_fraction: float = 0.5  # ... and so is one with a smaller visible share of its pixels
    contact: tuple[float, float] = (0.6, 1.0)  # centre distance of a placed pair / the sum of their radii
    clutter: tuple[int, int] = (0, 6)  # non-instance distractors (lines, arcs, dots) per image (min, max)
    noise: float = 0.05  # largest standard deviation of the per-pixel Gaussian noise (image in [0, 1])
    seed: int = 0  # root seed; train and val derive their own streams from it

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "instances_per_image", tuple(self.instances_per_image))
        object.__setattr__(self, "size_range", tuple(float(s) for s in self.size_range))
        object.__setattr__(self, "clutter", tuple(self.clutter))
        object.__setattr__(self, "contact", tuple(float(c) for c in self.contact))
        _check_common(self, "SyntheticConfig")
        if len(self.contact) != 2 or not 0.0 < self.contact[0] <= self.contact[1]:
            raise ValueError(
                f"SyntheticConfig.contact must be (lo, hi) with 0 < lo <= hi, got {self.contact}"
            )
        _check_range("SyntheticConfig.instances_per_image", self.instances_per_image, minimum=1)
        if not 0.0 <= self.min_visible_fraction <= 1.0:
            raise ValueError(
                f"SyntheticConfig.min_visible_fraction must be in [0, 1], got {self.min_visible_fraction}"
            )


@dataclass(frozen=True)
class SyntheticVideoConfig:
    """Parameters of the video benchmark. Each field changes the generated data."""

    image_size: int = 128  # height = width of every frame, pixels
    # 250 videos = 2000 annotated frames, as many as the image benchmark's training images: enough for
    # the image stage of `train --task vis` without --init-from (40 videos, 320 frames, were too few).
    num_train: int = 250  # videos in the train split
    num_val: int = 10  # videos in the val split
    num_frames: int = 8  # frames per video
    classes: tuple[str, ...] = SHAPE_CLASSES  # shape classes to draw, a subset of SHAPE_CLASSES
    adjacency: float = 0.7  # probability that a new object is sent across a same-class object
    reenter: float = 0.5  # probability that a video holds an object that leaves the frame and comes back
    objects_per_video: tuple[int, int] = (2, 5)  # objects per video (min, max), inclusive
    size_range: tuple[float, float] = (24.0, 80.0)  # circumscribed diameter, pixels, drawn log-uniform
    max_speed: float = 8.0  # largest speed of an object, pixels per frame
    min_visible_area: int = 20  # fewer visible pixels in a frame: the object is absent (None) there
    clutter: tuple[int, int] = (0, 6)  # static non-instance distractors per video (min, max)
    noise: float = 0.05  # largest standard deviation of the per-pixel Gaussian noise
    seed: int = 0  # root seed; train and val derive their own streams from it

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "objects_per_video", tuple(self.objects_per_video))
        object.__setattr__(self, "size_range", tuple(float(s) for s in self.size_range))
        object.__setattr__(self, "clutter", tuple(self.clutter))
        _check_common(self, "SyntheticVideoConfig")
        _check_range("SyntheticVideoConfig.objects_per_video", self.objects_per_video, minimum=1)
        if self.num_frames < 1:
            raise ValueError(f"SyntheticVideoConfig.num_frames must be >= 1, got {self.num_frames}")
        if not 0.0 <= self.reenter <= 1.0:
            raise ValueError(f"SyntheticVideoConfig.reenter must be in [0, 1], got {self.reenter}")
        if self.max_speed <= 0:
            raise ValueError(f"SyntheticVideoConfig.max_speed must be > 0, got {self.max_speed}")


def _check_range(name: str, value: tuple[int, int], minimum: int) -> None:
    """Raise ValueError unless ``value`` is an inclusive (lo, hi) range with minimum <= lo <= hi."""
    if len(value) != 2 or not minimum <= value[0] <= value[1]:
        raise ValueError(f"{name} must be (lo, hi) with {minimum} <= lo <= hi, got {value}")


def _check_common(config: SyntheticConfig | SyntheticVideoConfig, name: str) -> None:
    """Validate the fields shared by the image and the video configuration."""
    unknown = [c for c in config.classes if c not in SHAPE_CLASSES]
    if not config.classes or unknown or len(set(config.classes)) != len(config.classes):
        raise ValueError(f"{name}.classes must be distinct names from {SHAPE_CLASSES}, got {config.classes}")
    if config.image_size < 16:
        raise ValueError(f"{name}.image_size must be >= 16, got {config.image_size}")
    if config.num_train < 0 or config.num_val < 0:
        raise ValueError(
            f"{name}: num_train and num_val must be >= 0, got {config.num_train}, {config.num_val}"
        )
    if not 0.0 <= config.adjacency <= 1.0:
        raise ValueError(f"{name}.adjacency must be in [0, 1], got {config.adjacency}")
    lo, hi = config.size_range
    if not 2.0 <= lo <= hi:
        raise ValueError(f"{name}.size_range must be (lo, hi) with 2 <= lo <= hi, got {config.size_range}")
    if config.min_visible_area < 1:
        raise ValueError(f"{name}.min_visible_area must be >= 1, got {config.min_visible_area}")
    _check_range(f"{name}.clutter", config.clutter, minimum=0)
    if config.noise < 0:
        raise ValueError(f"{name}.noise must be >= 0, got {config.noise}")
    if config.seed < 0:
        raise ValueError(f"{name}.seed must be >= 0, got {config.seed}")


def with_overrides(config: Any, overrides: dict[str, Any]) -> Any:
    """``dataclasses.replace`` with a clear error for a field name that does not exist."""
    names = {f.name for f in fields(config)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown {type(config).__name__} field(s) {unknown}; fields are {sorted(names)}")
    return replace(config, **overrides)


def random_stream(seed: int, domain: int, split: str, index: int) -> np.random.Generator:
    """The random stream of one image or video: independent of every other one."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return np.random.default_rng([seed, domain, SPLITS.index(split), index])
