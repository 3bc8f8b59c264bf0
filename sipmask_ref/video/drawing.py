"""Paper Fig. 7: a tracked video drawn as a strip of frames or an animated GIF, one colour per identity.

The same identity keeps the same colour in every frame, so an identity switch shows as a change of
colour. Read top to bottom:

    _identity_colours    one colour per identity of a video (viz.instance_colors)
    _draw_frame          one frame with its tracked detections (viz.draw_instances)
    draw_video_strip     frames side by side (at most max_frames, evenly spread) -> a Figure
    save_video_gif       every frame -> an animated GIF
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image
from torch import Tensor

from ..viz import draw_instances, instance_colors
from .tracks import FrameDetections


def _identity_colours(ids: Sequence[Tensor | None]) -> np.ndarray:
    """One colour per identity of the video, indexed by identity id."""
    largest = max([int(i.max()) for i in ids if i is not None and i.numel()] + [-1])
    return instance_colors(largest + 1)


def _draw_frame(
    ax: Any,
    frame: Tensor | None,
    found: FrameDetections | None,
    frame_ids: Tensor | None,
    palette: np.ndarray,
    class_names: Sequence[str] | None,
    title: str,
) -> None:
    """One frame with its tracked detections; dropped detections (id -1) are not drawn."""
    if frame is None or found is None or frame_ids is None:
        ax.set_title(f"{title} (missing)", fontsize=8)
        ax.set_axis_off()
        return
    keep = frame_ids >= 0
    ids = frame_ids[keep].tolist()
    names = [class_names[int(label) - 1] if class_names else str(int(label)) for label in found.labels[keep]]
    draw_instances(
        ax,
        frame,
        boxes=found.boxes[keep],
        masks=found.masks[keep],
        labels=[f"#{i} {n}" for i, n in zip(ids, names, strict=True)],
        colors=palette[ids] if ids else None,
        title=title,
    )


def draw_video_strip(
    frames: Sequence[Tensor | None],
    detections: Sequence[FrameDetections | None],
    ids: Sequence[Tensor | None],
    class_names: Sequence[str] | None = None,
    max_frames: int = 8,
    title: str | None = None,
    dpi: int = 100,
) -> Figure:
    """The frames side by side (at most max_frames, evenly spread), each identity in its own colour."""
    count = len(frames)
    chosen = (
        sorted(
            {
                round(k * (count - 1) / max(1, min(max_frames, count) - 1))
                for k in range(min(max_frames, count))
            }
        )
        if count
        else []
    )
    figure = Figure(figsize=(2.2 * max(1, len(chosen)), 2.5 + (0.3 if title else 0)), dpi=dpi)
    FigureCanvasAgg(figure)
    palette = _identity_colours(ids)
    for k, t in enumerate(chosen):
        _draw_frame(
            figure.add_subplot(1, len(chosen), k + 1),
            frames[t],
            detections[t],
            ids[t],
            palette,
            class_names,
            f"frame {t}",
        )
    if title:
        figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return figure


def save_video_gif(
    frames: Sequence[Tensor | None],
    detections: Sequence[FrameDetections | None],
    ids: Sequence[Tensor | None],
    path: str | os.PathLike,
    class_names: Sequence[str] | None = None,
    seconds_per_frame: float = 0.5,
) -> Path:
    """An animated GIF of the tracked video (one frame per input frame, identity colours as the strip)."""
    palette = _identity_colours(ids)
    pictures = []
    for t, frame in enumerate(frames):
        height, width = frame.shape[-2:] if frame is not None else (128, 128)
        scale = max(1.0, 320 / max(height, width))
        figure = Figure(figsize=(width * scale / 100, height * scale / 100 + 0.25), dpi=100)
        canvas = FigureCanvasAgg(figure)
        ax = figure.add_axes((0, 0, 1, 1 - 0.25 / (height * scale / 100 + 0.25)))
        _draw_frame(ax, frame, detections[t], ids[t], palette, class_names, f"frame {t}")
        canvas.draw()
        pictures.append(Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3]))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pictures[0].save(
        path, save_all=True, append_images=pictures[1:], duration=int(1000 * seconds_per_frame), loop=0
    )
    return path
