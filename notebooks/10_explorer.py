# %% [markdown]
# # 10 · Explorer: sub-region maps, instance by instance
#
# An interactive look at §3.3. Pick an image, one of its instances, a model, a pruning grid and a
# threshold, and see the maps that make the instance's mask. You will:
#
# * compare a model **trained** with 2×2 sub-regions with one **trained** with a single set of
#   coefficients (1×1, YOLACT-like) on the same instance;
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

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display

from sipmask_ref import explorer as ex
from sipmask_ref import tutorial
from sipmask_ref.config import preset
from sipmask_ref.data.synthetic import adjacency_flags

plt.rcParams["figure.dpi"] = 80
torch.manual_seed(0)
torch.set_grad_enabled(False)
model_2x2, config = tutorial.trained_model()
# the same checkpoint as notebook 04 (outputs/tutorial/cpu_tiny_1x1/); fast mode trains only 20 iterations
model_1x1, _ = tutorial.trained_model(dataclasses.replace(preset("cpu_tiny"), sub_regions=(1, 1)),
                                      name="cpu_tiny_1x1", iters=20 if tutorial.fast_mode() else None)
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
print("2x2, own grid: sub-region maps", tuple(maps.sub_region_maps.shape), "instance map",
      tuple(maps.instance_map.shape), "real:", maps.real)
torch.testing.assert_close(maps.instance_map, inter["detections"][0]["masks"][0])
print("own-grid instance map == the model's assembled mask")

coefficients = inter["detections"][0]["coefficients"][:1]  # [1, 4, M]
torch.testing.assert_close(ex.regrid_coefficients(coefficients, (2, 2), (1, 1)), coefficients.mean(dim=1, keepdim=True))
torch.testing.assert_close(ex.regrid_coefficients(coefficients, (2, 2), (2, 2)), coefficients)
print("regrid 2x2 -> 1x1 == mean of the four sets; 2x2 -> 2x2 == unchanged")
for grid in ((1, 1), (3, 3)):
    thought = ex.instance_maps(model_2x2, image, 0, threshold=0.4, grid=grid, intermediates=inter)
    print(f"2x2 pruned {ex.grid_name(grid)}: sub-region maps {tuple(thought.sub_region_maps.shape)}, real: {thought.real}")

single = model_1x1.forward_intermediates([image])
print("1x1 model: coefficients (Q, M) per location", tuple(single["coefficients"][0].shape[1:3]))

state = ex.ExplorerState(image_index=0, instance=0, model="2x2")
figure = ex.render(state, explorer)
print("render returns", type(figure).__name__)

# %% [markdown]
# ## An adjacent instance, four ways
#
# We look for a validation instance with a same-class neighbour inside its box (the situation of the
# paper's Fig. 4) that both models detect. Then we render it with the 2×2 model (real), the 1×1 model
# (real), and the 2×2 model pruned with 1×1 and with 3×3 (thought experiments). In each figure: the
# input around the box, the unpruned map of every sub-region (yellow: the cell it is kept in), the
# pruned sum and the mask.

# %%
matches = ex.first_matched_instances(explorer, ["2x2", "1x1"], limit=30, images=range(8))
adjacent = [(i, g) for i, g in matches
            if adjacency_flags(val_set[i][1]["masks"].numpy().astype(bool), val_set[i][1]["labels"].tolist())[g]]
pick = (adjacent or matches or [(0, 0)])[0]
print(f"{len(matches)} instances matched by both models in the first 8 images, {len(adjacent)} of them adjacent; "
      f"showing image {pick[0]}, instance {pick[1]}")
views = [ex.ExplorerState(pick[0], pick[1], "2x2"), ex.ExplorerState(pick[0], pick[1], "1x1"),
         ex.ExplorerState(pick[0], pick[1], "2x2", pruning="1x1"), ex.ExplorerState(pick[0], pick[1], "2x2", pruning="3x3")]
for view in views:
    print(ex.describe(view, explorer))
    display(ex.render(view, explorer))

# %% [markdown]
# ## The threshold
#
# The mask is the instance map above a fixed threshold (0.4 in the authors' code). For the instance
# above: mask IoU with the ground truth as the threshold moves, for each view.

# %%
thresholds = np.round(np.arange(0.1, 0.95, 0.05), 2)
fig, ax = plt.subplots(figsize=(6, 3.2))
for view in views:
    ious = [explorer.maps(dataclasses.replace(view, threshold=float(t)))[1]["gt_mask_iou"] for t in thresholds]
    if ious[0] is None:
        continue
    label = f"{view.model}" + (f" pruned {view.pruning} (thought)" if view.pruning else " (real)")
    ax.plot(thresholds, ious, "o-", ms=3, label=label)
ax.axvline(0.4, color="grey", ls=":")
ax.set_xlabel("threshold")
ax.set_ylabel("mask IoU with the ground truth")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The explorer
#
# Move the sliders. `instance` is a ground-truth instance of the image, and each model shows the
# detection it matched to it (its best-scored detection of the right class with box IoU ≥ 0.5, else its
# closest box). The widgets need a running kernel: in a static view of this notebook only the figures
# above are visible. Nothing in the cells above depends on the widgets.

# %%
ex.build_widgets(explorer, ex.ExplorerState(pick[0], pick[1], "2x2"))

# %% [markdown]
# ## Summary
#
# * Each sub-region's map $\sigma(B \cdot c_{ij})$ covers the whole image. Pruning keeps it only inside
#   its own cell of the box, and the cells together make the instance map.
# * A model trained with 1×1 has one map per box. A same-class neighbour that leaks into the box
#   stays in the mask. With 2×2, the cell that contains the neighbour has its own coefficients and can
#   suppress it.
# * Re-pooling a 2×2 model's coefficients to another grid is a thought experiment (`regrid_coefficients`).
#   Only separately trained models (Table 4) measure what a grid is worth.
#
# ## Exercises
#
# 1. Find an instance where the 1×1 model's mask leaks into a neighbour and the 2×2 model's does not.
#    Which sub-region's map does the work? Then find a case where 2×2 is *worse*. What goes wrong at the
#    boundary between cells?
# 2. Train a 3×3 model (`tutorial.trained_model(dataclasses.replace(preset("cpu_tiny"), sub_regions=(3, 3)),
#    name="cpu_tiny_3x3")`), add it to the explorer as `"3x3"`, and compare it with the 2×2 model pruned
#    3×3. How different are the real and the imagined 3×3?
# 3. `regrid_coefficients` averages coefficients, which averages logits. Write a variant that averages
#    the *probabilities* σ(B·c) instead, and compare the two on a few instances. Why do they differ
#    most where the sub-region maps disagree?
