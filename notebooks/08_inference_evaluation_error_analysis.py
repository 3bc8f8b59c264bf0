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
#   built for) with AP on isolated ones;
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
import dataclasses

import matplotlib.pyplot as plt
import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.cocoeval import COCOeval
from torchvision.ops import batched_nms, box_iou

from sipmask_ref import engine, fcos, inference, tutorial
from sipmask_ref.data.synthetic import adjacency_flags
from sipmask_ref.eval.coco import STAT_NAMES, evaluate_coco, format_table, predictions_to_coco_results
from sipmask_ref.spatial_preservation import flatten_coefficients
from sipmask_ref.viz import draw_instances

plt.rcParams["figure.dpi"] = 80
torch.manual_seed(0)
torch.set_grad_enabled(False)  # inference only
model, config = tutorial.trained_model()
val_set = tutorial.synthetic_dataset("val")
print(f"nms = {config.nms!r}, score_threshold = {config.score_threshold}, nms_iou = {config.nms_iou}, "
      f"max_detections = {config.max_detections}")

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
toy_boxes = torch.tensor([[0, 0, 10, 10], [2.5, 0, 12.5, 10], [5, 0, 15, 10], [40, 40, 50, 50], [1, 1, 11, 11]])
toy_scores = torch.tensor([[0.9, 0.0], [0.8, 0.0], [0.7, 0.0], [0.6, 0.0], [0.0, 0.5]])  # [P, C]
names = "ABCDE"
print("IoU(A,B) = %.2f  IoU(B,C) = %.2f  IoU(A,C) = %.2f" % (
    box_iou(toy_boxes[:1], toy_boxes[1:2]), box_iou(toy_boxes[1:2], toy_boxes[2:3]), box_iou(toy_boxes[:1], toy_boxes[2:3])))


def fast_nms_inline(boxes, scores, iou_threshold=0.5, score_threshold=0.1):
    """Fast NMS, one class and one box at a time: keep box i when no HIGHER-scored box of its class
    (suppressed or not) overlaps it by more than iou_threshold. Returns (index, class, score), best first."""
    kept = []
    for c in range(scores.shape[1]):
        order = sorted(range(len(boxes)), key=lambda i: -float(scores[i, c]))
        for rank, i in enumerate(order):
            above = [box_iou(boxes[i:i + 1], boxes[h:h + 1]).item() for h in order[:rank]]
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
        strides=config.strides, image_size=inter["image_sizes"][0], config=config)


image, target = val_set[7]
inter = model.forward_intermediates([image])
paths = {"fast": detect(inter, config),
         "standard": detect(inter, dataclasses.replace(config, nms="standard"))}
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
boxes = torch.cat([fcos.decode_boxes(p, x[0].flatten(1).t() * s) for p, x, s in
                   zip(fcos.locations(sizes, config.strides), inter["box_regression"], config.strides)])
boxes = inference.clip_boxes(boxes, inter["image_sizes"][0])
scored = probs * ctr[:, None]  # [P, C]
fast_index, fast_labels, _ = inference.fast_nms(boxes, scored, wide.nms_iou, wide.score_threshold,
                                                wide.fast_nms_top_k, wide.max_detections)
candidate, cls = (scored > wide.score_threshold).nonzero(as_tuple=True)
keep = batched_nms(boxes[candidate], scored[candidate, cls], cls, wide.nms_iou)
fast_set = set(zip(fast_index.tolist(), fast_labels.tolist()))
standard_set = set(zip(candidate[keep].tolist(), cls[keep].tolist()))
print(f"same {len(candidate)} candidates: Fast NMS keeps {len(fast_set)}, standard NMS keeps {len(standard_set)}")

# %%
# NBVAL_CHECK_OUTPUT
print("Fast NMS survivors are a subset of standard NMS survivors:", fast_set <= standard_set)

# %%
shown = len(target["boxes"])  # draw as many detections of each path as there are objects
fig, axes = plt.subplots(1, 3, figsize=(8.4, 3.1), dpi=64)
draw_instances(axes[0], image, boxes=target["boxes"], masks=target["masks"], labels=target["labels"],
               class_names=val_set.class_names, title="ground truth")
scale = inter["scale_factors"][0][0]
for ax, (name, found) in zip(axes[1:], paths.items()):
    draw_instances(ax, image, boxes=found.boxes[:shown] / scale, labels=found.labels[:shown],
                   scores=found.scores[:shown], class_names=val_set.class_names,
                   title=f"{name} NMS: its {shown} best of {len(found.scores)}")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## COCO evaluation with pycocotools
#
# `engine.evaluate` runs the model over a dataset and scores it. Underneath, three steps: predictions
# go to COCO result dicts (boxes as [x, y, w, h], masks binarised at `config.mask_threshold` = 0.4 and
# RLE-encoded, labels mapped back to the dataset's category ids), then COCOeval. We do the steps
# ourselves so that we can keep the results for the analysis below. The full run evaluates all 150
# val images. Fast mode takes the first 20.

# %%
num_images = 20 if tutorial.fast_mode() else len(val_set)
results, image_ids = [], []
for first in range(0, num_images, 8):
    batch = [val_set[i] for i in range(first, min(first + 8, num_images))]
    outputs = engine.predict_images(model, [im for im, _ in batch], "cpu")
    ids = [int(t["image_id"]) for _, t in batch]
    results += predictions_to_coco_results(outputs, ids, val_set.label_to_cat_id, config.mask_threshold)
    image_ids += ids
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
def coco_eval(iou_type: str, evaluator=COCOeval, **kwargs) -> COCOeval:
    """Evaluate `results` on `image_ids` of the val split; pycocotools' prints silenced."""
    import contextlib, io

    drop = "segmentation" if iou_type == "bbox" else "bbox"
    with contextlib.redirect_stdout(io.StringIO()):
        detections = val_set.coco.loadRes([{k: v for k, v in r.items() if k != drop} for r in results])
        E = evaluator(val_set.coco, detections, iou_type, **kwargs)
        E.params.imgIds = image_ids
        E.evaluate()
        E.accumulate()
        E.summarize()
    return E


evals = {t: coco_eval(t) for t in ("bbox", "segm")}
for t, E in evals.items():
    np.testing.assert_allclose(E.stats, [metrics[t][n] for n in STAT_NAMES])

class_names = [val_set.class_names[val_set.cat_id_to_label[c] - 1] for c in evals["segm"].params.catIds]
fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
for k, (t, E) in enumerate(evals.items()):
    precision = E.eval["precision"][:, :, :, 0, -1]  # [T, R, K], area all, 100 detections
    per_class = [precision[:, :, c][precision[:, :, c] > -1].mean() if (precision[:, :, c] > -1).any()
                 else 0.0 for c in range(precision.shape[2])]
    axes[0].bar(np.arange(len(class_names)) + 0.4 * k - 0.2, per_class, 0.4, label=t)
    for T, style in ((0, "-"), (5, "--")):  # IoU 0.5 and 0.75
        curve = E.eval["precision"][T, :, :, 0, -1]  # [R, K]
        valid = curve > -1
        mean = np.where(valid.any(1), (curve * valid).sum(1) / np.maximum(valid.sum(1), 1), np.nan)
        axes[1].plot(E.params.recThrs, mean, style, color=f"C{k}", label=f"{t}, IoU {E.params.iouThrs[T]:.2f}")
    sizes_ap = [metrics[t][n] for n in ("APs", "APm", "APl")]
    axes[2].bar(np.arange(3) + 0.4 * k - 0.2, [max(v, 0) for v in sizes_ap], 0.4, label=t)
axes[0].set_xticks(range(len(class_names)), class_names, rotation=30)
axes[0].set_title("AP per class")
axes[0].legend()
axes[1].set_xlabel("recall")
axes[1].set_ylabel("precision (mean over classes)")
axes[1].set_title("precision / recall")
axes[1].legend(fontsize=7)
axes[2].set_xticks(range(3), ["small", "medium", "large"])
axes[2].set_title("AP per object size")
axes[2].legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Adjacent versus isolated instances
#
# The synthetic benchmark is built around SipMask's claim: the spatial coefficients help where a
# same-class neighbour reaches into the box (Fig. 4 of the paper). `adjacency_flags` marks an instance
# *adjacent* when ≥ 10% of its box belongs to other instances of its class.
#
# To get AP on a subset of the ground truth, COCO's usual trick applies: the other instances are
# **ignored**. This is how crowd regions and the size ranges of APs/APm/APl work. A detection matched to
# an ignored instance counts neither as a true nor as a false positive. A three-line subclass of
# COCOeval does it.

# %%
adjacent_ids, isolated_ids = set(), set()
for image_id in image_ids:
    anns = val_set.coco.loadAnns(val_set.coco.getAnnIds(imgIds=image_id, iscrowd=False))
    if not anns:
        continue
    masks = np.stack([val_set.coco.annToMask(a).astype(bool) for a in anns])
    for ann, flag in zip(anns, adjacency_flags(masks, [a["category_id"] for a in anns])):
        (adjacent_ids if flag else isolated_ids).add(ann["id"])


class SubsetEval(COCOeval):
    """COCOeval on the ground-truth instances in `keep`; all others are ignored (like crowd regions)."""

    def __init__(self, gt, dt, iou_type, keep):
        super().__init__(gt, dt, iou_type)
        self.keep = keep

    def _prepare(self):
        super()._prepare()
        for instances in self._gts.values():
            for g in instances:
                g["ignore"] = g["ignore"] or g["id"] not in self.keep


print(f"{len(adjacent_ids)} adjacent and {len(isolated_ids)} isolated instances in these {len(image_ids)} images\n")
print(f"{'':10s}{'bbox AP':>9s}{'AP50':>7s}{'segm AP':>9s}{'AP50':>7s}")
for name, keep in (("adjacent", adjacent_ids), ("isolated", isolated_ids), ("all", adjacent_ids | isolated_ids)):
    row = []
    for t in ("bbox", "segm"):
        E = coco_eval(t, SubsetEval, keep=keep)
        row += [100 * E.stats[0], 100 * E.stats[1]]
    print(f"{name:10s}" + "".join(f"{v:9.1f}" if i % 2 == 0 else f"{v:7.1f}" for i, v in enumerate(row)))

# %% [markdown]
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
    ious = (mask_utils.iou([d["segmentation"] for d in dets], [val_set.coco.annToRLE(a) for a in anns],
                           [0] * len(anns)) if anns else np.zeros((len(dets), 0)))
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
        records.append({"image_id": image_id, "score": det["score"], "kind": kind, "det": det,
                        "gt": match if kind == "true positive" else -1})

num_gt = sum(len(a) for a in gts.values())
order = sorted(records, key=lambda r: -r["score"])
tp = np.cumsum([r["kind"] == "true positive" for r in order])
precision, recall = tp / np.arange(1, len(order) + 1), tp / max(num_gt, 1)
f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-9)
best = int(np.argmax(f1)) if len(f1) else 0
threshold = order[best]["score"] if order else 1.0
print(f"best F1 {f1[best]:.2f} at score >= {threshold:.3f} (precision {precision[best]:.2f}, recall {recall[best]:.2f})")

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
ax.set_title(f"detections with score >= {threshold:.2f} and missed instances ({len(image_ids)} images)")
plt.tight_layout()
plt.show()
print(f"adjacent instances: {100 * len(adjacent_ids) / max(num_gt, 1):.0f}% of all, "
      f"{100 * missed_adjacent / max(len(missed), 1):.0f}% of the missed")

# %% [markdown]
# Fast NMS works per class, so nothing stops one object from being reported under several classes at
# once. Every extra label counts here as a "wrong class" false positive, even behind a correct
# detection. COCO AP is computed per class and ranks by score, so it penalises such low-scored extras
# less than this count does.
#
# Examples: the four images whose best-scored false positive scores highest. In each, the six
# best-scored detections above the threshold are drawn as boxes: true positives in green, false
# positives in red with their type. Missed instances are dashed yellow boxes.

# %%
worst_fp = {}
for r in confident:
    if r["kind"] != "true positive":
        worst_fp[r["image_id"]] = max(worst_fp.get(r["image_id"], 0.0), r["score"])
worst = sorted(worst_fp, key=lambda i: (-worst_fp[i], i))[:4]
index_of = {int(val_set.get_image_info(k)["id"]): k for k in range(num_images)}
fig, axes = plt.subplots(1, 4, figsize=(10, 3.1), dpi=64)
for ax, image_id in zip(axes, worst):
    image, target = val_set[index_of[image_id]]
    mine = sorted((r for r in confident if r["image_id"] == image_id), key=lambda r: -r["score"])[:6]
    xywh = np.array([r["det"]["bbox"] for r in mine]).reshape(-1, 4)
    colours = np.array([[0.1, 0.8, 0.2] if r["kind"] == "true positive" else [0.9, 0.1, 0.1] for r in mine])
    draw_instances(ax, image, boxes=np.c_[xywh[:, :2], xywh[:, :2] + xywh[:, 2:]],
                   labels=["TP" if r["kind"] == "true positive" else r["kind"] for r in mine],
                   scores=[r["score"] for r in mine], colors=colours.reshape(-1, 3),
                   title=f"image {image_id}: {sum(i == image_id for i, _ in missed)} missed")
    for i, g in missed:
        if i == image_id:
            x, y, w, h = gts[i][g]["bbox"]
            ax.add_patch(plt.Rectangle((x - 0.5, y - 0.5), w, h, fill=False, ls="--", color="yellow"))
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Summary
#
# * Standard NMS removes boxes greedily. Fast NMS decides all of them at once from the upper-triangular
#   IoU matrix, so a box already suppressed can still suppress others. Its survivors are a subset of
#   standard NMS's on the same candidates.
# * COCO evaluation: results are boxes as [x, y, w, h], masks binarised at 0.4 as RLE, and dataset
#   category ids, which COCOeval turns into 12 numbers per type. `eval["precision"]` [T, R, K, A, M]
#   holds everything needed for per-class APs and precision/recall curves.
# * AP on a subset of the instances (adjacent or isolated) comes from ignoring the others, as for crowd
#   regions. The error breakdown at the best-F1 threshold shows what limits the model: duplicates,
#   confusions, poor masks or misses.
#
# ## Exercises
#
# 1. Evaluate the same model with `dataclasses.replace(config, nms="standard")` (set `model.config`)
#    and compare the 12 numbers with Fast NMS. Which of AP, AP50 and AR100 moves, and why?
# 2. Train a 1×1 model (`tutorial.trained_model(dataclasses.replace(preset("cpu_tiny"),
#    sub_regions=(1, 1)), name="cpu_tiny_1x1")`) and compare its adjacent and isolated segm AP with the
#    2×2 model's. The paper's claim predicts the larger gap on adjacent instances.
# 3. The mask threshold is 0.4 (the authors' value). Re-run the COCO evaluation with
#    `predictions_to_coco_results(..., mask_threshold=t)` for t in 0.3, 0.5, 0.6. How does segm AP
#    change, and does box AP change at all?
