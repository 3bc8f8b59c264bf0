# %% [markdown]
# # 05 · Mask alignment weighting (§3.4)
#
# SipMask's mask loss does not treat every positive location alike. A location whose predicted box is
# well placed *and* confidently classified gets a larger weight on its mask loss. In this notebook you
# will:
#
# * compute the weights α_j = s_j · o_j for the positives of a batch, using the trained `cpu_tiny`
#   model, and see how the class score s_j and the box overlap o_j relate;
# * see the per-image normalisation that keeps the mean weight at 1, and the four ablation modes
#   `none`, `cls`, `loc` and `cls+loc` (paper Table 5);
# * re-derive the weighted mask loss for a few instances in plain PyTorch and check it against
#   `sipmask_ref.losses.mask_loss`.
#
# The paper, §3.4:
#
# > **Mask Alignment Weighting:** In our mask alignment weighting, we first compute the overlap $o_j$
# > between a predicted bounding-box $j$ and the corresponding ground-truth. The weighting factor
# > $\alpha_j$ is then obtained by multiplying the overlap $o_j$ and the classification score $s_j$ of
# > the bounding-box $j$. Here, a higher $\alpha_j$ indicates good quality bounding-box detections.
# > Consequently, $\alpha_j$ is used to weight the mask loss $l^j$ of the instance $j$, leading to
# > $L_{mask} = \frac{1}{N} \sum_j l^j \times \alpha_j$. Here, $N$ is the number of bounding-boxes.
# > Our weighting strategy encourages the network to predict a high quality instance mask for a high
# > quality bounding-box detections.
#
# Two details come from the authors' code rather than the paper
# ([docs/authors_implementation.md §2.3](../docs/authors_implementation.md#23-mask-loss)): the
# "bounding-boxes" are **all positive
# locations** of the image (each with the box it predicts, detached), and the weights are normalised
# per image, $\alpha \leftarrow \alpha / (\sum \alpha + 10^{-4}) \cdot N$, so that their mean is about 1.
# The per-instance loss $l^j$ is the pixel-wise BCE inside the predicted box, summed and divided by the
# box area.

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from sipmask_ref import fcos, losses, tutorial
from sipmask_ref.model import basis_size_gt_masks, flatten_outputs, paired_box_iou
from sipmask_ref.viz import draw_instances

plt.rcParams["figure.dpi"] = 100
torch.manual_seed(0)
print("fast mode:", tutorial.fast_mode())

# %% [markdown]
# ## A trained model and a batch of training images
#
# `tutorial.trained_model()` trains the `cpu_tiny` preset once (outputs/tutorial/) and loads it
# afterwards. The weights α only exist during training, so we take training images and their targets.
# The model stays in eval mode (its small CNN backbone has BatchNorm; eval mode uses the running
# statistics, and nothing in the model changes).

# %%
model, config = tutorial.trained_model()
train_set = tutorial.synthetic_dataset("train")
items = [train_set[i] for i in range(8)]
images = [image for image, _ in items]
targets = [target for _, target in items]
print(config.sub_regions, "sub-regions,", config.num_basis, "basis masks,", end=" ")
print("alignment_weight =", config.alignment_weight)

# %% [markdown]
# ## The positives, their scores s_j and overlaps o_j
#
# The steps of `SipMask._mask_loss` for one image, written out: FCOS assigns every point of every level to a
# ground truth or to the background; each positive point predicts a box (decoded from its
# (l, t, r, b), detached, halved to basis-map pixels); $s_j$ is the sigmoid of the logit of its
# ground-truth class and $o_j$ the IoU of its predicted box with its ground-truth box.

# %%
with torch.no_grad():
    batch = model.preprocess(images, targets)
    _, outputs, basis_masks = model.run_network(batch.images)  # basis [B, M, H, W]
    sizes = [tuple(x.shape[-2:]) for x in outputs.cls_logits]
    points, strides, ranges = fcos.flatten_levels(
        fcos.locations(sizes, config.strides), config.strides, config.regress_ranges
    )
    cls, reg, ctr, coefficients = flatten_outputs(outputs)  # [B, P, C], [B, P, 4], [B, P], [B, P, Q, M]
    reg = reg * strides[None, :, None]  # stride units -> pixels

level_of_point = torch.cat([torch.full((h * w,), l) for l, (h, w) in enumerate(sizes)])  # [P]
positives = []  # one dict per image
for b, target in enumerate(batch.targets):
    assigned = fcos.fcos_targets(
        points, strides, ranges, target["boxes"], target["labels"], config.center_sampling_radius
    )
    index = (assigned.labels > 0).nonzero().squeeze(1)  # [N]
    boxes = fcos.decode_boxes(points[index], reg[b, index]) / 2  # [N, 4] basis-map pixels
    keep = losses.valid_mask_boxes(boxes)
    index, boxes = index[keep], boxes[keep]
    gt = assigned.matched_gt[index]  # [N]
    scores = cls[b, index, assigned.labels[index] - 1].sigmoid()  # s_j
    ious = paired_box_iou(boxes * 2, target["boxes"][gt])  # o_j
    level = level_of_point[index]  # 0 = P3, 1 = P4, ...
    positives.append(dict(index=index, boxes=boxes, gt=gt, scores=scores, ious=ious, level=level))
print("positives per image:", [len(p["index"]) for p in positives])

# %%
s = torch.cat([p["scores"] for p in positives]).numpy()
o = torch.cat([p["ious"] for p in positives]).numpy()
level = torch.cat([p["level"] for p in positives]).numpy()
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
points_plot = axes[0].scatter(o, s, c=s * o, s=10, cmap="viridis")
axes[0].set_xlabel("o_j: IoU of the predicted box with its ground truth")
axes[0].set_ylabel("s_j: score of the ground-truth class")
axes[0].set_title("every positive of the batch, coloured by α_j = s_j·o_j")
fig.colorbar(points_plot, ax=axes[0], label="α_j = s_j·o_j (raw)")
for l in np.unique(level):
    axes[1].hist((s * o)[level == l], bins=20, range=(0, 1), alpha=0.6, label=f"P{3 + l}")
axes[1].set_xlabel("raw α_j = s_j·o_j")
axes[1].set_ylabel("positives")
axes[1].set_title("raw weights by pyramid level")
axes[1].legend()
plt.tight_layout()
plt.show()
print(f"correlation of s and o over {len(s)} positives: {np.corrcoef(s, o)[0, 1]:.2f}")

# %% [markdown]
# The score and the overlap measure different things: over the batch they are hardly correlated (printed
# above). In the scatter, positives with a poor box (low $o_j$, left) still reach middling scores, and
# many well-placed boxes (right) have low scores. The product is large, the bright points, only in the
# top-right corner where both are good. In the paper's words, α picks out "high quality bounding-box
# detections". On every level most raw products lie well below 1 (right).
#
# ## Normalisation: the mean weight is 1 in every image
#
# Raw products are small early in training, because scores start at 0.01. Normalising makes the
# scale of the mask loss independent of how well the detector is doing; only the relative weights
# within an image remain. The authors divide by
# the sum (+1e-4) and multiply by N. `losses.mask_alignment_weight` does this and returns weights
# without gradient.

# %%
# NBVAL_CHECK_OUTPUT
for p in positives:
    p["alpha"] = losses.mask_alignment_weight(p["scores"], p["ious"], "cls+loc")
    raw = p["scores"] * p["ious"]
    torch.testing.assert_close(p["alpha"], raw / (raw.sum() + 1e-4) * len(raw))  # the same, inline
means = torch.stack([p["alpha"].mean() for p in positives])
print("mean weight per image is 1 (to 1e-3):", bool(((means - 1).abs() < 1e-3).all()))
print("weights carry no gradient:", not any(p["alpha"].requires_grad for p in positives))

# %% [markdown]
# ## The four modes of the ablation (paper Table 5)
#
# > **Table 5.** The effect of classification (class confidences) and localization (ground-truth
# > overlap) scores on our mask alignment weighting loss (cls. + loc.).
# >
# > | | baseline | only cls. | only loc. | cls.+loc. |
# > |---|---|---|---|---|
# > | AP | 31.2 | 31.8 | 31.7 | 32.0 |
#
# `config.alignment_weight` selects the mode: `none` (plain BCE, every weight 1), `cls` ($s_j$), `loc`
# ($o_j$) or `cls+loc` ($s_j o_j$, the paper). All four are normalised the same way. On four made-up
# positives:

# %%
# NBVAL_CHECK_OUTPUT
toy_scores = torch.tensor([0.9, 0.6, 0.2, 0.05])
toy_ious = torch.tensor([0.8, 0.3, 0.9, 0.1])
for mode in losses.ALIGNMENT_MODES:
    weights = losses.mask_alignment_weight(toy_scores, toy_ious, mode)
    print(f"{mode:8s}", np.round(weights.numpy(), 3))

# %% [markdown]
# And on the positives of one real image: each bar is one positive, sorted by its `cls+loc` weight.

# %%
p = max(positives, key=lambda p: len(p["index"]))
order = torch.argsort(p["scores"] * p["ious"], descending=True)
fig, ax = plt.subplots(figsize=(10, 3))
width = 0.2
for k, mode in enumerate(losses.ALIGNMENT_MODES):
    w = losses.mask_alignment_weight(p["scores"], p["ious"], mode)[order].numpy()
    ax.bar(np.arange(len(w)) + (k - 1.5) * width, w, width, label=mode)
ax.set_xlabel("positive location (sorted by s·o)")
ax.set_ylabel("normalised weight")
ax.legend(ncol=4)
plt.tight_layout()
plt.show()


def ranks(values: torch.Tensor) -> torch.Tensor:
    return torch.argsort(torch.argsort(values)).float()


product_ranks = ranks(p["scores"] * p["ious"])
for name, values in (("cls", p["scores"]), ("loc", p["ious"])):
    rho = torch.corrcoef(torch.stack([ranks(values), product_ranks]))[0, 1]
    print(f"rank correlation of {name} with cls+loc over the {len(values)} positives: {rho:.2f}")

# %% [markdown]
# The `none` bars are all 1 and the `cls+loc` bars fall from left to right by construction. The `cls`
# bars follow the product more closely than the `loc` bars do (the rank correlations printed above), so in
# this image the score decides most of the ordering, while the `loc` bars stay closer to 1 throughout and
# rise again for several of the lightest positives (right end). Each single-factor mode agrees with the
# product only in part.

# %% [markdown]
# Where do the heavy weights sit? Below: one training image with its ground truth (left), and every
# positive location as a dot coloured by its normalised weight (right), with the predicted boxes of
# the heaviest (solid) and the lightest (dashed) positive.

# %%
b = max(range(len(positives)), key=lambda b: len(positives[b]["index"]))
p = positives[b]
fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
instances = {key: targets[b][key] for key in ("boxes", "masks", "labels")}
draw_instances(axes[0], images[b], **instances, class_names=train_set.class_names, title="ground truth")
axes[0].set_title("ground truth", pad=14)  # above the labels of boxes that touch the top edge
axes[1].imshow(0.5 * images[b].permute(1, 2, 0).numpy())
xy = points[p["index"]].numpy()
dots = axes[1].scatter(
    xy[:, 0], xy[:, 1], c=p["alpha"].numpy(), cmap="plasma", s=25, edgecolors="white", linewidths=0.3
)
extremes = {"heaviest": int(p["alpha"].argmax()), "lightest": int(p["alpha"].argmin())}
for (name, j), (style, color) in zip(extremes.items(), (("-", "yellow"), ("--", "cyan")), strict=True):
    x1, y1, x2, y2 = (p["boxes"][j] * 2).tolist()
    box = plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=2, ls=style, color=color)
    axes[1].add_patch(box)
    box.set_label(f"predicted box of the {name} positive")
fig.colorbar(dots, ax=axes[1], label="normalised α_j")
axes[1].set_title("positive locations, colour = α_j")
axes[1].legend(loc="upper center", bbox_to_anchor=(0.5, -0.02), fontsize=8, frameon=False)
axes[1].set_axis_off()
plt.tight_layout()
plt.show()
for name, j in extremes.items():
    print(
        f"{name}: s_j = {p['scores'][j]:.2f}, o_j = {p['ious'][j]:.2f}, "
        f"normalised α_j = {p['alpha'][j]:.2f} (level P{3 + int(p['level'][j])})"
    )

# %% [markdown]
# The bright dots, the heaviest weights, sit on the blue star at the bottom right: its positives both
# score well and predict boxes that fit it (the solid box; s_j and o_j printed above). The lightest
# positive (dashed box) predicts a box with a fair overlap but scores very low for its class, so its
# mask loss counts little: either factor alone can demote a positive.
#
# ## Re-deriving the weighted mask loss for a few instances
#
# For one image we take five positives and compute
#
# $$l^j = \frac{1}{w_j h_j} \sum_{(x, y) \in \text{box}_j}
# \mathrm{BCE}\big(\sigma(B(x, y) \cdot c_{q(x, y), j}),\; \mathrm{gt}_j(x, y)\big),
# \qquad L_{mask} = \frac{1}{N} \sum_j \alpha_j\, l^j,$$
#
# where $q(x, y)$ is the sub-region of box $j$ that pixel $(x, y)$ falls in (§3.3). We loop over
# boxes and pixels in the plainest way, with no vectorisation, and compare the result with
# `losses.mask_loss`.

# %%
b = 0
p = positives[b]
chosen = torch.arange(min(5, len(p["index"])))
basis = basis_masks[b]  # [M, H, W]
gt_masks = basis_size_gt_masks(batch.targets[b]["masks"], basis.shape[-2:])[p["gt"][chosen]]  # [N, H, W]
coefs = coefficients[b, p["index"][chosen]]  # [N, Q, M]
boxes = p["boxes"][chosen]  # [N, 4]
weights = losses.mask_alignment_weight(p["scores"][chosen], p["ious"][chosen])  # [N]
k_h, k_w = config.sub_regions

per_instance = []
for j in range(len(chosen)):
    x1, y1, x2, y2 = boxes[j].tolist()
    total = 0.0
    for y in range(basis.shape[1]):
        for x in range(basis.shape[2]):
            if not (x1 <= x < x2 and y1 <= y < y2):
                continue  # outside the box prediction and target are both 0: no loss
            column = min(k_w - 1, int((x - x1) * k_w // (x2 - x1)))
            row = min(k_h - 1, int((y - y1) * k_h // (y2 - y1)))
            logit = basis[:, y, x] @ coefs[j, row * k_w + column]
            total += F.binary_cross_entropy_with_logits(logit, gt_masks[j, y, x])
    per_instance.append(total / ((x2 - x1) * (y2 - y1)))
per_instance = torch.stack(per_instance)
inline = (weights * per_instance).sum() / len(chosen)
library = losses.mask_loss(basis, coefs, boxes, gt_masks, weights, config.sub_regions)
print("l^j:", np.round(per_instance.numpy(), 3), " α_j:", np.round(weights.numpy(), 3))
print(f"inline L_mask = {inline:.5f}, losses.mask_loss = {library:.5f}")

# %%
# NBVAL_CHECK_OUTPUT
torch.testing.assert_close(inline, library, rtol=1e-4, atol=1e-6)
print("inline re-derivation == losses.mask_loss")

# %% [markdown]
# The model's own `loss_mask` is the mean of this per-image loss over the batch, computed on all
# positives. Our pipeline above rebuilds it exactly from the same network outputs:

# %%
# NBVAL_CHECK_OUTPUT
with torch.no_grad():
    per_image = []
    for b, p in enumerate(positives):
        gt = basis_size_gt_masks(batch.targets[b]["masks"], basis_masks.shape[-2:])[p["gt"]]
        per_image.append(
            losses.mask_loss(
                basis_masks[b], coefficients[b, p["index"]], p["boxes"], gt, p["alpha"], config.sub_regions
            )
        )
    model_losses = model.compute_losses(outputs, basis_masks, batch.targets)
torch.testing.assert_close(torch.stack(per_image).mean(), model_losses["loss_mask"])
print("mean over images of mask_loss == model loss_mask:", sorted(model_losses))

# %% [markdown]
# ## Summary
#
# * α_j = s_j · o_j is the product of the positive's score for its ground-truth class and the IoU of
#   its predicted box with the ground truth. It is computed without gradient and normalised to mean 1
#   per image.
# * The mask loss of instance j is the BCE inside its predicted box divided by the box area.
#   L_mask = 1/N Σ_j α_j l^j, so well-detected positives count more.
# * `config.alignment_weight` switches between `none`, `cls`, `loc` and `cls+loc`, the columns of
#   Table 5.
#
# ## Exercises
#
# 1. Train two models with `tutorial.trained_model(dataclasses.replace(preset("cpu_tiny"),
#    alignment_weight="none"), name="cpu_tiny_wl_none")` and with `"cls+loc"`. Compare their mask
#    AP (`engine.evaluate`). Is the gap bigger for small or for large objects?
# 2. Remove the normalisation, so that α = s·o raw. What happens to the size of `loss_mask` at the
#    start of training, when scores are about 0.01? What does that do to the mask branch's effective
#    learning rate?
# 3. The weights use the *predicted* box, detached. Replace it with the ground-truth box (o_j = 1 for
#    all). Which mode of the ablation does that turn `cls+loc` into?
