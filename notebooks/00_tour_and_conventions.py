# %% [markdown]
# # 00 · A tour of sipmask_ref and its conventions
#
# SipMask (Cao et al., ECCV 2020) is a single-stage instance segmenter built on the FCOS detector. Its one
# big idea: instead of **one** set of mask coefficients per detected box (YOLACT), predict **a separate set
# for each sub-region** of the box, so that a same-class neighbour that pokes into the box does not leak
# into the mask.
#
# In this notebook you will learn
#
# 1. how the package is laid out (one paper section, one file) and the **shape letters** every shape
#    comment uses;
# 2. the **synthetic adjacent-instance benchmark** the notebooks train on: what it contains, how often
#    instances touch a same-class neighbour, what the images look like;
# 3. the **model contract**: what goes into `SipMask` and what comes out, in train and eval mode;
# 4. what a small trained model predicts on a few validation images.
#
# The notebooks that follow open up the model one paper section at a time:
# 01 FCOS points and targets · 02 head, losses, centerness · 03 contextual basis masks (§3.2) ·
# 04 spatial coefficients and spatial mask prediction (§3.1, §3.3).

# %% [markdown]
# From the paper (§3, *Overall Architecture*):
#
# > Our architecture is built on FCOS detection method [40], due to its flexible anchor-free design. In
# > the proposed architecture, we replace the standard classification and regression in FCOS with our
# > mask-specialized regression and classification branches. [...] Our mask-specialized classification
# > branch predicts the classification scores of detected bounding-boxes and generates instance-specific
# > spatial coefficients for instance mask prediction. [...] we divide the bounding-box into $k \times k$
# > sub-regions and compute a separate set of spatial coefficients for each sub-region. Our
# > mask-specialized regression branch generates both bounding-box offsets for each instance and a set of
# > category-independent maps, termed as basis masks, for an image.

# %%
import json

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib_inline.backend_inline import set_matplotlib_formats

import sipmask_ref
from sipmask_ref import SipMask, preset, tutorial, viz
from sipmask_ref.data import synthetic

plt.rcParams["figure.dpi"] = 80
# The synthetic images' textures compress poorly as PNG; JPEG figures keep the notebook small.
set_matplotlib_formats("jpeg")
torch.manual_seed(0)
np.random.seed(0)
print("fast mode (SIPMASK_FAST):", tutorial.fast_mode())

# %% [markdown]
# ## 1. One paper section, one file — and the shape letters
#
# The package docstring is the map. Each module implements one section of the paper; a student who
# follows a call from a notebook lands in a short file named after the section.

# %%
# NBVAL_CHECK_OUTPUT
doc = sipmask_ref.__doc__
print(doc[doc.index("One paper section"):doc.index("Boxes are")].rstrip())

# %% [markdown]
# Every shape comment in the library uses only these letters, e.g. `coefficients  # [N, Q, M]`. The paper's
# own symbols map onto them:
#
# | letter | meaning | paper |
# |---|---|---|
# | `B` | images in a batch | |
# | `L` | pyramid levels P3–P7 | "prediction layers of FPN" |
# | `P` | points (locations) over all levels of one image | FCOS locations |
# | `G` | ground-truth instances | |
# | `N` | detections / positive samples | $p$ predicted boxes in Eq. (2) |
# | `M` | basis masks | $m$ |
# | `Q` | sub-regions, $k_h \times k_w$ | $k \times k$ (4 quadrants for $k=2$) |
# | `C` | foreground classes | |
# | `H × W` | a map's height × width | $h \times w$ |
# | `D` | channels of a feature map | |
#
# So Eq. (2)'s $B \in R^{h\times w\times m}$ is `basis_masks [M, H, W]` and $C_i \in R^{m \times p}$ is
# `coefficients[:, i, :]` of `coefficients [N, Q, M]`. Boxes are always `(x1, y1, x2, y2)` in pixels of
# the map they refer to, labels are `1..C` and `0` is background.
#
# The small CPU model all notebooks use is the `cpu_tiny` preset (a config is a plain dataclass; a preset
# is a function returning one):

# %%
# NBVAL_CHECK_OUTPUT
config = preset("cpu_tiny")
for field in ("num_classes", "backbone", "fpn_channels", "stacked_convs", "num_basis", "sub_regions",
              "basis_source", "alignment_weight", "feature_alignment", "strides", "regress_ranges",
              "input_size", "nms", "mask_threshold"):
    print(f"{field:18s} {getattr(config, field)}")

# %% [markdown]
# ## 2. The synthetic adjacent-instance benchmark
#
# COCO does not fit on a laptop CPU, so the notebooks use a small generated benchmark that isolates the
# situation SipMask is about: **many instances of the same class touching or overlapping**. Six shape
# classes (disc, square, triangle, ellipse, ring, star) are drawn with random colour and texture (so the
# class can only be learned from the shape) on 128 × 128 images with background clutter; sizes are
# log-uniform over 24–80 px, so the FPN levels of stride 8 to 32 get objects.
#
# `tutorial.synthetic_data()` generates it once under `data/` (a few seconds) and returns the paths; the
# files are COCO JSON, read by the same `CocoInstances` dataset as real COCO.

# %%
paths = tutorial.synthetic_data()
coco = {split: json.loads(paths[f"{split}_ann"].read_text()) for split in ("train", "val")}
stats = {split: synthetic.adjacency_stats(coco[split]) for split in ("train", "val")}

# %%
# NBVAL_CHECK_OUTPUT
for split in ("train", "val"):
    print(synthetic.format_stats(stats[split], title=f"{split}:"))

# %% [markdown]
# The headline number is the **adjacency fraction**: an instance is *adjacent* when at least 10 % of the
# pixels of its bounding box belong to other instances **of the same class** — exactly the pixels a single
# set of coefficients per box would leak into its mask. Let us re-derive that test for one instance in a
# few lines and check it against `synthetic.adjacency_flags`.

# %%
# NBVAL_CHECK_OUTPUT
val = tutorial.synthetic_dataset("val")
image, target = val[9]
masks = target["masks"].bool().numpy()  # [G, H, W]
labels = target["labels"].numpy()  # [G]

def adjacent_share(g: int) -> float:
    # share of instance g's (visible-mask) box covered by OTHER instances of the SAME class
    rows, cols = np.nonzero(masks[g])
    y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    same = (labels == labels[g]) & (np.arange(len(labels)) != g)
    neighbours = masks[same][:, y0:y1, x0:x1].any(axis=0)
    return float(neighbours.sum()) / ((y1 - y0) * (x1 - x0))

shares = np.array([adjacent_share(g) for g in range(len(masks))])
mine = shares >= synthetic.ADJACENCY_THRESHOLD
library = synthetic.adjacency_flags(masks, labels)
assert (mine == library).all()
for g in range(len(masks)):
    print(f"instance {g}: {val.class_names[labels[g] - 1]:8s} same-class share of box {shares[g]:.2f}"
          f" -> adjacent {bool(library[g])}")

# %% [markdown]
# The figure below summarises the benchmark: how many instances of each class are adjacent, how the
# object sizes spread over the FPN levels (the longest box side decides the level, see notebook 01), and
# one validation image with its adjacent instances outlined in red.

# %%
fig, axes = plt.subplots(1, 3, figsize=(12, 4), gridspec_kw={"width_ratios": [1.1, 1, 1]})
names = list(stats["train"]["per_class"])
x = np.arange(len(names))
for offset, split in ((-0.2, "train"), (0.2, "val")):
    per_class = stats[split]["per_class"]
    fraction = [per_class[n]["adjacent"] / max(per_class[n]["instances"], 1) for n in names]
    axes[0].bar(x + offset, fraction, width=0.4, label=split)
axes[0].set_xticks(x, names, rotation=30)
axes[0].set_ylabel("adjacent fraction")
axes[0].set_title("instances touching a same-class neighbour")
axes[0].legend()

buckets = list(stats["train"]["longest_side"])
counts = [stats["train"]["longest_side"][b] for b in buckets]
axes[1].bar(buckets, counts, color="tab:gray")
axes[1].set_xlabel("longest box side (px)")
axes[1].set_ylabel("train instances")
axes[1].set_title("object sizes (~ one FPN level per bucket)")

colors = np.array([[0.9, 0.1, 0.1] if a else [0.6, 0.6, 0.6] for a in library])
viz.draw_instances(axes[2], image, boxes=target["boxes"], masks=target["masks"],
                   labels=[val.class_names[l - 1] for l in labels], colors=colors,
                   title="val image 9: adjacent instances in red")
fig.tight_layout()
plt.show()

# %% [markdown]
# A few validation images with their ground truth (every instance has its own colour):

# %%
fig, axes = plt.subplots(2, 3, figsize=(8.4, 5.8))
for ax, index in zip(axes.flat, (0, 3, 5, 11, 13, 16)):
    image, target = val[index]
    viz.draw_instances(ax, image, boxes=target["boxes"], masks=target["masks"],
                       labels=target["labels"], class_names=val.class_names,
                       title=f"val {index}: {len(target['labels'])} instances")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 3. The model contract
#
# `SipMask(config)` behaves like torchvision's detection models:
#
# * input: a **list** of images, each `float32 [3, H, W]`, RGB in `[0, 1]`, at its original size (the
#   model resizes to `config.input_size`, normalises and pads to a multiple of 32 itself);
# * **train mode** also takes a list of targets (`boxes [G, 4]` xyxy pixels, `labels [G]` in 1..C,
#   `masks uint8 [G, H, W]`) and returns a dict of four scalar losses — their sum is the training loss
#   $L = L_{reg} + L_{cls} + L_{mask}$ (+ FCOS centerness);
# * **eval mode** returns, per image, `boxes [N, 4]` in original-image pixels, `labels [N]`, `scores [N]`
#   and `masks [N, 1, H, W]` — mask **probabilities**, binarised at `config.mask_threshold` (0.4, as the
#   authors).
#
# Here is that contract on an untrained model (weights from a fixed seed):

# %%
# NBVAL_CHECK_OUTPUT
torch.manual_seed(0)
model = SipMask(preset("cpu_tiny"))
image, target = val[0]

model.train()
losses = model([image], [target])
for name, value in losses.items():
    print(f"train  {name:16s} shape {tuple(value.shape)}  dtype {value.dtype}")

model.eval()
with torch.no_grad():
    (detections,) = model([image])
for name, value in detections.items():
    shape = ("N",) + tuple(value.shape[1:])
    print(f"eval   {name:16s} shape {shape}  dtype {value.dtype}")
print("mask values within [0, 1]:", bool(((detections["masks"] >= 0) & (detections["masks"] <= 1)).all()))
print("parameters:", sum(p.numel() for p in model.parameters()))

# %% [markdown]
# `model.forward_intermediates(images)` returns everything in between — FPN features, per-level head
# outputs, basis masks, spatial coefficients and per-sub-region maps — and is what notebooks 02–04 use to
# look inside.
#
# ## 4. A trained model on validation images
#
# `tutorial.trained_model()` trains the `cpu_tiny` preset on the synthetic train split once (a few CPU
# minutes; in `SIPMASK_FAST` mode only a few dozen iterations) and caches the checkpoint in
# `outputs/tutorial/`; every later call, in any notebook, loads it.

# %%
trained, trained_config = tutorial.trained_model()
fig, axes = plt.subplots(2, 4, figsize=(10, 5.4))
for column, index in enumerate((5, 9, 13, 16)):
    image, target = val[index]
    with torch.no_grad():
        (out,) = trained([image])
    keep = torch.arange(len(out["scores"])) < len(target["labels"])  # the G best-scored detections
    viz.draw_instances(axes[0, column], image, boxes=target["boxes"], masks=target["masks"],
                       labels=target["labels"], class_names=val.class_names,
                       title=f"val {index}: ground truth")
    viz.draw_instances(axes[1, column], image, boxes=out["boxes"][keep],
                       masks=out["masks"][keep], threshold=trained_config.mask_threshold,
                       labels=out["labels"][keep], scores=out["scores"][keep],
                       class_names=val.class_names,
                       title=f"the {int(keep.sum())} best detections")
fig.tight_layout()
plt.show()

# %% [markdown]
# Detections come sorted by score, and a score is the class probability times the predicted centerness,
# so even good detections of this small model score only about 0.2–0.3; rather than pick a threshold, the
# figure shows as many of the best detections as the image has ground-truth instances. In fast mode the
# model has seen only a few dozen batches and its predictions are poor; the committed notebook shows the
# fully trained `cpu_tiny` model.
#
# ## Summary
#
# * One paper section per file: `fcos.py` (§3, FCOS), `spatial_preservation.py` (§3.1),
#   `basis_masks.py` (§3.2), `spatial_mask_prediction.py` (§3.3), `losses.py` (§3.4).
# * Shapes use a fixed alphabet: `B L P G N M Q C H W D`; the paper's $m$ is `M`, its $k\times k$
#   sub-regions are `Q`, its $p$ boxes are `N`.
# * The synthetic benchmark puts a large share of instances against a same-class neighbour — the case
#   where per-sub-region coefficients should help.
# * `SipMask` follows torchvision's detection contract: list of `[3, H, W]` images in, a loss dict (train)
#   or a list of `boxes / labels / scores / masks` dicts (eval) out.
#
# ## Exercises
#
# 1. Use `synthetic.make_data(root=..., adjacency=0.0)` to generate a benchmark without deliberate
#    adjacency into a scratch folder and compare its adjacency fraction with the default one. Why is it
#    not exactly zero?
# 2. Lower `synthetic.ADJACENCY_THRESHOLD` to 0.05 in `adjacent_share` above: which classes gain the most
#    adjacent instances, and why might rings be the most adjacent class?
# 3. Call the untrained `model` in train mode with an image that has no objects (`boxes [0, 4]`,
#    `labels [0]`, `masks [0, H, W]`). Which losses are zero, and why is `loss_cls` not?
