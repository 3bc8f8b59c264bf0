"""The §3.3 maps of one detection, as the explorer of notebook 10 and the demo's Fig. 4 compute them.

Not a paper section. These are the computations behind `explorer.py`, with no widget and no figure,
so that everything the explorer shows can be computed, and checked, without one:

    MATCH_IOU, match_detection   which detection of a model stands for a ground-truth instance
    grid_name, parse_grid        (2, 2) <-> '2x2'
    InstanceMaps                 the maps of one detection (a dataclass)
    regrid_coefficients          a model's Q sets of spatial coefficients re-pooled to another grid
    network_image                the network input of an image, back in [0, 1]
    instance_maps                sigma(B x c_ij) per sub-region, their pruned sum and the binary mask
    model_grid, image_intermediates, pasted_mask
                                 a model's own grid; one forward pass; a mask pasted at the image size
    adjacent_example             an instance beside a same-class neighbour, and its detection
                                 (the demo's Fig. 4)

What is real and what is a thought experiment. A model trained with k_h x k_w sub-regions predicts
exactly k_h * k_w sets of coefficients per box; pruning its maps with its own grid is what the model
does (`instance_maps(..., grid=None)`; `ExplorerState.pruning = None` in the explorer). Pruning the
same model with ANOTHER grid is not something any trained model does: `regrid_coefficients` gives
each cell of the new grid the area-weighted mean of the coefficients of the model's sub-regions that
the cell overlaps (so a 2x2 model seen through a 1x1 grid uses the mean of its four sets). Because
B x c is linear in c, that is the same as averaging the sub-region logits. It shows what the spatial
split buys inside one model; a model TRAINED with 1x1 (a separate checkpoint) is the real ablation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torchvision.ops import box_iou

from .data.coco import CocoInstances
from .data.synthetic.adjacency import adjacency_flags
from .geometry import paired_box_iou
from .inference import paste_masks
from .model import SipMask
from .spatial_mask_prediction import assemble_masks, sub_region_maps

# A detection stands for a ground-truth instance when its box overlaps it at least this much.
MATCH_IOU = 0.5


def grid_name(sub_regions: tuple[int, int]) -> str:
    """(2, 2) -> '2x2'."""
    return f"{int(sub_regions[0])}x{int(sub_regions[1])}"


def parse_grid(name: str) -> tuple[int, int]:
    """'2x2' -> (2, 2); a ValueError for anything that is not '<k_h>x<k_w>' with k >= 1."""
    parts = name.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) >= 1 for p in parts):
        raise ValueError(f"a grid is written '<k_h>x<k_w>', e.g. '2x2', got {name!r}")
    return int(parts[0]), int(parts[1])


@dataclass
class InstanceMaps:
    """The §3.3 maps of one detection (H x W = basis-map size, half the network input).

    image:           [3, 2H, 2W] network input in [0, 1] (resized and padded, not normalised).
    box:             [4] the detection's box in basis-map pixels.
    label, score:    the detection's class (1..C) and score.
    sub_regions:     the (k_h, k_w) grid used for pruning.
    real:            True when that grid is the model's own (False: thought experiment).
    sub_region_maps: [Q, H, W] sigma(B x c_ij) for each sub-region i, before pruning.
    instance_map:    [H, W] the pruned sum M^_j (0 outside the box).
    mask:            bool [H, W] instance_map > threshold.
    threshold:       that threshold.
    """

    image: Tensor
    box: Tensor
    label: int
    score: float
    sub_regions: tuple[int, int]
    real: bool
    sub_region_maps: Tensor
    instance_map: Tensor
    mask: Tensor
    threshold: float


def regrid_coefficients(coefficients: Tensor, source: tuple[int, int], target: tuple[int, int]) -> Tensor:
    """Coefficients of a `source` grid re-pooled to a `target` grid (the thought experiment).

    Cell t of the target grid gets sum_s w_ts c_s, where w_ts is the fraction of cell t's area
    that lies in source sub-region s (both grids split the same box; the weights of a cell sum to
    1). Identical grids give back the coefficients unchanged; a 2x2 -> 1x1 regrid is the mean of
    the four sets.

    Args:
        coefficients: [N, Q, M] spatial coefficients, sub-regions row-major (Q = k_h * k_w of source).
        source: (k_h, k_w) the coefficients were predicted for.
        target: (g_h, g_w) wanted.
    Returns:
        [N, g_h * g_w, M].
    """
    k_h, k_w = (int(k) for k in source)
    g_h, g_w = (int(g) for g in target)
    if min(k_h, k_w, g_h, g_w) < 1:
        raise ValueError(f"regrid_coefficients: grids must have k >= 1, got {source} and {target}")
    if coefficients.ndim != 3 or coefficients.shape[1] != k_h * k_w:
        raise ValueError(
            f"regrid_coefficients: coefficients must be [N, {k_h * k_w}, M] for a "
            f"{grid_name(source)} grid, got {tuple(coefficients.shape)}"
        )

    def overlaps(cells: int, parts: int) -> Tensor:
        """[cells, parts]: length of [c/cells, (c+1)/cells] inside [p/parts, (p+1)/parts], * cells."""
        lo = torch.arange(cells, dtype=torch.float64)[:, None] / cells
        part_lo = torch.arange(parts, dtype=torch.float64)[None, :] / parts
        length = torch.minimum(lo + 1 / cells, part_lo + 1 / parts) - torch.maximum(lo, part_lo)
        return length.clamp(min=0) * cells  # each row sums to 1

    rows, columns = overlaps(g_h, k_h), overlaps(g_w, k_w)  # [g_h, k_h], [g_w, k_w]
    weights = torch.einsum("ai,bj->abij", rows, columns).reshape(g_h * g_w, k_h * k_w)  # [Q', Q]
    weights = weights.to(dtype=coefficients.dtype, device=coefficients.device)
    return torch.einsum("ts,nsm->ntm", weights, coefficients)  # [N, Q', M]


def network_image(
    intermediates: dict[str, Any], pixel_mean: tuple[float, ...], pixel_std: tuple[float, ...], b: int = 0
) -> Tensor:
    """Image b of forward_intermediates' normalised input, back in [0, 1]: [3, Hp, Wp]."""
    images = intermediates["images"][b]  # [3, Hp, Wp]
    mean = images.new_tensor(pixel_mean)[:, None, None]
    std = images.new_tensor(pixel_std)[:, None, None]
    return (images * std + mean).clamp(0, 1)


def instance_maps(
    model: SipMask,
    image: Tensor,
    index: int,
    threshold: float = 0.4,
    grid: tuple[int, int] | None = None,
    intermediates: dict[str, Any] | None = None,
) -> InstanceMaps:
    """The sub-region maps, pruned sum and mask of detection `index` of `model` on `image`.

    Args:
        model: a SipMask in eval mode.
        image: [3, H0, W0] in [0, 1].
        index: detection j (best score first) of that image.
        threshold: mask binarisation threshold.
        grid: pruning grid; None = the model's own config.sub_regions (what the model does).
        intermediates: `model.forward_intermediates([image])` if already computed.
    """
    if intermediates is None:
        intermediates = image_intermediates(model, image)
    detections = intermediates["detections"][0]
    count = int(detections["scores"].numel())
    if not 0 <= index < count:
        raise ValueError(f"instance_maps: detection {index} requested, the model found {count} in this image")
    own = model_grid(model)
    grid = own if grid is None else (int(grid[0]), int(grid[1]))
    coefficients = detections["coefficients"][index : index + 1]  # [1, Q, M]
    if grid != own:
        coefficients = regrid_coefficients(coefficients, own, grid)  # [1, Q', M]
    basis = intermediates["basis_masks"][0].float()  # [M, H, W]
    box = detections["boxes"][index]  # [4] basis-map pixels
    maps = sub_region_maps(basis, coefficients)[0]  # [Q, H, W] Eq. (2), unpruned
    instance_map = assemble_masks(basis, coefficients, box[None], grid)[0]  # [H, W]
    return InstanceMaps(
        image=network_image(intermediates, model.config.pixel_mean, model.config.pixel_std),
        box=box,
        label=int(detections["labels"][index]),
        score=float(detections["scores"][index]),
        sub_regions=grid,
        real=grid == own,
        sub_region_maps=maps,
        instance_map=instance_map,
        mask=instance_map > threshold,
        threshold=float(threshold),
    )


def model_grid(model: SipMask) -> tuple[int, int]:
    """The (k_h, k_w) grid the model was trained with."""
    k_h, k_w = model.config.sub_regions
    return int(k_h), int(k_w)


def image_intermediates(model: SipMask, image: Tensor) -> dict[str, Any]:
    """forward_intermediates of one image, in eval mode."""
    model.eval()
    return model.forward_intermediates([image])


def match_detection(result: dict[str, Tensor], gt_box: Tensor, gt_label: int) -> tuple[int | None, float]:
    """The detection that stands for a ground-truth instance, and its box IoU with it.

    The best-scored detection of the instance's class whose box IoU is >= MATCH_IOU (as COCO
    matching would pick it); else the detection of largest box IoU, any class (a poor match);
    (None, 0.0) when no detection overlaps the instance at all.

    Args:
        result: one image of the model's output (boxes [N, 4] original pixels, labels [N], scores [N];
            best score first).
        gt_box: [4] xyxy original pixels. gt_label: 1..C.
    """
    boxes = result["boxes"]
    if boxes.shape[0] == 0:
        return None, 0.0
    ious = box_iou(boxes.float(), gt_box.to(boxes.device).float()[None])[:, 0]  # [N]
    good = ((ious >= MATCH_IOU) & (result["labels"] == gt_label)).nonzero().flatten()
    if good.numel() > 0:
        j = int(good[0])  # detections are sorted by score: the first is the best scored
        return j, float(ious[j])
    j = int(ious.argmax())
    return (j, float(ious[j])) if float(ious[j]) > 0 else (None, 0.0)


def pasted_mask(model: SipMask, j: int, maps: InstanceMaps, intermediates: dict[str, Any]) -> Tensor:
    """Detection j's mask probability [H0, W0] at the original image size, for the maps' grid."""
    if maps.real:
        return intermediates["results"][0]["masks"][j, 0]
    own = model_grid(model)
    coefficients = regrid_coefficients(
        intermediates["detections"][0]["coefficients"][j : j + 1], own, maps.sub_regions
    )  # [1, Q', M]
    return paste_masks(
        intermediates["basis_masks"][0].float(),
        coefficients,
        maps.box[None] * 2,
        maps.sub_regions,
        intermediates["image_sizes"][0],
        intermediates["original_sizes"][0],
    )[0, 0]


def adjacent_example(
    model: SipMask, dataset: CocoInstances, max_images: int = 50, min_iou: float = 0.5
) -> dict | None:
    """An instance beside a same-class neighbour, and the model's detection of it (for paper Fig. 4;
    the `demo` command draws it).

    Scans the first `max_images` images for ground-truth instances that are *adjacent* (at least
    10% of their box covered by another instance of the same class, `synthetic.adjacency_flags`)
    and returns the one whose best-matching detection of the right class has the highest score,
    with that detection's IoU >= min_iou. Returns None if there is none.

    Returns a dict: image [3, H, W] (the network input, unnormalised), detection (one entry of
    `model.forward_intermediates(...)["detections"]`), index (the detection j), image_id, iou.
    """
    model.eval()
    best = None
    for k in range(min(max_images, len(dataset))):
        image, target = dataset[k]
        flags = adjacency_flags(target["masks"].bool().numpy(), target["labels"].tolist())
        if not flags.any():
            continue
        with torch.no_grad():
            found = model.forward_intermediates([image])
        detection = found["detections"][0]
        sx, sy = found["scale_factors"][0]  # original -> input pixels
        to_basis = torch.tensor([sx, sy, sx, sy]) / 2  # input -> basis-map pixels (stride 2)
        for g in flags.nonzero()[0].tolist():
            gt_box = target["boxes"][g] * to_basis  # [4] in basis-map pixels
            same = (detection["labels"] == target["labels"][g]).nonzero().squeeze(1)
            if same.numel() == 0:
                continue
            ious = paired_box_iou(detection["boxes"][same], gt_box.expand(same.numel(), 4))
            j = int(same[ious.argmax()])
            iou, score = float(ious.max()), float(detection["scores"][j])
            if iou >= min_iou and (best is None or score > best["score"]):
                h, w = found["image_sizes"][0]
                image_in = torch.nn.functional.interpolate(
                    image[None], size=(h, w), mode="bilinear", align_corners=False
                )[0]
                best = {
                    "image": image_in,
                    "detection": detection,
                    "index": j,
                    "score": score,
                    "image_id": target["image_id"],
                    "iou": iou,
                }
    return best
