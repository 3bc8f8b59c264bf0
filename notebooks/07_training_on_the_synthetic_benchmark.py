# %% [markdown]
# # 07 · Training on the synthetic benchmark
#
# This notebook is about the loop that turns the §3.4 losses into weights: `sipmask_ref.engine.train`.
# You will:
#
# * read the training recipe (SGD, warm-up, step decay) and plot the learning-rate schedule of the
#   paper's presets and of `cpu_tiny`; then re-derive it with PyTorch's own schedulers and check it
#   against `engine.lr_factor`;
# * train `cpu_tiny` on the synthetic benchmark (or load the tutorial checkpoint) and plot its loss
#   curves from `train_log.jsonl`;
# * check that an interrupted run, resumed from its checkpoint, ends with exactly the weights of an
#   uninterrupted run;
# * learn the knobs that make a run small enough for a laptop.
#
# The paper, §4.1:
#
# > **Implementation Details:** We adopt ResNet [22] (ResNet50/ResNet101) with FPN pre-trained on
# > ImageNet [38] as the backbone. Our method is trained eight GPUs with SGD for optimization. During
# > training, the initial learning rate is set to 0.01. When conducting ablation study, we use a
# > $1\times$ training scheme at single scale to reduce training time. For a fair comparison with the
# > state-of-the-art single-stage methods [11,2], we follow the $6\times$, multi-scale training scheme.
#
# The rest of the recipe comes from the authors' configs
# ([docs/authors_implementation.md §2.4](../docs/authors_implementation.md#24-optimiser-and-schedules)):
# momentum 0.9, weight decay 1e-4, 16 images per step. The 800-pixel models use a constant warm-up
# of 500 iterations at 1/3 of the learning rate, and ×2 learning rate and no decay for biases. The
# 544-pixel models use a linear warm-up. The learning rate drops ×0.1 at two steps near the end
# (epochs 8 and 11 of 12 for "1×").
#
# `cpu_tiny` keeps the schedule's shape (a warm-up, then a late ×0.1 drop: one instead of two, at 95% of
# its short run) but trains a small CNN from scratch with **AdamW** (`config.optimizer`), at the learning
# rate and for the number of iterations of its column in the table below. From scratch and in a few
# hundred iterations AdamW got further than SGD at lr 0.01–0.1 (see the preset's docstring).
# `engine.build_optimizer` builds either one. The schedule below multiplies whichever learning rate the
# optimizer has.

# %%
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch.utils.data import Subset

from sipmask_ref import engine, fcos, tutorial
from sipmask_ref.config import preset
from sipmask_ref.model import SipMask

plt.rcParams["figure.dpi"] = 100
torch.manual_seed(0)
print("fast mode:", tutorial.fast_mode())

# %% [markdown]
# ## The recipe, preset by preset

# %%
fields = ["optimizer", "lr", "momentum", "weight_decay", "bias_lr_factor", "bias_weight_decay"]
fields += ["warmup_method", "warmup_iters", "warmup_factor", "lr_steps", "max_iters", "batch_size"]
presets = ("paper_r50_800", "paper_r50_544", "cpu_tiny")
configs = {name: preset(name) for name in presets}


def show(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


print(f"{'':18s}" + "".join(f"{name:>17s}" for name in presets))
for field in fields:
    print(f"{field:18s}" + "".join(f"{show(getattr(configs[name], field)):>17s}" for name in presets))

# %% [markdown]
# `engine.lr_factor(iteration, config)` is the multiplier of `config.lr` for each step: warm-up first,
# then ×0.1 at each of `lr_steps`. Plotted against the fraction of the run:

# %%
fig, ax = plt.subplots(figsize=(8, 3.2))
for name, c in configs.items():
    its = np.unique(np.linspace(0, c.max_iters - 1, 2000).astype(int))
    ax.plot(its / c.max_iters, [engine.lr_factor(int(i), c) for i in its], label=name)
ax.set_xlabel("fraction of training")
ax.set_ylabel("lr / config.lr")
ax.set_yscale("log")
ax.legend()
plt.tight_layout()
plt.show()
for name, c in configs.items():
    print(
        f"{name:14s} warm-up: the first {c.warmup_iters} of {c.max_iters} iterations "
        f"({100 * c.warmup_iters / c.max_iters:.1f}%), lr x0.1 at {c.lr_steps}"
    )

# %% [markdown]
# All three curves have the same shape: a short warm-up, a long plateau at the full learning rate, then
# drops by ×0.1 in the last part of the run (two for the paper's presets, one for `cpu_tiny`). The paper's
# 800-pixel preset warms up at a constant fraction of the learning rate, the two others linearly (the
# table above). On this fraction axis the paper's
# warm-ups are squeezed against 0, because their runs are far longer, while the warm-up of `cpu_tiny` is a
# visible ramp (the percentages printed above).


# %% [markdown]
# ### Re-derived with PyTorch's schedulers
#
# The same schedule is a warm-up scheduler (`LinearLR` or `ConstantLR`) chained with `MultiStepLR`.
# We step both through every iteration of each preset and compare with `engine.lr_factor`.


# %%
# NBVAL_CHECK_OUTPUT
def torch_schedule(c) -> list[float]:
    """The lr multiplier of every iteration of config c, from torch.optim.lr_scheduler."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    warmup = (
        torch.optim.lr_scheduler.LinearLR(optimizer, c.warmup_factor, 1.0, c.warmup_iters)
        if c.warmup_method == "linear"
        else torch.optim.lr_scheduler.ConstantLR(optimizer, c.warmup_factor, c.warmup_iters)
    )
    steps = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(c.lr_steps), gamma=0.1)
    factors = []
    for _ in range(c.max_iters):
        factors.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        warmup.step()
        steps.step()
    return factors


for name in ("cpu_tiny", "paper_r50_800"):
    c = configs[name]
    if name == "paper_r50_800":  # 88k iterations: the first 1,000 and around the steps are enough
        c = dataclasses.replace(c, lr_steps=(600, 900), max_iters=1000)
    ours = np.array([engine.lr_factor(i, c) for i in range(c.max_iters)])
    np.testing.assert_allclose(torch_schedule(c), ours, rtol=1e-6)
    print(f"{name}: engine.lr_factor == LinearLR/ConstantLR + MultiStepLR at all {c.max_iters} iterations")

# %% [markdown]
# ## Training `cpu_tiny`
#
# `tutorial.trained_model()` is a thin wrapper around the engine. On the first call it does
#
# ```python
# engine.seed_everything(config.seed)
# engine.train(SipMask(config), config, train_set, out_dir, iters=..., device="cpu")
# ```
#
# and then loads `out_dir/checkpoint.pt`. The command line does the same:
# `python -m sipmask_ref train --config cpu_tiny --out outputs/cpu_tiny`.
#
# Training the full preset takes a while on a laptop CPU. **In this notebook the full run reuses the
# tutorial checkpoint** (outputs/tutorial/cpu_tiny/) that the other notebooks share, with its
# `train_log.jsonl`, instead of training again. In fast mode (`SIPMASK_FAST=1`, used by the tests) the
# run is `tutorial.FAST_ITERS` iterations long. The cell prints how long the loaded run was.

# %%
model, config = tutorial.trained_model()
run_dir = tutorial.model_dir("cpu_tiny")  # outputs/tutorial/cpu_tiny[_fast]
lines = (run_dir / engine.LOG_NAME).read_text().splitlines()
records = [json.loads(line) for line in lines if line.strip()]
records = [r for r in records if "loss" in r]  # evaluation records, if any, hold "metrics" instead
saved = engine.read_checkpoint(run_dir / engine.CHECKPOINT_NAME)
every = records[1]["iteration"] - records[0]["iteration"]
print(f"{run_dir.relative_to(tutorial.repo_root())}: {saved['iteration']} iterations, ", end="")
print(f"{len(records)} log records, every {every} iterations")

# %%
steps = [r["iteration"] for r in records]
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
for key in ("loss_cls", "loss_box", "loss_centerness", "loss_mask", "loss"):
    axes[0].plot(steps, [r[key] for r in records], label=key, lw=2 if key == "loss" else 1)
axes[0].set_xlabel("iteration")
axes[0].set_ylabel("loss")
axes[0].set_title("mean losses over each logging window")
axes[0].legend(fontsize=8)
axes[1].plot(steps, [r["lr"] for r in records], "o-", ms=3, label="logged lr")
its = np.arange(1, steps[-1] + 1)
scheduled = [config.lr * engine.lr_factor(int(i) - 1, config) for i in its]
axes[1].plot(its, scheduled, lw=0.8, label="config.lr x lr_factor")
axes[1].set_xlabel("iteration")
axes[1].set_ylabel("learning rate")
axes[1].set_title("learning rate")
axes[1].legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# Left: the total loss falls fastest in the first few hundred iterations and then keeps creeping down;
# `loss_cls`, `loss_box` and `loss_mask` fall with it, while the centerness loss stays nearly flat, well
# above 0. Right: the logged learning rate lies on the schedule, with its warm-up and two drops.
#
# Why does the centerness loss stay flat? It is a BCE against soft targets in (0, 1], whose minimum is
# the targets' entropy, not 0. The lowest value it could reach on training images, measured:

# %%
train_set = tutorial.synthetic_dataset("train")
with torch.no_grad():
    batch = model.preprocess([train_set[k][0] for k in range(16)], [train_set[k][1] for k in range(16)])
    _, outputs, _ = model.run_network(batch.images)
sizes = [tuple(x.shape[-2:]) for x in outputs.cls_logits]
points, strides, ranges = fcos.flatten_levels(
    fcos.locations(sizes, config.strides), config.strides, config.regress_ranges
)
centerness_targets = []
for target in batch.targets:
    assigned = fcos.fcos_targets(
        points, strides, ranges, target["boxes"], target["labels"], config.center_sampling_radius
    )
    centerness_targets.append(fcos.centerness_target(assigned.box_targets[assigned.labels > 0]))
ctr = torch.cat(centerness_targets).clamp(max=1 - 1e-7)  # a target of 1 has entropy 0
entropy = -(ctr * ctr.log() + (1 - ctr) * (1 - ctr).log())
print(f"{len(ctr)} positives of 16 training images, mean entropy of their targets: {entropy.mean():.3f}")
print(f"loss_centerness in the last log record: {records[-1]['loss_centerness']:.3f}")

# %% [markdown]
# The trained model's centerness loss sits only a little above that floor: the flat curve is a model that
# has learned centerness almost as well as it can be learned, not one that is stuck. `loss_box` is
# −log IoU weighted by centerness, and `loss_mask` is the α-weighted BCE of notebook 05. Every term has
# weight 1 (`L = L_reg + L_cls + L_mask`, plus centerness).
#
# ## Resume: an interrupted run ends exactly where an uninterrupted one does
#
# The engine's data stream is a pure function of (seed, step): which images step *i* trains on and
# whether they are flipped. A checkpoint stores the model, the optimizer state (momentum), the
# scheduler, the random-number generators and the step. On CPU a run resumed from step k therefore
# reaches **bit-identical** weights. We check it on a tiny run, small enough to take seconds: 8
# training images at 64×64 pixels, 1 per step, 3 steps, interrupted after 1.
#
# One caveat, which we found while writing this notebook. Multi-threaded CPU kernels may split a sum
# differently from one call to the next, so the last bit of a gradient can change. With SGD such a
# difference is far below the precision of the weights. AdamW divides every gradient by its own running
# RMS, so near-zero gradients (here: the P6 layer, which sees 1×1 maps at this input size) are scaled up
# to a full step, and the last-bit noise then reaches the weights. For an exact comparison the demo runs
# single-threaded.

# %%
# NBVAL_CHECK_OUTPUT
tiny_data = Subset(train_set, range(8))
tiny = dataclasses.replace(preset("cpu_tiny"), num_classes=len(train_set.class_names), batch_size=1)
tiny = dataclasses.replace(tiny, input_size=(64, 64), warmup_iters=1, lr_steps=(2,), max_iters=3)


def fresh_model() -> SipMask:
    engine.seed_everything(tiny.seed)
    return SipMask(tiny)


threads = torch.get_num_threads()
torch.set_num_threads(1)  # bit-exact reductions: see the caveat above
with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    whole = fresh_model()
    engine.train(whole, tiny, tiny_data, tmp / "whole", log_every=1, progress=False)
    interrupted = fresh_model()
    engine.train(interrupted, tiny, tiny_data, tmp / "split", iters=1, log_every=1, progress=False)
    step = engine.read_checkpoint(tmp / "split" / engine.CHECKPOINT_NAME)["iteration"]
    print("checkpoint after the interruption, step", step)
    resumed = fresh_model()  # a new process would start from fresh weights too
    engine.train(resumed, tiny, tiny_data, tmp / "split", resume=True, log_every=1, progress=False)
    lines = (tmp / "split" / engine.LOG_NAME).read_text().splitlines()
    logged = [json.loads(line)["iteration"] for line in lines]
torch.set_num_threads(threads)

pairs = zip(whole.state_dict().values(), resumed.state_dict().values(), strict=True)
same = all(torch.equal(a, b) for a, b in pairs)
print("resumed weights == uninterrupted weights, bit for bit:", same)
print("iterations in the resumed run's log:", logged)
assert same


# %% [markdown]
# ## The knobs that shrink a run
#
# | knob | where | effect |
# |---|---|---|
# | `iters` | `engine.train(..., iters=)`, `--iters` | stop early; the lr steps stay put: no decay |
# | `max_iters`, `lr_steps`, `warmup_iters` | config | a shorter schedule that still decays |
# | `batch_size` | config, `--batch-size` | images per step: time per step is roughly proportional |
# | `input_size` | config | pixels per image: cost grows with the area |
# | `fpn_channels`, `stacked_convs`, `num_basis` | config | a narrower, shallower head |
# | `num_train` | `make_data(num_train=...)`, `make-data --num-train` | a smaller synthetic training split |
# | `log_every`, `checkpoint_every`, `eval_every` | `engine.train` | less time spent writing and evaluating |
#
# Change a preset with `dataclasses.replace`. For example, two settings, each timed in the full run
# (timings depend on the machine and on what else runs on it; fast mode only counts parameters):


# %%
def seconds_per_step(config, steps: int = 3) -> float:
    """Fastest of `steps` timed training steps (forward, backward, optimizer), after one warm-up step.

    The minimum, not the mean: on a shared machine other processes only ever make a step slower.
    """
    engine.seed_everything(config.seed)
    model = SipMask(config).train()
    optimizer = engine.build_optimizer(model, config)
    images, targets = zip(*[tiny_data[i % len(tiny_data)] for i in range(config.batch_size)], strict=True)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        loss = sum(model(list(images), list(targets)).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return min(times[1:])


base = dataclasses.replace(preset("cpu_tiny"), num_classes=len(train_set.class_names))
small = dataclasses.replace(base, batch_size=2, input_size=(96, 96))
small = dataclasses.replace(small, fpn_channels=32, num_basis=8, basis_hidden_channels=64)
seconds = {}
for name, c in (("cpu_tiny", base), ("shrunk", small)):
    n_params = sum(p.numel() for p in SipMask(c).parameters())
    print(
        f"{name:9s} batch {c.batch_size}, input {c.input_size}, D={c.fpn_channels}, M={c.num_basis}: "
        f"{n_params / 1e6:.2f} M parameters"
    )
    if not tutorial.fast_mode():
        seconds[name] = seconds_per_step(c)
if seconds:
    print(
        f"time per step: cpu_tiny {seconds['cpu_tiny']:.2f} s, shrunk {seconds['shrunk']:.2f} s "
        f"({seconds['cpu_tiny'] / seconds['shrunk']:.1f}x faster)"
    )

# %% [markdown]
# ## Summary
#
# * The paper's recipe is SGD at lr 0.01 with momentum 0.9 and weight decay 1e-4, a warm-up, and ×0.1
#   at two late steps. `cpu_tiny` keeps the shape on a short run (one late step), with AdamW because it
#   trains from scratch (see its column in the table). `engine.lr_factor` is exactly PyTorch's warm-up
#   scheduler chained with `MultiStepLR`.
# * `engine.train` logs mean losses to `train_log.jsonl` and writes atomic checkpoints. A resumed run
#   matches an uninterrupted one bit for bit on CPU.
# * A run is made smaller with `iters`, the schedule fields, `batch_size`, `input_size` and the width of
#   the head.
#
# ## Exercises
#
# 1. Train `cpu_tiny` with `iters=300` twice, once with the default schedule (no decay happens) and once
#    with `dataclasses.replace(config, max_iters=300, lr_steps=(220, 280))`. Compare the last logged
#    losses and the AP (notebook 08).
# 2. Interrupt a real run: start `python -m sipmask_ref train --config cpu_tiny --out /tmp/run
#    --checkpoint-every 50`, stop it with Ctrl-C after a few checkpoints, continue it with `--resume`,
#    and compare `train_log.jsonl` with an uninterrupted run's.
# 3. Train `cpu_tiny` with the authors' optimizer, `dataclasses.replace(config, optimizer="sgd",
#    lr=0.01)`, and compare the loss curves with the AdamW run above. Then double `batch_size` and halve
#    `max_iters` and `lr_steps`: should `lr` change too (the linear scaling rule says lr ∝ batch size)?
