"""The synthetic adjacent-instance benchmark: images (COCO JSON) and videos (YouTube-VIS 2019 JSON).

Why this benchmark. SipMask's claim (§1, Fig. 1 and Fig. 4 of the paper) is about spatially adjacent
instances of the SAME class. With one set of coefficients per box (YOLACT), the pixels of a same-class
neighbour that fall inside the box leak into the mask; SipMask's spatial coefficients (one set per
sub-region of the box) keep the two apart. COCO does not fit on a laptop, so this package draws small
images that isolate exactly that situation:

* six shape classes (disc, square, triangle, ellipse, ring, star). Colour, texture and outline are drawn
  at random and are NOT tied to the class, so a model can only learn the class from the shape;
* sizes log-uniform over 24..80 px on a 128 px image (three strides of P3 and more), so FPN levels of
  stride 8..32 all get work;
* many same-class instances touching and overlapping: with probability ``adjacency`` (0.9) a new
  instance is placed against an existing instance of its class;
* occlusion: a pixel belongs to the top-most instance, masks are the visible parts, and an instance
  that ends up more than half hidden is removed from the scene, so every painted instance pixel is
  labelled;
* a textured background with clutter (thin lines, arcs, dots) that is not an instance.

The benchmark was redesigned once, for learnability (generator version 2), before the ablations of
version 2 were run, and chosen by the full SipMask model's val mask AP alone (cpu_tiny, 1800 iterations).
Version 1 drew 600 training images of 3-10 instances of 16-90 px, placed at 0.5-1.0 times the sum of
the radii from their partner (adjacency 0.7), and kept instances with 35% of their pixels visible:
mask AP 15.1, 75% of the val instances COCO-small, up to 65% of an instance hidden. Measured steps
(cpu_tiny's recipe of the time, one run each): objects of 24-80 px, 3-8 per image, 2000 training
images: 23.3; of 32-96 px, 2-6 per image: 20.0; then 24-80 px with pairs placed at 0.6-1.0 times the
radii, at least half of an instance visible, adjacency 0.9 (version 2): 26.6 with the softplus basis.
What makes it a test of the paper's claim is kept: 48% of the instances have at least 10% of their box
on a same-class neighbour (40% or more is the requirement), classes cannot be told apart by colour,
and no object is drawn below 24 px.

The headline figure is the adjacency fraction, defined in :func:`adjacency_flags`: an instance is
*adjacent* when at least 10% of the pixels of its (visible-mask) bounding box belong to other instances
of the same class.

Layout written by :func:`make_data`::

    root/synthetic/images/{train,val}/000000.png
    root/synthetic/annotations/instances_{train,val}.json           COCO instances, RLE masks
    root/synthetic_video/videos/{train,val}/vid_0000/00000.png
    root/synthetic_video/annotations/{train,val}.json               YouTube-VIS 2019

File names count from 0; image, video and annotation ids count from 1, because COCOeval treats an
annotation id of 0 as "unmatched". Category ids are deliberately NOT contiguous (10, 20, ..., 60), so
every consumer has to go through a category-id <-> label mapping.

Determinism: image ``i`` of split ``s`` is drawn from ``numpy.random.default_rng([seed, domain, s, i])``.
The same seed gives byte-identical files, train and val never share a random stream, and the first
10 images of a 600-image split equal a 10-image split.

The package, each module importing only those above it in this list (``adjacency.py`` none of them):

    config.py     SyntheticConfig, SyntheticVideoConfig, the shape classes and their category ids,
                  the random stream of each image and video
    shapes.py     one shape: geometry, rasterisation, fill texture and outline
    scenes.py     one image: background, same-class placement, occlusion (sample_image)
    videos.py     one video: moving, crossing and re-entering objects (sample_video)
    writing.py    PNG files with COCO / YouTube-VIS JSON (generate_image_dataset, generate_video_dataset)
    adjacency.py  the adjacency flags and the statistics of a COCO or YouTube-VIS dict
    __init__.py   make_data, the ``make-data`` command (whose defaults are make_data's), and the public
                  names of the modules, re-exported (``from sipmask_ref.data.synthetic import make_data``)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ...files import read_json
from .adjacency import (
    ADJACENCY_THRESHOLD,
    COCO_AREA_BINS,
    adjacency_flags,
    adjacency_stats,
    area_bin,
    format_stats,
    frames_as_coco,
    video_stats,
)
from .config import (
    CATEGORY_IDS,
    GENERATOR_VERSION,
    SHAPE_CLASSES,
    SPLITS,
    SyntheticConfig,
    SyntheticVideoConfig,
)
from .scenes import SyntheticImage, compose, place_shapes, random_background, sample_image
from .shapes import (
    Appearance,
    Raster,
    Shape,
    inside_shape,
    paint,
    random_appearance,
    random_shape,
    rasterize,
)
from .videos import (
    SyntheticVideo,
    Track,
    crossing_track,
    random_track,
    reentering_track,
    sample_video,
)
from .writing import (
    annotation_fields,
    generate_image_dataset,
    generate_video_dataset,
    write_canonical_json,
)


def _ensure(
    out_dir: Path, config: Any, generate: Any, ann_files: list[Path], force: bool, progress: bool
) -> bool:
    """Generate into ``out_dir`` unless params.json there matches ``config``. True when generated.

    params.json is written last, so an interrupted generation is redone on the next call.
    """
    params = json.loads(json.dumps({"generator_version": GENERATOR_VERSION, "config": asdict(config)}))
    params_file = out_dir / "params.json"
    if (
        not force
        and params_file.exists()
        and all(p.exists() for p in ann_files)
        and read_json(params_file, "benchmark parameters") == params
    ):
        return False
    params_file.unlink(missing_ok=True)
    generate(out_dir, config, progress=progress)
    write_canonical_json(params_file, params)
    return True


def make_data(
    root: str | Path = "data",
    seed: int = 0,
    image_size: int = 128,
    num_train: int = 2000,
    num_val: int = 150,
    classes: Sequence[str] = SHAPE_CLASSES,
    adjacency: float | None = None,
    video: bool = True,
    num_train_videos: int = 250,
    num_val_videos: int = 10,
    num_frames: int = 8,
    force: bool = False,
    progress: bool = True,
    verbose: bool = True,
) -> dict[str, Any]:
    """Generate the image benchmark under root/synthetic and the video one under root/synthetic_video.

    Generation is skipped when the output exists with the same parameters (root/<name>/params.json);
    ``force`` regenerates anyway. ``adjacency`` None keeps each config's default. Statistics are
    computed from the JSON files and printed when ``verbose``.

    Returns {"synthetic": {...}, "synthetic_video": {...}} (the second only when ``video``), each with
    ``root``, the paths of :func:`generate_image_dataset` / :func:`generate_video_dataset`,
    ``generated`` (False when skipped) and ``stats`` ({split: statistics}).
    """
    root = Path(root)
    knob: dict[str, Any] = {} if adjacency is None else {"adjacency": adjacency}
    # (folder, config, generator, media folder, statistics of one split's annotations)
    jobs: list[tuple[str, Any, Callable[..., dict[str, Path]], str, Callable[..., dict[str, Any]]]] = [
        (
            "synthetic",
            SyntheticConfig(
                image_size=image_size,
                num_train=num_train,
                num_val=num_val,
                classes=tuple(classes),
                seed=seed,
                **knob,
            ),
            generate_image_dataset,
            "images",
            adjacency_stats,
        )
    ]
    if video:
        jobs.append(
            (
                "synthetic_video",
                SyntheticVideoConfig(
                    image_size=image_size,
                    num_train=num_train_videos,
                    num_val=num_val_videos,
                    num_frames=num_frames,
                    classes=tuple(classes),
                    seed=seed,
                    **knob,
                ),
                generate_video_dataset,
                "videos",
                video_stats,
            )
        )
    result: dict[str, Any] = {}
    for name, config, generate, media, stats_fn in jobs:
        out_dir = root / name
        prefix = "instances_" if media == "images" else ""
        entry: dict[str, Any] = {"root": out_dir}
        for split in SPLITS:
            entry[f"{split}_annotations"] = out_dir / "annotations" / f"{prefix}{split}.json"
            entry[f"{split}_{media}"] = out_dir / media / split
        ann_files = [entry[f"{split}_annotations"] for split in SPLITS]
        entry["generated"] = _ensure(out_dir, config, generate, ann_files, force, progress)
        entry["stats"] = {
            split: stats_fn(read_json(entry[f"{split}_annotations"], "annotation")) for split in SPLITS
        }
        if verbose:
            state = "generated" if entry["generated"] else "up to date, not regenerated"
            print(f"{out_dir} ({state})")
            for split in SPLITS:
                print(format_stats(entry["stats"][split], title=f" {split}:"))
        result[name] = entry
    return result


__all__ = [
    "ADJACENCY_THRESHOLD",
    "CATEGORY_IDS",
    "COCO_AREA_BINS",
    "GENERATOR_VERSION",
    "SHAPE_CLASSES",
    "SPLITS",
    "Appearance",
    "Raster",
    "Shape",
    "SyntheticConfig",
    "SyntheticImage",
    "SyntheticVideo",
    "SyntheticVideoConfig",
    "Track",
    "adjacency_flags",
    "adjacency_stats",
    "annotation_fields",
    "area_bin",
    "compose",
    "crossing_track",
    "format_stats",
    "frames_as_coco",
    "generate_image_dataset",
    "generate_video_dataset",
    "inside_shape",
    "make_data",
    "paint",
    "place_shapes",
    "random_appearance",
    "random_background",
    "random_shape",
    "random_track",
    "rasterize",
    "reentering_track",
    "sample_image",
    "sample_video",
    "video_stats",
]
