# %% [markdown]
# # 06 · Deformable feature alignment (§3.1)
#
# The classification branch of SipMask does not look at the image through a fixed 3×3 window. Its last
# layer is a *deformable* convolution whose sampling points move, and how far they move is predicted
# from the box that the same location regresses. In this notebook you will:
#
# * read Eq. (1) and re-derive it for one output location with explicit bilinear sampling, checked
#   against the library's `FeatureAlignment`;
# * check that with zero offsets the deformable convolution *is* a plain 3×3 convolution, which is
#   also how the layer starts training;
# * draw where the trained model's sampling points go, over the image, at locations on objects.
#
# The paper, §3.1:
#
# > **Feature Alignment Scheme:** Generally, convolutional layer operates on a rectangular grid (*e.g.*,
# > $3 \times 3$ kernel). Thus, the extracted features for classification and coefficients generation
# > may fail to align with the features of regressed bounding-box. Our feature alignment scheme
# > addresses this issue by aligning the features with regressed box location, resulting in an improved
# > feature representation. For feature alignment, we introduce a deformable convolutional layer
# > [16,51,5] in our mask-specialized classification branch. The input to the deformable convolutional
# > layer are the regression offsets to left, right, top, and bottom corners of ground-truth
# > bounding-box obtained from mask-specialized regression branch (Sec. 3.2). These offsets are utilized
# > to estimate the kernel offset $\Delta p_r$ that augments the regular sampling grid $G$ in the
# > deformable convolution operator, resulting in an aligned feature $y(p_0)$ at position $p_0$, as
# > follows:
# >
# > $$y(p_0) = \sum_{i \in G} w_r \cdot x(p_0 + p_r + \Delta p_r), \quad (1)$$
# >
# > where $x$ is the input feature, and $p_r$ is the original position of convolutional weight $w_r$ in
# > $G$.
#
# How the offsets are estimated comes from the authors' code (`FeatureAlign`, see
# [docs/authors_implementation.md §1.3](../docs/authors_implementation.md#13-feature-alignment)).
# A 1×1 convolution **without bias** maps the *detached* (l, t, r, b) of the location, in stride units,
# to 72 channels: 4 offset groups × 9 taps × (dy, dx). Its weights start at **zero**. Each group of a
# quarter of the input channels gets its own 9 sampling points.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.lines import Line2D

from sipmask_ref import fcos, tutorial
from sipmask_ref.spatial_preservation import FeatureAlignment

plt.rcParams["figure.dpi"] = 100
torch.manual_seed(0)
torch.set_grad_enabled(False)  # this notebook only looks at the layer: no gradients anywhere
model, config = tutorial.trained_model()
alignment = model.head.feature_alignment  # the FeatureAlignment layer of the head
print(alignment)

# %% [markdown]
# ## Zero offsets: a plain convolution
#
# With $\Delta p_r = 0$, Eq. (1) is the definition of an ordinary convolution. The 1×1 offset convolution
# starts at zero, so a freshly built `FeatureAlignment` is exactly conv3×3 → GroupNorm → ReLU. Whatever
# the box regression says, the features are not moved until training teaches the layer to move them.

# %%
# NBVAL_CHECK_OUTPUT
x = torch.randn(2, config.fpn_channels, 16, 16)
zero = torch.zeros(2, 2 * 4 * 9, 16, 16)  # [B, 72, H, W]
deformable = alignment.conv(x, zero)
plain = F.conv2d(x, alignment.conv.weight, padding=1)
torch.testing.assert_close(deformable, plain, rtol=1e-4, atol=1e-5)
print("deformable conv with zero offsets == plain conv3x3:", True)

fresh = FeatureAlignment(config.fpn_channels, use_gn=True).eval()
regression = torch.rand(2, 4, 16, 16) * 5  # any (l, t, r, b)
expected = fresh.relu(fresh.norm(F.conv2d(x, fresh.conv.weight, padding=1)))
torch.testing.assert_close(fresh(x, regression), expected, rtol=1e-4, atol=1e-5)
print("a freshly built FeatureAlignment == conv3x3 + GN + ReLU:", True)
print("initial offset weights all zero:", bool((fresh.conv_offset.weight == 0).all()))

# %% [markdown]
# ## The offsets are a linear function of (l, t, r, b)
#
# Since the offset convolution is 1×1 and has no bias, the 72 offsets of a location are a matrix
# $W \in \mathbb{R}^{72 \times 4}$ times its own (l, t, r, b). The same matrix is used at every location
# and every level. We check that on the trained model's real box regression:

# %%
val_set = tutorial.synthetic_dataset("val")
image, target = val_set[3]
inter = model.forward_intermediates([image])
level = 0  # P3, stride 8
regression = inter["box_regression"][level]  # [1, 4, H, W], stride units
offsets = alignment.offsets(regression)  # [1, 72, H, W]
W = alignment.conv_offset.weight[:, :, 0, 0]  # [72, 4]
torch.testing.assert_close(offsets, torch.einsum("ok,bkhw->bohw", W, regression))
print("offsets == W @ (l, t, r, b) at every location;  W:", tuple(W.shape))
print(f"largest |W| entry {W.abs().max():.3f}")
shift = offsets.reshape(4, 9, 2, *offsets.shape[-2:]).norm(dim=2)  # [group, tap, H, W]: |Δp_r| in cells
print(f"trained offsets on P3 of this image: mean |Δp_r| {shift.mean():.2f}, largest {shift.max():.2f} cells")

# %% [markdown]
# torchvision lays the 72 channels out as `[group][tap][dy, dx]`: group g, tap r = 3·row + column of
# the 3×3 kernel, channel 18·g + 2·r for dy and 18·g + 2·r + 1 for dx. The same layout as the authors'
# mmcv operator. So for a square box with l = t = r = b = d strides, the sampling points of each group
# move like this:

# %%
taps = [(ky - 1, kx - 1) for ky in range(3) for kx in range(3)]
taps = torch.tensor(taps, dtype=torch.float32)  # [9, 2] (dy, dx) of the regular grid p_r
colors = plt.get_cmap("tab10")(np.arange(4))
fig, axes = plt.subplots(1, 3, figsize=(11, 4.3), sharex=True, sharey=True)
for ax, d in zip(axes, (1.0, 2.0, 4.0), strict=True):
    moved = (W @ torch.full((4,), d)).reshape(4, 9, 2)  # [group, tap, (dy, dx)]
    ax.add_patch(plt.Rectangle((-d, -d), 2 * d, 2 * d, fill=False, ls="--", color="grey"))
    ax.scatter(taps[:, 1], taps[:, 0], marker="+", s=80, color="black", label="regular grid p_r")
    for g in range(4):
        points = taps + moved[g]
        ax.scatter(points[:, 1], points[:, 0], s=18, color=colors[g], label=f"group {g}: p_r + Δp_r")
    ax.set_title(f"box l = t = r = b = {d:g} (dashed)", fontsize=10)
    ax.set_xlabel("x (strides)")
    ax.set_aspect("equal")
    ax.invert_yaxis()
    print(f"d = {d:g}: the points move by up to {moved.norm(dim=-1).max():.2f} strides")
axes[0].set_ylabel("y (strides)")
handles, names = axes[0].get_legend_handles_labels()
fig.legend(handles, names, loc="lower center", ncol=5, fontsize=8, frameon=False)
plt.tight_layout(rect=(0, 0.08, 1, 1))
plt.show()

# %% [markdown]
# The offsets are linear in $d$: doubling the box doubles every shift (the printed maxima). For the
# one-stride box the points stay near the regular grid, some of them just outside the box; for the largest
# box they spread further out, each group in its own pattern, yet they stay well inside the dashed box.


# %% [markdown]
# ## Eq. (1) re-derived at one location
#
# Now the deformable convolution itself, for one output location $p_0$ of P3 of this image, using the
# real input feature (the classification tower's output). We use the trained offsets, which move the points
# by less than a cell on average (printed above), and also a random offset field with a standard deviation
# of three cells, which sends many points far from the grid and some off the map. Each
# sampling point $p_0 + p_r + \Delta p_r$ falls between pixels. We read it by bilinear interpolation,
# and points outside the map read 0. Group $g$ reads only its quarter of the input channels.


# %%
def bilinear(feature: torch.Tensor, y: float, x: float) -> torch.Tensor:
    """feature [D, H, W] read at the real position (y, x); zero outside the map."""
    height, width = feature.shape[-2:]
    y0, x0 = math.floor(y), math.floor(x)
    value = torch.zeros(feature.shape[0])
    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yy < height and 0 <= xx < width:
                value += wy * wx * feature[:, yy, xx]
    return value


def eq1(
    feature: torch.Tensor, offsets: torch.Tensor, weight: torch.Tensor, p0: tuple[int, int]
) -> torch.Tensor:
    """y(p0) = sum_r w_r · x(p0 + p_r + Δp_r), summed over the offset groups. feature [D, H, W]."""
    groups = offsets.shape[0] // 18
    channels = feature.shape[0] // groups
    out = torch.zeros(weight.shape[0])
    for g in range(groups):
        part = slice(g * channels, (g + 1) * channels)
        for r, (dy_r, dx_r) in enumerate(taps.tolist()):
            dy = float(offsets[18 * g + 2 * r, p0[0], p0[1]])
            dx = float(offsets[18 * g + 2 * r + 1, p0[0], p0[1]])
            sample = bilinear(feature[part], p0[0] + dy_r + dy, p0[1] + dx_r + dx)  # x(p0 + p_r + Δp_r)
            out += weight[:, part, 1 + int(dy_r), 1 + int(dx_r)] @ sample  # w_r ·
    return out


# %%
# NBVAL_CHECK_OUTPUT
tower = model.head.cls_tower(inter["features"][level])  # [1, D, H, W]: the input x of Eq. (1)
generator = torch.Generator().manual_seed(0)
random_offsets = 3 * torch.randn(offsets.shape, generator=generator)
for name, field in (("trained offsets", offsets), ("random offsets", random_offsets)):
    library = alignment.conv(tower, field)  # [1, D, H, W], before GN and ReLU
    for p0 in ((5, 7), (10, 3)):
        mine = eq1(tower[0], field[0], alignment.conv.weight, p0)
        torch.testing.assert_close(mine, library[0, :, p0[0], p0[1]], rtol=1e-4, atol=1e-5)
    print(f"{name}: Eq. (1) inline == DeformConv2d at two locations")

# %% [markdown]
# ## Where the sampling points move on real objects
#
# For a few ground-truth instances of a validation image we take the positive location closest to the
# instance's centre, on the pyramid level FCOS assigns the instance to. There we draw
#
# * the ground-truth box (white) and the box that location predicts (dashed yellow);
# * the regular 3×3 grid $p_0 + p_r$ (black crosses), one stride apart;
# * the deformed points $p_0 + p_r + \Delta p_r$ of the four groups (coloured dots), with arrows from
#   the regular positions.

# %%
sizes = [tuple(x.shape[-2:]) for x in inter["cls_logits"]]
per_level = fcos.locations(sizes, config.strides)
points, strides, ranges = fcos.flatten_levels(per_level, config.strides, config.regress_ranges)
assigned = fcos.fcos_targets(
    points, strides, ranges, target["boxes"], target["labels"], config.center_sampling_radius
)
starts = np.cumsum([0] + [len(p) for p in per_level])


def sampling_points(flat_index: int) -> dict[str, torch.Tensor]:
    """Regular and deformed sampling points (image pixels) and predicted box of one location."""
    l = int(np.searchsorted(starts, flat_index, side="right") - 1)
    i, j = divmod(flat_index - int(starts[l]), sizes[l][1])
    stride = config.strides[l]
    field = alignment.offsets(inter["box_regression"][l])[0, :, i, j]
    field = field.reshape(4, 9, 2)  # [group, tap, (dy, dx)]
    centre = points[flat_index].flip(0)  # (y, x) pixels
    ltrb = inter["box_regression"][l][0, :, i, j] * stride
    (y, x), (left, top, right, bottom) = centre, ltrb
    return {
        "regular": centre + taps * stride,
        "deformed": centre + (taps + field) * stride,
        "box": torch.stack([x - left, y - top, x + right, y + bottom]),
        "level": l,
    }


chosen = []
for g in range(len(target["boxes"])):
    candidates = (assigned.matched_gt == g).nonzero().flatten()
    if len(candidates):
        box = target["boxes"][g]
        centre = torch.stack([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
        chosen.append((g, int(candidates[(points[candidates] - centre).norm(dim=1).argmin()])))
chosen = chosen[:4]

fig, axes = plt.subplots(1, len(chosen), figsize=(3.6 * len(chosen), 4.2))
grey = image.mean(0).numpy()  # the image in grey, dimmed: the coloured points stand out
for ax, (g, flat_index) in zip(np.atleast_1d(axes), chosen, strict=True):
    found = sampling_points(flat_index)
    ax.imshow(grey, cmap="gray", vmin=0, vmax=2, interpolation="nearest")
    x1, y1, x2, y2 = target["boxes"][g].tolist()
    ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color="white", lw=1.5))
    x1, y1, x2, y2 = found["box"].tolist()
    ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color="yellow", lw=1.5, ls="--"))
    regular = found["regular"].numpy()
    for group in range(4):
        moved = found["deformed"][group].numpy()
        ax.scatter(moved[:, 1], moved[:, 0], s=16, color=colors[group], edgecolors="white", linewidths=0.3)
        for (ry, rx), (my, mx) in zip(regular, moved, strict=True):
            arrow = {"arrowstyle": "-", "color": colors[group], "lw": 0.8}
            ax.annotate("", (mx, my), (rx, ry), arrowprops=arrow)
    ax.scatter(regular[:, 1], regular[:, 0], marker="+", s=70, color="white", linewidths=1.5)
    x1, y1, x2, y2 = target["boxes"][g].tolist()  # zoom on the instance
    margin = 0.5 * max(x2 - x1, y2 - y1, 3 * config.strides[found["level"]])
    ax.set_xlim(max(x1 - margin, -0.5), min(x2 + margin, image.shape[2] - 0.5))
    ax.set_ylim(min(y2 + margin, image.shape[1] - 0.5), max(y1 - margin, -0.5))
    name = val_set.class_names[int(target["labels"][g]) - 1]
    ax.set_title(f"{name}, P{3 + found['level']} (stride {config.strides[found['level']]})", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_facecolor("black")
legend = [
    Line2D([], [], color="white", lw=1.5, label="ground-truth box"),
    Line2D([], [], color="yellow", lw=1.5, ls="--", label="box predicted at p_0"),
    Line2D([], [], color="white", marker="+", ls="", ms=9, mew=1.5, label="regular grid p_0 + p_r"),
]
legend += [
    Line2D([], [], color=colors[group], marker="o", ls="-", ms=5, label=f"group {group}: + Δp_r")
    for group in range(4)
]
fig.legend(handles=legend, loc="lower center", ncol=4, fontsize=8, facecolor="0.2", labelcolor="white")
plt.tight_layout(rect=(0, 0.12, 1, 1))
plt.show()
for g, flat_index in chosen:
    found = sampling_points(flat_index)
    moved = (found["deformed"] - found["regular"]).norm(dim=-1) / config.strides[found["level"]]
    print(
        f"instance {g}: the points move by {moved.mean():.2f} strides on average, at most {moved.max():.2f}"
    )

# %% [markdown]
# On these objects the deformed points (dots) gather around the regular grid (white crosses), each group
# pulled its own way by up to a few strides (printed above); almost all stay inside the predicted box
# (dashed), which lies close to the ground-truth box. None of the groups is spread out to the sides of the
# box.
#
# How far do the points move across the whole image? The scatter shows the offset length
# $|\Delta p_r|$, in strides, averaged over the 4 × 9 points of a location, at every location of P3–P5
# against the width of the box predicted there.

# %%
fig, ax = plt.subplots(figsize=(6, 3.6))
widths, shifts = [], []
for l in range(3):
    reg = inter["box_regression"][l][0]  # [4, H, W]
    shift = alignment.offsets(reg[None])[0].reshape(4, 9, 2, *reg.shape[-2:]).norm(dim=2)  # [4, 9, H, W]
    widths.append((reg[0] + reg[2]).flatten())
    shifts.append(shift.mean(dim=(0, 1)).flatten())
    ax.scatter(widths[-1].numpy(), shifts[-1].numpy(), s=4, label=f"P{3 + l}", alpha=0.6)
ax.set_xlabel("predicted box width l + r (strides)")
ax.set_ylabel("mean |Δp_r| (strides)")
ax.set_title("every location of P3–P5 of this image", fontsize=10)
ax.legend()
plt.tight_layout()
plt.show()
widths, shifts = torch.cat(widths), torch.cat(shifts)
correlation = torch.corrcoef(torch.stack([widths, shifts]))[0, 1]
print(f"{len(widths)} locations: correlation of box width and mean shift {correlation:.2f}")
print(f"mean shift / box width: median {(shifts / widths.clamp(min=1e-6)).median():.2f}")

# %% [markdown]
# The wider the predicted box, the further the points move, on every level (the correlation printed
# above). The offsets are linear in (l, t, r, b), so this trend is built into the layer; training chose
# the matrix W, that is, in which direction and how strongly each point reacts to each distance. The
# shift stays a small fraction of the box width (the median ratio above). After a short run (fast mode)
# the offset weights are still close to their zero start and every dot of this scatter sits near 0.

# %% [markdown]
# ## Summary
#
# * Eq. (1) is a 3×3 convolution whose nine sampling points $p_0 + p_r$ are shifted by $\Delta p_r$,
#   read with bilinear interpolation. There are four groups of channels, each with its own shifts.
# * The shifts come from the location's own box regression (detached) through a bias-free 1×1
#   convolution that starts at zero. At the start the layer is a plain convolution, and training
#   decides how far, and where, the box should pull the sampling points.
# * Its output feeds both the classifier and the spatial coefficients (§3.1). `config.feature_alignment
#   = False` replaces it by a plain conv3×3 + GN + ReLU.
#
# ## Exercises
#
# 1. Train `dataclasses.replace(preset("cpu_tiny"), feature_alignment=False)` through
#    `tutorial.trained_model(..., name="cpu_tiny_no_align")` and compare box and mask AP with the default
#    model (notebook 08 shows how to evaluate).
# 2. Replace the learned 1×1 convolution by a *geometric* rule: spread the nine points of every group
#    evenly over the predicted box, as AlignDet / RepPoints-style alignment does. Write the 72 offsets
#    as a function of (l, t, r, b) and check that your rule gives the sampling points you intend, using
#    `eq1` above.
# 3. Which taps of which group moved most in the trained model? Look at the rows of `W` and relate
#    them to (l, t, r, b). Does the model stretch the grid towards the sides of the box?
