# %% [markdown]
# # 00 · A tour of sipmask_ref and its conventions
#
# SipMask (Cao et al., ECCV 2020) is a single-stage instance segmenter built on the FCOS detector. Its one
# big idea: instead of **one** set of mask coefficients per detected box (YOLACT), predict **a separate set
# for each sub-region** of the box, so that a same-class neighbour that pokes into the box does not leak
# into the mask.
#
# * the paper: J. Cao, R. M. Anwer, H. Cholakkal, F. S. Khan, Y. Pang, L. Shao, *SipMask: Spatial
#   Information Preservation for Fast Image and Video Instance Segmentation*, ECCV 2020,
#   [arXiv:2007.14772](https://arxiv.org/abs/2007.14772);
# * the authors' code: [github.com/JialeCao001/SipMask](https://github.com/JialeCao001/SipMask) (mmdetection
#   v1); where this package follows it, and where it departs from it, is in
#   [docs/authors_implementation.md](../docs/authors_implementation.md);
# * how this package is built (its layers, the flow of a training step):
#   [docs/ARCHITECTURE.md](../docs/ARCHITECTURE.md).
#
# In this notebook you will learn
#
# 1. how the package is laid out (one paper section, one file) and the **shape letters** every shape
#    comment uses;
# 2. the **synthetic adjacent-instance benchmark** the notebooks train on: what it contains, how often
#    instances touch a same-class neighbour, what the images look like;
# 3. the **model contract**: what goes into `SipMask` and what comes out, in train and eval mode;
# 4. the **architecture** (the paper's Fig. 3), drawn with the tensor shapes of a real forward pass;
# 5. what a small trained model predicts on a few validation images.

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
import datetime
import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Markdown, display
from matplotlib.patches import Patch
from matplotlib_inline.backend_inline import set_matplotlib_formats

import sipmask_ref
from sipmask_ref import SipMask, architecture_figure, preset, tutorial, viz
from sipmask_ref.data import synthetic

plt.rcParams["figure.dpi"] = 100
# The synthetic images' textures compress poorly as PNG; JPEG figures keep the notebook small.
set_matplotlib_formats("jpeg")
torch.manual_seed(0)
print("fast mode (SIPMASK_FAST):", tutorial.fast_mode())

# %% [markdown]
# ## The learning path
#
# The notebooks are meant to be read in order: 01–06 open up the model one paper section at a time, 07–09
# train, evaluate and ablate it, 10 is an interactive explorer and 11 extends the model to video. The table
# below lists each notebook with what it teaches and how long its last committed run took.
#
# The run times are read from the notebooks themselves: `jupyter nbconvert --execute` stores in each code
# cell's metadata when the kernel started and finished it (`iopub.status.busy`, `shell.execute_reply`). A
# notebook's wall time is the first cell's start to the last cell's reply: it leaves out the kernel's start-up
# (a few seconds) and, for this notebook, is the time of its *previous* committed run (the file is read while
# this run is in progress). The notebooks share the cached tutorial models in `outputs/tutorial/`: a run that
# found a model's checkpoint only loaded it, a run that did not trained it in one cell, which then shows a
# `train:` progress bar. The table reports those training cells separately and subtracts them, so the last
# column is the time of a run with every cached tutorial model present. The committed notebooks are full-mode
# runs (`SIPMASK_FAST` unset), the only mode whose outputs the project commits.

# %%
TEACHES = {
    "00": "package layout, shape letters, the benchmark, the model contract, Fig. 3",
    "01": "FCOS points, center sampling, regress ranges, the smallest-area tie-break",
    "02": "the shared head's outputs, the focal and IoU losses, the centerness target",
    "03": "contextual basis masks from P3-P5 (§3.2) versus P3 only",
    "04": "spatial coefficients per sub-region and crop-split mask prediction (§3.1, §3.3)",
    "05": "the mask loss weights alpha = class score x box IoU, and the ablation modes (§3.4)",
    "06": "the deformable conv whose sampling points follow the predicted box (§3.1, Eq. 1)",
    "07": "the training loop: learning-rate schedule, loss curves, exact resume from a checkpoint",
    "08": "standard and Fast NMS, COCO box/mask AP, AP on adjacent instances, error types",
    "09": "the committed ablation results: mean and std over seeds, verdicts, the Fig. 6 analogue",
    "10": "widgets: a 2x2 and a 1x1 model's sub-region maps for one instance, pruning, threshold",
    "11": "the tracking branch, trained on frame pairs; similarity matrices, matcher, video AP",
}


def parse_time(stamp: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def run_times(path: Path) -> tuple[str, float, float]:
    """(date of the run, wall seconds, seconds of cells that trained a model) from nbconvert's metadata."""
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    timed = [c for c in cells if "execution" in c["metadata"]]
    starts = [parse_time(c["metadata"]["execution"]["iopub.status.busy"]) for c in timed]
    ends = [parse_time(c["metadata"]["execution"]["shell.execute_reply"]) for c in timed]
    training = 0.0
    for cell, start, end in zip(timed, starts, ends, strict=True):
        bars = [o["data"].get("text/plain", "") for o in cell["outputs"] if "data" in o]
        if any("".join(bar).startswith("train:") for bar in bars):
            training += (end - start).total_seconds()
    return f"{min(starts):%Y-%m-%d %H:%M}", (max(ends) - min(starts)).total_seconds(), training


notebook_dir = Path.cwd() if any(Path.cwd().glob("00_*.ipynb")) else tutorial.repo_root() / "notebooks"
rows = []
for path in sorted(notebook_dir.glob("[01][0-9]_*.ipynb")):
    number = path.name[:2]
    title = json.loads(path.read_text())["cells"][0]["source"][0].lstrip("# ").strip()
    date, wall, training = run_times(path)
    rows.append((title, TEACHES.get(number, ""), date, wall, training))
assert len(rows) == len(TEACHES), f"a notebook without a TEACHES entry, or one missing: {len(rows)} found"
header = (
    "| notebook | what it teaches | last run (UTC) | wall time (s) | of it, training a tutorial model (s) "
    "| without training (s) |"
)
table = [header, "|---|---|---|---:|---:|---:|"]
for title, teaches, date, wall, training in rows:
    table.append(f"| {title} | {teaches} | {date} | {wall:.0f} | {training:.0f} | {wall - training:.0f} |")
table.append(
    f"| **all {len(rows)}** | | | {sum(r[3] for r in rows):.0f} | {sum(r[4] for r in rows):.0f} "
    f"| {sum(r[3] - r[4] for r in rows):.0f} |"
)
display(Markdown("\n".join(table)))

# %% [markdown]
# The training column shows which notebooks trained a tutorial model in their last run because its cached
# checkpoint was missing. A model that was trained before the notebooks ran (for instance the shared
# `cpu_tiny` model, trained by the project's own runs) appears nowhere in the table: the times are those of
# notebooks reading cached checkpoints, not of training from scratch.
#
# ## 1. One paper section, one file — and the shape letters
#
# The package docstring is the map. Each module implements one section of the paper; a student who
# follows a call from a notebook lands in a short file named after the section.

# %%
# NBVAL_CHECK_OUTPUT
doc = sipmask_ref.__doc__
print(doc[doc.index("One paper section") : doc.index("Boxes are")].rstrip())

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
for field in (
    "num_classes",
    "backbone",
    "fpn_channels",
    "stacked_convs",
    "num_basis",
    "sub_regions",
    "basis_source",
    "alignment_weight",
    "feature_alignment",
    "strides",
    "regress_ranges",
    "input_size",
    "nms",
    "mask_threshold",
):
    print(f"{field:18s} {getattr(config, field)}")

# %% [markdown]
# ## 2. The synthetic adjacent-instance benchmark
#
# COCO does not fit on a laptop CPU, so the notebooks use a small generated benchmark that isolates the
# situation SipMask is about: **many instances of the same class touching or overlapping**. A few shape
# classes are drawn with random colour and texture (so the class can only be learned from the shape) on
# small square images with background clutter; object sizes are drawn log-uniform over a range that puts
# objects on the FPN levels of stride 8 to 32. The generator's settings are printed below.
#
# `tutorial.synthetic_data()` generates it once under `data/` (a few seconds) and returns the paths; the
# files are COCO JSON, read by the same `CocoInstances` dataset as real COCO.

# %%
# NBVAL_CHECK_OUTPUT
generator = synthetic.SyntheticConfig()
print("classes:", ", ".join(generator.classes))
print(
    f"image size {generator.image_size} x {generator.image_size} px; object size (circumscribed "
    f"diameter) {generator.size_range[0]:g}-{generator.size_range[1]:g} px, log-uniform; "
    f"{generator.instances_per_image[0]}-{generator.instances_per_image[1]} objects attempted per image"
)
print(f"adjacent: at least {synthetic.ADJACENCY_THRESHOLD:.0%} of the box on a same-class neighbour")

# %%
paths = tutorial.synthetic_data()
coco = {split: json.loads(paths[f"{split}_ann"].read_text()) for split in ("train", "val")}
stats = {split: synthetic.adjacency_stats(coco[split]) for split in ("train", "val")}

# %%
# NBVAL_CHECK_OUTPUT
for split in ("train", "val"):
    print(synthetic.format_stats(stats[split], title=f"{split}:"))

# %% [markdown]
# The headline number is the **adjacency fraction**: an instance is *adjacent* when at least
# `synthetic.ADJACENCY_THRESHOLD` of the pixels of its bounding box (the share printed above) belong to
# other instances **of the same class** — exactly the pixels a single set of coefficients per box would
# leak into its mask. Let us re-derive that test for the instances of one image in a few lines and check it
# against `synthetic.adjacency_flags`.

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
    print(
        f"instance {g}: {val.class_names[labels[g] - 1]:8s} same-class share of box {shares[g]:.2f}"
        f" -> adjacent {bool(library[g])}"
    )
print(f"val image 9: {int(library.sum())} of {len(masks)} instances adjacent")

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

colors = np.array([[0.9, 0.1, 0.1] if a else [0.2, 0.4, 1.0] for a in library])
viz.draw_instances(
    axes[2],
    image,
    boxes=target["boxes"],
    masks=target["masks"],
    labels=[val.class_names[k - 1] for k in labels],
    colors=colors,
    title="val image 9: adjacent instances in red",
)
axes[2].legend(
    handles=[
        Patch(color=colors_, label=name)
        for colors_, name in (((0.9, 0.1, 0.1), "adjacent"), ((0.2, 0.4, 1.0), "not adjacent"))
    ],
    loc="lower right",
    fontsize=7,
)
fig.tight_layout()
plt.show()

# %% [markdown]
# What to see: the adjacent fraction differs by class, similarly on train and val (the per-class
# percentages printed above); most objects have a longest side between 16 and 64 px, the scales of P3 and
# P4; and in image 9 the red instances are the ones whose share printed above reached the threshold.

# %% [markdown]
# A few validation images with their ground truth (every instance has its own colour):

# %%
fig, axes = plt.subplots(2, 3, figsize=(8.4, 5.8))
for ax, index in zip(axes.flat, (0, 3, 5, 11, 13, 16), strict=True):
    image, target = val[index]
    viz.draw_instances(
        ax,
        image,
        boxes=target["boxes"],
        masks=target["masks"],
        labels=target["labels"],
        class_names=val.class_names,
        title=f"val {index}: {len(target['labels'])} instances",
    )
fig.tight_layout()
plt.show()

# %% [markdown]
# What to see: objects of the same class touch or overlap, often more than one pair per image, and the
# clutter lines and dots are not annotated.

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
#   and `masks [N, 1, H, W]` — mask **probabilities**, binarised at `config.mask_threshold` (printed in
#   section 1; the authors' value).
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
# ## 4. The architecture (the paper's Fig. 3), measured
#
# The paper draws SipMask as a backbone and FPN (P3–P7), a head shared by all levels with a
# mask-specialized classification branch (class scores; the spatial preservation (SP) module: a deformable
# conv aligned with the predicted box, then $Q$ sets of $M$ spatial coefficients, one per sub-region) and a
# mask-specialized regression branch (box, centerness, and the basis masks built from P3–P5), followed by
# the spatial mask prediction: Eq. (2) per sub-region and the crop-split that keeps each sub-region's map
# only inside its own part of the box.
#
# Instead of typing the shapes into a drawing, we measure them: forward hooks catch what the modules the
# notebook cannot otherwise see return (the backbone body's C3–C5, the two towers, the offsets of the
# deformable conv, the concatenated input of the basis branch), on their **first** call, which is P3 (the
# head runs the levels in order P3…P7); `forward_intermediates` gives the rest. The model is the trained
# `cpu_tiny` of section 5 (an untrained model keeps few or no detections, and the $N$ of the drawing would
# say little). `tutorial.trained_model()`
# trains the `cpu_tiny` preset on the synthetic train split once (in `SIPMASK_FAST` mode only a few dozen
# iterations) and caches the checkpoint in `outputs/tutorial/`; every later call, in any notebook, loads it.

# %%
trained, trained_config = tutorial.trained_model()
captured = {}  # module name -> its output for P3 (a list [C2, C3, C4, C5] for the body)


def keep_first(name: str):
    def hook(module, inputs, output):
        captured.setdefault(name, output)  # the head runs P3 first: keep P3's output

    return hook


head = trained.head
handles = [
    trained.backbone.body.register_forward_hook(keep_first("body")),
    head.cls_tower.register_forward_hook(keep_first("cls_tower")),
    head.reg_tower.register_forward_hook(keep_first("reg_tower")),
    head.feature_alignment.conv_offset.register_forward_hook(keep_first("offsets")),
    head.feature_alignment.register_forward_hook(keep_first("deform_conv")),
    trained.basis_masks.reduce.register_forward_pre_hook(
        lambda m, i: captured.setdefault("basis_input", i[0])
    ),
]
with torch.no_grad():
    inside = trained.forward_intermediates([val[13][0]])
for handle in handles:
    handle.remove()
found = inside["detections"][0]
n, q, m = found["coefficients"].shape
shapes = {
    "input": inside["images"].shape,
    # C3-C5 feed the FPN; C2 feeds cpu_tiny's basis refinement (not in the paper's figure, notebook 03)
    **{f"C{k + 3}": c.shape for k, c in enumerate(captured["body"][1:])},
    **{f"P{k + 3}": p.shape for k, p in enumerate(inside["features"])},
    **{
        name: captured[name].shape
        for name in ("cls_tower", "reg_tower", "offsets", "deform_conv", "basis_input")
    },
    "cls_logits": inside["cls_logits"][0].shape,
    "coefficients": inside["coefficients"][0].shape,
    "box_regression": inside["box_regression"][0].shape,
    "centerness": inside["centerness"][0].shape,
    "basis_masks": inside["basis_masks"].shape,
    "det_coefficients": f"[N, Q, M] = [{n}, {q}, {m}]",
    "sub_region_maps": "[N, Q, H, W] = " + architecture_figure.shape_text(found["sub_region_maps"].shape),
    "masks": "[N, H, W] = " + architecture_figure.shape_text(found["masks"].shape),
}
for name, shape in shapes.items():
    print(f"{name:17s} {architecture_figure.shape_text(shape)}")
assert q * m == trained_config.sub_regions[0] * trained_config.sub_regions[1] * trained_config.num_basis

# %%
height, width = inside["images"].shape[-2:]
title = f"SipMask (paper Fig. 3) with the shapes of one {height} x {width} validation image (val 13)"
display(architecture_figure.plot_architecture(shapes, title=title))

# %% [markdown]
# What to see: all stride-8 maps (C3, P3, and the head outputs, shown at P3) have the same height and width,
# and each further level halves them; only the classification branch carries the deformable conv, and its
# offsets come from the regression branch's box; the coefficients have $Q \times M$ values per location; the
# basis masks are four times as large as P3 in each direction (stride 2 against stride 8); and after NMS
# each of the $N$ detections has $Q$ maps, one per sub-region, that the crop-split sums into one mask. The
# list printed above the figure holds the same shapes.
#
# ## 5. A trained model on validation images

# %%
fig, axes = plt.subplots(2, 4, figsize=(10, 5.4))
shown_scores = []
for column, index in enumerate((5, 9, 13, 16)):
    image, target = val[index]
    with torch.no_grad():
        (out,) = trained([image])
    keep = torch.arange(len(out["scores"])) < len(target["labels"])  # the G best-scored detections
    viz.draw_instances(
        axes[0, column],
        image,
        boxes=target["boxes"],
        masks=target["masks"],
        labels=target["labels"],
        class_names=val.class_names,
        title=f"val {index}: ground truth",
    )
    viz.draw_instances(
        axes[1, column],
        image,
        boxes=out["boxes"][keep],
        masks=out["masks"][keep],
        threshold=trained_config.mask_threshold,
        labels=out["labels"][keep],
        scores=out["scores"][keep],
        class_names=val.class_names,
        title=f"the {int(keep.sum())} best detections",
    )
    shown_scores.append(out["scores"][keep])
fig.tight_layout()
plt.show()
shown = torch.cat(shown_scores)
print(
    f"scores of the {len(shown)} detections drawn: min {shown.min():.2f}, median {shown.median():.2f}, "
    f"max {shown.max():.2f}"
)

# %% [markdown]
# Detections come sorted by score, and a score is the class probability times the predicted centerness, so
# it stays well below 1 even for a detection whose box and mask are right (the range of the drawn ones is
# printed under the figure); rather than pick a threshold, the figure shows as many of the best detections
# as the image has ground-truth instances. What to see: compare each column's two rows. Which objects are
# found with the right class, and where two objects of the same class touch, does each get a mask of its
# own or do the masks spill into the neighbour? Notebooks 04 and 10 look at exactly that case. In fast mode
# the model has seen only a few dozen batches and its predictions are poor; the committed notebook shows the
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
