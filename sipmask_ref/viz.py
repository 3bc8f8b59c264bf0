"""Drawing helpers: instance colours, mask overlays, boxes with labels, a grid of dataset samples, and
the paper's Fig. 4: the sub-region maps of one detection (`plot_spatial_mask_prediction`) and, for
two models side by side, with the instance, its same-class neighbours and the measured leak
(`plot_leak_comparison`, `LeakView`; the measure is eval/leak.py).

Every function accepts numpy arrays or torch tensors, in the layouts the rest of the package uses:

    image   uint8 [H, W, 3] (0..255), float [H, W, 3] or float [3, H, W] (0..1, a dataset item)
    masks   [N, H, W] or [N, 1, H, W] (model output); bool/uint8 as is, float thresholded
    boxes   [N, 4] xyxy in image pixels (the data and model contracts)

Nothing here selects a matplotlib backend: pass in an axis from your own figure (a notebook), or let
:func:`write_sample_figure` build an off-screen Agg figure (no display needed).
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from sipmask_ref.data.coco_annotations import decode_segmentation
from sipmask_ref.files import read_json


def to_numpy(array: Any) -> np.ndarray:
    """A numpy copy of a numpy array or a torch tensor (on any device)."""
    if hasattr(array, "detach"):  # a torch tensor
        return array.detach().cpu().numpy()
    return np.asarray(array)


def to_uint8_image(image: Any) -> np.ndarray:
    """An RGB image as uint8 [H, W, 3], from uint8 HWC, float HWC / CHW in [0, 1], or grey [H, W]."""
    array = to_numpy(image)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = array.transpose(1, 2, 0)  # CHW -> HWC
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"expected an image [H, W, 3], [3, H, W] or [H, W], got shape {array.shape}")
    if array.dtype == np.uint8:
        return array
    return np.round(np.clip(array.astype(np.float64), 0.0, 1.0) * 255).astype(np.uint8)


def to_bool_masks(masks: Any, threshold: float = 0.5) -> np.ndarray:
    """Masks as bool [N, H, W]: [N, 1, H, W] is squeezed, float masks are taken above ``threshold``."""
    array = to_numpy(masks)
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise ValueError(f"expected masks [N, H, W] or [N, 1, H, W], got shape {array.shape}")
    if array.dtype == bool:
        return array
    if np.issubdtype(array.dtype, np.floating):
        return array > threshold
    return array != 0


def instance_colors(n: int, seed: int = 0) -> np.ndarray:
    """``n`` distinct, saturated colours, float [N, 3] (N = n) in [0, 1]; same ``seed``, same colours.

    Hues step by the golden ratio from a seeded start, so neighbours in the list differ strongly.
    """
    start = np.random.default_rng(seed).random()
    colours = [
        colorsys.hsv_to_rgb(
            (start + k * 0.618033988749895) % 1.0, 0.85 if k % 2 else 0.65, 0.95 if k % 3 else 0.8
        )
        for k in range(n)
    ]
    return np.array(colours, dtype=np.float64).reshape(n, 3)


def overlay_masks(
    image: Any, masks: Any, colors: Any = None, alpha: float = 0.5, threshold: float = 0.5
) -> np.ndarray:
    """The image with each mask blended in its colour: uint8 [H, W, 3].

    ``colors`` is [N, 3] in [0, 1] (default :func:`instance_colors`). Masks are drawn in order, so a
    later mask covers an earlier one where they overlap. Pixels outside every mask are unchanged.
    """
    base = to_uint8_image(image)
    mask_array = to_bool_masks(masks, threshold)
    if mask_array.shape[1:] != base.shape[:2]:
        raise ValueError(
            f"masks {tuple(mask_array.shape[1:])} and image {tuple(base.shape[:2])} differ in size"
        )
    colours = instance_colors(len(mask_array)) if colors is None else np.asarray(colors, dtype=np.float64)
    if len(colours) < len(mask_array):
        raise ValueError(f"{len(mask_array)} masks but only {len(colours)} colours")
    out = base.astype(np.float64) / 255
    # strict=False: a palette longer than the masks is allowed (checked above: never shorter).
    for mask, colour in zip(mask_array, colours, strict=False):
        out[mask] = (1 - alpha) * out[mask] + alpha * colour[:3]
    return np.round(out * 255).astype(np.uint8)


def _label_text(label: Any, score: float | None, class_names: Sequence[str] | None) -> str:
    """'name 0.87': a str label as is, an int label 1..C through ``class_names[label - 1]``."""
    if isinstance(label, str):
        text = label
    elif label is None:
        text = ""
    else:
        label = int(label)
        text = (
            class_names[label - 1]
            if class_names is not None and 1 <= label <= len(class_names)
            else str(label)
        )
    return f"{text} {score:.2f}".strip() if score is not None else text


def draw_instances(
    ax: Axes,
    image: Any,
    boxes: Any = None,
    masks: Any = None,
    labels: Any = None,
    scores: Any = None,
    class_names: Sequence[str] | None = None,
    colors: Any = None,
    alpha: float = 0.5,
    threshold: float = 0.5,
    title: str | None = None,
) -> None:
    """Show an image on ``ax`` with its instances: masks blended in, boxes outlined, labels written.

    ``boxes`` [N, 4] xyxy pixels; ``labels`` [N] ints 1..C (named through ``class_names``, label - 1)
    or strings; ``scores`` [N] are appended to the labels. Any of them may be None. Instance k has
    colour ``colors[k]`` (default :func:`instance_colors`). imshow puts pixel j's centre at j, so the
    box edge x1 is drawn at x1 - 0.5: the outline runs exactly around the box's pixels.
    """
    box_array = None if boxes is None else to_numpy(boxes).astype(np.float64).reshape(-1, 4)
    mask_array = None if masks is None else to_bool_masks(masks, threshold)
    label_list = (
        None
        if labels is None
        else list(labels)
        if isinstance(labels, (list, tuple))
        else to_numpy(labels).tolist()
    )
    score_list = None if scores is None else to_numpy(scores).astype(np.float64).tolist()
    counts = {
        name: len(v)
        for name, v in (
            ("boxes", box_array),
            ("masks", mask_array),
            ("labels", label_list),
            ("scores", score_list),
        )
        if v is not None
    }
    if len(set(counts.values())) > 1:
        raise ValueError(f"draw_instances: inconsistent numbers of instances {counts}")
    n = next(iter(counts.values()), 0)
    colours = instance_colors(n) if colors is None else np.asarray(colors, dtype=np.float64)
    shown = (
        overlay_masks(image, mask_array, colours, alpha)
        if mask_array is not None and n
        else to_uint8_image(image)
    )
    ax.imshow(shown, interpolation="nearest")
    for k in range(n):
        colour = tuple(colours[k][:3])
        anchor = None
        if box_array is not None:
            x1, y1, x2, y2 = box_array[k]
            ax.add_patch(
                Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=1.5)
            )
            anchor = (x1 - 0.5, y1 - 0.5)
        elif mask_array is not None and mask_array[k].any():
            rows, cols = np.nonzero(mask_array[k])
            anchor = (cols.min() - 0.5, rows.min() - 0.5)
        text = _label_text(
            label_list[k] if label_list is not None else None,
            score_list[k] if score_list is not None else None,
            class_names,
        )
        if text and anchor is not None:
            ax.text(
                anchor[0],
                anchor[1],
                text,
                fontsize=7,
                color="white",
                va="bottom",
                bbox={"facecolor": colour, "alpha": 0.8, "pad": 1, "edgecolor": "none"},
            )
    if title:
        ax.set_title(title, fontsize=9)
    ax.set_axis_off()


def _resolve_annotations(source: Path) -> tuple[Path, Path]:
    """(annotation JSON, image folder) of a dataset folder or annotation file of the synthetic layout.

    A folder means its train split: annotations/instances_train.json with images/train (COCO), or
    annotations/train.json with videos/train (YouTube-VIS). For a JSON file the images are looked up
    in the sibling folder of its ``annotations`` folder: instances_val.json -> ../images/val.
    """
    if source.is_dir():
        for name, media in (("instances_train.json", "images"), ("train.json", "videos")):
            if (source / "annotations" / name).exists():
                return source / "annotations" / name, source / media / "train"
        raise FileNotFoundError(f"{source}: no annotations/instances_train.json or annotations/train.json")
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such file or folder")
    split = source.stem.removeprefix("instances_")
    media = "images" if source.stem.startswith("instances_") else "videos"
    return source, source.parent.parent / media / split


def _frames_to_draw(data: dict[str, Any], image_dir: Path, n: int) -> list[dict[str, Any]]:
    """Up to ``n`` panels: image path, title and per-instance (segmentation, bbox, category, colour id).

    COCO: the first ``n`` images by id. YouTube-VIS: the first ``n`` frames of the first video, each
    identity keeping its colour across frames.
    """
    panels = []
    if "videos" in data:
        video = min(data["videos"], key=lambda v: v["id"]) if data["videos"] else None
        if video is None:
            return []
        anns = sorted((a for a in data["annotations"] if a["video_id"] == video["id"]), key=lambda a: a["id"])
        for t, file_name in enumerate(video["file_names"][:n]):
            instances = [
                (a["segmentations"][t], a["bboxes"][t], a["category_id"], k)
                for k, a in enumerate(anns)
                if a["segmentations"][t] is not None
            ]
            panels.append(
                {
                    "path": image_dir / file_name,
                    "height": video["height"],
                    "width": video["width"],
                    "instances": instances,
                    "colour_seed": video["id"],
                    "title": f"video {video['id']} frame {t}: {len(instances)} instances",
                }
            )
        return panels
    anns_by_image: dict[int, list[dict[str, Any]]] = {}
    for ann in data["annotations"]:
        anns_by_image.setdefault(ann["image_id"], []).append(ann)
    for image in sorted(data["images"], key=lambda i: i["id"])[:n]:
        anns = sorted(anns_by_image.get(image["id"], []), key=lambda a: a["id"])
        panels.append(
            {
                "path": image_dir / image["file_name"],
                "height": image["height"],
                "width": image["width"],
                "colour_seed": image["id"],
                "instances": [
                    (a["segmentation"], a["bbox"], a["category_id"], k) for k, a in enumerate(anns)
                ],
                "title": f"image {image['id']}: {len(anns)} instances",
            }
        )
    return panels


def write_sample_figure(
    source: str | Path, out_png: str | Path, n: int = 6, columns: int = 3, image_dir: str | Path | None = None
) -> Path:
    """Draw ``n`` samples of a dataset with their masks, boxes and class names into ``out_png``.

    ``source`` is a dataset folder (root/synthetic or root/synthetic_video: its train split) or an
    annotation JSON (COCO instances, or YouTube-VIS: the frames of its first video); ``image_dir``
    overrides where the images are. One subplot per image, titled with its instance count. The figure
    is rendered off-screen with the Agg canvas. Returns the path written.
    """
    ann_file, default_dir = _resolve_annotations(Path(source))
    folder = Path(image_dir) if image_dir is not None else default_dir
    data = read_json(ann_file, "annotation")
    names = {c["id"]: c["name"] for c in data["categories"]}
    panels = _frames_to_draw(data, folder, n)
    if not panels:
        raise ValueError(f"{ann_file}: no images to draw")
    rows = -(-len(panels) // columns)
    figure = Figure(figsize=(3 * min(columns, len(panels)), 3.2 * rows), dpi=100)
    FigureCanvasAgg(figure)
    for k, panel in enumerate(panels):
        if not panel["path"].exists():
            raise FileNotFoundError(f"{ann_file}: image {panel['path']} not found")
        image = np.asarray(Image.open(panel["path"]).convert("RGB"))
        instances = panel["instances"]
        where = f"{ann_file} ({panel['title']})"
        masks = (
            np.stack(
                [
                    decode_segmentation(s, panel["height"], panel["width"], where).astype(bool)
                    for s, _, _, _ in instances
                ]
            )
            if instances
            else None
        )
        boxes = [[x, y, x + w, y + h] for _, (x, y, w, h), _, _ in instances] if instances else None
        colours = instance_colors(max((i[3] for i in instances), default=-1) + 1, seed=panel["colour_seed"])
        ax = figure.add_subplot(rows, min(columns, len(panels)), k + 1)
        draw_instances(
            ax,
            image,
            boxes=boxes,
            masks=masks,
            labels=[names.get(c, str(c)) for _, _, c, _ in instances] if instances else None,
            colors=colours[[i[3] for i in instances]] if instances else None,
            title=panel["title"],
        )
    figure.suptitle(
        f"{ann_file.name}: {len(data.get('images', data.get('videos', [])))} "
        f"{'videos' if 'videos' in data else 'images'}, {len(data['annotations'])} "
        f"{'identities' if 'videos' in data else 'instances'}",
        fontsize=10,
    )
    figure.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_png, format="png")
    return out_png


def zoom_window(
    box: Sequence[float], height: int, width: int, margin: float = 0.6
) -> tuple[int, int, int, int]:
    """Integer window (x0, y0, x1, y1) around a box, enlarged by `margin` of its size on each side."""
    x1, y1, x2, y2 = (float(v) for v in box)
    mx, my = margin * (x2 - x1), margin * (y2 - y1)
    x0, y0 = max(0, int(np.floor(x1 - mx))), max(0, int(np.floor(y1 - my)))
    return x0, y0, min(width, int(np.ceil(x2 + mx))), min(height, int(np.ceil(y2 + my)))


def _show_map(
    ax: Axes,
    values: np.ndarray,
    window: tuple[int, int, int, int],
    title: str,
    box: Sequence[float] | None = None,
    cell: Sequence[float] | None = None,
) -> None:
    """One [H, W] map in [0, 1] inside the zoom window, with the box (white) and a sub-region (yellow)."""
    x0, y0, x1, y1 = window
    ax.imshow(
        values[y0:y1, x0:x1],
        cmap="viridis",
        vmin=0.0,
        vmax=1.0,
        extent=(x0 - 0.5, x1 - 0.5, y1 - 0.5, y0 - 0.5),
        interpolation="nearest",
    )
    for rect, color in ((box, "white"), (cell, "yellow")):
        if rect is not None:
            rx1, ry1, rx2, ry2 = (float(v) for v in rect)
            ax.add_patch(
                Rectangle(
                    (rx1 - 0.5, ry1 - 0.5), rx2 - rx1, ry2 - ry1, fill=False, edgecolor=color, linewidth=1.2
                )
            )
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_spatial_mask_prediction(
    image: Any,
    detection: dict[str, Any],
    index: int,
    sub_regions: Sequence[int],
    threshold: float = 0.4,
    single_map: Any = None,
    title: str | None = None,
) -> Figure:
    """Paper Fig. 4 for one detection: the sub-region maps M_ij, their pruned sum and the final mask.

    §3.3: "the response values of M_ij outside the i-th quadrant of the box j are set as zero for
    generating a pruned map; ... we perform a simple addition of its pruned maps obtained from all
    four quadrants ... Finally, the instance map at the predicted bounding-box region is binarized".

    Args:
        image: the network input image [3, H, W] in [0, 1] (or H x W x 3), at twice the basis size.
        detection: one entry of `SipMask.forward_intermediates(...)["detections"]`: boxes [N, 4] in
            basis-map pixels, sub_region_maps [N, Q, H/2, W/2] (unpruned), masks [N, H/2, W/2].
        index: which detection j to draw.
        sub_regions: (k_h, k_w) of the model.
        threshold: the binarisation threshold (0.4 as the authors).
        single_map: optional [H/2, W/2] map sigma(B x c_j) of a one-coefficient (1x1, YOLACT-like) model
            for the same instance, drawn before and after pruning to the box, as Fig. 4(a).
    Returns:
        a matplotlib Figure (Agg): the image with the box, the k_h x k_w maps laid out like the
        sub-regions (each with its own cell outlined), the pruned sum, the final mask, Fig. 4(a), and
        last a colour bar for the maps (every map is drawn on the same 0..1 scale).
    """
    k_h, k_w = int(sub_regions[0]), int(sub_regions[1])
    box = [float(v) for v in to_numpy(detection["boxes"][index])]
    maps = to_numpy(detection["sub_region_maps"][index]).astype(np.float32)  # [Q, H, W]
    summed = to_numpy(detection["masks"][index]).astype(np.float32)  # [H, W]
    height, width = summed.shape
    window = zoom_window(box, height, width)
    picture = to_uint8_image(image)
    extra = 2 if single_map is not None else 0
    columns = 1 + k_w + 2 + extra
    figure = Figure(figsize=(1.9 * columns + 0.6, 1.9 * max(k_h, 1) + 0.5), dpi=100)
    FigureCanvasAgg(figure)
    # the last, narrow column holds the colour bar shared by every map (all drawn on 0..1)
    grid = figure.add_gridspec(k_h, columns + 1, width_ratios=[1.0] * columns + [0.08])

    ax = figure.add_subplot(grid[:, 0])
    scale = picture.shape[1] / width  # input pixels per basis-map pixel (2)
    x0, y0, x1, y1 = window
    ax.imshow(
        picture[int(y0 * scale) : int(y1 * scale), int(x0 * scale) : int(x1 * scale)],
        extent=(x0 - 0.5, x1 - 0.5, y1 - 0.5, y0 - 0.5),
    )
    ax.add_patch(
        Rectangle(
            (box[0] - 0.5, box[1] - 0.5),
            box[2] - box[0],
            box[3] - box[1],
            fill=False,
            edgecolor="red",
            linewidth=1.5,
        )
    )
    ax.set_title("input and box j", fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])

    box_w, box_h = box[2] - box[0], box[3] - box[1]
    for row in range(k_h):
        for column in range(k_w):
            q = row * k_w + column
            cell = (
                box[0] + column * box_w / k_w,
                box[1] + row * box_h / k_h,
                box[0] + (column + 1) * box_w / k_w,
                box[1] + (row + 1) * box_h / k_h,
            )
            _show_map(
                figure.add_subplot(grid[row, 1 + column]),
                maps[q],
                window,
                f"M_{q + 1}j = σ(B·c_{q + 1}j)",
                box=box,
                cell=cell,
            )
    _show_map(figure.add_subplot(grid[:, 1 + k_w]), summed, window, "pruned sum Σ_i M̂_ij", box=box)
    _show_map(
        figure.add_subplot(grid[:, 2 + k_w]),
        (summed > threshold).astype(np.float32),
        window,
        f"final mask (> {threshold})",
        box=box,
    )
    if single_map is not None:
        single = to_numpy(single_map).astype(np.float32)
        xs, ys = np.arange(width), np.arange(height)
        inside = ((xs >= box[0]) & (xs < box[2]))[None, :] & ((ys >= box[1]) & (ys < box[3]))[:, None]
        _show_map(
            figure.add_subplot(grid[:, 3 + k_w]), single, window, "1x1: σ(B·c_j) (YOLACT-like)", box=box
        )
        _show_map(
            figure.add_subplot(grid[:, 4 + k_w]),
            ((single * inside) > threshold).astype(np.float32),
            window,
            f"1x1: pruned, > {threshold}",
            box=box,
        )
    colour_bar = figure.colorbar(
        ScalarMappable(norm=Normalize(0.0, 1.0), cmap="viridis"), cax=figure.add_subplot(grid[:, columns])
    )
    colour_bar.set_label("map value (mask: 1 = on)", fontsize=7)
    colour_bar.ax.tick_params(labelsize=7)
    if title:
        figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return figure
