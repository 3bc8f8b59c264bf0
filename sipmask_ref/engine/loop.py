"""The training loop, `train`, and its named pieces.

train           the loop, read top to bottom: join the processes, Run.start (fresh or resumed),
                the data loader, then per step _train_step, the log, checkpoints, evaluation
_LossGuard      stops a run at the first NaN / infinite loss, on every process
_train_step     forward, loss guard, backward, AMP scaler, optimizer, weight average, lr schedule
_Progress       the progress bar and OUT/train_log.jsonl
_Evaluation     evaluation during and at the end of training: OUT/metrics.json
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..checkpoints import CHECKPOINT_NAME
from ..config import SipMaskConfig
from ..eval.coco import save_metrics
from .distributed import (
    all_finite,
    join_process_group,
    leave_process_group,
    share_final_state,
    unwrap,
    wrap_for_processes,
)
from .evaluation import METRICS_NAME, evaluate
from .run import Run
from .samples import SizedDataset, data_loader

LOG_NAME = "train_log.jsonl"


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; training stopped without writing a checkpoint for that step."""


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
    resume: continue from OUT/checkpoint.pt (see Run.start); bit-identical to an uninterrupted run on CPU.
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
    rank, world_size, device, created_group = join_process_group(torch.device(device))
    is_main, max_iters = rank == 0, config.max_iters if iters is None else int(iters)
    if max_iters < 0:
        raise ValueError(f"iters must be >= 0, got {max_iters}")
    run = Run(model, config, device, out_dir / CHECKPOINT_NAME)
    start = run.start(resume, warn=is_main)
    net = wrap_for_processes(run.model, device, world_size)
    loader = data_loader(train_dataset, config, start, max_iters, rank, world_size, num_workers, device)
    guard = _LossGuard(max_iters, rank, world_size, device)
    shown = _Progress(out_dir, log_every, start, max_iters, show=progress and is_main, write=is_main)
    evaluator = eval_fn or (lambda m, d: evaluate(m, d, device, config.batch_size, progress=progress)[1])
    evaluation = _Evaluation(evaluator, val_dataset, out_dir) if val_dataset is not None and is_main else None
    metrics, final = None, max(start, max_iters)
    net.train()
    try:  # the loader yields exactly the steps start .. max_iters-1: strict=True fails if they differ
        for iteration, batch in zip(range(start, max_iters), loader, strict=True):
            step = iteration + 1  # steps completed after this one
            shown.add(step, *_train_step(net, run, _batch_to(batch, device), step, guard, grad_clip))
            if is_main and (step % checkpoint_every == 0 or step == max_iters):
                run.save(step, train_dataset)
            if evaluation and eval_every and step % eval_every == 0 and step != max_iters:
                metrics = evaluation.run(net, run.average.state if run.average else None, step)
                shown.bar.write(f"step {step}: " + _metrics_line(metrics))
    except NonFiniteLossError:
        leave_process_group(created_group)
        raise
    finally:
        shown.bar.close()
    _finish(run, final, train_dataset, is_main, world_size)
    if evaluation:
        metrics = evaluation.run(net, None, final)
    leave_process_group(created_group, world_size)
    return {
        "iteration": final,
        "checkpoint": str(run.checkpoint_path),
        "losses": shown.means,
        "log": shown.records,
        "metrics": metrics,
        "seconds": time.perf_counter() - started,
    }


def _finish(run: Run, final: int, dataset: SizedDataset, is_main: bool, world_size: int) -> None:
    """After the last step: the checkpoint of step `final` unless written already (rank 0; e.g. iters=0
    on a fresh run writes an untrained one), the weight average into the model (the run's result; the
    checkpoint keeps both), rank 0's buffers on every process."""
    if is_main and run.last_saved != final:
        run.save(final, dataset)
    if run.average is not None:
        run.model.load_state_dict(run.average.state)
    share_final_state(run.model, world_size)


def _metrics_line(metrics: dict[str, Any]) -> str:
    """'bbox AP 12.3  segm AP 10.1' from evaluate's metrics (other dicts: their top-level numbers)."""
    parts = [f"{k} AP {100 * v['AP']:.1f}" for k, v in metrics.items() if isinstance(v, dict) and "AP" in v]
    return "  ".join(parts) or json.dumps(metrics)


@dataclasses.dataclass
class _LossGuard:
    """Stops a run at the first NaN / infinite loss, on every process, before its backward pass."""

    max_iters: int
    rank: int
    world_size: int
    device: torch.device

    def check(self, step: int, names: list[str], values: Tensor, run: Run) -> None:
        """Raise NonFiniteLossError naming the step, the losses and run's checkpoint left on disk."""
        if all_finite(values, self.world_size, self.device):
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
    net: nn.Module, run: Run, batch: list[list[Any]], step: int, guard: _LossGuard, grad_clip: float | None
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
        evaluated = unwrap(net)
        if weights is not None:
            evaluated = copy.deepcopy(evaluated)
            evaluated.load_state_dict(weights)
        metrics = self.evaluator(evaluated, self.val_dataset)
        net.train()
        save_metrics(metrics, self.out_dir / METRICS_NAME)
        _write_log(self.out_dir / LOG_NAME, [{"iteration": iteration, "metrics": metrics}])
        return metrics


def _to_device(target: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in target.items()}


def _batch_to(batch: Sequence[Sequence[Any]], device: torch.device) -> list[list[Any]]:
    """A collated batch on `device`: (images, targets), or (images, targets, ref_images, ref_targets)
    for video pairs (§3.5); images are tensors, targets dicts of tensors."""
    return [
        [_to_device(x, device) if isinstance(x, dict) else x.to(device, non_blocking=True) for x in field]
        for field in batch
    ]


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
