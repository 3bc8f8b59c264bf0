# %% [markdown]
# # 01 · FCOS points and training targets
#
# SipMask is "built on FCOS detection method [40], due to its flexible anchor-free design" (§3). Before
# any mask appears, every location of every pyramid level has to be told *which object, if any, it should
# detect*. This notebook opens `sipmask_ref/fcos.py`:
#
# 1. `fcos.locations`: where the points of each pyramid level lie in the image;
# 2. `fcos.fcos_targets`: the assignment of ground-truth boxes to points — **center sampling** (radius
#    1.5 strides), **regress ranges** (one object scale per level) and the **smallest-area tie-break**;
# 3. the centre-sampling rule re-derived inline for one ground truth and checked against the library;
# 4. which points become positives, level by level, on a synthetic image.

# %% [markdown]
# The paper only cites FCOS for this part:
#
# > **Overall Architecture:** Fig. 3(a) shows the overall architecture of our single-stage anchor-free
# > method, SipMask [...]. Our architecture is built on FCOS detection method [40], due to its flexible
# > anchor-free design. In the proposed architecture, we replace the standard classification and
# > regression in FCOS with our mask-specialized regression and classification branches. (§3)
#
# > Here, objects of various sizes are predicted at different prediction layers of the FPN (*i.e.*,
# > $P3 - P7$). (§3.2)
#
# The details come from the authors' code (FCOS with center sampling): locations at
# `stride // 2 + k * stride`; a point is a positive for a ground truth when it lies inside the box **and**
# inside the square *centre ± 1.5·stride* (clipped to the box); the largest of its distances
# $\max(l, t, r, b)$ must fall in its level's regress range; when several ground truths qualify, the one
# with the **smallest area** wins. Each positive then regresses $(l, t, r, b)$, its distances to the four
# sides of the box.

# %%
import matplotlib.pyplot as plt
import torch
from matplotlib.patches import Rectangle
from matplotlib_inline.backend_inline import set_matplotlib_formats

from sipmask_ref import fcos, preset, tutorial, viz

plt.rcParams["figure.dpi"] = 100
set_matplotlib_formats("jpeg")  # textured images compress poorly as PNG
torch.manual_seed(0)
config = preset("cpu_tiny")
val = tutorial.synthetic_dataset("val")

# %% [markdown]
# ## 1. Points of a feature pyramid
#
# The `cpu_tiny` model sees 128 × 128 inputs, so its pyramid P3–P7 (strides 8, 16, 32, 64, 128) has maps
# of 16², 8², 4², 2² and 1² cells. The point of row *i*, column *j* of a level with stride *s* sits at the
# centre of the *s × s* cell it sees: $(x, y) = (s/2 + j s,\ s/2 + i s)$, listed row-major (the order of
# `feature.flatten(-2)`).

# %%
# NBVAL_CHECK_OUTPUT
feature_sizes = [(128 // s, 128 // s) for s in config.strides]  # (H, W) of P3..P7
points_per_level = fcos.locations(feature_sizes, config.strides)
for level, (pts, stride) in enumerate(zip(points_per_level, config.strides, strict=True)):
    print(
        f"P{level + 3}: stride {stride:3d}, map {feature_sizes[level]}, {len(pts):3d} points, "
        f"first {pts[:3].tolist()}"
    )
points, strides, regress_ranges = fcos.flatten_levels(points_per_level, config.strides, config.regress_ranges)
print("all levels:", tuple(points.shape), tuple(strides.shape), tuple(regress_ranges.shape))

# %%
image, target = val[0]
fig, axes = plt.subplots(1, 3, figsize=(11, 3.9))
for ax, level in zip(axes, range(3), strict=True):
    stride = config.strides[level]
    ax.imshow(viz.to_uint8_image(image), extent=(-0.5, 127.5, 127.5, -0.5))
    for k in range(0, 129, stride):  # cell borders
        ax.axhline(k - 0.5, color="white", lw=0.4, alpha=0.6)
        ax.axvline(k - 0.5, color="white", lw=0.4, alpha=0.6)
    pts = points_per_level[level]
    ax.scatter(
        pts[:, 0] - 0.5,
        pts[:, 1] - 0.5,
        s=(12, 30, 50)[level],
        c="yellow",
        edgecolors="black",
        linewidths=0.5,
        label="FCOS point",
    )
    ax.plot([], [], color="white", lw=0.8, label="cell border")
    ax.set_title(f"P{level + 3}: stride {stride}, {len(pts)} points")
    ax.legend(loc="lower right", fontsize=7, facecolor="0.5", framealpha=0.8)
    ax.set_axis_off()
fig.suptitle("FCOS points: one per feature-map cell, at the cell centre")
fig.tight_layout()
plt.show()

# %% [markdown]
# What to see: every level tiles the same image with cells of its stride, one point at each cell's centre;
# the coarser the level, the fewer and the further apart its points.
#
# (Coordinates are continuous: pixel *j* covers $[j, j+1)$, so the point at 4 is the exact centre of the
# 8 × 8 cell $[0, 8)$. `imshow` draws pixel *j* centred at *j*, so every figure here draws coordinates
# shifted by −½, as `viz.draw_instances` does for boxes.)
#
# ## 2. Regress ranges: one object scale per level
#
# A positive point must have its **largest** distance to the box sides in its level's range
# $lo < \max(l, t, r, b) \le hi$. The paper's ranges suit 800-pixel COCO images; `cpu_tiny` halves them for
# 128-pixel images. For a point near the centre of a box, $\max(l,t,r,b)$ is about half the box's longest
# side, so P3 takes boxes up to ~64 px, P4 up to ~128 px; points away from the centre have a larger maximum
# distance and may land one level higher. The same object can therefore have positives on two levels.

# %%
# NBVAL_CHECK_OUTPUT
paper = preset("paper_r50_800")
print("level  stride   paper range        cpu_tiny range")
for level, stride in enumerate(config.strides):
    print(f"P{level + 3:<5d}{stride:6d}   {paper.regress_ranges[level]!s:18s} {config.regress_ranges[level]}")
print("center_sampling_radius:", config.center_sampling_radius, "strides")

# %% [markdown]
# ## 3. Center sampling, re-derived for one ground truth
#
# Take the largest object of validation image 0. For a single ground truth the assignment is three masks
# over the points (the tie-break needs at least two boxes). We write them out and compare with
# `fcos.fcos_targets` called on that ground truth alone.

# %%
# NBVAL_CHECK_OUTPUT
boxes, labels = target["boxes"], target["labels"]
g = int(((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).argmax())
x1, y1, x2, y2 = boxes[g].tolist()
x, y = points[:, 0], points[:, 1]

# 1. strictly inside the box
l, t, r, b = x - x1, y - y1, x2 - x, y2 - y
inside_box = torch.stack([l, t, r, b], 1).min(1).values > 0
# 2. strictly inside centre +- 1.5 * stride, clipped to the box
radius = config.center_sampling_radius * strides
cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
in_centre = (
    (x > torch.clamp(cx - radius, min=x1))
    & (x < torch.clamp(cx + radius, max=x2))
    & (y > torch.clamp(cy - radius, min=y1))
    & (y < torch.clamp(cy + radius, max=y2))
)
# 3. the largest distance in the level's regress range (lo, hi]
max_distance = torch.stack([l, t, r, b], 1).max(1).values
in_range = (max_distance > regress_ranges[:, 0]) & (max_distance <= regress_ranges[:, 1])
mine = inside_box & in_centre & in_range

library = fcos.fcos_targets(
    points,
    strides,
    regress_ranges,
    boxes[g : g + 1],
    labels[g : g + 1],
    center_radius=config.center_sampling_radius,
)
torch.testing.assert_close(mine, library.labels > 0)
print(
    f"ground truth {g}: box {[round(v, 1) for v in (x1, y1, x2, y2)]}, "
    f"class {val.class_names[int(labels[g]) - 1]}"
)
level_of_point = torch.cat([torch.full((len(p),), k) for k, p in enumerate(points_per_level)])
for level in range(5):
    on_level = level_of_point == level
    print(
        f"P{level + 3}: inside box {int((inside_box & on_level).sum()):3d}, + centre "
        f"{int((inside_box & in_centre & on_level).sum()):3d}, + range {int((mine & on_level).sum()):3d}"
    )

# %% [markdown]
# The same three steps as a picture, on the levels P3–P5: points inside the box (grey), the centre
# region $\pm 1.5$ strides clipped to the box (dashed), and the final positives (green). The centre region
# grows with the stride, but only the level whose range holds $\max(l,t,r,b)$ keeps its points.

# %%
fig, axes = plt.subplots(1, 3, figsize=(11, 3.9))
for ax, level in zip(axes, range(3), strict=True):
    stride = config.strides[level]
    on_level = level_of_point == level
    ax.imshow(viz.to_uint8_image(image), extent=(-0.5, 127.5, 127.5, -0.5))
    ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, ec="red", lw=1.5))
    rx1, ry1 = max(cx - 1.5 * stride, x1), max(cy - 1.5 * stride, y1)
    rx2, ry2 = min(cx + 1.5 * stride, x2), min(cy + 1.5 * stride, y2)
    ax.add_patch(
        Rectangle((rx1 - 0.5, ry1 - 0.5), rx2 - rx1, ry2 - ry1, fill=False, ec="white", ls="--", lw=1.2)
    )
    for selection, colour, size, name in (
        (on_level, "black", 6, "point"),
        (on_level & inside_box, "lightgrey", 25, "inside the box"),
        (on_level & mine, "lime", 60, "positive"),
    ):
        ax.scatter(
            x[selection] - 0.5,
            y[selection] - 0.5,
            s=size,
            c=colour,
            edgecolors="black",
            linewidths=0.4,
            label=name,
        )
    ax.plot([], [], color="red", lw=1.5, label="ground-truth box")
    ax.plot([], [], color="white", ls="--", lw=1.2, label="centre ±1.5 strides")
    ax.legend(loc="lower right", fontsize=6, facecolor="0.5", framealpha=0.8)
    lo, hi = config.regress_ranges[level]
    ax.set_title(
        f"P{level + 3} (stride {stride}, range ({lo:g}, {hi:g}]): {int((on_level & mine).sum())} positives",
        fontsize=9,
    )
    ax.set_xlim(-0.5, 127.5)
    ax.set_ylim(127.5, -0.5)
    ax.set_axis_off()
fig.tight_layout()
plt.show()

# %% [markdown]
# What to see: on each level the dashed centre region keeps only the points near the middle of the box, and
# the regress range then removes whole levels; the green dots are the only positives, and the counts in the
# titles match the table printed above.
#
# ## 4. The smallest-area tie-break
#
# When a point qualifies for two ground truths (overlapping boxes of similar scale on the same level),
# FCOS gives it to the one with the **smaller area**: the small object would otherwise lose all its
# points to the big one that contains it. A toy case with two overlapping boxes on P3:

# %%
# NBVAL_CHECK_OUTPUT
toy_boxes = torch.tensor(
    [
        [16.0, 16.0, 56.0, 56.0],  # 40 x 40, area 1600
        [36.0, 30.0, 60.0, 54.0],
    ]
)  # 24 x 24, area 576, overlapping the first
toy_labels = torch.tensor([1, 1])
toy = fcos.fcos_targets(points, strides, regress_ranges, toy_boxes, toy_labels, center_radius=0)
alone = [
    fcos.fcos_targets(
        points, strides, regress_ranges, toy_boxes[k : k + 1], toy_labels[k : k + 1], center_radius=0
    ).labels
    > 0
    for k in range(2)
]
both = alone[0] & alone[1]
print(
    "points that qualify for box 0:",
    int(alone[0].sum()),
    "| for box 1:",
    int(alone[1].sum()),
    "| for both:",
    int(both.sum()),
)
print("the contested points go to box", toy.matched_gt[both].unique().tolist(), "(the smaller one)")
assert (toy.matched_gt[both] == 1).all()

# %%
fig, ax = plt.subplots(figsize=(4.2, 4.2))
ax.set_xlim(0, 72)
ax.set_ylim(72, 0)
for k, colour in enumerate(("tab:blue", "tab:orange")):
    bx1, by1, bx2, by2 = toy_boxes[k].tolist()
    ax.add_patch(Rectangle((bx1, by1), bx2 - bx1, by2 - by1, fill=False, ec=colour, lw=2))
    chosen = toy.matched_gt == k
    ax.scatter(x[chosen], y[chosen], c=colour, s=40, label=f"assigned to box {k}")
ax.scatter(x[both], y[both], facecolors="none", edgecolors="red", s=120, label="qualified for both")
ax.legend(fontsize=8, loc="lower left")
ax.set_title("smallest area wins (center sampling off)", fontsize=9)
plt.show()

# %% [markdown]
# What to see: the red-circled points lie in both boxes, and every one of them is coloured like the smaller
# box 1 (orange).
#
# (Center sampling is switched off in the toy, `center_radius=0`, so that the two boxes overlap in many
# points; with it on, contested points are rarer but still occur between adjacent instances.)
#
# ## 5. All positives of a synthetic image, level by level
#
# Now the real assignment of validation image 0 with all its ground truths. Each positive point is
# coloured like the instance it must detect; small dots are background points.

# %%
# NBVAL_CHECK_OUTPUT
assigned = fcos.fcos_targets(
    points, strides, regress_ranges, boxes, labels, center_radius=config.center_sampling_radius
)
for level in range(5):
    on_level = level_of_point == level
    matched = assigned.matched_gt[on_level & (assigned.labels > 0)]
    print(f"P{level + 3}: {len(matched):3d} positives for ground truths {sorted(set(matched.tolist()))}")
sides = (boxes[:, 2:] - boxes[:, :2]).max(1).values
print("longest side of each ground truth (px):", [round(float(s)) for s in sides])
print(
    "ground truths without any positive:", sorted(set(range(len(boxes))) - set(assigned.matched_gt.tolist()))
)

# %%
colours = viz.instance_colors(len(boxes))
fig, axes = plt.subplots(1, 3, figsize=(11, 3.9))
for ax, level in zip(axes, range(3), strict=True):
    on_level = level_of_point == level
    viz.draw_instances(ax, image, boxes=boxes, masks=target["masks"], colors=colours, alpha=0.35)
    background = on_level & (assigned.labels == 0)
    ax.scatter(x[background] - 0.5, y[background] - 0.5, s=4, c="white", alpha=0.7)
    for k in range(len(boxes)):
        chosen = on_level & (assigned.matched_gt == k)
        ax.scatter(
            x[chosen] - 0.5,
            y[chosen] - 0.5,
            s=50,
            color=colours[k],
            edgecolors="black",
            linewidths=0.6,
            label=f"positive for ground truth {k}",
        )
    ax.scatter([], [], s=4, c="white", label="background point")
    ax.set_title(f"P{level + 3}: {int((on_level & (assigned.labels > 0)).sum())} positives", fontsize=9)
    ax.legend(loc="lower right", fontsize=6, facecolor="0.5", framealpha=0.8)
fig.tight_layout()
plt.show()

# %% [markdown]
# What to see: small objects take their positives on P3 and larger ones on P4 (the printed table says which
# ground truth lands on which level); a large object can get positives on two levels.
#
# Not every ground truth gets a positive. A small or thin box may hold no point of its level inside its
# centre square, and a point that two boxes want goes to the smaller one (section 4). The next cell scans the
# whole validation split for ground truths without any positive, prints the images they are in, and assigns
# each of them again on its own to tell the two causes apart.

# %%
# NBVAL_CHECK_OUTPUT
missed = []  # (image index, ground truth, longest side in px, class, positives when assigned alone)
total = 0
for index in range(len(val)):
    _, item = val[index]
    item_boxes, item_labels = item["boxes"], item["labels"]
    total += len(item_boxes)
    radius = config.center_sampling_radius
    found = fcos.fcos_targets(points, strides, regress_ranges, item_boxes, item_labels, center_radius=radius)
    for k in sorted(set(range(len(item_boxes))) - set(found.matched_gt.tolist())):
        side = float((item_boxes[k, 2:] - item_boxes[k, :2]).max())
        single = fcos.fcos_targets(
            points,
            strides,
            regress_ranges,
            item_boxes[k : k + 1],
            item_labels[k : k + 1],
            center_radius=radius,
        )
        name = val.class_names[int(item_labels[k]) - 1]
        missed.append((index, k, side, name, int((single.labels > 0).sum())))
print(f"ground truths without any positive: {len(missed)} of {total} in {len(val)} validation images")
for index, k, side, name, alone in missed:
    print(
        f"  val image {index}, ground truth {k}: {name}, longest side {side:.0f} px; "
        f"{alone} positives when assigned alone"
    )

# %% [markdown]
# In the images printed above, every ground truth without a positive has positives when it is assigned
# alone: it loses all of them to the smallest-area tie-break, to a smaller box it overlaps. No point is then
# trained to detect that object, a cost of the tie-break when instances touch.
#
# Each positive regresses $(l, t, r, b)$ to its box; decoding them with `fcos.decode_boxes` gives the box
# back exactly — a round trip worth checking once:

# %%
# NBVAL_CHECK_OUTPUT
positive = assigned.labels > 0
decoded = fcos.decode_boxes(points[positive], assigned.box_targets[positive])
torch.testing.assert_close(decoded, boxes[assigned.matched_gt[positive]])
print("decode_boxes(points, box_targets) == the assigned boxes for", int(positive.sum()), "positives")

# %% [markdown]
# ## Summary
#
# * `fcos.locations` puts one point at the centre of every feature-map cell: `(s//2 + j*s, s//2 + i*s)`.
# * `fcos.fcos_targets` keeps a (point, ground truth) pair when the point is inside the box, inside the
#   centre square ±1.5 strides (clipped to the box), and $\max(l,t,r,b)$ is in the level's regress range;
#   the smallest box wins a contested point. Everything else is background (label 0).
# * Objects of different sizes are therefore learned on different levels. A few ground truths get no
#   positive at all; in the validation images printed in section 5 they lost their points to a smaller
#   overlapping box.
# * The positives' `box_targets` are the regression targets; their `matched_gt` tells the mask loss
#   which ground-truth mask each positive must reproduce (notebook 04).
#
# ## Exercises
#
# 1. Set `center_radius=0` (plain FCOS) for validation image 0. How many more positives are there per
#    level, and where do the extra ones lie?
# 2. Repeat the scan of section 5 with the paper's regress ranges (`paper.regress_ranges`). How many ground
#    truths get **no** positive now, compared with the `cpu_tiny` ranges? Which is worse for 128 × 128
#    images, and why?
# 3. Move the second toy box so that the two boxes have equal areas. Which box wins the contested points
#    now? (Read step 4 of `fcos_targets`.)
