# %% [markdown]
# # 04 · Spatial coefficients and spatial mask prediction (§3.1, §3.3)
#
# This is SipMask's central idea. YOLACT predicts **one** set of $m$ coefficients per box and combines the
# basis masks with it; pixels of a same-class neighbour that fall inside the box then leak into the mask.
# SipMask splits the box into $k \times k$ sub-regions and predicts **a separate set of coefficients for
# each**; each sub-region's map is kept only inside that sub-region. In this notebook:
#
# 1. the spatial coefficients the head predicts (`[N, Q, M]`) and how Eq. (2) maps onto code;
# 2. the crop/split rule: which pixel of a box belongs to which sub-region, for 1×1, 2×2 and 3×3 grids;
# 3. `assemble_masks` re-derived for one box in a few lines and checked against the library;
# 4. the paper's Fig. 4 on the synthetic benchmark: an instance with a same-class neighbour, the trained
#    2×2 model's four quadrant maps, their pruned sum and the final mask — beside the single map of a
#    1×1 (YOLACT-like) model.

# %% [markdown]
# From the paper, §3.1 *Spatial Coefficients Generation*:
#
# > [...] the recently introduced YOLACT [2] utilizes a single set of coefficients to predict the whole
# > mask of an object, leading to the loss of spatial information within a bounding-box. To address this
# > issue, we propose a simple but effective approach that splits mask prediction into multiple sub-mask
# > predictions. We divide the spatial regions within a predicted bounding-box into $k \times k$
# > sub-regions. Instead of predicting a *single set of coefficients* for the whole bounding-box $j$, we
# > predict a *separate set of spatial coefficients* $c_{ij} \in R^m$ for each of its sub-region $i$.
# > Fig. 3(b) shows an example where a bounding-box is divided into $2 \times 2$ sub-regions (four
# > quadrants, *i.e.*, top-left, top-right, bottom-left and bottom-right). In practice, we observe that
# > $k = 2$ provides an optimal tradeoff between speed and accuracy.
#
# §3.3 *Spatial Mask Prediction Module*:
#
# > Let $B \in R^{h \times w \times m}$ represent $m$ predicted basis masks for the whole image, $p$ be the
# > number of predicted boxes, and $C_i$ be a $m \times p$ matrix that indicates the spatial coefficients
# > at the $i^{th}$ sub-region (quadrant for $k = 2$) of all $p$ predicted bounding-boxes. [...] We perform
# > a simple matrix multiplication between $C_i$ and $B$ to obtain $p$ maps corresponding to the $i^{th}$
# > quadrant of all bounding-boxes as follows.
# >
# > $$M_i = \sigma(B \times C_i) \quad \forall i \in [1, 4], \qquad (2)$$
# >
# > where $\sigma$ is sigmoid normalization and $M_i \in R^{h \times w \times p}$ are the maps generated for
# > the $i^{th}$ quadrant of all $p$ bounding-boxes. [...] Let $M_{ij} \in R^{h \times w}$ be the map
# > generated for the $i^{th}$ quadrant of a bounding-box $j$. Then, the response values of $M_{ij}$
# > outside the $i^{th}$ quadrant of the box $j$ are set as zero for generating a pruned map
# > $\hat{M}_{ij}$. To obtain the instance map $\hat{M}_j$ of a bounding-box $j$, we perform a simple
# > addition of its pruned maps obtained from all four quadrants, *i.e.*,
# > $\hat{M}_j = \sum_{i=1}^4 \hat{M}_{ij}$. Finally, the instance map at the predicted bounding-box region
# > is binarized with a fixed threshold to obtain final mask $\tilde{M}_j$ of instance $j$.

# %%
import dataclasses
import json

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display
from matplotlib.colors import ListedColormap
from matplotlib.patches import Rectangle
from matplotlib_inline.backend_inline import set_matplotlib_formats
from torchvision.ops import box_iou

import sipmask_ref
from sipmask_ref import preset, tutorial, viz
from sipmask_ref.data import synthetic
from sipmask_ref.spatial_mask_prediction import sub_region_index

plt.rcParams["figure.dpi"] = 80
set_matplotlib_formats("jpeg")  # textured images compress poorly as PNG
torch.manual_seed(0)
model, config = tutorial.trained_model()
val = tutorial.synthetic_dataset("val")

# %% [markdown]
# ## 1. Spatial coefficients: `[N, Q, M]`
#
# The head's `SpatialCoefficients` conv predicts $Q \cdot M$ channels at every location of every level:
# channels `[q*M:(q+1)*M]` belong to sub-region $q$, sub-regions row-major (for 2×2: 0 top-left,
# 1 top-right, 2 bottom-left, 3 bottom-right). After NMS each detection $j$ keeps the coefficients of the
# location that predicted it: `coefficients [N, Q, M]`. In the paper's notation $C_i$ is
# `coefficients[:, i, :].T` ($m \times p$) and $B$ is `basis_masks` reshaped to $(h w) \times m$, so Eq. (2)
# is one matrix product per sub-region:

# %%
# NBVAL_CHECK_OUTPUT
image, target = val[5]
inside = model.forward_intermediates([image])
detections = inside["detections"][0]
basis = inside["basis_masks"][0]  # [M, H, W]
num_basis, height, width = basis.shape
coefficients = detections["coefficients"]  # [N, Q, M]
print("coefficients per level [B, Q, M, H_l, W_l]:", [tuple(c.shape) for c in inside["coefficients"]])
print("kept detections: coefficients [N, Q, M] with Q, M =", tuple(coefficients.shape[1:]),
      "| basis masks [M, H, W] =", tuple(basis.shape))

B = basis.reshape(num_basis, height * width).T  # [H*W, M]   (B in R^{hw x m})
for i in range(config.num_sub_regions):
    C_i = coefficients[:, i, :].T  # [M, N]     (C_i in R^{m x p})
    M_i = torch.sigmoid(B @ C_i)  # [H*W, N]   Eq. (2)
    torch.testing.assert_close(M_i.T.reshape(-1, height, width), detections["sub_region_maps"][:, i])
print("Eq. (2), M_i = sigmoid(B x C_i), equals forward_intermediates' sub_region_maps for i = 1..4")

# %% [markdown]
# ## 2. Which pixel belongs to which sub-region
#
# Boxes live in basis-map pixels (input pixels / 2) and may have fractional corners. The library's rule
# (`spatial_mask_prediction.sub_region_index`; the authors' `CropSplit` kernel moves the split by a few
# hundredths of a pixel):
#
# * integer pixel $(x, y)$ is **inside** box $j$ when $x_1 \le x < x_2$ and $y_1 \le y < y_2$;
# * its sub-region column is $\min(k_w - 1, \lfloor (x - x_1)\, k_w / (x_2 - x_1) \rfloor)$, its row
#   likewise with $k_h$; the index is $row \cdot k_w + column$.
#
# So the split lines run at equal fractions of the box, and a pixel goes to the sub-region its integer
# coordinate falls in. On a toy 14 × 12 map with the box $(1.6, 1.3, 12.4, 10.2)$:

# %%
# NBVAL_CHECK_OUTPUT
toy_box = torch.tensor([[1.6, 1.3, 12.4, 10.2]])
inside_box, index = sub_region_index(toy_box, 12, 14, (2, 2))
for y in range(12):
    print(" ".join(str(int(index[0, y, x])) if inside_box[0, y, x] else "." for x in range(14)))

# %%
fig, axes = plt.subplots(1, 3, figsize=(11, 3.6))
palette = ListedColormap(plt.cm.tab10.colors[:9])
x1, y1, x2, y2 = toy_box[0].tolist()
for ax, grid in zip(axes, ((1, 1), (2, 2), (3, 3))):
    inside_box, index = sub_region_index(toy_box, 12, 14, grid)
    shown = np.ma.masked_where(~inside_box[0].numpy(), index[0].numpy())
    ax.imshow(np.zeros((12, 14)), cmap="Greys", vmin=0, vmax=1)
    ax.imshow(shown, cmap=palette, vmin=0, vmax=8.99, alpha=0.8)
    for y in range(12):
        for x in range(14):
            if inside_box[0, y, x]:
                ax.text(x, y, int(index[0, y, x]), ha="center", va="center", fontsize=7)
    ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec="black", lw=2))
    for k in range(1, grid[1]):
        ax.axvline(x1 + k * (x2 - x1) / grid[1], ymin=0, ymax=1, color="black", ls="--", lw=1)
    for k in range(1, grid[0]):
        ax.axhline(y1 + k * (y2 - y1) / grid[0], color="black", ls="--", lw=1)
    ax.set_xticks(range(0, 14, 2))
    ax.set_yticks(range(0, 12, 2))
    ax.set_title(f"{grid[0]}x{grid[1]}: Q = {grid[0] * grid[1]} sub-regions", fontsize=9)
fig.suptitle("pixel (x, y) drawn at its integer coordinate; box and split lines at their true "
             "(fractional) positions", fontsize=9)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 3. `assemble_masks` for one box, re-derived
#
# Eq. (2) for box $j$, pruned and summed, literally: for every sub-region $i$ compute
# $M_{ij} = \sigma(B c_{ij})$, zero it outside sub-region $i$ of the box, add. We take the best detection of
# validation image 5 and compare with `sipmask_ref.assemble_masks`.

# %%
# NBVAL_CHECK_OUTPUT
j = 0
k_h, k_w = config.sub_regions
bx1, by1, bx2, by2 = detections["boxes"][j].tolist()
xs = torch.arange(width, dtype=torch.float32)
ys = torch.arange(height, dtype=torch.float32)
column = ((xs - bx1) * k_w / (bx2 - bx1)).floor().clamp(0, k_w - 1)  # [W]
row = ((ys - by1) * k_h / (by2 - by1)).floor().clamp(0, k_h - 1)  # [H]
in_box = ((ys >= by1) & (ys < by2))[:, None] & ((xs >= bx1) & (xs < bx2))[None, :]  # [H, W]
own = row[:, None] * k_w + column[None, :]  # [H, W] sub-region of each pixel

mine = torch.zeros(height, width)
for i in range(k_h * k_w):
    m_ij = torch.sigmoid(torch.einsum("m,mhw->hw", coefficients[j, i], basis))  # M_ij
    mine += torch.where(in_box & (own == i), m_ij, torch.zeros_like(m_ij))  # pruned, added

library = sipmask_ref.assemble_masks(basis, coefficients[j:j + 1], detections["boxes"][j:j + 1],
                                     config.sub_regions)[0]
torch.testing.assert_close(mine, library)
torch.testing.assert_close(library, detections["masks"][j])
print("inline Eq. (2) + pruning + sum == sipmask_ref.assemble_masks == the model's mask; "
      "zero outside the box:", bool((library[~in_box] == 0).all()))

# %% [markdown]
# Note that inside the box each pixel's value is the sigmoid of **its own** sub-region's map: pruning
# and adding non-overlapping pieces is the same as picking. That is how the library computes it, on the
# logits, so that the mask loss can use the numerically stable BCE-with-logits (`assemble_mask_logits`).
#
# ## 4. The paper's Fig. 4 on the synthetic benchmark
#
# Now the comparison the method is about. Besides the trained 2×2 model we need a model with a single set
# of coefficients per box: the same preset with `sub_regions=(1, 1)` (cached as
# `outputs/tutorial/cpu_tiny_1x1/`; the first run trains it for the preset's full schedule, a few CPU
# minutes — in `SIPMASK_FAST` mode only a handful of iterations, so its maps are meaningless there).

# %%
single_config = dataclasses.replace(preset("cpu_tiny"), sub_regions=(1, 1))
single_model, single_config = tutorial.trained_model(single_config, name="cpu_tiny_1x1",
                                                     iters=20 if tutorial.fast_mode() else None)
print("sub_regions:", config.sub_regions, "vs", single_config.sub_regions)


# %% [markdown]
# First a measurement. For every ground-truth instance of the first 60 validation images we take each
# model's detection of it (the best-scored detection with box IoU ≥ 0.7, any class — the masks are what we
# compare, and the small model still confuses some shapes; else the detection with the highest box IoU)
# and the IoU of its mask with the ground-truth mask, separately for *adjacent* instances (a same-class
# neighbour covers ≥ 10 % of the box, notebook 00) and the others.

# %%
def best_detection(found: dict, gt_box: torch.Tensor) -> tuple[int, float]:
    # the best-scored detection with box IoU >= 0.7, else the one with the highest IoU
    ious = box_iou(found["boxes"], gt_box[None])[:, 0]  # [N]
    good = ious >= 0.7
    j = int(torch.where(good, found["scores"], -1.0).argmax()) if good.any() else int(ious.argmax())
    return j, float(ious[j])

def mask_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum() / (a | b).sum().clamp(min=1))

rows = []  # one per ground-truth instance
for first in range(0, 60, 10):  # batches of 10 images; boxes in original pixels (= input pixels here)
    batch = [val[index] for index in range(first, first + 10)]
    with torch.no_grad():
        outputs = {"2x2": model([im for im, _ in batch]), "1x1": single_model([im for im, _ in batch])}
    for k, (im, tgt) in enumerate(batch):
        masks_np, labels_np = tgt["masks"].bool().numpy(), tgt["labels"].numpy()
        adjacent = synthetic.adjacency_flags(masks_np, labels_np)
        for g in range(len(labels_np)):
            row = {"index": first + k, "g": g, "adjacent": bool(adjacent[g])}
            for name, out in outputs.items():
                j, row[f"box_iou_{name}"] = best_detection(out[k], tgt["boxes"][g])
                row[f"mask_iou_{name}"] = mask_iou(out[k]["masks"][j, 0] > config.mask_threshold,
                                                   tgt["masks"][g].bool())
            x0, y0, x1_, y1_ = (int(round(v)) for v in tgt["boxes"][g].tolist())
            same = (labels_np == labels_np[g]) & (np.arange(len(labels_np)) != g)
            row["share"] = float(masks_np[same][:, y0:y1_, x0:x1_].any(0).mean()) if same.any() else 0.0
            row["side"] = max(x1_ - x0, y1_ - y0)
            row["inside_image"] = x0 > 0 and y0 > 0 and x1_ < im.shape[2] and y1_ < im.shape[1]
            rows.append(row)

print("mean mask IoU (first 60 val images)   2x2 SipMask   1x1 (YOLACT-like)")
for label, selected in (("adjacent instances", [r for r in rows if r["adjacent"]]),
                        ("other instances", [r for r in rows if not r["adjacent"]])):
    print(f"{label:20s} ({len(selected):3d})          {np.mean([r['mask_iou_2x2'] for r in selected]):.3f}"
          f"         {np.mean([r['mask_iou_1x1'] for r in selected]):.3f}")

# %% [markdown]
# (Sixty images of one trained model each: a hint, not an ablation. Notebook 09 trains several seeds per
# variant and reports COCO mask AP.)
#
# Now one instance, drawn like the paper's Fig. 4. We choose it from the ground truth, not from which model
# does better: among adjacent instances that both models detect with box IoU ≥ 0.7, whose box is at least
# 32 px and lies fully inside the image (so that the figure shows the whole box), the one with the
# **largest share of same-class neighbour pixels inside its box**.

# %%
eligible = [r for r in rows if r["adjacent"] and r["side"] >= 32 and r["inside_image"]
            and min(r["box_iou_2x2"], r["box_iou_1x1"]) >= 0.7]
# in fast mode the young models may detect nothing well: then the best-detected adjacent instance
chosen = (max(eligible, key=lambda r: r["share"]) if eligible else
          max((r for r in rows if r["adjacent"]), key=lambda r: min(r["box_iou_2x2"], r["box_iou_1x1"])))
print(f"{len(eligible)} eligible instances; chosen: val {chosen['index']}, ground truth {chosen['g']}, "
      f"same-class neighbour share of its box {chosen['share']:.2f}")

# %%
im, tgt = val[chosen["index"]]
gt_box, gt_label = tgt["boxes"][chosen["g"]], int(tgt["labels"][chosen["g"]])
detection2 = model.forward_intermediates([im])["detections"][0]  # boxes in basis pixels (input / 2)
detection1 = single_model.forward_intermediates([im])["detections"][0]
j2, _ = best_detection({"boxes": detection2["boxes"] * 2, "scores": detection2["scores"]}, gt_box)
j1, _ = best_detection({"boxes": detection1["boxes"] * 2, "scores": detection1["scores"]}, gt_box)
single_map = detection1["sub_region_maps"][j1, 0]  # [H, W] sigma(B x c_j) of the 1x1 model, unpruned
figure = viz.plot_spatial_mask_prediction(
    im, detection2, j2, config.sub_regions, threshold=config.mask_threshold,
    single_map=single_map,
    title=f"val {chosen['index']}: a {val.class_names[gt_label - 1]} with a "
          f"same-class neighbour — 2x2 SipMask (left) vs a single set of coefficients (right)")
display(figure)

# %% [markdown]
# Read the figure like the paper's Fig. 4: each quadrant map $M_{ij}$ (yellow cell = the sub-region it is
# kept in) may respond to the neighbour too, but it only counts inside its own quadrant; the 1×1 model has
# one map for the whole box, so wherever that map responds to the neighbour inside the box, the neighbour
# leaks into the mask. The final masks at full resolution, next to the ground truth:

# %%
with torch.no_grad():
    (out2,) = model([im])
    (out1,) = single_model([im])
x1, y1, x2, y2 = gt_box.tolist()
margin = 0.5 * max(x2 - x1, y2 - y1)
window = (max(0, int(x1 - margin)), max(0, int(y1 - margin)),
          min(im.shape[2], int(x2 + margin) + 1), min(im.shape[1], int(y2 + margin) + 1))
gt_mask = tgt["masks"][chosen["g"]].bool()
panels = [("input", None), ("ground truth", gt_mask)]
for name, out in (("2x2 SipMask", out2), ("1x1 (YOLACT-like)", out1)):
    j, _ = best_detection(out, gt_box)
    predicted = out["masks"][j, 0] > config.mask_threshold
    panels.append((f"{name}: mask IoU {mask_iou(predicted, gt_mask):.2f}", predicted))
fig, axes = plt.subplots(1, 4, figsize=(10, 2.9))
wx0, wy0, wx1, wy1 = window
for ax, (title, mask) in zip(axes, panels):
    shown = viz.to_uint8_image(im) if mask is None else viz.overlay_masks(im, mask[None], colors=[[1, 0, 0]],
                                                                          alpha=0.6)
    ax.imshow(shown[wy0:wy1, wx0:wx1], extent=(wx0 - 0.5, wx1 - 0.5, wy1 - 0.5, wy0 - 0.5))
    ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, ec="white", lw=1))
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
fig.tight_layout()
plt.show()

# %% [markdown]
# On COCO the paper measures the same switch as 31.2 (1×1) → 32.9 (2×2) mask AP (Tab. 4), and Fig. 6 shows
# adjacent instances better delineated; the synthetic benchmark's version of that ablation, over several
# seeds, is notebook 09.
#
# ## Summary
#
# * The SP module predicts, per location, $Q = k_h k_w$ sets of $M$ coefficients (`[N, Q, M]` after
#   detection), one per sub-region of the box predicted there.
# * Eq. (2), $M_i = \sigma(B \times C_i)$, is one matrix product per sub-region for all boxes at once.
# * Each $M_{ij}$ is kept only inside sub-region $i$ of box $j$ (integer pixel $(x, y)$ with
#   $x_1 \le x < x_2$, column $\lfloor (x - x_1) k_w / (x_2 - x_1) \rfloor$, row likewise); the pruned maps
#   are added and the result is thresholded at 0.4.
# * With one set of coefficients (1×1, YOLACT), a neighbour inside the box can only be suppressed if the
#   basis masks themselves separate it; with 2×2, each quadrant can use different coefficients.
#
# ## Exercises
#
# 1. Print the 3×3 index grid of the toy box and check by hand one pixel on each split line. What changes
#    if the box is $(1.6, 1.3, 12.5, 10.2)$?
# 2. For the chosen instance, replace the 2×2 model's four coefficient sets by their mean (one set for the
#    whole box) and assemble the mask again with `sipmask_ref.assemble_masks(..., sub_regions=(1, 1))`.
#    How much of the leak comes back?
# 3. Use `rows` to count the adjacent instances for which the 2×2 model's mask IoU beats the 1×1
#    model's, and the other way round. Does the 2×2 advantage grow with the neighbour share
#    `row["share"]`?
