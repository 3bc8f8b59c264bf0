# %% [markdown]
# # 08 · Inference, COCO evaluation and error analysis
#
# From head outputs to a score on a benchmark, and then to *why* the score is what it is. You will:
#
# * run the two NMS paths of the authors' code, standard NMS and YOLACT's Fast NMS, on the same
#   detections, and re-derive Fast NMS on a tiny example, checked against `inference.fast_nms`;
# * evaluate the trained `cpu_tiny` model on the synthetic val split with pycocotools: the 12 COCO
#   numbers for boxes and masks, AP per object size and per class, precision/recall curves;
# * compare AP on *adjacent* instances (a same-class neighbour inside the box, the case SipMask is
#   built for) with AP on isolated ones, for the 2×2 model and a 1×1 model on the same instances;
# * sort the errors at a working threshold into false-positive types and misses, with figures.
#
# The paper, §4.1:
#
# > During inference we select top 100 bounding-boxes with highest classification scores, after NMS.
# > For these bounding-boxes, a simple linear combination between the predicted spatial coefficients
# > and basis masks are used to obtain instance masks.
#
# The authors' code has two paths
# ([docs/authors_implementation.md §3](../docs/authors_implementation.md#3-inference)). The ~800-pixel
# models use **standard NMS**: a candidate needs a raw class probability > 0.05, its score is
# probability × centerness, and greedy per-class NMS at IoU 0.5 follows. The 544-pixel models use
# **Fast NMS** from YOLACT: scores are multiplied by centerness first; per class the top 200, a box
# survives when its largest IoU with any *higher-scored* box of its class is ≤ 0.5. `cpu_tiny` uses
# Fast NMS (`config.nms`).

# %%
import contextlib
import dataclasses
import io

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Patch
from pycocotools import mask as mask_utils
from pycocotools.cocoeval import COCOeval
from torchvision.ops import batched_nms, box_iou

from sipmask_ref import engine, fcos, inference, tutorial
from sipmask_ref.config import preset
from sipmask_ref.data.synthetic import ADJACENCY_THRESHOLD, adjacency_flags
from sipmask_ref.eval.coco import (
    STAT_NAMES,
    detection_owners,
    evaluate_coco,
    format_table,
    predictions_to_coco_results,
)
from sipmask_ref.spatial_preservation import flatten_coefficients
from sipmask_ref.viz import draw_instances

plt.rcParams["figure.dpi"] = 110  # every figure below: legible at notebook width
torch.manual_seed(0)
torch.set_grad_enabled(False)  # inference only
model, config = tutorial.trained_model()
val_set = tutorial.synthetic_dataset("val")
print(
    f"nms = {config.nms!r}, score_threshold = {config.score_threshold}, nms_iou = {config.nms_iou}, "
    f"max_detections = {config.max_detections}, mask_threshold = {config.mask_threshold}"
)

# %% [markdown]
# ## Fast NMS on a tiny example, re-derived
#
# Four boxes of class 0 and one of class 1. B overlaps A (IoU 0.6), C overlaps B (IoU 0.6) but A only by
# 0.33.
# Standard NMS removes B because of A, and keeps C, since B is gone by the time C is looked at. Fast NMS
# decides every box at once from the full upper-triangular IoU matrix. C still sees B above it and is
# dropped, so Fast NMS can suppress a little more than standard NMS, in exchange for one matrix
# operation instead of a loop.

# %%
toy_boxes = torch.tensor(
    [[0, 0, 10, 10], [2.5, 0, 12.5, 10], [5, 0, 15, 10], [40, 40, 50, 50], [1, 1, 11, 11]]
)
toy_scores = torch.tensor([[0.9, 0.0], [0.8, 0.0], [0.7, 0.0], [0.6, 0.0], [0.0, 0.5]])  # [P, C]
names = "ABCDE"
iou_ab, iou_bc, iou_ac = (
    float(box_iou(toy_boxes[i : i + 1], toy_boxes[j : j + 1])) for i, j in ((0, 1), (1, 2), (0, 2))
)
print(f"IoU(A,B) = {iou_ab:.2f}  IoU(B,C) = {iou_bc:.2f}  IoU(A,C) = {iou_ac:.2f}")


def fast_nms_inline(boxes, scores, iou_threshold=0.5, score_threshold=0.1):
    """Fast NMS, one class and one box at a time: keep box i when no HIGHER-scored box of its class
    (suppressed or not) overlaps it by more than iou_threshold. Returns (index, class, score), best first."""
    kept = []
    for c in range(scores.shape[1]):
        order = sorted(range(len(boxes)), key=lambda i: -float(scores[i, c]))
        for rank, i in enumerate(order):
            above = [box_iou(boxes[i : i + 1], boxes[h : h + 1]).item() for h in order[:rank]]
            if max(above, default=0.0) <= iou_threshold and scores[i, c] > score_threshold:
                kept.append((float(scores[i, c]), i, c))
    kept.sort(key=lambda t: -t[0])
    return [i for _, i, _ in kept], [c for _, _, c in kept], [s for s, _, _ in kept]


# %%
# NBVAL_CHECK_OUTPUT
index, labels, scores = inference.fast_nms(toy_boxes, toy_scores, iou_threshold=0.5, score_threshold=0.1)
mine = fast_nms_inline(toy_boxes, toy_scores)
assert mine[0] == index.tolist() and mine[1] == labels.tolist()
torch.testing.assert_close(torch.tensor(mine[2]), scores)
candidate, cls = (toy_scores > 0.1).nonzero(as_tuple=True)
standard = batched_nms(toy_boxes[candidate], toy_scores[candidate, cls], cls, 0.5)
print("Fast NMS (inline == inference.fast_nms) keeps:", [names[i] for i in index.tolist()])
print("standard NMS (torchvision.ops.batched_nms) keeps:", [names[i] for i in candidate[standard].tolist()])


# %% [markdown]
# ## The two paths on the same image
#
# `inference.detect` runs either path from the per-level head outputs of one image. We call it twice on
# the same outputs, once with the model's Fast NMS and once with `nms="standard"`. First the two full
# pipelines. Their score thresholds also differ: standard NMS thresholds the raw probability, Fast NMS
# thresholds probability × centerness.


# %%
def detect(inter: dict, config) -> inference.Detections:
    """inference.detect for image 0 of forward_intermediates' outputs (what SipMask._detect does)."""
    sizes = [tuple(x.shape[-2:]) for x in inter["cls_logits"]]
    return inference.detect(
        cls_logits=[x[0].flatten(1).t() for x in inter["cls_logits"]],  # [P_l, C]
        box_regression=[x[0].flatten(1).t() for x in inter["box_regression"]],  # [P_l, 4]
        centerness=[x[0].flatten() for x in inter["centerness"]],  # [P_l]
        coefficients=[flatten_coefficients(x[:1])[0] for x in inter["coefficients"]],  # [P_l, Q, M]
        points=fcos.locations(sizes, config.strides),
        strides=config.strides,
        image_size=inter["image_sizes"][0],
        config=config,
    )


image, target = val_set[7]
inter = model.forward_intermediates([image])
paths = {
    "fast": detect(inter, config),
    "standard": detect(inter, dataclasses.replace(config, nms="standard")),
}
torch.testing.assert_close(paths["fast"].boxes, inter["detections"][0]["boxes"] * 2)  # the model's own path
for name, found in paths.items():
    print(f"{name:8s}: {len(found.scores)} detections, best scores {np.round(found.scores[:5].numpy(), 3)}")

# %% [markdown]
# Then the NMS step alone. We take identical scored candidates (probability × centerness of the top
# locations) and identical thresholds, with no cap at 100, so that only the suppression rule differs.
# Everything Fast NMS keeps, standard NMS keeps too, because nothing above a Fast-NMS survivor overlaps
# it. Standard NMS may keep a few more.

# %%
wide = dataclasses.replace(config, score_threshold=0.05, max_detections=10_000, fast_nms_top_k=10_000)
sizes = [tuple(x.shape[-2:]) for x in inter["cls_logits"]]
probs = torch.cat([x[0].flatten(1).t().sigmoid() for x in inter["cls_logits"]])  # [P, C]
ctr = torch.cat([x[0].flatten().sigmoid() for x in inter["centerness"]])  # [P]
boxes = torch.cat(
    [
        fcos.decode_boxes(p, x[0].flatten(1).t() * s)
        for p, x, s in zip(
            fcos.locations(sizes, config.strides), inter["box_regression"], config.strides, strict=True
        )
    ]
)
boxes = inference.clip_boxes(boxes, inter["image_sizes"][0])
scored = probs * ctr[:, None]  # [P, C]
fast_index, fast_labels, _ = inference.fast_nms(
    boxes, scored, wide.nms_iou, wide.score_threshold, wide.fast_nms_top_k, wide.max_detections
)
candidate, cls = (scored > wide.score_threshold).nonzero(as_tuple=True)
keep = batched_nms(boxes[candidate], scored[candidate, cls], cls, wide.nms_iou)
fast_set = set(zip(fast_index.tolist(), fast_labels.tolist(), strict=True))
standard_set = set(zip(candidate[keep].tolist(), cls[keep].tolist(), strict=True))
print(f"same {len(candidate)} candidates: Fast NMS keeps {len(fast_set)}, ", end="")
print(f"standard NMS keeps {len(standard_set)}")

# %%
# NBVAL_CHECK_OUTPUT
print("Fast NMS survivors are a subset of standard NMS survivors:", fast_set <= standard_set)

# %%
shown = len(target["boxes"])  # draw as many detections of each path as there are objects
fig, axes = plt.subplots(1, 3, figsize=(10, 3.6))
draw_instances(
    axes[0],
    image,
    boxes=target["boxes"],
    masks=target["masks"],
    labels=target["labels"],
    class_names=val_set.class_names,
    title="ground truth",
)
scale = inter["scale_factors"][0][0]
for ax, (name, found) in zip(axes[1:], paths.items(), strict=True):
    draw_instances(
        ax,
        image,
        boxes=found.boxes[:shown] / scale,
        labels=found.labels[:shown],
        scores=found.scores[:shown],
        class_names=val_set.class_names,
        title=f"{name} NMS: its {shown} best of {len(found.scores)}",
    )
for ax in axes:
    ax.set_title(ax.get_title(), pad=14)  # above the labels of boxes that touch the top edge
plt.tight_layout()
plt.show()

# %% [markdown]
# What to see: the two lists agree at the top (the best scores printed above are the same for both
# paths), since a detection that no higher-scored box of its class overlaps survives either rule; here the
# two panels show the same best boxes. Further down the lists differ in length (the counts in the panel
# titles): standard NMS starts from more candidates, because it thresholds the raw probability rather than
# probability × centerness, and it keeps some overlapping boxes that Fast NMS drops. The next cells
# compare the two suppression rules alone.
#
# ## COCO evaluation with pycocotools
#
# `engine.evaluate` runs the model over a dataset and scores it. Underneath, three steps: predictions
# go to COCO result dicts (boxes as [x, y, w, h], masks binarised at `config.mask_threshold` (printed
# in the first cell) and RLE-encoded, labels mapped back to the dataset's category ids), then COCOeval.
# We do the steps ourselves so that we can keep the results for the analysis below. The full run
# evaluates every val image; fast mode takes the first 20.

# %%
num_images = 20 if tutorial.fast_mode() else len(val_set)


def coco_results(net, mask_threshold: float) -> tuple[list[dict], list[int]]:
    """The COCO result dicts of `net` on the first num_images val images, and those images' ids."""
    found, ids = [], []
    for first in range(0, num_images, 8):
        batch = [val_set[i] for i in range(first, min(first + 8, num_images))]
        outputs = engine.predict_images(net, [im for im, _ in batch], "cpu")
        batch_ids = [int(t["image_id"]) for _, t in batch]
        found += predictions_to_coco_results(outputs, batch_ids, val_set.label_to_cat_id, mask_threshold)
        ids += batch_ids
    return found, ids


results, image_ids = coco_results(model, config.mask_threshold)
metrics = evaluate_coco(val_set.coco, results, image_ids=image_ids)
print(f"{len(image_ids)} images, {len(results)} detections\n")
print(format_table(metrics))


# %% [markdown]
# The twelve numbers, per type (bbox: box IoU; segm: mask IoU):
#
# * **AP**: precision averaged over recall 0:0.01:1, over IoU thresholds 0.50:0.05:0.95 and over
#   classes, with at most 100 detections per image. **AP50 / AP75**: at one IoU threshold.
# * **APs / APm / APl**: AP on small (< 32² px), medium and large (> 96² px) objects. The synthetic
#   images are 128 px, so "large" is rare or absent (shown as "-" when there is none).
# * **AR1 / AR10 / AR100**: recall with at most 1, 10 or 100 detections per image; **ARs/m/l** by size.
#
# ## Per class, per size, and the precision/recall curve
#
# For more than the summary we run COCOeval ourselves and read its `eval["precision"]` array, of shape
# [T IoU thresholds, R recall points, K classes, A area ranges, M max-detection settings]. Its mean
# over the valid entries is the AP, which we check against `evaluate_coco`.


# %%
def coco_eval(iou_type: str) -> COCOeval:
    """Evaluate `results` on `image_ids` of the val split; pycocotools' prints silenced."""
    drop = "segmentation" if iou_type == "bbox" else "bbox"
    with contextlib.redirect_stdout(io.StringIO()):
        detections = val_set.coco.loadRes([{k: v for k, v in r.items() if k != drop} for r in results])
        evaluator = COCOeval(val_set.coco, detections, iou_type)
        evaluator.params.imgIds = image_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


evals = {t: coco_eval(t) for t in ("bbox", "segm")}
for t, evaluator in evals.items():
    np.testing.assert_allclose(evaluator.stats, [metrics[t][n] for n in STAT_NAMES])

class_names = [val_set.class_names[val_set.cat_id_to_label[c] - 1] for c in evals["segm"].params.catIds]
fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
for k, (t, evaluator) in enumerate(evals.items()):
    precision = evaluator.eval["precision"][:, :, :, 0, -1]  # [T, R, K], area all, 100 detections
    per_class = [
        precision[:, :, c][precision[:, :, c] > -1].mean() if (precision[:, :, c] > -1).any() else 0.0
        for c in range(precision.shape[2])
    ]
    axes[0].bar(np.arange(len(class_names)) + 0.4 * k - 0.2, per_class, 0.4, label=t)
    for T, style in ((0, "-"), (5, "--")):  # IoU 0.5 and 0.75
        curve = evaluator.eval["precision"][T, :, :, 0, -1]  # [R, K]
        valid = curve > -1
        mean = np.where(valid.any(1), (curve * valid).sum(1) / np.maximum(valid.sum(1), 1), np.nan)
        axes[1].plot(
            evaluator.params.recThrs,
            mean,
            style,
            color=f"C{k}",
            label=f"{t}, IoU {evaluator.params.iouThrs[T]:.2f}",
        )
    sizes_ap = [metrics[t][n] for n in ("APs", "APm", "APl")]
    axes[2].bar(np.arange(3) + 0.4 * k - 0.2, [max(v, 0) for v in sizes_ap], 0.4, label=t)
axes[0].set_xticks(range(len(class_names)), class_names, rotation=30)
axes[0].set_title("AP per class")
axes[0].set_ylabel("AP (IoU 0.50:0.95)")
axes[0].legend()
axes[1].set_xlabel("recall")
axes[1].set_ylabel("precision (mean over classes)")
axes[1].set_title("precision / recall")
axes[1].legend(fontsize=7)
axes[2].set_xticks(range(3), ["small", "medium", "large"])
axes[2].set_title("AP per object size")
axes[2].set_ylabel("AP (IoU 0.50:0.95)")
axes[2].legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# Read the three panels against the table above: which classes are hard for boxes and which for masks
# (the bars per class), how precision falls as recall grows, lower at IoU 0.75 (dashed) than at 0.5,
# and the size panel, which has no bar for "large" when the val images hold no large object
# (COCOeval's -1).

# %% [markdown]
# ## Which class is each object taken for?
#
# Per-class AP mixes two failures: finding the object, and naming it. The synthetic shapes have random
# colours and textures, so the class is the silhouette alone. For every ground-truth instance we take
# the detection (score above a working threshold, any class) whose box overlaps it most, and count its
# class when that box IoU is at least 0.5; otherwise the instance counts as "none".

# %%
CONFUSION_SCORE = 0.1  # a working threshold: low, so that a weak but correct detection still counts


def xywh_to_xyxy(boxes: list[list[float]]) -> torch.Tensor:
    b = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    return torch.cat([b[:, :2], b[:, :2] + b[:, 2:]], dim=1)


num_classes = len(val_set.class_names)
confusion = np.zeros((num_classes, num_classes + 1), dtype=int)  # rows: true class; last column: none
for image_id in image_ids:
    anns = val_set.coco.loadAnns(val_set.coco.getAnnIds(imgIds=image_id, iscrowd=False))
    dets = [r for r in results if r["image_id"] == image_id and r["score"] > CONFUSION_SCORE]
    overlap = box_iou(xywh_to_xyxy([a["bbox"] for a in anns]), xywh_to_xyxy([d["bbox"] for d in dets]))
    for g, ann in enumerate(anns):
        true = val_set.cat_id_to_label[ann["category_id"]] - 1
        if dets and overlap[g].max() >= 0.5:
            best = dets[int(overlap[g].argmax())]
            confusion[true, val_set.cat_id_to_label[best["category_id"]] - 1] += 1
        else:
            confusion[true, num_classes] += 1
gt_per_class = np.bincount(
    [
        val_set.cat_id_to_label[a["category_id"]] - 1
        for a in val_set.coco.loadAnns(val_set.coco.getAnnIds(imgIds=image_ids))
    ],
    minlength=num_classes,
)
assert (confusion.sum(1) == gt_per_class).all()  # every instance counted exactly once

names = [*val_set.class_names, "none"]
shares = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
fig, ax = plt.subplots(figsize=(6.4, 4.6))
shown = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
for (r, c), count in np.ndenumerate(confusion):
    ax.text(
        c, r, count, ha="center", va="center", fontsize=8, color="white" if shares[r, c] > 0.5 else "black"
    )
ax.set_xticks(range(len(names)), names, rotation=30)
ax.set_yticks(range(num_classes), val_set.class_names)
ax.set_xlabel(f"class of the best-overlapping detection (score > {CONFUSION_SCORE}, box IoU >= 0.5)")
ax.set_ylabel("true class")
ax.set_title("counts; colour: share of the true class's instances")
fig.colorbar(shown, ax=ax, label="share of the row")
plt.tight_layout()
plt.show()
for r, name in enumerate(val_set.class_names):
    found = confusion[r, :num_classes].sum()
    wrong = max((c for c in range(num_classes) if c != r), key=lambda c: confusion[r, c])
    print(
        f"{name:9s} named right {confusion[r, r]:3d} of {found:3d} times found"
        f" ({100 * confusion[r, r] / max(found, 1):3.0f} %);"
        f" most often taken for {val_set.class_names[wrong]} ({confusion[r, wrong]})"
    )

# %% [markdown]
# What to see: a model that names shapes well has its counts on the diagonal. The printed lines give,
# for each class, how often a found instance was named right and what it was most often taken for.
# Where a class is found often but named right rarely, its box AP suffers from naming, not finding: the
# share of the "none" column says how much is left to finding.

# %% [markdown]
# ## Adjacent versus isolated instances
#
# The synthetic benchmark is built around SipMask's claim: the spatial coefficients help where a
# same-class neighbour reaches into the box (Fig. 4 of the paper). `adjacency_flags` marks an instance
# *adjacent* when at least `ADJACENCY_THRESHOLD` of its box (printed below) belongs to other instances
# of its class, and *isolated* otherwise.
#
# **Scoring a subset.** To get AP on the adjacent instances alone, the isolated ones must vanish from
# the evaluation: both the instances and the detections that are about them. COCO's usual trick, the
# *ignore* flag of crowd regions and of the APs/APm/APl size ranges, does only half of it: a detection
# is ignored only when it matches an ignored instance *at the IoU threshold being scored*. At IoU 0.9
# a detection of an isolated instance whose mask overlaps it by less than 0.9 matches nothing, so it
# would stay as a false positive of the adjacent subset (and likewise the other way round), and the
# whole set could score above both halves. `evaluate_coco(..., ann_ids=subset)` does both halves:
#
# 1. every detection belongs to the instance of its image it overlaps most, whatever the class
#    (`detection_owners`; IoU of boxes for bbox AP, of masks for segm AP);
# 2. the detections that belong to an instance outside the subset are removed;
# 3. the instances outside the subset are ignored (neither misses nor true positives);
# 4. detections that overlap no instance at all stay: they are false positives of every subset, as of
#    the whole set.
#
# So the two subsets share out the detections about instances, and neither pays for the other's
# imprecise ones. AP is not an average over instances, so "all" need not lie between the two halves:
# the background false positives weigh more on a subset with fewer instances.

# %%
adjacent_ids, isolated_ids = set(), set()
for image_id in image_ids:
    anns = val_set.coco.loadAnns(val_set.coco.getAnnIds(imgIds=image_id, iscrowd=False))
    if not anns:
        continue
    masks = np.stack([val_set.coco.annToMask(a).astype(bool) for a in anns])
    for ann, flag in zip(anns, adjacency_flags(masks, [a["category_id"] for a in anns]), strict=True):
        (adjacent_ids if flag else isolated_ids).add(ann["id"])
subsets = {"adjacent": adjacent_ids, "isolated": isolated_ids, "all": adjacent_ids | isolated_ids}
print(f"adjacent: >= {ADJACENCY_THRESHOLD:.0%} of the box covered by same-class instances")
print(f"{len(adjacent_ids)} adjacent and {len(isolated_ids)} isolated instances in {len(image_ids)} images")
owners = detection_owners(val_set.coco, results, "segm")
for name, keep in subsets.items():
    kept = sum(o is None or o in keep for o in owners)
    print(
        f"segm, {name:8s}: {kept} of {len(results)} detections scored "
        f"({sum(o is None for o in owners)} on the background)"
    )

# %% [markdown]
# The comparison the paper makes is between models, not between subsets: adjacent instances are
# harder for any model (a neighbour of the same class sits inside the box). So we score a second
# model on the **same** subsets: the same preset with one set of coefficients per box,
# `sub_regions=(1, 1)` (YOLACT's scheme; the checkpoint notebook 04 trains, cached as
# `outputs/tutorial/cpu_tiny_1x1/`). The paper's claim predicts that the 2×2 model gains most on the
# adjacent instances.

# %%
single_config = dataclasses.replace(preset("cpu_tiny"), sub_regions=(1, 1))
single_model, single_config = tutorial.trained_model(
    single_config, name="cpu_tiny_1x1", iters=20 if tutorial.fast_mode() else None
)
single_results, single_ids = coco_results(single_model, single_config.mask_threshold)
assert single_ids == image_ids
subset_ap = {}  # (model, subset) -> {iou type: {metric: value}}
for model_name, found in (("2x2", results), ("1x1", single_results)):
    for name, keep in subsets.items():
        ann_ids = None if name == "all" else keep  # "all": the plain evaluation
        subset_ap[model_name, name] = evaluate_coco(val_set.coco, found, image_ids=image_ids, ann_ids=ann_ids)
assert subset_ap["2x2", "all"] == metrics  # "all" is the evaluation of the table above
print(f"{'':10s}{'segm AP':>17s}{'segm AP50':>19s}{'bbox AP':>17s}")
print(f"{'':10s}" + "".join(f"{'2x2':>6s}{'1x1':>6s}{'gain':>6s} " for _ in range(3)))
for name in subsets:
    row = ""
    for iou_type, stat in (("segm", "AP"), ("segm", "AP50"), ("bbox", "AP")):
        two, one = (100 * subset_ap[m, name][iou_type][stat] for m in ("2x2", "1x1"))
        row += f"{two:6.1f}{one:6.1f}{two - one:+6.1f} "
    print(f"{name:10s}{row}")
gain = {
    name: 100 * (subset_ap["2x2", name]["segm"]["AP"] - subset_ap["1x1", name]["segm"]["AP"])
    for name in ("adjacent", "isolated")
}
holds = "holds" if gain["adjacent"] > gain["isolated"] else "does not hold"
print(f"\nsegm AP gain of 2x2 over 1x1: adjacent {gain['adjacent']:+.1f}, isolated {gain['isolated']:+.1f}")
print(f"the paper's prediction (a larger gain on adjacent instances) {holds} on this run")

# %% [markdown]
# The same numbers as bars: for each subset, the 1×1 model (blue) beside the 2×2 model (orange). Read
# the gap between the two bars of a subset, not the height across subsets: adjacent instances are
# harder for both models.

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
top = max(100 * m[t][stat] for m in subset_ap.values() for t, stat in (("segm", "AP"), ("segm", "AP50")))
for ax, (iou_type, stat) in zip(axes, (("segm", "AP"), ("segm", "AP50")), strict=True):
    for k, model_name in enumerate(("1x1", "2x2")):
        values = [100 * subset_ap[model_name, name][iou_type][stat] for name in subsets]
        bars = ax.bar(
            np.arange(3) + 0.4 * k - 0.2, values, 0.4, color=f"C{k}", label=f"{model_name} sub-regions"
        )
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks(range(3), list(subsets))
    ax.set_title(f"{iou_type} {stat} by subset")
    ax.legend(loc="upper left", ncol=2, fontsize=8)
axes[0].set_ylabel("AP (%)")
axes[0].set_ylim(0, 1.3 * max(top, 1e-3))  # headroom for the legend
plt.tight_layout()
plt.show()

# %% [markdown]
# What to see: within each subset, the orange bar (2×2) against the blue one (1×1). The paper's claim is
# about the gap on adjacent instances compared with the gap on isolated ones; the last line printed under
# the table above gives its verdict for this run.
#
# ## Errors at a working threshold
#
# AP summarises all thresholds. An application uses a single one. We match detections to ground truth
# greedily by score within each image (same class, **mask** IoU ≥ 0.5, each instance matched at most
# once, as COCO does at IoU 0.5), pick the score threshold with the best F1, and sort what is left into:
#
# * **duplicate**: mask IoU ≥ 0.5 with an instance of its class that a better detection already took;
# * **wrong class**: mask IoU ≥ 0.5 with an instance of another class;
# * **localisation**: best mask IoU with an instance of its class in [0.1, 0.5);
# * **background**: none of the above;
# * **missed**: ground-truth instances that no detection above the threshold matched, split into
#   adjacent and isolated ones.

# %%
by_image = {i: [] for i in image_ids}
for r in results:
    by_image[r["image_id"]].append(r)
records, gts = [], {}
for image_id in image_ids:
    anns = val_set.coco.loadAnns(val_set.coco.getAnnIds(imgIds=image_id, iscrowd=False))
    dets = sorted(by_image[image_id], key=lambda r: -r["score"])
    gts[image_id] = anns
    if not dets:
        continue
    ious = (
        mask_utils.iou(
            [d["segmentation"] for d in dets], [val_set.coco.annToRLE(a) for a in anns], [0] * len(anns)
        )
        if anns
        else np.zeros((len(dets), 0))
    )
    ious = np.asarray(ious).reshape(len(dets), len(anns))
    taken = set()
    for d, det in enumerate(dets):
        same = np.array([a["category_id"] == det["category_id"] for a in anns], dtype=bool)
        free = same & np.array([g not in taken for g in range(len(anns))], dtype=bool)
        match = int(np.argmax(np.where(free, ious[d], -1))) if free.any() else -1
        if match >= 0 and ious[d, match] >= 0.5:
            taken.add(match)
            kind = "true positive"
        elif (same & (ious[d] >= 0.5)).any():
            kind = "duplicate"
        elif ((~same) & (ious[d] >= 0.5)).any():
            kind = "wrong class"
        elif (same & (ious[d] >= 0.1)).any():
            kind = "localisation"
        else:
            kind = "background"
        records.append(
            {
                "image_id": image_id,
                "score": det["score"],
                "kind": kind,
                "det": det,
                "gt": match if kind == "true positive" else -1,
            }
        )

num_gt = sum(len(a) for a in gts.values())
order = sorted(records, key=lambda r: -r["score"])
tp = np.cumsum([r["kind"] == "true positive" for r in order])
precision, recall = tp / np.arange(1, len(order) + 1), tp / max(num_gt, 1)
f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-9)
best = int(np.argmax(f1)) if len(f1) else 0
threshold = order[best]["score"] if order else 1.0
print(f"best F1 {f1[best]:.2f} at score >= {threshold:.3f} ", end="")
print(f"(precision {precision[best]:.2f}, recall {recall[best]:.2f})")

# %%
confident = [r for r in records if r["score"] >= threshold]
matched = {(r["image_id"], r["gt"]) for r in confident if r["kind"] == "true positive"}
missed = [(i, g) for i, anns in gts.items() for g in range(len(anns)) if (i, g) not in matched]
kinds = ["true positive", "duplicate", "wrong class", "localisation", "background"]
counts = {k: sum(r["kind"] == k for r in confident) for k in kinds}
missed_adjacent = sum(gts[i][g]["id"] in adjacent_ids for i, g in missed)
counts.update({"missed (adjacent)": missed_adjacent, "missed (isolated)": len(missed) - missed_adjacent})
fig, ax = plt.subplots(figsize=(8, 2.8))
ax.barh(list(counts), list(counts.values()), color=["C2"] + ["C3"] * 4 + ["C1"] * 2)
for y, v in enumerate(counts.values()):
    ax.text(v, y, f" {v}", va="center", fontsize=8)
ax.invert_yaxis()
ax.set_xlabel("count")
ax.set_title(f"detections with score >= {threshold:.2f} and missed instances ({len(image_ids)} images)")
plt.tight_layout()
plt.show()
print(
    f"adjacent instances: {100 * len(adjacent_ids) / max(num_gt, 1):.0f}% of all, "
    f"{100 * missed_adjacent / max(len(missed), 1):.0f}% of the missed"
)

# %% [markdown]
# What to see in the bar chart: how the detections above the threshold split into true positives and the
# four false-positive types, and how the missed instances split into adjacent and isolated ones; the line
# printed under it compares the adjacent instances' share of the misses with their share of all instances.
#
# Fast NMS works per class, so nothing stops one object from being reported under several classes at
# once. Every extra label counts here as a "wrong class" false positive, even behind a correct
# detection. COCO AP is computed per class and ranks by score, so it penalises such low-scored extras
# less than this count does.
#
# Examples: the four images whose best-scored false positive scores highest. In each, the six
# best-scored detections above the threshold are drawn as boxes: true positives in green, false
# positives in red with their type. Missed instances are dashed yellow-on-black boxes.

# %%
worst_fp = {}
for r in confident:
    if r["kind"] != "true positive":
        worst_fp[r["image_id"]] = max(worst_fp.get(r["image_id"], 0.0), r["score"])
worst = sorted(worst_fp, key=lambda i: (-worst_fp[i], i))[:4]
index_of = {int(val_set.get_image_info(k)["id"]): k for k in range(num_images)}
fig, axes = plt.subplots(1, 4, figsize=(12, 3.6))
for ax, image_id in zip(axes, worst, strict=False):  # fewer than 4 images with false positives: blank panels
    image, target = val_set[index_of[image_id]]
    mine = sorted((r for r in confident if r["image_id"] == image_id), key=lambda r: -r["score"])[:6]
    xywh = np.array([r["det"]["bbox"] for r in mine]).reshape(-1, 4)
    colours = np.array([[0.1, 0.8, 0.2] if r["kind"] == "true positive" else [0.9, 0.1, 0.1] for r in mine])
    draw_instances(
        ax,
        image,
        boxes=np.c_[xywh[:, :2], xywh[:, :2] + xywh[:, 2:]],
        labels=["TP" if r["kind"] == "true positive" else r["kind"] for r in mine],
        scores=[r["score"] for r in mine],
        colors=colours.reshape(-1, 3),
        title=f"image {image_id}: {sum(i == image_id for i, _ in missed)} missed",
    )
    for i, g in missed:
        if i == image_id:
            x, y, w, h = gts[i][g]["bbox"]
            for colour, style, width in (("black", "-", 2.5), ("yellow", "--", 1.5)):  # visible on any colour
                ax.add_patch(
                    plt.Rectangle((x - 0.5, y - 0.5), w, h, fill=False, ls=style, lw=width, color=colour)
                )
    ax.set_title(ax.get_title(), pad=14)
legend = [
    Patch(facecolor="none", edgecolor=(0.1, 0.8, 0.2), lw=2, label="true positive"),
    Patch(facecolor="none", edgecolor=(0.9, 0.1, 0.1), lw=2, label="false positive (its type)"),
    Patch(facecolor="none", edgecolor="yellow", ls="--", lw=2, label="missed instance"),
]
fig.legend(handles=legend, loc="lower center", ncol=3, fontsize=9)
plt.tight_layout(rect=(0, 0.08, 1, 1))
plt.show()

# %% [markdown]
# What to see: in these images every red box sits on a dashed yellow one. The model found the object,
# but its mask overlaps it too little (localisation) or its class is wrong, so the same object counts
# twice: once as a false positive and once as a missed instance.
#
# ## Summary
#
# * Standard NMS removes boxes greedily. Fast NMS decides all of them at once from the upper-triangular
#   IoU matrix, so a box already suppressed can still suppress others. Its survivors are a subset of
#   standard NMS's on the same candidates.
# * COCO evaluation: results are boxes as [x, y, w, h], masks binarised at 0.4 as RLE, and dataset
#   category ids, which COCOeval turns into 12 numbers per type. `eval["precision"]` [T, R, K, A, M]
#   holds everything needed for per-class APs and precision/recall curves.
# * AP on a subset of the instances (adjacent or isolated) ignores the other instances, as for crowd
#   regions, and removes the detections that belong to them (`evaluate_coco(..., ann_ids=...)`); the
#   models are compared on the same subsets. The error breakdown at the best-F1 threshold shows what
#   limits the model: duplicates, confusions, poor masks or misses.
#
# ## Exercises
#
# 1. Evaluate the same model with `dataclasses.replace(config, nms="standard")` (set `model.config`)
#    and compare the 12 numbers with Fast NMS. Which of AP, AP50 and AR100 moves, and why?
# 2. Score the adjacent subset the naive way: a COCOeval subclass whose `_prepare` only sets
#    `ignore` on the isolated instances, with all detections kept. Compare its segm AP and AP50 with
#    `evaluate_coco(..., ann_ids=adjacent_ids)`. Which of the two moves more, and why does it depend
#    on the IoU threshold?
# 3. The mask threshold is 0.4 (the authors' value). Re-run the COCO evaluation with
#    `predictions_to_coco_results(..., mask_threshold=t)` for t in 0.3, 0.5, 0.6. How does segm AP
#    change, and does box AP change at all?
