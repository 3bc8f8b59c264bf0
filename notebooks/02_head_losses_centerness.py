# %% [markdown]
# # 02 · The head, the detection losses and centerness
#
# Every pyramid level P3–P7 runs through the **same** head (`sipmask_ref/head.py`). At every location it
# predicts class scores, the distances $(l, t, r, b)$ to the sides of a box, a centerness score and the
# spatial coefficients (notebook 04). This notebook covers the detection half:
#
# 1. the head's outputs per level, their shapes and units;
# 2. the **focal loss** $L_{cls}$, re-derived inline and checked against `losses.focal_loss`;
# 3. the **IoU loss** $L_{reg} = -\log \mathrm{IoU}$ between predicted and target distances;
# 4. the FCOS **centerness** target $\sqrt{\frac{\min(l,r)}{\max(l,r)}\cdot\frac{\min(t,b)}{\max(t,b)}}$,
#    drawn as an image over a box;
# 5. all four training losses of the model on a batch.

# %% [markdown]
# From the paper ([arXiv:2007.14772](https://arxiv.org/abs/2007.14772)):
#
# > The overall loss function of our framework contains loss terms corresponding to bounding-box detection
# > (classification and regression) and mask generation. For box classification $L_{cls}$ and box
# > regression $L_{reg}$, we utilize focal loss and IoU loss, respectively, as in [40]. [...] The proposed
# > mask alignment weighting loss $L_{mask}$ is utilized along with loss terms corresponding to
# > bounding-box detection (classification and regression) in our overall loss function:
# > $L = L_{reg} + L_{cls} + L_{mask}$. (§3.4)
#
# > Our mask-specialized classification branch predicts the classification scores of detected
# > bounding-boxes and generates instance-specific spatial coefficients [...]. Our mask-specialized
# > regression branch generates both bounding-box offsets for each instance and a set of
# > category-independent maps, termed as basis masks, for an image. (§3)
#
# As in FCOS [40] (and the authors' code,
# [docs/authors_implementation.md §2.2](../docs/authors_implementation.md#22-detection-losses)) the
# regression branch also predicts a **centerness** logit per location, trained with binary cross-entropy
# and multiplied into the class score at inference.

# %%
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from matplotlib.patches import Rectangle
from matplotlib_inline.backend_inline import set_matplotlib_formats
from torchvision.ops import box_iou

from sipmask_ref import fcos, losses, tutorial, viz

plt.rcParams["figure.dpi"] = 100
set_matplotlib_formats("jpeg")  # textured images compress poorly as PNG
torch.manual_seed(0)
model, config = tutorial.trained_model()
val = tutorial.synthetic_dataset("val")
image, target = val[5]

# %% [markdown]
# ## 1. What the head predicts, level by level
#
# `model.forward_intermediates` runs one eval pass and returns the head outputs per level (lists over
# P3..P7). Box regression is in **stride units** (multiply by the level's stride for pixels) and is
# non-negative (a ReLU; see the `head.py` docstring for why this deliberately differs from the authors'
# code). Class scores are sigmoid logits, one per foreground class, with no background class.

# %%
# NBVAL_CHECK_OUTPUT
inside = model.forward_intermediates([image])
print("input", tuple(inside["images"].shape), "(normalised, padded to a multiple of 32)")
for name in ("features", "cls_logits", "box_regression", "centerness", "coefficients"):
    print(f"{name:15s}", [tuple(x.shape) for x in inside[name]])
print(f"{'basis_masks':15s}", tuple(inside["basis_masks"].shape))
print(
    f"C = {config.num_classes} classes, Q = {config.num_sub_regions} sub-regions, "
    f"M = {config.num_basis} basis masks, D = {config.fpn_channels} channels"
)

# %%
# NBVAL_CHECK_OUTPUT
head = model.head
parts = ("cls_tower", "reg_tower", "feature_alignment", "cls_logits", "box_regression", "centerness")
for name in (*parts, "spatial_coefficients"):
    count = sum(p.numel() for p in getattr(head, name).parameters())
    print(f"{name:22s} {count:8d} parameters")
print(f"{'scales':22s} {head.scales.numel():8d} (one learnable scalar per level)")

# %% [markdown]
# Where the trained model thinks objects are: the best class probability per location on P3–P5, the
# centerness probability, and their product, the score used to rank detections (dark = 0, bright = 1).

# %%
fig, axes = plt.subplots(3, 4, figsize=(10.5, 7.6), layout="constrained")
for row, level in enumerate(range(3)):
    cls_prob = inside["cls_logits"][level][0].sigmoid().max(0).values  # [H, W]
    ctr_prob = inside["centerness"][level][0, 0].sigmoid()  # [H, W]
    axes[row, 0].imshow(viz.to_uint8_image(image))
    axes[row, 0].set_title("input" if row == 0 else "", fontsize=9)
    axes[row, 0].set_ylabel(f"P{level + 3} (stride {config.strides[level]})")
    panels = [(cls_prob, "max class prob."), (ctr_prob, "centerness")]
    panels.append((cls_prob * ctr_prob, "product (ranking score)"))
    for column, (values, name) in enumerate(panels, start=1):
        shown = axes[row, column].imshow(values, vmin=0, vmax=1, cmap="magma")
        if row == 0:
            axes[row, column].set_title(name, fontsize=9)
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
fig.colorbar(shown, ax=axes[:, 1:], fraction=0.03, label="probability (all maps share this scale)")
plt.show()

# %% [markdown]
# The class-probability maps are bright at only a few locations, most of them on the ring at the bottom
# left (on P3 and P4), and dark over the background. The centerness maps are bright in many places,
# background included: centerness is trained only at positive points, so off the objects its value means
# nothing. In the product the background is dark again, because there the class probability is.

# %% [markdown]
# ## 2. Focal loss
#
# Each of the $C$ classes is an independent binary problem at every point; a background point (label 0) is
# a negative for all of them. With $p = \sigma(\text{logit})$ and $p_t = p$ for the true class, $1-p$
# otherwise,
#
# $$FL(p_t) = -\alpha_t\,(1-p_t)^\gamma \log p_t, \qquad \alpha_t = \alpha \text{ (positives) or } 1-\alpha
# \text{ (negatives)},\quad \gamma = 2,\ \alpha = 0.25,$$
#
# summed over points and classes and divided by the number of positives (+ the number of images, as the
# authors). The factor $(1-p_t)^\gamma$ silences the thousands of easy background points. Re-derived in a
# few lines and checked against the library:

# %%
# NBVAL_CHECK_OUTPUT
generator = torch.Generator().manual_seed(0)
logits = torch.randn(50, config.num_classes, generator=generator) * 3  # [P, C]
labels = torch.randint(0, config.num_classes + 1, (50,), generator=generator)  # [P], 0 = background
gamma, alpha, normalizer = 2.0, 0.25, float((labels > 0).sum() + 1)

targets = torch.zeros_like(logits)  # [P, C] one-hot, all zeros for background
targets[labels > 0, labels[labels > 0] - 1] = 1.0
p = logits.sigmoid()
p_t = torch.where(targets == 1, p, 1 - p)
alpha_t = torch.where(targets == 1, alpha, 1 - alpha)
mine = (-alpha_t * (1 - p_t) ** gamma * torch.log(p_t)).sum() / normalizer

library = losses.focal_loss(logits, labels, normalizer, gamma=gamma, alpha=alpha)
torch.testing.assert_close(mine, library)
print(f"focal loss {library.item():.3f}: inline == library")

# %% [markdown]
# (Computing $\log p_t$ directly from the sigmoid is fine for these logits; the library goes through
# torchvision's `sigmoid_focal_loss`, which uses the numerically stable BCE-with-logits.)
#
# How strongly does $\gamma$ down-weight easy examples? And on the trained model's real points, how much of
# the loss do the background points contribute with and without the focusing term?

# %%
sizes = [(int(x.shape[-2]), int(x.shape[-1])) for x in inside["cls_logits"]]
points, strides, ranges = fcos.flatten_levels(
    fcos.locations(sizes, config.strides), config.strides, config.regress_ranges
)
assigned = fcos.fcos_targets(
    points, strides, ranges, target["boxes"], target["labels"], config.center_sampling_radius
)
point_logits = torch.cat([x[0].flatten(1).t() for x in inside["cls_logits"]])  # [P, C]
point_targets = F.one_hot(assigned.labels, config.num_classes + 1)[:, 1:].float()  # [P, C]

fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
p_t_axis = torch.linspace(0.01, 1, 200)
for g in (0, 0.5, 1, 2, 5):
    axes[0].plot(p_t_axis, -((1 - p_t_axis) ** g) * torch.log(p_t_axis), label=f"γ = {g}")
axes[0].set_xlabel("$p_t$ (probability of the correct answer)")
axes[0].set_ylabel("loss (α omitted)")
axes[0].set_title("focal loss: easy examples ($p_t$ → 1) fade out", fontsize=10)
axes[0].legend()

shares = []
for g in (0.0, 2.0):
    p = point_logits.sigmoid()
    p_t = torch.where(point_targets == 1, p, 1 - p)
    alpha_t = torch.where(point_targets == 1, 0.25, 0.75)
    per_point = (-alpha_t * (1 - p_t) ** g * torch.log(p_t.clamp(min=1e-12))).sum(1)  # [P]
    background = assigned.labels == 0
    shares.append(float(per_point[background].sum() / per_point.sum()))
labels_gamma = ["α-balanced CE (γ = 0)", "focal (γ = 2)"]
axes[1].bar(labels_gamma, shares, color=["tab:gray", "tab:blue"])
axes[1].set_ylim(0, 1)
axes[1].set_ylabel("share of L_cls from background")
axes[1].set_title(
    f"val image 5: {int((assigned.labels == 0).sum())} background vs "
    f"{int((assigned.labels > 0).sum())} positive points",
    fontsize=10,
)
fig.tight_layout()
plt.show()
for name, share in zip(labels_gamma, shares, strict=True):
    print(f"{name:22s} background share of L_cls: {share:.2f}")

# %% [markdown]
# Left: the larger $\gamma$, the faster the loss of a well-classified example ($p_t$ near 1) falls to 0.
# Right, on the trained model's points of one image: the background points, which far outnumber the
# positives, carry a sizeable share of the α-balanced cross-entropy, and the focusing term ($\gamma = 2$)
# shrinks that share to a small fraction of it (the two shares are printed under the figure).
#
# ## 3. IoU loss on $(l, t, r, b)$
#
# A positive point predicts its distances to the four box sides; the target box contains the same point,
# so both boxes can be written around it and their IoU computed from distances alone. $L_{reg}$ is
# $-\log \mathrm{IoU}$, weighted by the centerness target of each positive (as the authors):
# $L_{reg} = \sum_j w_j \ell_j / \sum_j w_j$. Checked here against torchvision's `box_iou` on the decoded
# boxes:

# %%
# NBVAL_CHECK_OUTPUT
point = torch.tensor([[40.0, 40.0]])
target_ltrb = torch.tensor([[10.0, 20.0, 30.0, 15.0]])
pred_ltrb = torch.tensor([[12.0, 16.0, 25.0, 20.0]])
iou = box_iou(fcos.decode_boxes(point, pred_ltrb), fcos.decode_boxes(point, target_ltrb))[0, 0]
mine = -torch.log(iou)
library = losses.box_loss(pred_ltrb, target_ltrb, weight=torch.ones(1), kind="iou")
torch.testing.assert_close(mine, library)
print(f"IoU {iou.item():.4f}  ->  -log IoU = {mine.item():.4f} (library {library.item():.4f})")
print(f"1 - GIoU = {losses.box_loss(pred_ltrb, target_ltrb, torch.ones(1), kind='giou').item():.4f}")

# %%
scale = torch.linspace(0.2, 3.0, 200)
pred = target_ltrb * scale[:, None]  # all four distances scaled together
ones = torch.ones(1)
iou_loss = [losses.box_loss(p[None], target_ltrb, ones, "iou").item() for p in pred]
giou_loss = [losses.box_loss(p[None], target_ltrb, ones, "giou").item() for p in pred]
fig, ax = plt.subplots(figsize=(6, 3.6))
ax.plot(scale, iou_loss, label="-log IoU (paper, FCOS)")
ax.plot(scale, giou_loss, label="1 - GIoU (SipMask-benchmark)")
ax.axvline(1.0, color="grey", ls=":")
ax.set_xlabel("predicted distances / target distances")
ax.set_ylabel("loss")
ax.set_title("all four predicted distances scaled by the same factor", fontsize=10)
ax.legend()
plt.show()

# %% [markdown]
# Both losses are 0 only when the prediction equals the target (ratio 1). Away from it, $-\log$ IoU keeps
# growing (it has no bound as IoU → 0), while $1 - $ GIoU stays below 1 here: the two boxes are nested,
# so the enclosing box is the larger one and GIoU equals IoU ($1 - $ GIoU can reach 2 only for boxes far
# apart). Neither loss depends on the size of the box, only on the ratios: scaling the prediction and the
# target together by 10 leaves both unchanged.

# %%
# NBVAL_CHECK_OUTPUT
for kind in ("iou", "giou"):
    small = losses.box_loss(pred_ltrb, target_ltrb, ones, kind)
    large = losses.box_loss(10 * pred_ltrb, 10 * target_ltrb, ones, kind)
    torch.testing.assert_close(small, large)
    print(f"{kind}: the loss of a box and of the same box 10x larger are equal")

# %% [markdown]
# ## 4. Centerness
#
# A point near the edge of its box tends to predict a poor box. FCOS therefore learns, per location, how
# central it is:
#
# $$\text{centerness} = \sqrt{\frac{\min(l, r)}{\max(l, r)} \cdot \frac{\min(t, b)}{\max(t, b)}}$$
#
# — 1 at the centre of the box, 0 on its sides. The target is used three times: as the BCE target of the
# centerness branch, as the weight $w_j$ of each positive's IoU loss, and (through the predicted
# centerness) to rank detections at inference. Over every pixel of a box:

# %%
# NBVAL_CHECK_OUTPUT
box = torch.tensor([6.0, 10.0, 86.0, 50.0])  # x1, y1, x2, y2: an 80 x 40 box
ys, xs = torch.meshgrid(torch.arange(0, 60) + 0.5, torch.arange(0, 96) + 0.5, indexing="ij")
ltrb = torch.stack([xs - box[0], ys - box[1], box[2] - xs, box[3] - ys], dim=-1)  # [H, W, 4]
inside_box = ltrb.min(-1).values > 0  # [H, W]
l, t, r, b = ltrb[inside_box].unbind(-1)
mine = torch.sqrt(torch.minimum(l, r) / torch.maximum(l, r) * torch.minimum(t, b) / torch.maximum(t, b))
library = fcos.centerness_target(ltrb[inside_box])
torch.testing.assert_close(mine, library)
centerness = torch.zeros(60, 96)
centerness[inside_box] = library
print(
    f"max {centerness.max().item():.3f} at the centre, {int((centerness > 0.5).sum())} "
    f"of {int(inside_box.sum())} pixels above 0.5"
)

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
shown = axes[0].imshow(centerness, cmap="viridis", extent=(0, 96, 60, 0))
axes[0].contour(xs, ys, centerness, levels=[0.25, 0.5, 0.75], colors="white", linewidths=0.8)
axes[0].add_patch(Rectangle((box[0], box[1]), box[2] - box[0], box[3] - box[1], fill=False, ec="red"))
axes[0].set_title("centerness target over an 80 × 40 box (contours 0.25 / 0.5 / 0.75)", fontsize=9)
fig.colorbar(shown, ax=axes[0], fraction=0.03)

positive = assigned.labels > 0
targets_ctr = fcos.centerness_target(assigned.box_targets[positive])
predicted_ctr = torch.cat([x[0].flatten() for x in inside["centerness"]])[positive].sigmoid()
axes[1].scatter(targets_ctr, predicted_ctr, s=12)
axes[1].plot([0, 1], [0, 1], color="grey", ls=":")
axes[1].set_xlim(0, 1)
axes[1].set_ylim(0, 1)
axes[1].set_xlabel("centerness target")
axes[1].set_ylabel("predicted (sigmoid)")
axes[1].set_title(f"trained model, the {int(positive.sum())} positives of val image 5", fontsize=9)
fig.tight_layout()
plt.show()
print(
    f"center sampling radius {config.center_sampling_radius} strides; centerness targets of the positives "
    f"from {targets_ctr.min():.2f} to {targets_ctr.max():.2f}"
)
correlation = torch.corrcoef(torch.stack([targets_ctr, predicted_ctr]))[0, 1]
print(f"correlation of predicted and target centerness over the positives: {correlation:.2f}")

# %% [markdown]
# Left: the target is 1 only at the box centre and falls to 0 at the sides; the contours are pointed ovals
# stretched along the box, because the horizontal and vertical ratios multiply. Right: center sampling
# (notebook 01) keeps the positives within `center_sampling_radius` strides of the box centre, yet their
# targets still spread over most of (0, 1) (range printed above): for a small box that radius reaches
# close to its sides. The trained model's predictions follow the dotted diagonal closely (correlation
# printed above); a model trained for a few iterations only (fast mode) has not yet learned to tell the
# positives apart.
#
# ## 5. All the losses of one training step
#
# In train mode the model assigns targets (`fcos.fcos_targets`), flattens all levels and computes
# `loss_cls` (focal), `loss_box` (IoU, centerness-weighted), `loss_centerness` (BCE) and `loss_mask`
# (§3.4, notebook 04). Their unweighted sum is what the optimiser minimises.

# %%
# NBVAL_CHECK_OUTPUT
batch = [val[k] for k in (5, 9)]
model.train()
loss_dict = model([im for im, _ in batch], [t for _, t in batch])
model.eval()
all_scalars = all(v.ndim == 0 for v in loss_dict.values())
print(sorted(loss_dict), "-> total = sum of the four, each a scalar:", all_scalars)

# %%
for name, value in loss_dict.items():
    print(f"{name:16s} {value.item():.4f}")

# %% [markdown]
# ## Summary
#
# * The head is shared by all levels: per location it predicts $C$ class logits, $(l, t, r, b)$ in stride
#   units, a centerness logit and $Q \times M$ spatial coefficients.
# * $L_{cls}$ is the sigmoid focal loss over all points, normalised by the number of positives; the
#   $(1-p_t)^\gamma$ factor keeps the many easy background points from dominating.
# * $L_{reg}$ is $-\log$ IoU between predicted and target distances of the positives, weighted by their
#   centerness targets; it does not care about the box's absolute size.
# * Centerness, $\sqrt{\min(l,r)/\max(l,r)\cdot\min(t,b)/\max(t,b)}$, is a BCE target, a loss weight and a
#   ranking factor at inference.
#
# ## Exercises
#
# 1. Re-derive `losses.box_loss(..., kind="giou")` inline: compute the smallest enclosing box of the two
#    decoded boxes and check $1 - (\mathrm{IoU} - |E \setminus (A \cup B)| / |E|)$ against the library.
# 2. In the focal-loss bar chart, try $\gamma = 1$ and $\gamma = 5$. How does the share of the background
#    change, and what would you expect to happen to training with $\gamma = 0$?
# 3. For which boxes is the centerness target of the *centre pixel* of the box below 1? (Hint: pixel
#    centres sit at $j + 0.5$; try boxes with odd and even widths.)
