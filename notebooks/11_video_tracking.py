# %% [markdown]
# # 11 · Video instance segmentation: detect, segment and track (§3.5)
#
# SipMask's second half: one more fully-convolutional branch turns the image model into a single-stage
# video model that detects, segments **and tracks** instances frame by frame.
#
# What you will learn:
#
# - how `SipMaskVIS` adds a **tracking branch** to SipMask and how it is trained on **pairs of frames**;
# - what the tracking embedding is: a vector read at each box centre, and the **similarity matrices**
#   between the objects of consecutive frames;
# - how the **matcher** gives identities frame by frame, term by term, on two objects that cross;
# - how the whole video pipeline compares with an IoU-only tracker (video AP, identity switches).
#
# > **§3.5 Single-stage Video Instance Segmentation.** [...] we simply extend our SipMask by introducing an
# > additional fully-convolutional branch in parallel to mask-specialized classification and regression
# > branches for instance tracking. The fully-convolutional branch consists of two convolutional layers.
# > After that, the output feature maps of different layers in this branch are fused to obtain the tracking
# > feature maps, similar to basis mask generation in our mask-specialized regression branch. Different from
# > the state-of-the-art MaskTrack R-CNN [48] that utilizes RoIAlign and fully-connected operations, our
# > SipMask extracts a tracking feature vector from the tracking feature maps at the bounding-box center to
# > represent each instance. The metric for matching the instances between different frames is similar to
# > MaskTrack R-CNN.
#
# > **§4.4** When using the same input size (640 × 360) and backbone (ResNet50 FPN), our SipMask outperforms
# > the state-of-the-art MaskTrack R-CNN [48] with an absolute gain of 2.2% in terms of mask accuracy (AP).
# > Further, our SipMask achieves impressive mask accuracy while operating at real-time (30 fps) on a Titan
# > Xp.
#
# The paper leaves the metric to MaskTrack R-CNN; the authors' code scores detection $i$ against every
# identity $k$ remembered so far (embedding $M_k$, last box $b_k$, label $c_k$), with a "new identity"
# column first:
#
# $$S_{i,\cdot} = \log\operatorname{softmax}\big([0,\; e_i M^\top]\big) + 1.0\,\log s_i
#   + 2.0\,[0,\ \mathrm{IoU}(b_i, b_k)] + 10\,[1,\ \mathbb{1}(c_i = c_k)]$$
#
# The argmax picks "new" (column 0) or identity $k$; each identity is given to at most one detection per
# frame.

# %%
# %matplotlib inline
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from IPython.display import Markdown, display
from torchvision.ops import box_iou

from sipmask_ref import tutorial
from sipmask_ref.data.ytvis import YTVISDataset
from sipmask_ref.trackers import count_id_switches
from sipmask_ref.tracking import tracking_loss, tracking_targets
from sipmask_ref.video import (
    FrameDetections,
    crossing_objects,
    detect_frames,
    draw_video_strip,
    evaluate_vis,
    gt_tracks,
    make_tracker,
    predicted_tracks,
    synthetic_video_paths,
    track_frames,
    trained_vis_model,
)

plt.rcParams["figure.dpi"] = 110  # every figure below: legible at notebook width
torch.manual_seed(0)
paths = synthetic_video_paths(tutorial.repo_root() / "data")  # generated on first use
val = YTVISDataset(paths["val_ann"], paths["val_dir"], mode="frames")


# %% [markdown]
# ## A video with a crossing
#
# The synthetic videos (YouTube-VIS format, 128 × 128, 8 frames) send objects of the **same class** across
# each other, the hard case for a tracker: same shape, overlapping boxes. We take the first validation video
# in which two same-class objects overlap.


# %%
# NBVAL_CHECK_OUTPUT
def load_video(v):
    frames, targets = zip(
        *[val.load_frame(v, f) for f in range(len(val.videos[v]["file_names"]))], strict=True
    )
    return list(frames), list(targets)


for v in range(len(val.videos)):
    frames, targets = load_video(v)
    crossing = crossing_objects(targets)
    if len(crossing) >= 2:
        break
objects = sorted({int(i) for t in targets for i in t["obj_ids"]})  # annotation ids = identities
print(
    f"video id {val.videos[v]['id']}: {len(frames)} frames of {tuple(frames[0].shape[1:])}, "
    f"objects {objects}, crossing {sorted(crossing)}"
)
print("objects per frame:", [t["obj_ids"].tolist() for t in targets])


# %%
def as_detections(targets, embeds=None, score=1.0):
    """The ground truth of each frame as FrameDetections, and each object's index in `objects` as its id."""
    dets, ids = [], []
    for t, target in enumerate(targets):
        n = len(target["boxes"])
        e = embeds[t] if embeds is not None else torch.zeros(n, 1)
        dets.append(
            FrameDetections(
                target["boxes"], target["labels"], torch.full((n,), score), e, target["masks"].bool()
            )
        )
        ids.append(torch.tensor([objects.index(int(i)) for i in target["obj_ids"]], dtype=torch.long))
    return dets, ids


gt_dets, gt_ids = as_detections(targets)
draw_video_strip(
    frames,
    gt_dets,
    gt_ids,
    val.class_names,
    max_frames=6,
    dpi=110,
    title="ground truth: one colour per object",
)

# %% [markdown]
# Each colour is one object, labelled with its index in `objects` (0, 1, ...; the annotation ids
# printed above are `objects[index]`) and its class. The crossing objects are the ones whose boxes run
# into a same-class neighbour in some frame.

# %% [markdown]
# ## The model: SipMask + a tracking branch
#
# `SipMaskVIS` (in `sipmask_ref/video_model.py`) is SipMask with one more module, `tracking.TrackingBranch`:
# two shared conv blocks applied to P3, P4 and P5, the three outputs resized to P3's size and concatenated,
# then a 1×1 conv to $D$ channels (512 in `paper_vis_r50`, 64 in `cpu_tiny_vis`). An instance's embedding is
# the vector at ⌊box centre / 8⌋.
#
# **Training on pairs.** A frame and a reference frame of the same video (same resize, same flip) go through
# the shared backbone. On the current frame, every positive location of the mask loss gives an embedding at
# its *predicted* box; on the reference frame, every ground-truth box (slightly jittered) gives one. The
# logits of a positive are $[0,\ e\, e_{\mathrm{ref}}^\top]$ (a zero "new object" column first) and the target
# is 1 + the position of its object in the reference frame, or 0 if that object is absent there: a
# cross-entropy, `loss_track`, added to the four image losses of §3.4.
#
# `trained_vis_model()` starts from the notebooks' image model (`tutorial.trained_model()`) and fine-tunes
# `cpu_tiny_vis` on the synthetic frame pairs (cached in `outputs/tutorial/`).

# %%
model, config = trained_vis_model()


# %%
# NBVAL_CHECK_OUTPUT
def count(module):
    """The number of parameters of a module."""
    return sum(p.numel() for p in module.parameters())


print(model.tracking)
share = 100 * count(model.tracking) / count(model)
print(
    f"tracking branch: {count(model.tracking):,} of {count(model):,} parameters "
    f"({share:.1f}%); D = {config.embed_dim} at stride {model.embed_stride}"
)

# %% [markdown]
# ## The tracking embedding between frames
#
# Read the embedding at every ground-truth box of every frame and compare consecutive frames: row $i$ of
# $e_t\, e_{t+1}^\top$ says how much object $i$ of frame $t$ looks like each object of frame $t+1$. Below it,
# the training view of the same numbers: softmax over $[0,\ e_t e_{t+1}^\top]$, whose first column is "new".
# A well-trained branch puts the mass on the same object (tick labels are object indices).

# %%
embeds = model.embeddings_at(frames, [t["boxes"] for t in targets])  # one [G, D] per frame
_, index = as_detections(targets)
pairs = [t for t in range(len(frames) - 1) if len(embeds[t]) and len(embeds[t + 1])]
fig, axes = plt.subplots(
    2, len(pairs), figsize=(1.9 * len(pairs) + 1, 4.6), squeeze=False, layout="constrained"
)
similarities = [embeds[t] @ embeds[t + 1].T for t in pairs]
low, high = min(float(x.min()) for x in similarities), max(float(x.max()) for x in similarities)
correct = []
for k, (t, similarity) in enumerate(zip(pairs, similarities, strict=True)):
    probability = F.softmax(torch.cat([torch.zeros(len(similarity), 1), similarity], dim=1), dim=1)
    for row, (values, name) in enumerate(((similarity, "e_t e_t+1"), (probability, "softmax([0, .])"))):
        ax = axes[row, k]
        limits = (low, high) if row == 0 else (0.0, 1.0)  # one colour scale per row
        shown = ax.imshow(values.numpy(), cmap="viridis", vmin=limits[0], vmax=limits[1])
        columns = index[t + 1].tolist() if row == 0 else ["new"] + index[t + 1].tolist()
        ax.set_xticks(range(len(columns)), columns, fontsize=7)
        ax.set_yticks(range(len(index[t])), index[t].tolist(), fontsize=7)
        ax.set_title(f"{name}\nframe {t} -> {t + 1}", fontsize=8)
        if k == len(pairs) - 1:
            fig.colorbar(shown, ax=axes[row, :].tolist(), shrink=0.9, label=name)
    for i, obj in enumerate(index[t].tolist()):
        if obj in index[t + 1].tolist():
            correct.append(float(probability[i, 1 + index[t + 1].tolist().index(obj)]))
plt.show()
print(f"mean probability given to the same object in the next frame: {np.mean(correct):.2f}")

# %% [markdown]
# What to see: in the lower row, each row's mass should sit on the column of the same object (just right
# of the diagonal, since the "new" column comes first and the objects keep their order here). Where a row
# splits its mass between two objects, or puts it on another one, the matcher below has to rely on its
# other terms. The line under the figure averages the probability given to the right object.
#
# The same matrices are the training signal. For the pair (frame $t$, frame $t+1$), `tracking_targets` gives
# each object its column and `tracking_loss` is the cross-entropy (here with ground-truth boxes on both sides,
# where training uses the predicted boxes of the positives on the current frame):

# %%
t = pairs[0]
targets_t = tracking_targets(targets[t]["obj_ids"], targets[t + 1]["obj_ids"])
print(
    "targets:",
    targets_t.tolist(),
    f"  loss_track = {float(tracking_loss(embeds[t], embeds[t + 1], targets_t)):.3f}",
)

# %% [markdown]
# ## The matcher, step by step
#
# To watch the matcher alone, feed it the ground truth as the detections (score 0.9) with the embeddings the
# model computes at them. Each frame prints the score matrix $S$ (rows: detections, i.e. the objects present;
# columns: new, then the identities in memory) and the identities given (-1: the detection lost every
# identity it wanted to a better-scored detection and was dropped). Whether the identities survive the
# crossing is counted in the cell after.

# %%
oracle, _ = as_detections(targets, embeds, score=0.9)
matcher = make_tracker("sipmask", config)
matcher.reset()
history = []
for t, found in enumerate(oracle):
    scores = matcher.match_scores(found.embeds, found.boxes, found.labels, found.scores)
    memory = (
        None
        if matcher.embeds is None
        else (matcher.embeds.clone(), matcher.boxes.clone(), matcher.labels.clone())
    )
    ids = matcher.match(found.embeds, found.boxes, found.labels, found.scores)
    history.append((scores, memory, ids))
    print(f"frame {t}: objects {index[t].tolist()} -> identities {ids.tolist()}")
    print(
        "  S =", np.array2string(scores.numpy(), precision=1, suppress_small=True).replace("\n", "\n      ")
    )

# %% [markdown]
# The same run per object: the identity each object received in each frame ("-" where it was dropped),
# then `trackers.count_id_switches` (a switch: an object's identity changes between two frames in which
# it has one; a dropped frame in between is not a switch).

# %%
assigned = [h[2] for h in history]
for obj in range(len(objects)):
    given = []
    for t in range(len(oracle)):
        where = (index[t] == obj).nonzero().flatten().tolist()
        given.append(
            "." if not where else ("-" if int(assigned[t][where[0]]) < 0 else str(int(assigned[t][where[0]])))
        )
    role = "crossing" if objects[obj] in crossing else "not crossing"
    print(f"object {obj}: identities by frame {' '.join(given)}   ({role})")
oracle_truth = gt_tracks(targets)
oracle_switches = count_id_switches(oracle_truth, predicted_tracks(oracle, assigned))
dropped = sum(int((ids < 0).sum()) for ids in assigned)
print(f"identity switches: {oracle_switches}; ", end="")
print(f"detections dropped (-1): {dropped} of {sum(len(i) for i in assigned)}")

# %% [markdown]
# Read each row: an object that shows one number in every frame kept its identity through the video;
# a "-" is a frame in which it lost the identity it wanted to another detection and got none; a
# different number is a switch (the count on the last line). The crossing objects are where to look:
# their boxes overlap a same-class neighbour, so IoU and label cannot tell them apart and only the
# embedding term can.

# %% [markdown]
# ### Re-deriving one score
#
# Take detection 0 of the first frame that has a memory to match against, and rebuild its row of $S$ from the
# formula above with plain tensor operations; then check it against `TrackMatcher.match_scores`.

# %%
# NBVAL_CHECK_OUTPUT
t = next(t for t in range(1, len(oracle)) if len(oracle[t].boxes) and history[t][1] is not None)
scores, (memory_embeds, memory_boxes, memory_labels), _ = history[t]
found, i = oracle[t], 0
logits = torch.cat([torch.zeros(1), memory_embeds @ found.embeds[i]])  # [0, e . M^T]
by_hand = (
    F.log_softmax(logits, dim=0)  # embedding term
    + 1.0 * torch.log(found.scores[i])  # detection score
    + 2.0 * torch.cat([torch.zeros(1), box_iou(found.boxes[i : i + 1], memory_boxes)[0]])  # IoU, 0 for new
    + 10.0 * torch.cat([torch.ones(1), (memory_labels == found.labels[i]).float()])
)  # label, 1 for new
torch.testing.assert_close(by_hand, scores[i])
print(f"frame {t}, detection {i}: the re-derived row of S equals TrackMatcher.match_scores")

# %% [markdown]
# Every term can be switched off (`TrackMatcher(use_embedding=False, ...)`, or by name with
# `video.make_tracker`: `no_embedding`, `no_score`, `no_iou`, `no_label`, `embedding_only`). Note that
# $\log s_i$ is the same in every column of a row: it never changes which column a detection picks, only which
# of two detections wins an identity they both want.
#
# ## Whole videos: detection + tracking (paper Fig. 7)
#
# Now the real pipeline: the detector (score > 0.03, at most 10 detections, masks > 0.5 as the authors' VIS
# settings), then the tracker. Same identity, same colour, through the whole video; compared with the
# IoU-only greedy tracker, which only looks at the previous frame.

# %%
detections = detect_frames(model, frames)
tracked = {}
for name in ("sipmask", "iou_greedy"):
    tracked[name] = track_frames(detections, make_tracker(name, config))
    display(
        draw_video_strip(
            frames,
            detections,
            tracked[name],
            val.class_names,
            max_frames=6,
            dpi=110,
            title=f"tracker: {name}",
        )
    )

# %% [markdown]
# The strips show identities as colours; the counts below say how often a ground-truth object changed
# identity on this video (`count_id_switches` with masks, IoU ≥ 0.5), on all objects and on the crossing
# ones.

# %%
crossing_truth = {k: v for k, v in oracle_truth.items() if k in crossing}
print(f"{len(detections[0].scores)} detections in frame 0 for {len(targets[0]['boxes'])} objects")
for name, ids in tracked.items():
    tracks = predicted_tracks(detections, ids)
    switches = count_id_switches(oracle_truth, tracks)
    crossing_switches = count_id_switches(crossing_truth, tracks)
    print(f"{name:10s}: {len(tracks)} identities for {len(oracle_truth)} objects; ", end="")
    print(f"identity switches: {switches} ({crossing_switches} on crossing objects)")

# %% [markdown]
# Here the detector's errors come in as well: missed objects, extra detections under other labels, and
# boxes that move. A zero above means every object kept one colour in the strip of that tracker;
# a switch shows as an object whose colour (and number) changes from one frame to the next.

# %% [markdown]
# ## Video AP on the synthetic validation videos
#
# `evaluate_vis` detects each video once and runs several trackers on the **same** detections, so the
# differences below come from tracking alone. Video AP is COCO AP with a sequence-level mask IoU
# (`eval/ytvis.py`); identity switches count how often a ground-truth object changes predicted identity,
# once on the tracked detections and once with the ground truth given to the tracker as detections (with
# the model's embeddings at the true boxes): the second count isolates association from detection errors.

# %%
videos = 3 if tutorial.fast_mode() else None  # fast mode (CI): the first 3 videos only
found = evaluate_vis(
    model,
    val,
    trackers=("sipmask", "no_embedding", "no_iou", "iou_greedy"),
    max_videos=videos,
    progress=False,
)
print(
    f"{'tracker':<14}{'AP':>6}{'AP50':>6}{'AR10':>6}   ID switches: detections | ground-truth boxes "
    f"(crossing objects)"
)
for name, r in found.items():
    m = r["metrics"]
    print(
        f"{name:<14}{100 * m['AP']:6.1f}{100 * m['AP50']:6.1f}{100 * m['AR10']:6.1f}   "
        f"{r['id_switches']:4d} ({r['id_switches_crossing']:3d}) | {r['gt_box_id_switches']:4d} "
        f"({r['gt_box_id_switches_crossing']:3d})"
    )

# %% [markdown]
# One model, one seed and the few validation videos of `data/synthetic_video`: noisy.
# `python -m sipmask_ref.video reproduce` trains one model per seed, evaluates it on a larger set of
# validation videos that it generates for the purpose (the notebook's videos come first; its README, shown
# below, says how many), and writes the table with means and spreads to `results/video/`. Its numbers are
# therefore not those printed above:

# %%
table = tutorial.repo_root() / "results" / "video" / "README.md"
if table.is_file():
    display(Markdown(table.read_text()))
else:
    print("results/video/README.md not found: run `python -m sipmask_ref.video reproduce`")

# %% [markdown]
# ## Summary
#
# - SipMask-VIS is SipMask plus a tracking branch: two conv blocks over P3–P5, fused like the basis masks, a
#   1×1 conv to $D$ channels; an instance is the vector at its box centre.
# - It trains on frame pairs with a cross-entropy over $[0,\ e\,e_{\mathrm{ref}}^\top]$: "new" or one of the
#   reference objects. The loss is added to the image losses; the reference frame shares the backbone.
# - At test time a memory keeps every identity ever seen (embedding, last box, label); each detection is
#   scored by embedding similarity, detection score, IoU and label agreement, and takes the best column.
# - Video-level results: one track per identity, its score the mean of its frame scores, its category the
#   majority vote, one RLE (or None) per frame.
#
# ## Exercises
#
# 1. Remove one term at a time (`make_tracker("no_label", config)`, ...) on the crossing video above. Which
#    term keeps the identities apart when the two boxes overlap? Which one recovers an object that leaves and
#    comes back?
# 2. Set `config.match_iou_weight` to 0 and then to 20 with `dataclasses.replace` and rebuild the tracker: how
#    do the identity switches on crossing objects change?
# 3. Train `cpu_tiny_vis` with `embed_dim=8` (`dataclasses.replace`) via `video.train_vis`: how do the
#    similarity matrices and the AP change?
