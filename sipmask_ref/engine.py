"""Training and evaluation engine: the loop that turns the §3.4 losses into weights.

Not a paper section; the recipe is the authors' (SGD, lr 0.01, momentum 0.9, weight decay 1e-4,
warm-up, x0.1 steps), written iteration by iteration. Read top to bottom:

    lr_factor            the learning-rate schedule: warm-up, then x0.1 at each of config.lr_steps
    build_optimizer      SGD with the bias lr / weight-decay multipliers of the 800-pixel configs
    WeightAverage        an exponential moving average of the weights (config.ema_decay)
    TrainSamples         the training stream: sample p is a pure function of (seed, p)
    model_from_checkpoint  a checkpoint dict -> (model, config); load_checkpoint the same from a file
                         (writing and reading the files: checkpoints.py, re-exported here)
    train                the loop; its pieces: _Run (what a checkpoint holds: start = resume or seed,
                         save), _train_step (forward, loss guard, backward, AMP scaler, optimizer,
                         weight average), _Progress (bar and log), _Evaluation, DDP helpers
    evaluate             eval mode over a dataset -> COCO results + the 12 COCO numbers per type

Determinism. Which image step i trains on, and whether it is flipped, depends only on
(config.seed, i): epoch e of the stream is `torch.randperm` under a generator seeded with seed + e,
and the flip of stream position p is drawn from a generator seeded with (seed, p). Nothing is drawn
from the global random generators for data, so a run resumed from a checkpoint sees exactly the
batches an uninterrupted run sees, and (with the optimizer, scheduler, scaler and RNG states restored)
reaches bit-identical weights on CPU. Data-loading worker processes (`num_workers > 0`) do not change
this: a worker only computes positions it is handed, from the same pure function. On CUDA, some
backward kernels (atomics in DeformConv2d, interpolate) are not bitwise deterministic; the data order
still is.

Multi-GPU. Under `torchrun` (RANK / WORLD_SIZE in the environment) `train` joins the process group,
wraps the model in DistributedDataParallel and gives rank r the slice r of each global batch of
world_size x config.batch_size stream positions; only rank 0 writes checkpoints, logs and metrics
(and shows progress bars), and evaluation during training runs on rank 0 alone (the others wait at
the next collective). DDP runs without `find_unused_parameters`: every trainable parameter of SipMask
and SipMaskVIS gets a gradient at every step, positives or not (tests/test_model.py and
tests/test_video_model.py check it). At the end every rank holds rank 0's final weights, BatchNorm
statistics included (each rank's last forward pass had updated them on its own images).
config.batch_size is images per process (the authors' "images per GPU"); the learning rate is not
rescaled for the number of processes.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import json
import os
import random
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

# Checkpoint files live in checkpoints.py; these names stay importable from engine (notebooks, tests).
from .checkpoints import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_NAME,
    CheckpointError,
    config_from_dict,
    evaluation_weights,
    read_checkpoint,
    save_checkpoint,
)
from .config import SipMaskConfig
from .data.transforms import RandomHorizontalFlip, apply_same_transform, collate
from .eval.coco import evaluate_coco, predictions_to_coco_results, save_metrics
from .model import SipMask
from .video_model import SipMaskVIS

METRICS_NAME = "metrics.json"
LOG_NAME = "train_log.jsonl"


class SizedDataset(Protocol):
    """What training reads from a dataset: its length and its items (CocoInstances, YTVISDataset)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Any: ...


class CocoLikeDataset(SizedDataset, Protocol):
    """What `evaluate` reads: items (image, target), the category ids and the pycocotools COCO object."""

    @property
    def label_to_cat_id(self) -> dict[int, int]: ...

    @property
    def coco(self) -> Any: ...


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; training stopped without writing a checkpoint for that step."""


# ----------------------------------------------------------------------------------------------------
# learning-rate schedule and optimizer
# ----------------------------------------------------------------------------------------------------
def lr_factor(iteration: int, config: SipMaskConfig) -> float:
    """Multiplier of config.lr for the step taken after `iteration` completed steps (0-based).

    Step schedule: 0.1 ** (number of config.lr_steps <= iteration).
    Warm-up, for iteration < config.warmup_iters, multiplies the step factor by
      'linear':   warmup_factor + (1 - warmup_factor) * iteration / warmup_iters
      'constant': warmup_factor
    (mmdet's warm-up, which the authors use: linear for the 544 configs, constant 1/3 for 800).
    """
    factor = 0.1 ** sum(1 for step in config.lr_steps if step <= iteration)
    if iteration < config.warmup_iters:
        if config.warmup_method == "linear":
            factor *= config.warmup_factor + (1.0 - config.warmup_factor) * iteration / config.warmup_iters
        else:
            factor *= config.warmup_factor
    return factor


def build_optimizer(model: nn.Module, config: SipMaskConfig) -> torch.optim.Optimizer:
    """SGD(lr, momentum, weight_decay) over the trainable parameters (AdamW if config.optimizer says so).

    The authors train with SGD. The from-scratch CPU preset uses AdamW (betas (momentum, 0.999)),
    which reaches a useful model in a few hundred iterations where SGD needs thousands.

    Biases (parameter names ending in 'bias') get lr x config.bias_lr_factor and weight decay
    config.bias_weight_decay (the authors' 800-pixel configs: x2 and 0; 1 and 1e-4 elsewhere).
    Frozen parameters (requires_grad False, e.g. the ResNet stem) are left out.
    """
    weights: list[nn.Parameter] = []
    biases: list[nn.Parameter] = []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (biases if name.endswith("bias") else weights).append(parameter)
    groups = [{"params": weights, "lr": config.lr, "weight_decay": config.weight_decay}]
    if biases:
        groups.append(
            {
                "params": biases,
                "lr": config.lr * config.bias_lr_factor,
                "weight_decay": config.bias_weight_decay,
            }
        )
    if config.optimizer == "adamw":
        return torch.optim.AdamW(
            groups, lr=config.lr, betas=(config.momentum, 0.999), weight_decay=config.weight_decay
        )
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


class WeightAverage:
    """An exponential moving average (EMA) of a model's weights, the model that a run evaluates.

    After step t (1-based) every floating-point entry of the state dict (parameters and BatchNorm
    statistics) moves towards the live model's:  avg <- d_t * avg + (1 - d_t) * w,  with
    d_t = min(decay, (1 + t) / (10 + t)), so that the early, fast-changing weights are forgotten
    quickly; integer buffers (BatchNorm's step counter) are copied. Not in the paper, whose schedule
    ends with two x0.1 steps; on a short from-scratch schedule the average is the better model
    (the cpu_tiny preset's docstring gives the measured effect).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"WeightAverage: decay must lie in (0, 1), got {decay}")
        self.decay = decay
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Move the average towards `model`'s weights after step `step` (1-based)."""
        d = min(self.decay, (1 + step) / (10 + step))
        for name, value in model.state_dict().items():
            average = self.state[name]
            if average.is_floating_point():
                average.lerp_(value.detach(), 1.0 - d)
            else:
                average.copy_(value)


# ----------------------------------------------------------------------------------------------------
# data order: a pure function of (seed, stream position)
# ----------------------------------------------------------------------------------------------------
def sample_seed(seed: int, position: int) -> int:
    """The seed of the random draws (flip) for stream position `position` of a run seeded `seed`."""
    return int(np.random.SeedSequence([seed, position]).generate_state(1)[0])


def batch_positions(iteration: int, batch_size: int, rank: int = 0, world_size: int = 1) -> list[int]:
    """Stream positions of rank `rank`'s share of step `iteration` (0-based).

    Step i consumes the global positions [i * W * b, (i + 1) * W * b) of the stream (W processes,
    b images each); rank r takes the r-th consecutive slice of b of them.
    """
    start = (iteration * world_size + rank) * batch_size
    return list(range(start, start + batch_size))


class TrainSamples(Dataset):
    """The infinite training stream, as a dataset indexed by stream position p = 0, 1, 2, ...

    Position p is item perm_e[p mod n] of the base dataset (n items, e = p // n the epoch, perm_e =
    torch.randperm(n) under a generator seeded with seed + e), horizontally flipped with probability
    hflip_prob by a draw from a generator seeded with sample_seed(seed, p). The base dataset's own
    transforms, if any, also run under that seed (they draw from torch's CPU generator), so they are
    reproducible too; pass a dataset without a flip of its own to avoid flipping twice.

    Video training pairs (items (image, target, ref_image, ref_target), §3.5) are flipped together:
    both frames or neither. A dataset with `set_epoch` (YTVISDataset) is told the epoch of each
    position before the item is read, so its reference frames change from epoch to epoch and still
    depend only on (seed, position).
    """

    def __init__(self, dataset: SizedDataset, seed: int, hflip_prob: float) -> None:
        if len(dataset) == 0:
            raise ValueError("the training dataset is empty")
        self.dataset = dataset
        self.seed = seed
        self.flip = RandomHorizontalFlip(hflip_prob) if hflip_prob > 0 else None
        self._epoch_order: tuple[int, Tensor] | None = None  # cache: (epoch, permutation)

    def index(self, position: int) -> int:
        """Index into the base dataset of stream position `position`."""
        epoch, offset = divmod(position, len(self.dataset))
        if self._epoch_order is None or self._epoch_order[0] != epoch:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            self._epoch_order = (epoch, torch.randperm(len(self.dataset), generator=generator))
        return int(self._epoch_order[1][offset])

    def __getitem__(self, position: int) -> tuple[Any, ...]:
        with torch.random.fork_rng(devices=[]):  # the global CPU generator is left as it was
            torch.manual_seed(sample_seed(self.seed, position))
            if hasattr(self.dataset, "set_epoch"):
                self.dataset.set_epoch(position // len(self.dataset))
            item = self.dataset[self.index(position)]
            if len(item) == 4:  # a video pair: the same flip for both frames
                image, target, ref_image, ref_target = item
                if self.flip is not None:
                    (image, target), (ref_image, ref_target) = apply_same_transform(
                        self.flip, [(image, target), (ref_image, ref_target)]
                    )
                return image, target, ref_image, ref_target
            image, target = item
            if self.flip is not None:
                image, target = self.flip(image, target)
        return image, target


class _StepBatches:
    """Batch sampler for DataLoader: the positions of steps start .. stop-1 for one rank."""

    def __init__(self, start: int, stop: int, batch_size: int, rank: int, world_size: int) -> None:
        self.start, self.stop = start, stop
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size

    def __iter__(self) -> Iterator[list[int]]:
        for iteration in range(self.start, self.stop):
            yield batch_positions(iteration, self.batch_size, self.rank, self.world_size)

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


# ----------------------------------------------------------------------------------------------------
# checkpoints
# ----------------------------------------------------------------------------------------------------
def model_from_checkpoint(
    state: dict[str, Any], device: str | torch.device = "cpu"
) -> tuple[SipMask, SipMaskConfig]:
    """Build SipMask (SipMaskVIS when config.task is 'vis') from a checkpoint dict (see
    read_checkpoint) and load its weights; eval mode."""
    config = config_from_dict(state["config"])
    # the weights come from the checkpoint: never download ImageNet weights for a restored model
    config = dataclasses.replace(config, pretrained_backbone=False)
    model: SipMask = SipMaskVIS(config) if config.task == "vis" else SipMask(config)
    try:
        model.load_state_dict(evaluation_weights(state))
    except RuntimeError as error:
        raise CheckpointError(f"checkpoint weights do not fit SipMask({config.backbone}): {error}") from None
    return model.to(device).eval(), config


def load_checkpoint(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[SipMask, SipMaskConfig]:
    """(model in eval mode on `device`, config) from a checkpoint written by `train`.

    Raises FileNotFoundError / CheckpointError with the path when the file is missing or unusable.
    Class names and the label -> category id map of the training set are in
    read_checkpoint(path)['dataset'].
    """
    try:
        return model_from_checkpoint(read_checkpoint(path), device)
    except CheckpointError as error:
        raise CheckpointError(f"{path}: {error}") from None


def _rng_states() -> dict[str, Any]:
    """Every global generator's state, in a form torch.load(weights_only=True) accepts."""
    # NPY002: numpy's legacy global generator is exactly what is saved, restored and seeded here
    state = np.random.get_state(legacy=True)  # noqa: NPY002
    assert isinstance(state, tuple)  # legacy=True: a tuple, as the global generator is an MT19937
    kind, keys, pos, has_gauss, cached = state
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))  # noqa: NPY002
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and Python's random. Call before building the model."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - the legacy global generator, for code that uses it
    random.seed(seed)


def _dataset_meta(dataset: SizedDataset) -> dict[str, Any]:
    """Class names and label -> category id map of a dataset, for predict / evaluate later."""
    meta: dict[str, Any] = {}
    if hasattr(dataset, "class_names"):
        meta["class_names"] = list(dataset.class_names)
    if hasattr(dataset, "label_to_cat_id"):
        meta["label_to_cat_id"] = {int(k): int(v) for k, v in dataset.label_to_cat_id.items()}
    return meta


# ----------------------------------------------------------------------------------------------------
# multi-GPU (torchrun) -- the only distributed code of the package
# ----------------------------------------------------------------------------------------------------
def _join_process_group(device: torch.device) -> tuple[int, int, torch.device, bool]:
    """(rank, world_size, device, created): join torchrun's process group when RANK / WORLD_SIZE are set.

    CUDA: NCCL, one GPU per process (cuda:LOCAL_RANK). Other devices: gloo. `created` says whether
    this call initialised the group (and so `train` destroys it at the end).
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0, 1, device, False
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    created = not dist.is_initialized()
    if created:  # a long timeout: the other ranks wait while rank 0 evaluates (eval_every)
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo", timeout=datetime.timedelta(hours=2)
        )
    return dist.get_rank(), dist.get_world_size(), device, created


def _all_finite(values: Tensor, world_size: int, device: torch.device) -> bool:
    """True when every value is finite on every process (so all ranks stop together)."""
    finite = torch.isfinite(values).all().to(device=device, dtype=torch.int32)  # NCCL needs CUDA
    if world_size > 1:
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    return bool(finite.item())


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _share_final_state(model: nn.Module, world_size: int) -> None:
    """Give every process rank 0's buffers (BatchNorm statistics), so that all ranks end with the model
    rank 0 saved. Parameters are equal already (DDP averages the gradients); buffers are broadcast
    from rank 0 at the start of each forward pass, then each rank's pass updates them on its own batch."""
    if world_size > 1:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


# ----------------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------------
def _to_device(target: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in target.items()}


def _batch_to(batch: Sequence[Sequence[Any]], device: torch.device) -> list[list[Any]]:
    """A collated batch on `device`: (images, targets), or (images, targets, ref_images, ref_targets)
    for video pairs (§3.5); images are tensors, targets dicts of tensors."""
    return [
        [_to_device(x, device) if isinstance(x, dict) else x.to(device, non_blocking=True) for x in field]
        for field in batch
    ]


def _config_differences(saved: dict[str, Any], config: SipMaskConfig) -> list[str]:
    current = dataclasses.asdict(config)
    ignored = {"max_iters"}  # resuming to a later end point is what --resume --iters is for
    return sorted(k for k in current if k not in ignored and k in saved and saved[k] != current[k])


def _write_log(path: Path, records: list[dict[str, Any]], keep_until: int | None = None) -> None:
    """Append records to the JSON-lines log; with keep_until, first drop lines of later iterations."""
    if keep_until is not None and path.exists():
        kept = [
            line
            for line in path.read_text().splitlines()
            if line.strip() and json.loads(line).get("iteration", 0) <= keep_until
        ]
        path.write_text("".join(line + "\n" for line in kept))
    with open(path, "a") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")


class _Run:
    """What a run trains and a checkpoint holds: the model (never the DDP wrapper), its optimizer,
    the lr schedule, the AMP scaler (enabled when config.amp and the device is CUDA) and the weight
    average (config.ema_decay > 0; made by `start`, after the weights are final); and where the
    checkpoint goes, with the step of the one on disk (`last_saved`, None before the first)."""

    def __init__(
        self, model: nn.Module, config: SipMaskConfig, device: torch.device, checkpoint_path: Path
    ) -> None:
        self.config, self.device, self.checkpoint_path = config, device, checkpoint_path
        self.last_saved: int | None = None
        self.model = model.to(device)
        self.optimizer = build_optimizer(model, config)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda it: lr_factor(it, config))
        self.use_amp = config.amp and device.type == "cuda"
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.use_amp)
        self.average: WeightAverage | None = None

    def start(self, resume: bool, warn: bool) -> int:
        """Resume from self.checkpoint_path, or seed a fresh run with config.seed; the step to start from.

        Resume restores the weights, optimizer, scheduler, scaler, RNG states and weight average
        (FileNotFoundError without a checkpoint; a config that differs from the saved one is used,
        with a warning). A fresh run warns (when `warn`) that it overwrites an existing checkpoint.
        """
        state: dict[str, Any] = {}
        checkpoint_path = self.checkpoint_path
        if resume:
            if not checkpoint_path.is_file():
                raise FileNotFoundError(f"--resume: no checkpoint to resume from at {checkpoint_path}")
            state = read_checkpoint(checkpoint_path)
            changed = _config_differences(state["config"], self.config)
            if changed:
                warnings.warn(
                    f"resuming {checkpoint_path} with a config that differs in {changed}; "
                    f"using the new values",
                    stacklevel=3,
                )
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            if state["scaler"]:  # empty when saved without AMP (e.g. on CPU)
                self.scaler.load_state_dict(state["scaler"])
            _set_rng_states(state["rng"])
        else:
            if checkpoint_path.is_file() and warn:
                warnings.warn(
                    f"{checkpoint_path} exists and will be overwritten by this fresh run "
                    f"(resume=True continues it instead)",
                    stacklevel=3,
                )
            seed_everything(self.config.seed)
        if self.config.ema_decay > 0:
            self.average = WeightAverage(self.model, self.config.ema_decay)
            if state.get("ema") is not None:
                self.average.state = {k: v.to(self.device) for k, v in state["ema"].items()}
        if not resume:
            return 0
        self.last_saved = int(state["iteration"])  # the checkpoint on disk is the one resumed from
        return self.last_saved

    def save(self, iteration: int, dataset: SizedDataset) -> None:
        """Write the checkpoint of step `iteration` (atomically, see checkpoints.py); rank 0 only."""
        save_checkpoint(
            {
                "format": CHECKPOINT_FORMAT,
                "iteration": iteration,
                "model": self.model.state_dict(),
                "ema": self.average.state if self.average is not None else None,  # the weights to evaluate
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "config": dataclasses.asdict(self.config),
                "rng": _rng_states(),
                "dataset": _dataset_meta(dataset),
            },
            self.checkpoint_path,
        )
        self.last_saved = iteration


@dataclasses.dataclass
class _LossGuard:
    """Stops a run at the first NaN / infinite loss, on every process, before its backward pass."""

    max_iters: int
    rank: int
    world_size: int
    device: torch.device

    def check(self, step: int, names: list[str], values: Tensor, run: _Run) -> None:
        """Raise NonFiniteLossError naming the step, the losses and run's checkpoint left on disk."""
        if _all_finite(values, self.world_size, self.device):
            return
        bad = ", ".join(f"{k} = {v:g}" for k, v in zip(names, values.tolist(), strict=True))
        kept = (
            f"the last good checkpoint, {run.checkpoint_path} (step {run.last_saved}), is untouched"
            if run.last_saved is not None
            else "no checkpoint had been written yet"
        )
        raise NonFiniteLossError(
            f"non-finite loss at step {step} of {self.max_iters} on rank {self.rank} ({bad}); training "
            f"stopped, {kept}. Lower config.lr or raise warmup_iters, then resume."
        )


def _train_step(
    net: nn.Module, run: _Run, batch: list[list[Any]], step: int, guard: _LossGuard, grad_clip: float | None
) -> tuple[list[str], Tensor, float]:
    """One step: forward (autocast under AMP), the loss guard, backward of the summed losses through
    the AMP scaler, optional gradient clipping, the optimizer step, the weight average, the lr schedule.

    net: run.model, or its DDP wrapper. Returns (loss names, their values [len(names)] on the CPU,
    the lr this step used).
    """
    with torch.autocast(guard.device.type, enabled=run.use_amp):
        losses = net(*batch)
    names = list(losses)
    values = torch.stack([losses[k].detach().float() for k in names]).cpu()  # one sync per step
    guard.check(step, names, values, run)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(sum(losses.values())).backward()
    if grad_clip is not None:
        run.scaler.unscale_(run.optimizer)
        nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    if run.average is not None:
        run.average.update(run.model, step)
    lr: float = run.optimizer.param_groups[0]["lr"]  # the lr this step used
    run.scheduler.step()
    return names, values, lr


class _Progress:
    """The progress bar and the loss log: mean losses over windows of `every` steps (and the last
    step) as OUT/train_log.jsonl records (written when `write`, i.e. on rank 0) and the bar's postfix.
    Writing, it first creates OUT and drops the log's lines after step `start` (a resumed run rewrites
    what followed its checkpoint)."""

    def __init__(self, out_dir: Path, every: int, start: int, last: int, show: bool, write: bool) -> None:
        self.path, self.every, self.last, self.write = out_dir / LOG_NAME, every, last, write
        if write:
            out_dir.mkdir(parents=True, exist_ok=True)
            _write_log(self.path, [], keep_until=start)
        self.bar = tqdm(
            total=last, initial=min(start, last), desc="train", dynamic_ncols=True, disable=not show
        )
        self.window_sum: Tensor | None = None
        self.window_steps = 0
        self.records: list[dict[str, Any]] = []  # this call's records
        self.means: dict[str, float] = {}  # the last logged means

    def add(self, step: int, names: list[str], values: Tensor, lr: float) -> None:
        """Count step `step`'s losses (values [len(names)]) and log the window when it is full."""
        self.window_sum = values if self.window_sum is None else self.window_sum + values
        self.window_steps += 1
        self.bar.update(1)
        if step % self.every != 0 and step != self.last:
            return
        self.means = {k: float(v) / self.window_steps for k, v in zip(names, self.window_sum, strict=True)}
        record = {"iteration": step, "lr": lr, **self.means, "loss": sum(self.means.values())}
        self.records.append(record)
        self.bar.set_postfix(
            {k.removeprefix("loss_"): f"{v:.3f}" for k, v in self.means.items()} | {"lr": f"{lr:.2e}"}
        )
        if self.write:
            _write_log(self.path, [record])
        self.window_sum, self.window_steps = None, 0


class _Evaluation:
    """Evaluation during and at the end of training (rank 0): OUT/metrics.json (the layout `evaluate`
    writes) and a record in OUT/train_log.jsonl. evaluator: (model, val_dataset) -> metrics."""

    def __init__(
        self,
        evaluator: Callable[[nn.Module, Any], dict[str, Any]],
        val_dataset: SizedDataset,
        out_dir: Path,
    ) -> None:
        self.evaluator, self.val_dataset, self.out_dir = evaluator, val_dataset, out_dir

    def run(self, net: nn.Module, weights: dict[str, Tensor] | None, iteration: int) -> dict[str, Any]:
        """Metrics of the model of step `iteration` (of a copy holding `weights`, the weight average,
        if given); net is left in train mode."""
        evaluated = _unwrap(net)
        if weights is not None:
            evaluated = copy.deepcopy(evaluated)
            evaluated.load_state_dict(weights)
        metrics = self.evaluator(evaluated, self.val_dataset)
        net.train()
        save_metrics(metrics, self.out_dir / METRICS_NAME)
        _write_log(self.out_dir / LOG_NAME, [{"iteration": iteration, "metrics": metrics}])
        return metrics


def _data_loader(
    dataset: SizedDataset,
    config: SipMaskConfig,
    start: int,
    stop: int,
    rank: int,
    world_size: int,
    num_workers: int,
    device: torch.device,
) -> DataLoader[Any]:
    """The batches of steps start .. stop-1 for this rank, from the stream TrainSamples defines."""
    return DataLoader(
        TrainSamples(dataset, config.seed, config.hflip_prob),
        batch_sampler=_StepBatches(start, stop, config.batch_size, rank, world_size),
        collate_fn=collate,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(config.seed),  # keeps the global generator untouched
    )


def _wrap_for_processes(model: nn.Module, device: torch.device, world_size: int) -> nn.Module:
    """The model in DistributedDataParallel under torchrun (world_size > 1), else the model itself."""
    if world_size == 1:
        return model
    # No find_unused_parameters (a traversal of the autograd graph at every step): every parameter
    # of SipMask / SipMaskVIS is in the loss graph at every step, e.g. a batch without positives
    # still adds 0 * (coefficients, basis masks, embeddings) (losses.py, tracking.py). A model with
    # a parameter outside the graph fails at its next step with DDP's "Expected to have finished
    # reduction" error (TORCH_DISTRIBUTED_DEBUG=DETAIL names the parameters).
    return nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )


def _leave_process_group(created: bool, wait_for: int = 1) -> None:
    """Wait for all `wait_for` processes (when more than one), then destroy the process group if this
    run created it (see _join_process_group)."""
    if wait_for > 1:
        dist.barrier()
    if created:
        dist.destroy_process_group()


def train(
    model: nn.Module,
    config: SipMaskConfig,
    train_dataset: SizedDataset,
    out_dir: str | os.PathLike[str],
    *,
    val_dataset: SizedDataset | None = None,
    iters: int | None = None,
    device: str | torch.device = "cpu",
    resume: bool = False,
    log_every: int = 20,
    checkpoint_every: int = 500,
    eval_every: int | None = None,
    eval_fn: Callable[[nn.Module, Any], dict[str, Any]] | None = None,
    grad_clip: float | None = None,
    num_workers: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Train `model` on `train_dataset`; write OUT/checkpoint.pt (and OUT/metrics.json with a val set).

    model: model(images, targets) -> dict of scalar losses, summed (video pairs: model(images, targets,
        ref_images, ref_targets), SipMaskVIS); built after seed_everything(config.seed), reproducible.
    config: the schedule and optimizer fields, batch_size per process, amp, seed, hflip_prob (the flip
        is applied here, see TrainSamples: train_dataset should not flip by itself), ema_decay.
    iters: stop after this many steps in total (default config.max_iters); config.lr_steps stay put.
    resume: continue from OUT/checkpoint.pt (see _Run.start); bit-identical to an uninterrupted run on CPU.
    log_every / checkpoint_every: steps between OUT/train_log.jsonl records (mean losses) / checkpoints
        (one is always written at the end). eval_every: with val_dataset, also evaluate that often.
    eval_fn: (model, val_dataset) -> metrics; default `evaluate`. grad_clip: max gradient L2 norm (None:
        the authors' no clipping). num_workers: DataLoader processes; the data order does not depend on it.
    config.ema_decay > 0: checkpoints hold the WeightAverage as 'ema' beside 'model' (what a resume
    continues), evaluation uses it, `model` ends holding it. A NaN / infinite loss raises NonFiniteLossError
    (the checkpoint on disk stays the last good one). Returns {'iteration', 'checkpoint', 'losses' (last
    logged means), 'log' (this call's records), 'metrics', 'seconds'}.
    """
    started, out_dir = time.perf_counter(), Path(out_dir)
    rank, world_size, device, created_group = _join_process_group(torch.device(device))
    is_main, max_iters = rank == 0, config.max_iters if iters is None else int(iters)
    if max_iters < 0:
        raise ValueError(f"iters must be >= 0, got {max_iters}")
    run = _Run(model, config, device, out_dir / CHECKPOINT_NAME)
    start = run.start(resume, warn=is_main)
    net = _wrap_for_processes(run.model, device, world_size)
    loader = _data_loader(train_dataset, config, start, max_iters, rank, world_size, num_workers, device)
    guard = _LossGuard(max_iters, rank, world_size, device)
    shown = _Progress(out_dir, log_every, start, max_iters, show=progress and is_main, write=is_main)
    evaluator = eval_fn or (lambda m, d: evaluate(m, d, device, config.batch_size, progress=progress)[1])
    evaluation = _Evaluation(evaluator, val_dataset, out_dir) if val_dataset is not None and is_main else None
    metrics, final = None, max(start, max_iters)
    net.train()
    try:  # _StepBatches yields exactly the steps start .. max_iters-1: strict=True fails if they differ
        for iteration, batch in zip(range(start, max_iters), loader, strict=True):
            step = iteration + 1  # steps completed after this one
            shown.add(step, *_train_step(net, run, _batch_to(batch, device), step, guard, grad_clip))
            if is_main and (step % checkpoint_every == 0 or step == max_iters):
                run.save(step, train_dataset)
            if evaluation and eval_every and step % eval_every == 0 and step != max_iters:
                metrics = evaluation.run(net, run.average.state if run.average else None, step)
                shown.bar.write(f"step {step}: " + _metrics_line(metrics))
    except NonFiniteLossError:
        shown.bar.close()
        _leave_process_group(created_group)
        raise
    shown.bar.close()
    if is_main and run.last_saved != final:
        run.save(final, train_dataset)  # e.g. iters=0 on a fresh run: an untrained one
    if run.average is not None:  # the run's result is the averaged model (the checkpoint keeps both)
        run.model.load_state_dict(run.average.state)
    _share_final_state(run.model, world_size)
    if evaluation:
        metrics = evaluation.run(net, None, final)
    _leave_process_group(created_group, world_size)
    return {
        "iteration": final,
        "checkpoint": str(run.checkpoint_path),
        "losses": shown.means,
        "log": shown.records,
        "metrics": metrics,
        "seconds": time.perf_counter() - started,
    }


def _metrics_line(metrics: dict[str, Any]) -> str:
    """'bbox AP 12.3  segm AP 10.1' from evaluate's metrics (other dicts: their top-level numbers)."""
    parts = [f"{k} AP {100 * v['AP']:.1f}" for k, v in metrics.items() if isinstance(v, dict) and "AP" in v]
    return "  ".join(parts) or json.dumps(metrics)


# ----------------------------------------------------------------------------------------------------
# evaluation
# ----------------------------------------------------------------------------------------------------
@torch.no_grad()
def predict_images(
    model: nn.Module, images: Sequence[Tensor], device: str | torch.device
) -> list[dict[str, Tensor]]:
    """Eval-mode outputs (model contract) for a list of [3, H, W] images in [0, 1], moved to CPU."""
    was_training = model.training
    model.eval()
    outputs = model([image.to(device) for image in images])
    model.train(was_training)
    return [{k: v.cpu() if isinstance(v, Tensor) else v for k, v in output.items()} for output in outputs]


def evaluate(
    model: nn.Module,
    dataset: CocoLikeDataset,
    device: str | torch.device = "cpu",
    batch_size: int = 1,
    *,
    mask_threshold: float | None = None,
    progress: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, float]]]:
    """Run `model` in eval mode over `dataset` (in order) and score it with COCOeval.

    dataset: a CocoInstances-like dataset (items (image, target) with target['image_id'], plus
        `label_to_cat_id` and `coco`). Its transforms must not change the image size.
    mask_threshold: binarisation of the mask probabilities (default model.config.mask_threshold,
        else 0.4 as the authors).
    Returns (COCO result dicts with the dataset's own category ids, ready for results.json;
    {'bbox': {AP, AP50, ..., ARl}, 'segm': {...}}). Each batch is converted to RLE right away, so
    memory does not grow with full-size mask maps.
    """
    if mask_threshold is None:
        mask_threshold = getattr(getattr(model, "config", None), "mask_threshold", 0.4)
    results: list[dict[str, Any]] = []
    indices = list(range(len(dataset)))
    for first in tqdm(
        range(0, len(indices), batch_size),
        desc="evaluate",
        dynamic_ncols=True,
        disable=not progress,
        leave=False,
    ):
        batch = [dataset[i] for i in indices[first : first + batch_size]]
        outputs = predict_images(model, [image for image, _ in batch], device)
        results += predictions_to_coco_results(
            outputs, [int(target["image_id"]) for _, target in batch], dataset.label_to_cat_id, mask_threshold
        )
    return results, evaluate_coco(dataset.coco, results)
