"""Check a COCO-format dataset before training: files that read, annotations that parse, and what the
model's FCOS assignment (§3) makes of the instances.

Not a paper section. A training image that cannot be decoded, or whose size disagrees with the
annotation file, would otherwise stop a run after any number of iterations, from inside the data loader.
Two uses:

- ``train`` scans the images of its sets before the first step (:func:`scanned_image_sets`; the video
  task's frames: :func:`scanned_video_sets`): a bad file stops the run at once, naming it, or (image
  task, ``--skip-bad-images``) is dropped with one warning per image.
- ``python -m sipmask_ref check-data`` runs :func:`check_dataset`: every image is decoded, every annotation
  validated, and each class described (sizes, adjacency, FCOS positives per level, instances without any
  positive point); :func:`write_check` writes the report (JSON and text) and a ground-truth gallery.

Nothing is checked twice here: reading an image is ``coco.read_rgb_array`` (``load_rgb_image`` without
the tensor, with its checks and messages), validating an annotation is the dataset's own parse (its
``AnnotationWarning`` messages are collected, not rewritten), adjacency is ``synthetic.adjacency_flags``
and the size names are COCO's (``synthetic.area_bin``), and the positives come from
``fcos.locations`` / ``fcos.flatten_levels`` / ``fcos.fcos_targets`` on the boxes as ``SipMask.preprocess``
resizes them (``model_input.resize``, then padding to ``size_divisible``).

Decisions:

- An image is decoded completely (``read_rgb_array``, as training reads it), not only its header: a file
  truncated in the middle is found too. That costs a decode per image; ``train --no-scan`` skips it.
- Sizes are by mask pixels at the original image size (what the masks of training hold), not the
  annotation's ``area`` field; small / medium / large are COCO's area ranges.
- The FCOS statistics need a preset (``check-data --config``, default ``paper_r50_800``, the setting
  one would train a user's COCO-format set with; ``cpu_tiny`` for 128-px inputs): positives depend on
  the input size, strides, regress ranges and sampling radius.
- ``ok`` is False when an image cannot be used or the dataset warned about an annotation (skipped, or a
  polygon part dropped): training would run, but without what the file meant to say.
- This file sits with the helpers (next to ``viz.py``), not in ``data/``: it uses ``fcos.py`` and
  ``viz.py``, which sit above the data package.

    BadImage, BadImageWarning       an image that cannot be used; the warning of --skip-bad-images
    scan_images, scan_frames        open + size check of every image (frame), with a progress bar
    scanned_image_sets              train's scan: stop naming the file, or drop bad images with a warning
    scanned_video_sets              the same for --task vis (stop only: a video cannot lose a frame)
    level_names, level_sizes        'P3'..'P7'; the FPN map sizes of a padded input
    fcos_assignment                 the positive points of one image's instances per level
    check_dataset                   the full check of an annotation file and image folder -> report dict
    format_report, summary_line     the report as readable text; its one-line verdict
    draw_gallery, write_check       the gallery figure; report.json, report.txt and gallery.png on disk
    default_out_dir                 outputs/check_data/<annotation file name without .json>
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor
from tqdm.auto import tqdm

from . import fcos, model_input
from .cli_common import UsageError
from .config import SipMaskConfig
from .data.coco import CocoInstances
from .data.coco_annotations import AnnotationWarning, InstanceRecord
from .data.image_files import read_rgb_array
from .data.synthetic.adjacency import ADJACENCY_THRESHOLD, COCO_AREA_BINS, adjacency_flags, area_bin
from .data.ytvis import YTVISDataset, frame_image_id
from .files import write_json
from .viz import draw_instances

REPORT_JSON, REPORT_TEXT, GALLERY_PNG = "report.json", "report.txt", "gallery.png"
DEFAULT_OUT_ROOT = Path("outputs") / "check_data"  # default --out: DEFAULT_OUT_ROOT / <annotation stem>
GALLERY_SIZE = 12  # images drawn into gallery.png
LISTED = 20  # ids listed per class in the text summary (the JSON has them all)


class BadImage(NamedTuple):
    """An image (or video frame) that cannot be used for training."""

    image_id: int  # the JSON image id (a frame: its evaluation id, ytvis.frame_image_id)
    path: Path
    problem: str  # the dataset's own message; it names the file and the image


class BadImageWarning(UserWarning):
    """An image was left out of training (``train --skip-bad-images``)."""


# ---------------------------------------------------------------------------------------------------------
# The image scan (train runs this part)
# ---------------------------------------------------------------------------------------------------------


def _problem(file: tuple[Path, tuple[int, int], str], image_id: int) -> BadImage | None:
    """None when the image ``file`` = (path, JSON size, name) decodes as training will read it, else what
    is wrong, in the dataset's words (``coco.read_rgb_array``: load_rgb_image without the tensor)."""
    path, size, owner = file
    try:
        read_rgb_array(path, size, owner)
    except (OSError, ValueError) as error:  # FileNotFoundError is an OSError
        return BadImage(image_id, path, str(error))
    return None


def _bar(count: int, desc: str, progress: bool) -> Any:
    return tqdm(range(count), desc=desc, dynamic_ncols=True, disable=not progress, leave=False)


def scan_images(dataset: CocoInstances, progress: bool = False) -> list[BadImage]:
    """Decode every image of ``dataset`` and compare its size with the JSON; the ones that fail, in order."""
    bad = []
    for idx in _bar(len(dataset), "scan images", progress):
        problem = _problem(dataset.image_file(idx), dataset.get_image_info(idx)["id"])
        if problem is not None:
            bad.append(problem)
    return bad


def scan_frames(dataset: YTVISDataset, progress: bool = False) -> list[BadImage]:
    """:func:`scan_images` for the frames a YouTube-VIS dataset serves (its ``items``)."""
    frames = sorted(set(dataset.items))  # (video index, frame index)
    bad = []
    for k in _bar(len(frames), "scan frames", progress):
        v, f = frames[k]
        problem = _problem(dataset.frame_file(v, f), frame_image_id(dataset.videos[v]["id"], f))
        if problem is not None:
            bad.append(problem)
    return bad


def _stop(what: str, bad: Sequence[BadImage], total: int, hint: str) -> UsageError:
    """The one-line error of a scan that found bad images: how many, the first one's message, what to do."""
    return UsageError(
        f"{what}: {len(bad)} of {total} images cannot be used, e.g. {bad[0].problem}; {hint} "
        f"(python -m sipmask_ref check-data lists them all)"
    )


def _scanned(dataset: CocoInstances, what: str, skip_bad: bool, progress: bool) -> CocoInstances:
    """One set of :func:`scanned_image_sets`."""
    bad = scan_images(dataset, progress)
    if not bad:
        return dataset
    if not skip_bad:
        raise _stop(what, bad, len(dataset), "fix or remove them, or train with --skip-bad-images")
    if len(bad) == len(dataset):
        raise _stop(what, bad, len(dataset), "no image is left")
    for image in bad:
        warnings.warn(f"{what}: {image.problem}; image skipped", BadImageWarning, stacklevel=3)
    return dataset.without_images(image.image_id for image in bad)


def scanned_image_sets(
    train_set: CocoInstances, val_set: CocoInstances | None, *, skip_bad: bool, progress: bool
) -> tuple[CocoInstances, CocoInstances | None]:
    """Scan the training (and validation) images before training; the sets to train and evaluate on.

    A bad image raises a UsageError naming the set and the file, unless ``skip_bad``: then each bad
    image is dropped with one :class:`BadImageWarning` (``dataset.without_images``, which also takes a
    validation image's objects out of the evaluation's ground truth). A set left without images raises.
    """
    train_set = _scanned(train_set, "training set", skip_bad, progress)
    if val_set is not None:
        val_set = _scanned(val_set, "validation set", skip_bad, progress)
    return train_set, val_set


def scanned_video_sets(train_set: YTVISDataset, val_set: YTVISDataset | None, *, progress: bool) -> None:
    """Scan the frames of the training (and validation) videos before ``train --task vis``; a bad one
    raises a UsageError naming it. There is no skipping: a video without one of its frames would change
    the reference frames and the tracks, so the file has to be fixed (or the video removed)."""
    for dataset, what in ((train_set, "training set"), (val_set, "validation set")):
        if dataset is not None:
            bad = scan_frames(dataset, progress)
            if bad:
                raise _stop(what, bad, len(set(dataset.items)), "fix them or remove their videos")


# ---------------------------------------------------------------------------------------------------------
# What the FCOS assignment makes of one image
# ---------------------------------------------------------------------------------------------------------


def level_names(config: SipMaskConfig) -> list[str]:
    """'P3' ... 'P7': the pyramid level of each stride (stride 2^l)."""
    return [f"P{round(math.log2(stride))}" for stride in config.strides]


def level_sizes(padded: tuple[int, int], strides: Sequence[int]) -> list[tuple[int, int]]:
    """(H_l, W_l) of each FPN level for a padded input (Hp, Wp): ceil(Hp / s) x ceil(Wp / s), the sizes
    ``backbone.BackboneWithFPN`` gives (P3-P5 divide exactly, P6 and P7 round up)."""
    return [(math.ceil(padded[0] / s), math.ceil(padded[1] / s)) for s in strides]


def fcos_assignment(
    image_size: tuple[int, int], boxes: Tensor, labels: Tensor, config: SipMaskConfig
) -> Tensor:
    """Positive points of each instance on each FPN level, as the model assigns them in training: [G, L].

    ``image_size`` (H0, W0) of the image as given, ``boxes`` [G, 4] xyxy in its pixels, ``labels`` [G]
    1..C. The boxes are resized as ``SipMask.preprocess`` does
    (``model_input.resize`` to ``config.input_size``), the input is padded to ``config.size_divisible``
    and the points of every level are assigned by ``fcos.fcos_targets`` with the config's regress
    ranges and centre-sampling radius. In a batch the padding may be larger, but the extra points lie
    outside every box of this image, so one image alone gives the same assignment.
    """
    canvas = torch.zeros(()).expand(1, *image_size)  # [1, H0, W0]: resize needs an image, of this size only
    resized, target, _ = model_input.resize(canvas, {"boxes": boxes}, config.input_size, config.keep_ratio)
    assert target is not None  # resize returns the target it is given
    padded = model_input.padded_size(int(resized.shape[-2]), int(resized.shape[-1]), config.size_divisible)
    per_level = fcos.locations(level_sizes(padded, config.strides), config.strides)  # [P_l, 2] each
    points, strides, ranges = fcos.flatten_levels(per_level, config.strides, config.regress_ranges)
    assigned = fcos.fcos_targets(
        points, strides, ranges, target["boxes"], labels, config.center_sampling_radius
    )
    num_levels = len(per_level)
    level_of_point = torch.repeat_interleave(
        torch.arange(num_levels), torch.tensor([len(p) for p in per_level])
    )  # [P]
    foreground = assigned.matched_gt >= 0  # [P]
    pairs = assigned.matched_gt[foreground] * num_levels + level_of_point[foreground]  # [positives]
    return torch.bincount(pairs, minlength=len(boxes) * num_levels).reshape(len(boxes), num_levels)


# ---------------------------------------------------------------------------------------------------------
# The full check
# ---------------------------------------------------------------------------------------------------------


def _empty_class(levels: Sequence[str]) -> dict[str, Any]:
    return {
        "instances": 0,
        "area": {name: 0 for name, _ in COCO_AREA_BINS},
        "sqrt_area": [],  # replaced by {min, median, max} at the end
        "adjacent": 0,
        "positives_per_level": dict.fromkeys(levels, 0),
        "no_positive": [],  # annotation ids
    }


def _finish_class(stats: dict[str, Any]) -> dict[str, Any]:
    """Counts -> the reported class entry (sqrt(area) summary, adjacency share, no-positive count)."""
    roots = stats["sqrt_area"]
    count = stats["instances"]
    return {
        "instances": count,
        "area": stats["area"],
        "sqrt_area": (
            {"min": min(roots), "median": statistics.median(roots), "max": max(roots)} if roots else None
        ),
        "adjacent": stats["adjacent"],
        "adjacency": stats["adjacent"] / count if count else 0.0,
        "positives_per_level": stats["positives_per_level"],
        "no_positive": len(stats["no_positive"]),
        "no_positive_ids": stats["no_positive"],
    }


def check_dataset(
    ann_file: str | Path,
    image_dir: str | Path,
    config: SipMaskConfig,
    *,
    preset_name: str | None = None,
    progress: bool = False,
    gallery_size: int = GALLERY_SIZE,
) -> tuple[dict[str, Any], list[tuple[Tensor, dict[str, Any], list[str]]]]:
    """Check a COCO instances file and its images for training with ``config``.

    Reads the file as ``CocoInstances`` does (a file that is not COCO, an unknown id or a malformed
    segmentation raises its ValueError), decodes every image and every mask, and returns
    ``(report, gallery)``. The report (JSON-ready) holds: the paths, ``preset_name``, the model
    input (``config``'s size, strides, regress ranges, centre-sampling radius), ``ok`` (no bad image
    and no annotation problem), ``bad_images`` [{image_id, file, problem}], ``annotation_problems``
    (the dataset's warnings, one per annotation or polygon part, in order), ``skipped_annotations``
    [{annotation_id, problem}], counts, and per class (and ``all``): instances, COCO size names by
    mask area, min / median / max of sqrt(mask area) in original pixels, ``adjacent`` and
    ``adjacency`` (``synthetic.adjacency_flags``: at least 10% of the instance's box on a same-class
    neighbour), FCOS ``positives_per_level`` and the instances with no positive point
    (``no_positive``, ``no_positive_ids``: annotation ids).
    ``gallery`` holds up to ``gallery_size`` readable images, each (image, target, label texts).
    """
    ann_file, image_dir = Path(ann_file), Path(image_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AnnotationWarning)
        dataset = CocoInstances(ann_file, image_dir)
        levels = level_names(config)
        per_class = {name: _empty_class(levels) for name in dataset.class_names}
        bad_images: list[BadImage] = []
        gallery: list[tuple[Tensor, dict[str, Any], list[str]]] = []
        for idx in _bar(len(dataset), "check images", progress):
            info = dataset.get_image_info(idx)
            bad = _problem(dataset.image_file(idx), info["id"])
            if bad is not None:
                bad_images.append(bad)
                continue
            target, records = dataset.load_target(idx)
            image_size = (info["height"], info["width"])
            texts = _describe_image(image_size, target, records, dataset.class_names, per_class, config)
            if len(gallery) < gallery_size:
                gallery.append((dataset.load_image(idx), target, texts))
    problems = [str(w.message) for w in caught if issubclass(w.category, AnnotationWarning)]
    for w in caught:  # anything else is not ours to swallow
        if not issubclass(w.category, AnnotationWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    everything = _empty_class(levels)
    for stats in per_class.values():
        for key in ("instances", "adjacent"):
            everything[key] += stats[key]
        for key in ("sqrt_area", "no_positive"):
            everything[key] += stats[key]
        for key in ("area", "positives_per_level"):
            for name, value in stats[key].items():
                everything[key][name] += value
    data = dataset.coco.dataset
    report = {
        "annotation_file": str(ann_file),
        "image_dir": str(image_dir),
        "preset": preset_name,
        "model_input": {
            "input_size": list(config.input_size),
            "keep_ratio": config.keep_ratio,
            "size_divisible": config.size_divisible,
            "strides": list(config.strides),
            "regress_ranges": [list(r) for r in config.regress_ranges],
            "center_sampling_radius": config.center_sampling_radius,
        },
        "adjacency_threshold": ADJACENCY_THRESHOLD,
        "ok": not bad_images and not problems,
        "images": len(dataset),
        "bad_images": [
            {"image_id": b.image_id, "file": str(b.path), "problem": b.problem} for b in bad_images
        ],
        "annotations": len(data["annotations"]),
        "crowd_annotations": sum(1 for ann in data["annotations"] if ann["iscrowd"]),
        "annotation_problems": problems,
        "skipped_annotations": [
            {"annotation_id": ann_id, "problem": why} for ann_id, why in dataset.skipped_annotations.items()
        ],
        "classes": {name: _finish_class(stats) for name, stats in per_class.items()},
        "all": _finish_class(everything),
    }
    return report, gallery


def _describe_image(
    image_size: tuple[int, int],
    target: dict[str, Any],
    records: Sequence[InstanceRecord],
    class_names: Sequence[str],
    per_class: dict[str, dict[str, Any]],
    config: SipMaskConfig,
) -> list[str]:
    """Add one image's instances to ``per_class``; returns their gallery labels: the class name, with
    ': no positive' for an instance that gets no FCOS point."""
    labels = target["labels"]  # [G]
    if len(labels) == 0:
        return []
    masks = target["masks"].bool()  # [G, H0, W0]
    areas = masks.flatten(1).sum(dim=1).tolist()  # [G] pixels
    adjacent = adjacency_flags(masks.numpy(), labels.tolist())  # [G]
    positives = fcos_assignment(image_size, target["boxes"], labels, config)  # [G, L]
    levels = level_names(config)
    texts = []
    for g, record in enumerate(records):
        name = class_names[int(labels[g]) - 1]
        stats = per_class[name]
        stats["instances"] += 1
        stats["area"][area_bin(areas[g])] += 1
        stats["sqrt_area"].append(math.sqrt(areas[g]))
        stats["adjacent"] += int(adjacent[g])
        for level, count in zip(levels, positives[g].tolist(), strict=True):
            stats["positives_per_level"][level] += count
        if int(positives[g].sum()) == 0:
            stats["no_positive"].append(record.ann_id)
        texts.append(name if int(positives[g].sum()) else f"{name}: no positive")
    return texts


# ---------------------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------------------


def summary_line(report: dict[str, Any]) -> str:
    """One line: what is wrong with the dataset (or that nothing is)."""
    where = report["annotation_file"]
    if report["ok"]:
        return f"{where}: all {report['images']} images readable, no annotation problem"
    return (
        f"{where}: {len(report['bad_images'])} of {report['images']} images cannot be used, "
        f"{len(report['annotation_problems'])} annotation problem(s)"
    )


def _sqrt_area_text(summary: dict[str, float] | None) -> str:
    return "-" if summary is None else "{min:.0f} / {median:.0f} / {max:.0f}".format(**summary)


def format_report(report: dict[str, Any]) -> str:
    """The report of :func:`check_dataset` as readable text (what ``check-data`` prints)."""
    model = report["model_input"]
    size = "x".join(str(v) for v in model["input_size"])
    ranges = ", ".join(f"({lo:g}, {hi:g}]" for lo, hi in model["regress_ranges"])
    lines = [
        f"dataset: {report['annotation_file']} with images in {report['image_dir']}",
        (
            f"model input ({report.get('preset') or 'config'}): resize to {size} "
            f"({'keeping the aspect ratio' if model['keep_ratio'] else 'exactly'}), pad to a multiple of "
            f"{model['size_divisible']}; strides {model['strides']}, regress ranges {ranges}, "
            f"centre-sampling radius {model['center_sampling_radius']:g} strides"
        ),
        f"images: {report['images']}, {len(report['bad_images'])} cannot be used",
    ]
    lines += [f"  image id {b['image_id']}: {b['problem']}" for b in report["bad_images"]]
    lines.append(
        f"annotations: {report['annotations']} ({report['crowd_annotations']} crowd), "
        f"{len(report['annotation_problems'])} problem(s), "
        f"{len(report['skipped_annotations'])} skipped"
    )
    lines += [f"  {problem}" for problem in report["annotation_problems"]]
    levels = list(report["all"]["positives_per_level"])
    name_width = max([len("class"), *(len(n) for n in report["classes"])])
    header = (
        f"{'class':<{name_width}}  {'instances':>9}  {'small':>5}  {'medium':>6}  {'large':>5}  "
        f"{'sqrt(area) min/med/max':>22}  {'adjacent':>8}  {'no positive':>11}  "
        + "  ".join(f"{level:>5}" for level in levels)
    )
    lines += [
        "",
        (
            f"per class (adjacent: >= {report['adjacency_threshold']:.0%} of the box on a same-class "
            f"neighbour; {'/'.join(levels)}: FCOS positive points per level)"
        ),
        header,
    ]
    for name, entry in [*report["classes"].items(), ("all", report["all"])]:
        lines.append(
            f"{name:<{name_width}}  {entry['instances']:>9}  {entry['area']['small']:>5}  "
            f"{entry['area']['medium']:>6}  {entry['area']['large']:>5}  "
            f"{_sqrt_area_text(entry['sqrt_area']):>22}  {entry['adjacency']:>8.0%}  "
            f"{entry['no_positive']:>11}  "
            + "  ".join(f"{entry['positives_per_level'][level]:>5}" for level in levels)
        )
    for name, entry in report["classes"].items():
        ids = entry["no_positive_ids"]
        if ids:
            more = f" and {len(ids) - LISTED} more" if len(ids) > LISTED else ""
            lines.append(
                f"no positive point ({name}): annotation id(s) {', '.join(map(str, ids[:LISTED]))}{more}"
            )
    lines += ["", ("OK: " if report["ok"] else "PROBLEMS: ") + summary_line(report)]
    return "\n".join(lines)


def draw_gallery(gallery: Sequence[tuple[Tensor, dict[str, Any], list[str]]], columns: int = 4) -> Figure:
    """A grid of images with their ground truth (``viz.draw_instances``: masks, boxes, class names;
    an instance without a FCOS positive is labelled 'name: no positive'). Off-screen (Agg)."""
    if not gallery:
        raise ValueError("draw_gallery: no image to draw")
    columns = min(columns, len(gallery))
    rows = -(-len(gallery) // columns)
    figure = Figure(figsize=(3 * columns, 3.2 * rows), dpi=100)
    FigureCanvasAgg(figure)
    for k, (image, target, texts) in enumerate(gallery):
        ax = figure.add_subplot(rows, columns, k + 1)
        draw_instances(
            ax,
            image,
            boxes=target["boxes"],
            masks=target["masks"],
            labels=texts,
            title=f"image {target['image_id']}: {len(texts)} instances",
        )
    figure.tight_layout()
    return figure


def default_out_dir(ann_file: str | Path) -> Path:
    """Where check-data writes by default: outputs/check_data/<annotation file name without .json>."""
    return DEFAULT_OUT_ROOT / Path(ann_file).stem


def write_check(
    report: dict[str, Any], gallery: Sequence[tuple[Tensor, dict[str, Any], list[str]]], out: str | Path
) -> dict[str, Path]:
    """Write report.json, report.txt (:func:`format_report`) and gallery.png (when an image could be read)
    into ``out``; returns the paths written, by kind."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": write_json(report, out / REPORT_JSON), "text": out / REPORT_TEXT}
    paths["text"].write_text(format_report(report) + "\n", encoding="utf-8")
    if gallery:
        paths["gallery"] = out / GALLERY_PNG
        draw_gallery(gallery).savefig(paths["gallery"], format="png")
    return paths
