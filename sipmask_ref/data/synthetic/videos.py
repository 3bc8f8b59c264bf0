"""The video benchmark: shapes that move, cross a same-class object, leave the frame and come back.

Each object of a video is a ``Track``: a shape, its spin, and its centre in every frame. Objects keep
their depth order and their texture for the whole video, and each frame is composed as an image is
(``scenes.compose``), over one background per video. Top to bottom:

    Track                                               one object through the video
    random_track, crossing_track, reentering_track      the three kinds of motion
    SyntheticVideo, sample_video                        video ``index`` of a split, as
                                                        generate_video_dataset writes it
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from .config import VIDEO_DOMAIN, SyntheticVideoConfig, random_stream
from .scenes import compose, finish_image, random_background
from .shapes import Appearance, Shape, log_uniform, random_appearance, random_shape


@dataclass
class Track:
    """One object of a video: a shape that moves along ``positions`` and spins at ``spin``."""

    shape: Shape  # the shape at frame 0 (its cx, cy are replaced by positions[t])
    spin: float  # rotation per frame, radians
    positions: np.ndarray  # float (num_frames, 2): the centre (x, y) at each frame
    appearance: Appearance

    def shape_at(self, t: int) -> Shape:
        """The shape as drawn in frame ``t``."""
        x, y = self.positions[t]
        return replace(self.shape, cx=float(x), cy=float(y), angle=self.shape.angle + self.spin * t)


def _linear_positions(
    rng: np.random.Generator, anchor: np.ndarray, t_anchor: int, num_frames: int, max_speed: float
) -> np.ndarray:
    """Positions (num_frames, 2) of constant-velocity motion through ``anchor`` at frame ``t_anchor``."""
    a = rng.uniform(0, 2 * math.pi)
    velocity = rng.uniform(0.5, max_speed) * np.array([math.cos(a), math.sin(a)])
    return anchor + velocity * (np.arange(num_frames) - t_anchor)[:, None]


def _make_track(rng: np.random.Generator, kind: str, diameter: float, positions: np.ndarray) -> Track:
    """A track for a shape of class ``kind`` and size ``diameter``, with random proportions and looks."""
    shape = random_shape(rng, kind, 0.0, 0.0, diameter)
    return Track(shape, float(rng.uniform(-0.3, 0.3)), positions, random_appearance(rng, diameter))


def random_track(rng: np.random.Generator, config: SyntheticVideoConfig) -> Track:
    """An object of random class crossing the frame in a straight line; it may enter or leave."""
    size, frames = config.image_size, config.num_frames
    kind = config.classes[int(rng.integers(len(config.classes)))]
    diameter = log_uniform(rng, *config.size_range)
    anchor = rng.uniform(0.1 * size, 0.9 * size, 2)  # inside the frame at a random frame
    positions = _linear_positions(rng, anchor, int(rng.integers(frames)), frames, config.max_speed)
    return _make_track(rng, kind, diameter, positions)


def crossing_track(rng: np.random.Generator, config: SyntheticVideoConfig, partner: Track) -> Track:
    """An object of the partner's class and similar size that meets the partner at a random frame.

    Around the meeting frame the two are closer than the sum of their radii, and their relative speed
    is at most half of ``max_speed``: they slide past each other for a few frames rather than in one.
    """
    frames = config.num_frames
    diameter = float(np.clip(partner.shape.size * math.exp(rng.uniform(-0.3, 0.3)), *config.size_range))
    t_meet = int(rng.integers(frames))
    a = rng.uniform(0, 2 * math.pi)
    distance = (partner.shape.size + diameter) / 2 * rng.uniform(0.3, 0.9)
    offset = distance * np.array([math.cos(a), math.sin(a)])
    relative = _linear_positions(rng, offset, t_meet, frames, config.max_speed / 2)
    return _make_track(rng, partner.shape.kind, diameter, partner.positions + relative)


def reentering_track(rng: np.random.Generator, config: SyntheticVideoConfig) -> Track:
    """An object that leaves the frame through one edge and comes back through the same edge.

    At frame ``t_turn`` (not the first or the last) its centre is ``r + 1`` px beyond the edge, so it
    is fully outside; it moves out and back in along the edge's normal, fast enough to be ``depth`` px
    inside at the nearer end of the video: absent in the middle, present before and after.
    """
    size, frames = config.image_size, config.num_frames
    kind = config.classes[int(rng.integers(len(config.classes)))]
    lo, hi = config.size_range
    diameter = log_uniform(rng, max(lo, min(16.0, hi)), max(lo, min(hi, size / 3)))
    r = diameter / 2
    t_turn = int(rng.integers(1, frames - 1))
    k_min = min(t_turn, frames - 1 - t_turn)  # frames from the turn to the nearer end of the video
    depth = rng.uniform(r, size / 2)
    speed = (r + 1 + depth) / k_min
    inward = [np.array(d, dtype=float) for d in ((1, 0), (-1, 0), (0, 1), (0, -1))][rng.integers(4)]
    along = np.abs(inward[::-1])  # the direction of the edge: +x or +y
    beyond = np.where(inward > 0, -(r + 1), np.where(inward < 0, size + r + 1, 0.0))
    turn = beyond + along * rng.uniform(0.25 * size, 0.75 * size)
    t = np.arange(frames) - t_turn
    positions = turn + inward * speed * np.abs(t)[:, None] + along * rng.uniform(-2, 2) * t[:, None]
    return _make_track(rng, kind, diameter, positions)


@dataclass
class SyntheticVideo:
    """One generated video. Identities that are never visible are left out."""

    frames: np.ndarray  # uint8 (num_frames, H, W, 3) RGB
    class_names: list[str]  # one per identity
    masks: list[list[np.ndarray | None]]  # [identity][frame]: bool [H, W] visible part, None when absent


def sample_video(config: SyntheticVideoConfig, index: int, split: str = "train") -> SyntheticVideo:
    """Video ``index`` of ``split``, exactly as :func:`generate_video_dataset` writes it.

    Objects keep their depth order (later ones on top) and their texture for the whole video. With
    probability ``config.reenter`` the top-most object is a :func:`reentering_track`; every other new
    object, with probability ``config.adjacency``, is a :func:`crossing_track` of an earlier one. An
    object is absent in a frame (None) when fewer than ``config.min_visible_area`` of its pixels are
    visible there; it is then not painted in that frame.
    """
    rng = random_stream(config.seed, VIDEO_DOMAIN, split, index)
    background = random_background(rng, config.image_size, config.clutter)
    count = int(rng.integers(config.objects_per_video[0], config.objects_per_video[1] + 1))
    with_reentry = config.num_frames >= 3 and rng.random() < config.reenter
    tracks: list[Track] = []
    for k in range(count):
        if with_reentry and k == count - 1:
            tracks.append(reentering_track(rng, config))
        elif tracks and rng.random() < config.adjacency:
            tracks.append(crossing_track(rng, config, tracks[int(rng.integers(len(tracks)))]))
        else:
            tracks.append(random_track(rng, config))
    appearances = [track.appearance for track in tracks]
    sigma = rng.uniform(0, config.noise)
    frames: list[np.ndarray] = []
    masks: list[list[np.ndarray | None]] = [[] for _ in tracks]
    for t in range(config.num_frames):
        image, visible = compose(
            background, [track.shape_at(t) for track in tracks], appearances, config.min_visible_area, 0.0
        )
        frames.append(finish_image(image, rng, sigma))
        for k, mask in enumerate(visible):
            masks[k].append(mask)
    seen = [k for k in range(count) if any(m is not None for m in masks[k])]
    return SyntheticVideo(
        frames=np.stack(frames),
        class_names=[tracks[k].shape.kind for k in seen],
        masks=[masks[k] for k in seen],
    )
