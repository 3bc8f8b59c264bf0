# %% [markdown]
# # 10 · Explorer: sub-region maps, instance by instance
#
# An interactive look at §3.3. Pick an image, one of its instances, a model, a pruning grid and a
# threshold, and see the maps that make the instance's mask. You will:
#
# * open on one instance, chosen by a rule stated below, where the mask of a model **trained** with a
#   single set of coefficients (1×1, YOLACT-like) spills onto a same-class neighbour and the mask of the
#   model **trained** with 2×2 sub-regions does not, measured with the leak of `eval/leak.py`
#   (notebook 04);
# * compare the two models on it, and on any other instance, map by map;
# * prune the 2×2 model's maps with *other* grids, as a thought experiment (read the warning below);
# * watch the final mask change with the binarisation threshold.
#
# The widgets are a thin front end. Every callback is a plain function in `sipmask_ref/explorer.py`
# (`instance_maps`, `render`, `describe`), and the checked cell below calls them directly.
#
# The paper, §3.3:
#
# > Let $M_{ij} \in R^{h \times w}$ be the map generated for the $i^{th}$ quadrant of a bounding-box
# > $j$. Then, the response values of $M_{ij}$ outside the $i^{th}$ quadrant of the box $j$ are set as
# > zero for generating a pruned map $\hat{M}_{ij}$. To obtain the instance map $\hat{M}_j$ of a
# > bounding-box $j$, we perform a simple addition of its pruned maps obtained from all four quadrants,
# > *i.e.*, $\hat{M}_j = \sum_{i=1}^4 \hat{M}_{ij}$. Finally, the instance map at the predicted
# > bounding-box region is binarized with a fixed threshold to obtain final mask $\tilde{M}_j$ of
# > instance $j$.
#
# and Table 4 (COCO minival, ResNet-50):
#
# > | sub-regions | 1×1 | 1×2 | 2×1 | 2×2 | 3×3 | 4×4 |
# > |---|---|---|---|---|---|---|
# > | AP | 31.2 | 32.2 | 32.1 | 32.9 | 33.1 | 33.1 |
#
# **What is real and what is a thought experiment.**
#
# * *Real*: the `2x2` model (the tutorial's `cpu_tiny`) and the `1x1` model
#   (`cpu_tiny` with `sub_regions=(1, 1)`) are two separately trained checkpoints. With "pruning: model's
#   own" each is shown exactly as it predicts.
# * *Thought experiment*: pruning the 2×2 model with another grid (1×1, 1×2, 3×3, ...). No model was
#   trained that way. `explorer.regrid_coefficients` gives each cell of the new grid the area-weighted
#   mean of the 2×2 coefficient sets it overlaps. For 1×1 that is the mean of the four sets, and for 3×3
#   the centre cell also gets the mean of all four. It shows what the split does *inside one model*. It is
#   not Table 4, which needs a model trained per grid.

# %%
# %matplotlib inline
import dataclasses
import io

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Image, display

from sipmask_ref import explorer as ex
from sipmask_ref import leak_figure, leak_table, tutorial
from sipmask_ref.config import preset
from sipmask_ref.eval.leak import mask_leak

plt.rcParams["figure.dpi"] = 100
torch.manual_seed(0)
torch.set_grad_enabled(False)
model_2x2, config = tutorial.trained_model()
# the same checkpoint as notebook 04 (outputs/tutorial/cpu_tiny_1x1/); fast mode trains only 20 iterations
model_1x1, _ = tutorial.trained_model(
    dataclasses.replace(preset("cpu_tiny"), sub_regions=(1, 1)),
    name="cpu_tiny_1x1",
    iters=20 if tutorial.fast_mode() else None,
)
val_set = tutorial.synthetic_dataset("val")
explorer = ex.Explorer({"2x2": model_2x2, "1x1": model_1x1}, val_set)
print({name: m.config.sub_regions for name, m in explorer.models.items()})

# %% [markdown]
# ## The callbacks, called directly
#
# `instance_maps(model, image, index, threshold, grid)` returns the maps of detection `index`: the
# unpruned $\sigma(B \cdot c_{ij})$ of every sub-region, their pruned sum $\hat{M}_j$ and the mask. With
# the model's own grid, the pruned sum is exactly what the model itself assembles. We also re-derive one
# piece inline: regridding 2×2 → 1×1 is the mean of the four coefficient sets.

# %%
# NBVAL_CHECK_OUTPUT
image, target = val_set[0]
inter = model_2x2.forward_intermediates([image])
maps = ex.instance_maps(model_2x2, image, 0, threshold=0.4, intermediates=inter)
print(
    "2x2, own grid: sub-region maps",
    tuple(maps.sub_region_maps.shape),
    "instance map",
    tuple(maps.instance_map.shape),
    "real:",
    maps.real,
)
torch.testing.assert_close(maps.instance_map, inter["detections"][0]["masks"][0])
print("own-grid instance map == the model's assembled mask")

coefficients = inter["detections"][0]["coefficients"][:1]  # [1, 4, M]
mean_set = coefficients.mean(dim=1, keepdim=True)  # [1, 1, M]
torch.testing.assert_close(ex.regrid_coefficients(coefficients, (2, 2), (1, 1)), mean_set)
torch.testing.assert_close(ex.regrid_coefficients(coefficients, (2, 2), (2, 2)), coefficients)
print("regrid 2x2 -> 1x1 == mean of the four sets; 2x2 -> 2x2 == unchanged")
for grid in ((1, 1), (3, 3)):
    thought = ex.instance_maps(model_2x2, image, 0, threshold=0.4, grid=grid, intermediates=inter)
    shape = tuple(thought.sub_region_maps.shape)
    print(f"2x2 pruned {ex.grid_name(grid)}: sub-region maps {shape}, real: {thought.real}")

single = model_1x1.forward_intermediates([image])
print("1x1 model: coefficients (Q, M) per location", tuple(single["coefficients"][0].shape[1:3]))

state = ex.ExplorerState(image_index=0, instance=0, model="2x2")
figure = ex.render(state, explorer)
print("render returns", type(figure).__name__)
line = ex.describe(state, explorer)
assert line.startswith("image 0, instance 0 (") and "model trained 2x2, pruned 2x2 (real)" in line, line
print("describe returns one line: 'image 0, instance 0 (...); model trained 2x2, pruned 2x2 (real): ...'")

# %% [markdown]
# ## The opening example, chosen by a stated rule
#
# The leak of `eval/leak.py` (notebook 04, section 4a): for a ground-truth instance $g$ with same-class
# neighbours $U$ (an *adjacent* instance) and the mask $m$ of the detection matched to it (same class,
# box IoU ≥ 0.5),
#
# $$\text{leak} = \frac{|m \cap (U \setminus g)|}{|m|}, \qquad \text{miss} = \frac{|g \setminus m|}{|g|}.$$
#
# `leak_table.measure_leak` measures both models over the validation split, one image at a time as the
# explorer runs them. The rule for the opening example: **among the adjacent instances that both models
# match and whose masks cover at least half of the instance in both models (miss < 50 % for each), the
# one where the leak drops most from the 1×1 model to the 2×2 model** (ties: the earlier image).
#
# This is a best case, on purpose: the explorer is for seeing *how* the split cuts a neighbour away, and
# that is easiest where it does so most clearly. It is not a typical instance. Notebook 04 chose its
# Fig. 4 instance without looking at the 2×2 model (the highest 1×1 leak), exactly to avoid this
# selection. So the cell also prints how many instances go each way, and notebook 04's instance, which
# you can open in the explorer at the end.

# %%
# fast mode (make test): 24 images, 20-iteration models: enough to run every line, the numbers mean nothing
leak_set = torch.utils.data.Subset(val_set, range(24)) if tutorial.fast_mode() else val_set
measured = {
    name: leak_table.measure_leak(m, leak_set, batch_size=1, progress=False)
    for name, m in explorer.models.items()
}
index_of = {info["id"]: k for k, info in enumerate(val_set.images)}  # COCO image id -> dataset index
records = {  # (dataset index, instance) -> the InstanceLeak of eval/leak.py, as a dict
    name: {(index_of[r["image_id"]], r["gt_index"]): r for r in found["instances"]}
    for name, found in measured.items()
}
both = sorted(records["1x1"].keys() & records["2x2"].keys())
drop = {key: records["1x1"][key]["leak"] - records["2x2"][key]["leak"] for key in both}
eligible = [key for key in both if max(records["1x1"][key]["miss"], records["2x2"][key]["miss"]) < 0.5]
print(
    f"{len(leak_set)} val images: {len(both)} adjacent instances matched by both models, "
    f"{len(eligible)} of them with miss < 50 % in both"
)
if both:
    print(
        f"the 2x2 mask leaks less than the 1x1 mask on {sum(d > 0 for d in drop.values())} of them, "
        f"more on {sum(d < 0 for d in drop.values())}, as much on {sum(d == 0 for d in drop.values())}; "
        f"median drop {100 * np.median(list(drop.values())):.1f} points"
    )
    key_04 = max(
        (key for key in both if records["1x1"][key]["miss"] < 0.5),
        key=lambda k: (records["1x1"][k]["leak"], -k[0], -k[1]),
        default=None,
    )
    if key_04 is not None:
        one, two = records["1x1"][key_04], records["2x2"][key_04]
        print(
            f"notebook 04's rule (highest 1x1 leak, 1x1 miss < 50 %) picks val image {key_04[0]}, instance "
            f"{key_04[1]}: leak {100 * one['leak']:.1f} % (1x1) vs {100 * two['leak']:.1f} % (2x2)"
        )
if eligible:
    pick = max(eligible, key=lambda k: (drop[k], -k[0], -k[1]))
    print("\nchosen by the rule: the largest leak drop from 1x1 to 2x2")
else:  # only fast mode's young models match too little: an instance both models detect, to run every line
    pick = (ex.first_matched_instances(explorer, ["2x2", "1x1"], limit=1, images=range(8)) or [(0, 0)])[0]
    print("\nno instance fits the rule: the first instance both models detect instead")
image_index, g = pick
im, tgt = val_set[image_index]
print(f"val image {image_index}, instance {g} (a {val_set.class_names[int(tgt['labels'][g]) - 1]})")
facts = {name: explorer.maps(ex.ExplorerState(image_index, g, name))[1] for name in ("1x1", "2x2")}
for name in ("1x1", "2x2"):
    r = records[name].get(pick, {"detection": None, "leak": float("nan"), "miss": float("nan")})
    print(
        f"  {name}: detection {r['detection']}, leak {100 * r['leak']:4.1f} %, "
        f"miss {100 * r['miss']:4.1f} %, mask IoU with the ground truth {facts[name]['gt_mask_iou']:.2f}"
    )

# %% [markdown]
# The same numbers re-derived inline from the masks the explorer draws: its detection of the instance
# (`Explorer.maps`, the best-scored detection of the right class with box IoU ≥ 0.5) is the one the leak
# measure matched, and its mask, thresholded at 0.4, gives the printed leak, miss and IoU.

# %%
same = (tgt["labels"] == tgt["labels"][g]).clone()
same[g] = False  # the other instances of g's class: their union is U
g_mask = tgt["masks"][g].bool().numpy()  # [H, W]
U = tgt["masks"][same].bool().numpy().any(axis=0)  # [H, W]
masks = {}
for name in ("1x1", "2x2"):
    j = facts[name]["detection"]
    result = explorer.intermediates(name, image_index)["results"][0]  # what model([im]) returns
    masks[name] = (result["masks"][j, 0] > explorer.models[name].config.mask_threshold).numpy()  # [H, W]
    m = masks[name]
    leak_inline = (m & U & ~g_mask).sum() / max(m.sum(), 1)  # |m ∩ (U \ g)| / |m|
    miss_inline = (g_mask & ~m).sum() / max(g_mask.sum(), 1)  # |g \ m| / |g|
    iou_inline = (m & g_mask).sum() / max((m | g_mask).sum(), 1)
    assert np.allclose(mask_leak(m, g_mask, U), (leak_inline, miss_inline))
    assert np.isclose(iou_inline, facts[name]["gt_mask_iou"])
    r = records[name].get(pick)
    same_detection = r is not None and r["detection"] == j
    assert same_detection or tutorial.fast_mode(), f"{name}: the explorer and the leak measure differ"
    if same_detection:  # always in full mode; fast mode's young models may match another detection
        assert np.isclose(leak_inline, r["leak"]) and np.isclose(miss_inline, r["miss"])
    print(f"{name}: leak {100 * leak_inline:.1f} %, miss {100 * miss_inline:.1f} %, IoU {iou_inline:.2f}")

# %% [markdown]
# Notebook 04's figure for this instance: for each model its own box (yellow), its sub-region maps
# before pruning on one grey scale (green: the cell each map is kept in) and its final mask, with the
# instance outlined in red and its same-class neighbour in dashed blue.

# %%
sx, sy = explorer.intermediates("2x2", image_index)["scale_factors"][0]
assert sx == sy, "the figure assumes the model keeps the aspect ratio"
leak_views = []
for name, title in (("2x2", "2x2 SipMask"), ("1x1", "1x1 (YOLACT-like)")):
    r = records[name].get(pick, {"leak": float("nan"), "miss": float("nan")})
    detections = explorer.intermediates(name, image_index)["detections"][0]
    sub_regions = explorer.models[name].config.sub_regions
    j = facts[name]["detection"]
    leak_views.append(
        leak_figure.LeakView(title, detections, j, masks[name], r["leak"], r["miss"], sub_regions)
    )
figure = leak_figure.plot_leak_comparison(
    im,
    tgt["masks"][g],
    tgt["masks"][same],
    leak_views,
    scale=2 / sx,
    title=f"val {image_index}, instance {g}: the instance (red) and its same-class neighbour (blue)",
)
jpeg = io.BytesIO()  # textured images compress poorly as PNG (notebook 04 shows its figure as JPEG too)
figure.savefig(jpeg, format="jpeg")
display(Image(jpeg.getvalue()))

# %% [markdown]
# What to see. In the 1×1 row the one map is bright on the instance *and* on the strip of the neighbour
# (dashed blue) that lies inside the upper left of the yellow box. With one set of coefficients the box
# is the only cut, so the final mask keeps that strip; its leak (under the mask, and in the lines printed
# above) is the share of the mask that lies on the neighbour. In the 2×2 row only the top-left map counts
# in that corner (green). It is dark on most of the neighbour there and bright on the instance, so the
# final mask stays close to the red outline and its leak is much smaller. The other quadrants' maps are
# bright elsewhere in the image too, but pruning discards that.
#
# ## The example, four ways
#
# The same instance in the explorer's own figure, rendered with the 2×2 model (real), the 1×1 model
# (real), and the 2×2 model pruned with 1×1 and with 3×3 (thought experiments). In each figure: the input
# around the box, the unpruned map of every sub-region (yellow: the cell it is kept in), the pruned sum
# and the mask, with the instance outlined in red and its same-class neighbours dashed in blue. Every
# map is drawn on the same fixed scale, 0 (dark purple) to 1 (yellow), the colour bar at the right; the
# mask is yellow where it is on.

# %%
views = [
    ex.ExplorerState(image_index, g, "2x2"),
    ex.ExplorerState(image_index, g, "1x1"),
    ex.ExplorerState(image_index, g, "2x2", pruning="1x1"),
    ex.ExplorerState(image_index, g, "2x2", pruning="3x3"),
]
for view in views:
    print(ex.describe(view, explorer))
    display(ex.render(view, explorer))

# %% [markdown]
# The first two figures are the two real models of the figure above, now in the explorer's colours: the
# 1×1 mask spreads beyond the red outline into the upper left of its box, and the 2×2 mask follows the
# outline (each view's mask IoU is in the line printed above its figure). The thought experiments say
# something else. Averaging the 2×2 model's four coefficient sets (pruned 1×1) does not give the 1×1
# model's leak: it keeps only a blob in the middle of the instance, the lowest mask IoU of the four views.
# Each of the 2×2 model's four sets was only ever trained to be right inside its own cell, and their mean
# is right almost nowhere. Regridding to 3×3 gives almost the 2×2 mask (compare their printed IoUs).
#
# ## The threshold
#
# The mask is the instance map above a fixed threshold (0.4 in the authors' code). For the instance
# above: mask IoU with the ground truth as the threshold moves, for each view.

# %%
thresholds = np.round(np.arange(0.1, 0.95, 0.05), 2)
fig, ax = plt.subplots(figsize=(6, 3.2))
for view in views:
    states = [dataclasses.replace(view, threshold=float(t)) for t in thresholds]
    ious = [explorer.maps(moved)[1]["gt_mask_iou"] for moved in states]
    if ious[0] is None:
        continue
    label = f"{view.model}" + (f" pruned {view.pruning} (thought)" if view.pruning else " (real)")
    ax.plot(thresholds, ious, "o-", ms=3, label=label)
    best = int(np.argmax(ious))
    print(f"{label:<28} best mask IoU {ious[best]:.2f} at threshold {thresholds[best]:.2f}")
ax.axvline(0.4, color="grey", ls=":")
ax.set_xlabel("threshold")
ax.set_ylabel("mask IoU with the ground truth")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# No threshold rescues the 1×1 mask here: its IoU stays far below the 2×2 model's at every threshold
# from 0.1 to 0.9 (the best of each view is printed above the plot).
#
# ## The explorer
#
# Move the sliders. `instance` is a ground-truth instance of the image, and each model shows the
# detection it matched to it (its best-scored detection of the right class with box IoU ≥ 0.5, else its
# closest box). It opens on the example above, with the 2×2 model: switch `model` to `1x1` to see the
# leak. The widgets need a running kernel: in a static view of this notebook only the figures above are
# visible. Nothing in the cells above depends on the widgets.

# %%
ex.build_widgets(explorer, ex.ExplorerState(image_index, g, "2x2"))

# %% [markdown]
# ## Summary
#
# * Each sub-region's map $\sigma(B \cdot c_{ij})$ covers the whole image. Pruning keeps it only inside
#   its own cell of the box, and the cells together make the instance map.
# * A model trained with 1×1 has one map per box. A same-class neighbour that leaks into the box
#   stays in the mask. With 2×2, the cell that contains the neighbour has its own coefficients and can
#   suppress it. The opening example is the clearest case of this among the validation instances (by its
#   rule); the counts printed with it say how often the 2×2 mask leaks less, and how often more.
# * Re-pooling a 2×2 model's coefficients to another grid is a thought experiment (`regrid_coefficients`).
#   Only separately trained models (Table 4) measure what a grid is worth.
#
# ## Exercises
#
# 1. Open notebook 04's instance (printed with the opening example) in the explorer, where the 1×1 model
#    leaks most. Does the 2×2 model cut the neighbour away there too? Which sub-region's map fails?
# 2. Use `drop` to list the instances where the 2×2 mask leaks *more* than the 1×1 mask, and open a few.
#    What goes wrong at the boundary between cells?
# 3. Train a 3×3 model (`tutorial.trained_model(dataclasses.replace(preset("cpu_tiny"), sub_regions=(3, 3)),
#    name="cpu_tiny_3x3")`), add it to the explorer as `"3x3"`, and compare it with the 2×2 model pruned
#    3×3. How different are the real and the imagined 3×3?
# 4. `regrid_coefficients` averages coefficients, which averages logits. Write a variant that averages
#    the *probabilities* σ(B·c) instead, and compare the two on a few instances. Why do they differ
#    most where the sub-region maps disagree?
