# %% [markdown]
# # 09 · The ablation tables (§4.3, Tables 2–5) on the synthetic benchmark
#
# The paper justifies each part of SipMask with an ablation on COCO `minival` (ResNet-50-FPN). This
# notebook reads the same ablations re-run on the synthetic adjacent-instance benchmark by
# `python -m sipmask_ref reproduce` (`make reproduce`; code in `sipmask_ref/reproduce.py`), and you will:
#
# * load `results/ablations.json` (committed; this notebook never re-runs its trainings) and see which
#   switches each table row turns on;
# * re-derive a row's *mean ± std over seeds* and one claim's verdict from the per-seed numbers, and
#   check them against the file with `assert`;
# * plot every table with error bars next to the paper's COCO numbers, and read the verdicts;
# * look at the analogue of Fig. 6: the same validation images segmented with one set of coefficients
#   per box (1×1) and with 2×2 spatial coefficients;
# * read the claim behind Table 4 measured directly: how much of the 1×1 and the 2×2 masks leaks onto
#   same-class neighbours, per seed (`results/leak.json`).
#
# The paper, §4.3:
#
# > We perform an ablation study on COCO `minival` set with ResNet50-FPN backbone [28]. First, we show
# > the impact of progressively integrating our different components: spatial preservation (SP) module
# > (Sec. 3.1), contextual basis masks (CBM) obtained by integrating context information from different
# > FPN prediction layers (Sec. 3.2), and mask alignment weighting loss (WL) (Sec. 3.4), to the
# > baseline. Note that our baseline is similar to YOLACT, obtaining the basis masks by using only
# > high-resolution FPN layer ($P3$) and using a single set of coefficients for mask prediction. The
# > results are presented in Tab. 2. The baseline achieves a mask AP of 31.2. All our components (SP,
# > CBM and WL) contribute towards achieving improved performance (mask accuracy). In particular, the
# > most improvement in mask accuracy, over the baseline, comes from our […]
# >
# > Tab. 4 shows that a large gain in performance is obtained going from $1 \times 1$ to $2 \times 2$.
# > We also observe that the performance tends to marginally increase by further increasing the number
# > of sub-regions. […] It shows that both the classification and localization are useful to re-weight
# > the BCE loss for improved mask prediction.
#
# | Table 4 (sub-regions) | 1×1 | 1×2 | 2×1 | 2×2 | 3×3 | 4×4 |
# |---|---|---|---|---|---|---|
# | mask AP (COCO) | 31.2 | 32.2 | 32.1 | 32.9 | 33.1 | 33.1 |
#
# | Table 5 (weighting) | baseline | only cls. | only loc. | cls.+loc. |
# |---|---|---|---|---|
# | mask AP (COCO) | 31.2 | 31.8 | 31.7 | 32.0 |
#
# Our copy of the paper is cut off in the middle of §4.3: Tables 2 and 3 (and the end of the sentence
# above, presumably "SP module") are missing. Only the baseline's 31.2 is known for Table 2, nothing for
# Table 3; the report shows "-" there.

# %%
import io
import json
import math
import textwrap

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Image, display
from matplotlib import patheffects
from matplotlib.colors import to_rgb
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from torchvision.ops import box_iou

from sipmask_ref import compare, engine, leak_table, reproduce, tutorial
from sipmask_ref.data.synthetic import adjacency_flags
from sipmask_ref.eval.leak import mask_leak
from sipmask_ref.viz import to_uint8_image, zoom_window

plt.rcParams["figure.dpi"] = 100
torch.manual_seed(0)
ROOT = tutorial.repo_root()
print("fast mode:", tutorial.fast_mode())

# %% [markdown]
# ## The committed results
#
# `reproduce()` trained each *unique* configuration once per seed (the tables share rows: e.g. full
# SipMask is the last row of Table 2, "with alignment" in Table 3, 2×2 in Table 4 and cls+loc in
# Table 5), wrote one record per run, and assembled them into `results/ablations.json` and
# `results/ablations.md`. Each run is the `cpu_tiny` preset with the row's four switches and a short
# schedule of its own (`reproduce.ABLATION_*`, printed below), evaluated with COCO mask AP on the
# validation images (their number is printed below).
#
# Where every run starts. The paper trains each row from a ResNet-50 pretrained on ImageNet, so its rows
# share their first features and spend their schedule on detection and masks. Our stand-in
# (`reproduce/pretrain.py`): before any row, the tiny body is trained once as the backbone of the §3 box
# detector alone (no mask loss, the baseline's plain head), and every run of every row loads that body;
# its FPN, head and basis branch start from scratch. None of the four switches trains anything in the
# pretraining, so it favours no row. Its length and box AP are printed below. The runs are still shorter
# than the demo's training, so compare rows with each other and with their seed spread, not with the
# demo.

# %%
# NBVAL_CHECK_OUTPUT
report = reproduce.load_report(ROOT / "results" / "ablations.json")
settings = report["settings"]
print(
    "base preset:",
    settings["base_preset"],
    "| seeds:",
    settings["seeds"],
    "| val images:",
    settings["val_images"],
)
print("spread:", settings["spread"])
print(len(report["configs"]), "unique configurations")
for table in report["tables"]:
    print(table["key"], [row["label"] for row in table["rows"]])

# %%
env, s = report["environment"], report["settings"]
print(
    f"{s['iters']} iterations x {s['batch_size']} images per run ({s['optimizer']}, lr {s['lr']}, "
    f"steps {s['lr_steps']}), {env['runs_finished']} of {env['runs_planned']} runs finished"
)
print(
    f"python {env['python']}, torch {env['torch']}, torchvision {env['torchvision']}, {env['device']}, "
    f"{env['jobs']} parallel runs x {env['threads_per_job']} thread(s)"
)
pre = s["pretraining"]
print(
    f"pretrained body: {pre['iters']} iterations as the box detector alone, {pre['train_s']:.0f} s, "
    f"box AP {100 * pre['box_AP']:.1f} on the val images"
)
print(
    f"mean wall time per run {env['mean_run_wall_s']:.0f} s, total {env['total_wall_s'] / 60:.1f} min "
    "(the pretraining included)"
)

# %% [markdown]
# What each row switches on. `sub_regions` is the number of sets of spatial coefficients per box (§3.1),
# `basis_source` where the basis masks come from (§3.2), `alignment_weight` the weighting α of the mask
# loss (§3.4) and `feature_alignment` the deformable convolution of the SP module.

# %%
# NBVAL_CHECK_OUTPUT
for table in report["tables"]:
    print(table["title"])
    for row in table["rows"]:
        sw = row["switches"]
        print(
            f"  {row['label']:18s} sub_regions={tuple(sw['sub_regions'])} basis={sw['basis_source']:5s} "
            f"weight={sw['alignment_weight']:7s} feature_alignment={sw['feature_alignment']}"
        )


# %% [markdown]
# ## Re-deriving a row and a verdict
#
# A row's number is the mean over seeds of COCO mask AP (×100), and its spread the *sample* standard
# deviation (ddof 1). A claim "A beats B" compares the difference of means $d$ with its standard
# error from the seed spread,
#
# $$ se = \sqrt{\tfrac{s_A^2}{n_A} + \tfrac{s_B^2}{n_B}}, \qquad \text{holds if } d > 2\,se, $$
#
# "same direction, within seed noise" if $0 < d \le 2\,se$, "not seen" if $-2\,se \le d \le 0$ and
# "reversed" below. Here both are recomputed from the per-run records stored in the same file.


# %%
# NBVAL_CHECK_OUTPUT
def mask_ap(key):
    """Per-seed mask AP (points) of a configuration, from the raw run records."""
    return [100 * run["metrics"]["segm"]["AP"] for run in report["runs"] if run["variant"] == key]


table4 = next(t for t in report["tables"] if t["key"] == "table4")
rows = {row["label"]: row for row in table4["rows"]}
for label in ("1x1", "2x2"):
    values = mask_ap(rows[label]["variant"])
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    stored = rows[label]["result"]["AP"]
    torch.testing.assert_close(
        torch.tensor([mean, std]), torch.tensor([stored["mean"], stored["std"]]), rtol=0, atol=1e-9
    )
    print(label, f"mean and std re-derived from {len(values)} seed(s): equal to the table")

a, b = (rows[k]["result"]["AP"] for k in ("2x2", "1x1"))
d = a["mean"] - b["mean"]
se = math.sqrt(a["std"] ** 2 / a["n"] + b["std"] ** 2 / b["n"])
if min(a["n"], b["n"]) < 2:
    verdict = "one_seed"  # no spread to compare with
else:
    verdict = "holds" if d > 2 * se else "weak" if d > 0 else "not_seen" if d >= -2 * se else "reversed"
claim = next(c for c in table4["claims"] if c["text"].startswith("a large gain"))
assert verdict == claim["result"]["verdict"] and abs(d - claim["result"]["delta"]) < 1e-9
print("claim:", claim["text"], "-> re-derived verdict equals the stored one")

# %% [markdown]
# ## The four tables
#
# Bars: mean mask AP over seeds, error bars ± one standard deviation, dots: the individual seeds.
# Red diamonds (right axis): the paper's COCO minival mask AP where it is transcribed. The two axes have
# different ranges on purpose: the synthetic task and a short CPU schedule give other absolute
# numbers than a ResNet-50 trained on COCO; what can be compared is the *ordering* and the size of
# differences relative to the seed spread.

# %%
fig, axes = plt.subplots(2, 2, figsize=(12, 9))
for ax, table in zip(axes.ravel(), report["tables"], strict=True):
    labels = [row["label"] for row in table["rows"]]
    x = np.arange(len(labels))
    means = [row["result"]["AP"]["mean"] if row["result"] else np.nan for row in table["rows"]]
    stds = [row["result"]["AP"]["std"] if row["result"] else 0.0 for row in table["rows"]]
    ax.bar(x, means, yerr=stds, capsize=4, color="tab:blue", alpha=0.7, label="synthetic (mean ± std)")
    for k, row in enumerate(table["rows"]):
        if row["result"]:
            values = row["result"]["AP"]["values"]
            spread = np.full(len(values), k) + np.linspace(-0.12, 0.12, len(values))
            ax.plot(spread, values, "k.", ms=5, label="one seed" if k == 0 else None)
    ax.set_xticks(x, labels)
    ax.set_ylabel("mask AP, synthetic val")
    ax.set_ylim(0, 1.4 * max(max(row["result"]["AP"]["max"] for row in table["rows"] if row["result"]), 1))
    ax.set_title(textwrap.fill(table["title"], 60), fontsize=10)
    paper = [row["paper_AP"] if row["paper_AP"] is not None else np.nan for row in table["rows"]]
    if not all(np.isnan(paper)):
        twin = ax.twinx()
        twin.plot(x, paper, "D", color="tab:red", label="paper (COCO)")
        twin.set_ylabel("paper mask AP, COCO minival", color="tab:red")
        twin.set_ylim(30, 34)
        (h1, l1), (h2, l2) = ax.get_legend_handles_labels(), twin.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, loc="upper left", ncols=3, fontsize=8)
    else:
        ax.legend(loc="upper left", ncols=2, fontsize=8)
        ax.text(
            0.5,
            0.86,
            "paper numbers not transcribed (see the paper)",
            transform=ax.transAxes,
            ha="center",
            va="top",
            color="tab:red",
            fontsize=9,
        )
fig.tight_layout()
plt.show()

# %% [markdown]
# What to see: which rows' seed dots lie close together and which spread over several points (the long
# error bars), and whether the blue bars rise and fall from row to row as the red diamonds do; the
# verdicts below put numbers on both.
#
# ## Verdicts
#
# For every claim of the paper: the paper's difference (where its numbers are readable) and what the
# synthetic benchmark shows, in plain words. `results/ablations.md` holds the same tables as Markdown.

# %%
for table in report["tables"]:
    print(table["title"])
    for claim in table["claims"]:
        paper = "-" if claim["paper_delta"] is None else f"{claim['paper_delta']:+.1f}"
        result = claim["result"]["text"] if claim["result"] else "not run"
        print(f"  {claim['text']:62s} paper {paper:>5s} | here: {result}")
    print()

# %%
counts = {}
for table in report["tables"]:
    for claim in table["claims"]:
        key = claim["result"]["verdict"] if claim["result"] else "not run"
        counts[key] = counts.get(key, 0) + 1
print({reproduce.VERDICTS.get(k, k): v for k, v in counts.items()})


# %% [markdown]
# ## Fig. 6 analogue: one set of coefficients vs 2×2 spatial coefficients
#
# > **Fig. 6.** [...] Mask prediction obtained by the baseline that is based on a single set of
# > coefficients is shown in column 2 and 5. Mask prediction obtained by our approach that is based on
# > a separate set of spatial coefficients in a bounding-box is shown in column 3 and 6. Compared to
# > the baseline, our approach is able to better delineate spatially adjacent object instances.
#
# The two models differ in `sub_regions` only (Table 4's 1×1 and 2×2 rows, seed 0). When the
# reproduction's checkpoints are in `outputs/ablations/` they are loaded; otherwise (a fresh clone, or
# CI in fast mode) a short pair is trained from scratch through `tutorial.trained_model` (without the
# pretrained body: a weaker pair than the reproduction's). As in Fig. 6 we look at
# one detected box per object: for every ground-truth instance, the detection whose box overlaps it
# most, and the IoU of that detection's mask with the instance's mask, separately for instances that
# are *adjacent* to a same-class neighbour (≥ 10% of their box covered by it, `adjacency_flags`) and
# for the others.


# %%
def ablation_model(variant, name):
    """Seed-0 model of a reproduction run if its checkpoint exists, else a short tutorial run."""
    checkpoint = reproduce.run_checkpoint_path(ROOT / "outputs" / "ablations", variant, 0)
    if checkpoint.is_file():
        return engine.load_checkpoint(checkpoint)[0], "reproduction checkpoint"
    config = reproduce.ablation_config(variant, seed=0, iters=report["settings"]["iters"])
    iters = 25 if tutorial.fast_mode() else None  # None: the reproduction's own schedule
    return tutorial.trained_model(config, name=name, iters=iters)[0], "short tutorial run"


one = reproduce.Variant(sub_regions=(1, 1))  # full SipMask, one set of coefficients
two = reproduce.FULL  # full SipMask, 2 x 2 sub-regions
model_1x1, source_1x1 = ablation_model(one, "ablation_1x1")
model_2x2, source_2x2 = ablation_model(two, "ablation_2x2")
print("1x1:", source_1x1, "| 2x2:", source_2x2)

# %%
val_set = tutorial.synthetic_dataset("val")
NUM_IMAGES = 60  # the first 60 validation images
rows = []  # one per ground-truth instance: image, instance, adjacent?, area, (mask IoU, box, mask) per model
for k in range(NUM_IMAGES):
    image, target = val_set[k]
    gt_masks = target["masks"].bool()
    flags = adjacency_flags(gt_masks.numpy(), target["labels"].tolist())
    found = [engine.predict_images(model, [image], "cpu")[0] for model in (model_1x1, model_2x2)]
    for g in range(len(gt_masks)):
        entry = {"image": k, "instance": g, "adjacent": bool(flags[g]), "area": int(gt_masks[g].sum())}
        for name, f, model in zip(("1x1", "2x2"), found, (model_1x1, model_2x2), strict=True):
            if len(f["boxes"]) == 0:
                entry[name] = (0.0, None, None)
                continue
            # the detection whose box best matches this instance (as Fig. 6 shows one detected box)
            j = int(box_iou(target["boxes"][g : g + 1], f["boxes"])[0].argmax())
            pred = f["masks"][j, 0] > model.config.mask_threshold
            iou = float((pred & gt_masks[g]).sum() / (pred | gt_masks[g]).sum().clamp(min=1))
            entry[name] = (iou, f["boxes"][j], f["masks"][j, 0])
        rows.append(entry)

for adjacent in (True, False):
    group = [r for r in rows if r["adjacent"] == adjacent]
    print(
        f"{'adjacent' if adjacent else 'other':8s} instances ({len(group):3d}): mean mask IoU of the "
        f"best-matching detection  1x1 {np.mean([r['1x1'][0] for r in group]):.3f} | "
        f"2x2 {np.mean([r['2x2'][0] for r in group]):.3f}"
    )

# %% [markdown]
# Four adjacent instances (the largest ones among those images), each with the detection of each model
# whose box matches it best: its box and its mask (binarised at the model's mask threshold). The image is
# shown in colour once, then in grey, so that the mask (green) and the outlines can be told from the
# objects, whatever their colour: the instance in red, its same-class neighbours dashed blue. Above each
# mask: its IoU with the instance, and its leak and miss (`eval/leak.mask_leak`, the measure of the
# section below, here for the drawn mask). Leakage into a same-class neighbour inside the box is what one
# set of coefficients cannot avoid.

# %%
examples = sorted((r for r in rows if r["adjacent"]), key=lambda r: (-r["area"], r["image"], r["instance"]))[
    :4
]
COLORS = {"instance": "#ff2a2a", "neighbours": "#1e90ff", "mask": "#00e000", "box": "#ffd700"}
TINT = (*to_rgb(COLORS["mask"]), 0.45)  # the mask's fill: green, half transparent
halo = [patheffects.withStroke(linewidth=3.0, foreground="black")]  # keeps every line visible on any grey
threshold = model_2x2.config.mask_threshold


def outline(ax, mask, color, linestyle="-", width=1.6, outlined=True):
    """The contour of a bool mask [H, W] at its pixel edges (with a black halo when outlined)."""
    if mask.any():
        padded = np.pad(mask.astype(float), 1)  # a mask cut by the image border is closed there
        ys, xs = np.arange(-1, mask.shape[0] + 1), np.arange(-1, mask.shape[1] + 1)
        lines = ax.contour(xs, ys, padded, levels=[0.5], colors=color, linewidths=width)
        lines.set_linestyle(linestyle)
        if outlined:
            lines.set_path_effects(halo)


drawn = {}  # (image, instance) -> {model: (leak, miss)} of the drawn masks, printed under the figure
fig, axes = plt.subplots(len(examples), 4, figsize=(12, 3.1 * len(examples)), dpi=100)
for r, entry in enumerate(examples):
    image, target = val_set[entry["image"]]
    g = entry["instance"]
    gt_masks = target["masks"].bool().numpy()  # [G, H, W]
    same = (target["labels"] == target["labels"][g]).numpy()
    same[g] = False
    instance, neighbours = gt_masks[g], gt_masks[same].any(axis=0)  # g and U, as in eval/leak.py
    rgb = to_uint8_image(image)  # [H, W, 3]
    grey = 0.2 + 0.65 * (rgb / 255) @ np.array([0.299, 0.587, 0.114])  # luminance, kept off black and white
    # the window: the instance and both models' boxes, with a margin
    ys, xs = np.nonzero(instance)
    corners = [[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]]
    corners += [entry[name][1].tolist() for name in ("1x1", "2x2") if entry[name][1] is not None]
    corners = np.array(corners)
    x0, y0, x1, y1 = zoom_window((*corners[:, :2].min(0), *corners[:, 2:].max(0)), *grey.shape, margin=0.25)
    axes[r, 0].imshow(rgb, interpolation="nearest")
    axes[r, 0].set_title(f"val image {entry['image']}: input", fontsize=9)
    axes[r, 1].imshow(grey, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    outline(axes[r, 1], neighbours, COLORS["neighbours"], "--")
    outline(axes[r, 1], instance, COLORS["instance"])
    axes[r, 1].set_title(f"ground truth: instance {g} and its neighbour(s)", fontsize=9)
    for c, name in enumerate(("1x1", "2x2"), start=2):
        ax = axes[r, c]
        ax.imshow(grey, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        iou, box, mask = entry[name]
        if box is None:
            ax.set_title(f"{name}: no detection", fontsize=9)
        else:
            predicted = (mask > threshold).numpy()  # [H, W] bool
            tint = np.zeros((*predicted.shape, 4))
            tint[predicted] = TINT
            ax.imshow(tint, interpolation="nearest")
            outline(ax, predicted, COLORS["mask"], width=1.0, outlined=False)
            bx1, by1, bx2, by2 = box.tolist()
            edge = Rectangle(
                (bx1 - 0.5, by1 - 0.5), bx2 - bx1, by2 - by1, fill=False, ec=COLORS["box"], lw=1.4
            )
            edge.set_path_effects(halo)
            ax.add_patch(edge)
            leak_share, miss_share = mask_leak(predicted, instance, neighbours)
            drawn.setdefault((entry["image"], g), {})[name] = (leak_share, miss_share)
            ax.set_title(
                f"{name}: mask IoU {iou:.2f}, leak {100 * leak_share:.0f} %, miss {100 * miss_share:.0f} %",
                fontsize=9,
            )
        outline(ax, neighbours, COLORS["neighbours"], "--")
        outline(ax, instance, COLORS["instance"])
    for ax in axes[r]:
        ax.set_xlim(x0 - 0.5, x1 - 0.5)
        ax.set_ylim(y1 - 0.5, y0 - 0.5)
        ax.set_xticks([])
        ax.set_yticks([])
handles = [
    Line2D([], [], color=COLORS["instance"], lw=1.6, label="the instance g (ground truth)"),
    Line2D([], [], color=COLORS["neighbours"], lw=1.6, ls="--", label="same-class neighbour(s)"),
    Patch(facecolor=TINT, edgecolor=COLORS["mask"], label=f"the model's mask (> {threshold})"),
    Line2D([], [], color=COLORS["box"], lw=1.4, label="the model's box"),
]
for handle in handles:
    handle.set_path_effects(halo)
fig.legend(handles=handles, loc="lower center", ncols=4, fontsize=9, frameon=False)
fig.tight_layout(rect=(0, 0.03, 1, 1))
jpeg = io.BytesIO()  # textured images compress poorly as PNG (notebooks 04 and 10 show theirs as JPEG too)
fig.savefig(jpeg, format="jpeg", bbox_inches="tight")
plt.close(fig)
display(Image(jpeg.getvalue()))
for (image_id, g), shares in drawn.items():
    print(
        f"val {image_id:3d} instance {g}: "
        + " | ".join(
            f"{name} leak {100 * lk:4.1f} %, miss {100 * ms:4.1f} %" for name, (lk, ms) in shares.items()
        )
    )
both = [s for s in drawn.values() if len(s) == 2]
more = sum(s["1x1"][0] > s["2x2"][0] for s in both)
print(f"rows where the 1x1 mask leaks more than the 2x2 mask: {more} of {len(both)}")

# %% [markdown]
# Read each row against the lines printed under the figure. Where the 1×1 mask's leak is the larger, the
# green 1×1 mask spills over the red outline onto the dashed neighbour inside its box, while the 2×2 mask
# stops at or near the outline: four sets of coefficients let each quadrant of the box switch the
# neighbour off. A large miss for both models (a ring, say) is a mask that failed for another reason.

# %% [markdown]
# ## Leak: 1×1 vs 2×2 over seeds
#
# Fig. 6 shows the claim in pictures, and Table 4's mask AP folds it in with everything else a mask can
# get right or wrong. `results/leak.json` measures the claim itself on the same Table 4 runs (the 1×1
# and 2×2 rows, every seed): for each ground-truth instance with a same-class neighbour, the detection
# matched to it (same class, box IoU ≥ 0.5) and
#
# $$\text{leak} = \frac{|m \cap (U \setminus g)|}{|m|}, \qquad \text{miss} = \frac{|g \setminus m|}{|g|},$$
#
# the share of its mask $m$ on the same-class neighbours $U$, and the share of the instance $g$ the mask
# does not cover (`sipmask_ref/eval/leak.py`; notebook 04 draws one instance). The file is written by
# `leak_table.leak_table` (`sipmask_ref/leak_table.py`) from the reproduction's checkpoints, with the
# command printed below; this notebook only reads it. The claim "the 1×1 model has the larger leak"
# (and the same for miss) is judged with the rule above: the difference of the means against twice its
# standard error from the seed spread.

# %%
leak = json.loads((ROOT / "results" / "leak.json").read_text())
assert leak["format"] == leak_table.FORMAT, f"results/leak.json: format {leak['format']!r}"
print(
    f"{leak['seeds']} seeds x {len(leak['rows'])} models, {leak['val_images']} val images, match at box IoU "
    f">= {leak['iou_threshold']} (written by `{leak['command']}`)"
)
print(f"{'model':<6}{'seed':>5}{'leak %':>9}{'miss %':>9}{'leak > 5 %':>12}{'matched':>9}{'unmatched':>11}")
for run in leak["runs"]:
    print(
        f"{run['row']:<6}{run['seed']:>5}{100 * run['leak']:>9.1f}{100 * run['miss']:>9.1f}"
        f"{100 * run['leaking']:>11.0f}%{run['matched']:>9d}{run['unmatched']:>11d}"
    )
percent = {  # per model and measure: mean, std, n, values over seeds, in percent
    label: {key: reproduce.summarize([100 * v for v in row[key]["values"]]) for key in ("leak", "miss")}
    for label, row in leak["rows"].items()
}
for label, row in percent.items():
    print(
        f"{label}: leak {row['leak']['mean']:.1f} ± {row['leak']['std']:.1f} %, "
        f"miss {row['miss']['mean']:.1f} ± {row['miss']['std']:.1f} % "
        f"(mean ± std over {row['leak']['n']} seeds)"
    )
for key in ("leak", "miss"):
    for label in percent:  # re-derived from the per-run records: the stored mean is their mean
        runs = [run[key] for run in leak["runs"] if run["row"] == label]
        assert np.isclose(np.mean(runs), leak["rows"][label][key]["mean"])
    claim = reproduce.judge([(percent["1x1"][key], 1.0), (percent["2x2"][key], -1.0)])
    print(
        f"1x1 minus 2x2, {key}: {claim['delta']:+.1f} points, 2 se = {2 * claim['se']:.1f} -> "
        f"'the 1x1 model has the larger {key}': {reproduce.VERDICTS[claim['verdict']]}"
    )
    low, high = min(percent["1x1"][key]["values"]), max(percent["2x2"][key]["values"])
    print(
        f"  {key}: lowest 1x1 seed {low:.1f} against highest 2x2 seed {high:.1f} -> "
        f"{'every 1x1 seed above every 2x2 seed' if low > high else 'the seeds of the two models overlap'}"
    )

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), dpi=100)
labels = list(percent)  # ["1x1", "2x2"]
markers = ["o", "s", "^", "v", "D", "P"]
for ax, key in zip(axes, ("leak", "miss"), strict=True):
    for x, label in enumerate(labels):
        runs = [run for run in leak["runs"] if run["row"] == label]
        for k, run in enumerate(runs):
            ax.plot(
                x - 0.12,
                100 * run[key],
                markers[k % len(markers)],
                color="0.35",
                ms=6,
                label=f"seed {run['seed']}" if x == 0 else None,
            )
        summary = percent[label][key]
        ax.errorbar(
            x + 0.12,
            summary["mean"],
            yerr=summary["std"],
            fmt="o",
            color="tab:red",
            ms=8,
            capsize=5,
            label="mean ± std over seeds" if x == 0 else None,
        )
    ax.set_xticks(range(len(labels)), [f"{label} sub-regions" for label in labels])
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.set_ylim(bottom=0)
    ax.set_ylabel(f"{key} % (mean over matched adjacent instances)")
    ax.set_title(
        f"{key}: " + ("mask on same-class neighbours" if key == "leak" else "instance not covered"),
        fontsize=10,
    )
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
fig.suptitle(
    f"Table 4's 1×1 and 2×2 runs on the synthetic val split, {leak['seeds']} seeds each", fontsize=11
)
fig.tight_layout()
plt.show()

# %% [markdown]
# Read the plot as the claim's test: each grey marker is one seed's mean over its matched adjacent
# instances, the red point and bar the mean ± std over seeds. The paper's claim predicts the 1×1 leak
# above the 2×2 leak by more than the seeds scatter; the verdict lines printed above the plot say whether
# this benchmark shows it, for leak and for miss (a smaller leak bought with a larger miss would be a
# mask cut too tightly, not a better one).
#
# The lines printed above the plot say, for leak and for miss, whether every 1×1 seed lies above every
# 2×2 seed and whether the difference of the means clears the noise. Where they say so for leak, the
# plot shows two clusters of markers far apart; where the seeds of the two models overlap, as they may
# for miss, the plot shows one model's markers spread across the other's.

# %% [markdown]
# ## Table 1 on this machine: speed against accuracy
#
# The paper's headline (Table 1) is speed at competitive accuracy against two-stage Mask R-CNN and
# YOLACT-like single-stage models. `python -m sipmask_ref compare` (`make compare`, code in
# `sipmask_ref/compare/`) puts that comparison on the synthetic benchmark: SipMask (`cpu_tiny`), the
# YOLACT-like baseline of Table 2, and torchvision's own `MaskRCNN` built on the **same** tiny body + FPN,
# each trained on the same data for the same CPU budget, then timed at batch 1 on the same threads.
# Everything runs side by side, so that a slower moment of the machine hits every model alike: the
# models' step times are measured first, in alternating rounds, and the budget divided by a model's
# median step gives its iterations (the cell below checks that arithmetic against the committed file);
# the models then train in turns of a few dozen iterations, and are timed image by image in turn.

# %%
table1 = json.loads((ROOT / "results" / "speed_accuracy.json").read_text())
print(
    f"budget {table1['settings']['budget_s']:g} s per model, {table1['settings']['threads']} threads, "
    f"{table1['settings']['train_images']} training images"
)
print(f"{'model':<44} {'iters':>5} {'train s':>7} {'box AP':>6} {'mask AP':>7} {'ms / image':>10}")
for r in table1["records"]:
    # re-derived: the iterations are the budget over the calibrated step time (the median step)
    assert r["iterations"] == max(1, int(table1["settings"]["budget_s"] / r["calibration"]["median_s"]))
    assert r["iterations"] == compare.iterations_for_budget(
        table1["settings"]["budget_s"], r["calibration"]["median_s"]
    )
    print(
        f"{r['title'][:44]:<44} {r['iterations']:>5} {r['train_s']:>7.0f} {100 * r['box_AP']:>6.1f} "
        f"{100 * r['mask_AP']:>7.1f} {r['inference']['median_ms']:>10.1f}"
    )

# %%
fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=100)
for r in table1["records"]:
    speed = r["inference"]
    ax.errorbar(
        speed["median_ms"],
        100 * r["mask_AP"],
        xerr=[[speed["median_ms"] - speed["p25_ms"]], [speed["p75_ms"] - speed["median_ms"]]],
        fmt="o",
        capsize=3,
        label=f"{r['name']} ({r['iterations']} iterations)",
    )
ax.set_xlabel("CPU inference, ms per image (batch 1, median, p25-p75)")
ax.set_ylabel("mask AP on the synthetic val split")
ax.set_title(f"Same data, same {table1['settings']['budget_s']:g} s of training each")
ax.grid(alpha=0.3)
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# Read the figure as the paper's Table 1 read as a plot: further left is faster, higher is more
# accurate. Each point is one row of the table printed above (its median time per image, with the
# p25-p75 range as the bar, against its mask AP). A budget in seconds, not iterations, is the fair unit
# here: a model with a slower step gets fewer iterations, exactly as it would get fewer epochs in the
# same GPU-days. The budget fixes each model's iterations, not its seconds: the `train s` column printed
# above is the time each training actually took. The numbers themselves are in
# `results/speed_accuracy.md`.

# %% [markdown]
# ## Summary
#
# * `reproduce.py` trains every unique configuration of the four tables (they share rows) once per seed
#   of the `cpu_tiny` model on the synthetic benchmark, resumably, and reports mask AP / AP50 / AP75 as
#   mean ± std over seeds; the numbers of configurations, seeds and runs are printed at the top.
# * A paper claim counts as reproduced only when its difference exceeds twice its standard error from
#   the seed spread; the verdicts above say for each claim whether it holds, is within noise, or is
#   reversed, and by how much.
# * In the committed run (every run from the pretrained body; its schedule, seeds and wall time are
#   printed at the top) the claims about spatial coefficients are the clearest: SP over the baseline,
#   SP as the largest gain of Table 2, and 2×2 over 1×2 and over 2×1 hold beyond the noise, while 3×3
#   and 4×4 add less than the noise, as in the paper. WL over the CBM row and cls+loc over cls alone
#   hold as well. The contextual basis masks (CBM over the P3 basis) are not seen here, nor is the
#   weighting by the class score alone; the feature alignment is in the paper's direction within the
#   noise. Table 4's claims against 1×1 are within the noise only because one of that row's three runs
#   failed: its AP min-max column reads 12.5-34.9, and its seed 1 lost its basis masks (every map
#   zero, the mask loss stuck at log 2; `results/README.md` describes it). The verdict cells above are
#   the authority; this paragraph was written from them.
# * `results/leak.json` measures what Table 4's gain is said to come from: the share of a mask on
#   same-class neighbours (leak) and the share of its instance it misses, per seed; the section "Leak:
#   1×1 vs 2×2 over seeds" prints both and the verdict of the same noise rule.
# * The absolute numbers are not comparable with COCO (another task, a tiny model whose body was
#   pretrained on the benchmark's own images, a schedule of minutes); orderings and differences
#   relative to the seed noise are.
#
# ## Exercises
#
# 1. Run `python -m sipmask_ref reproduce --only sr1x1_p3-p5_cls+loc_fa sr2x2_p3-p5_cls+loc_fa --seeds 5`
#    (into another `--out` and `--work-dir`): do two more seeds change the 1×1 vs 2×2 verdict?
# 2. Regenerate the benchmark with `make_data(adjacency=0.0)` in another folder and rerun the 1×1 and
#    2×2 rows with `--data-root`: does the gain of spatial coefficients shrink when no same-class
#    instances touch?
# 3. The paper's Tables 4 and 5 start from 31.2, its baseline, rather than from full SipMask. Add a
#    table to `reproduce.TABLES` that varies the sub-regions on top of `BASELINE` and compare.
