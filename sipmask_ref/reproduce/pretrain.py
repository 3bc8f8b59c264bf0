"""The ablation study's stand-in for ImageNet: one tiny body, pretrained once, that every run starts from.

The paper trains every row of its ablation tables from a ResNet-50 pretrained on ImageNet (§4.1): each
row starts from the same features and spends its schedule on the detector and the masks. Trained from
scratch instead, a 1000-iteration run of the tiny model spends most of its budget learning its first
features: the rows reached only 13-21 mask AP (results/README.md). So the study first trains the tiny
body once, as the backbone of the FCOS detector of §3 alone (box, class and centerness losses, no mask
loss), and every run of every row loads those body weights; its FPN, head and basis branch start from
scratch, as the paper's do.

The pretraining is neutral between the rows: none of the four switches trains anything in it. With no
mask loss, the coefficients, the basis branch and the loss weighting get no gradient, and its head is
the baseline's plain one (no deformable alignment), so the body learns only what every row's detector
shares. It uses the ablation schedule (runs.ABLATION_*) with its own length, one seed for every run
(the paper's rows share one set of ImageNet weights too), and the same training images.

    PRETRAIN_ITERS          iterations of the pretraining
    BoxDetector             SipMask trained with the §3 detector's losses only
    pretrain_config         the config of the pretraining
    pretrain_record_path    WORK/pretrain/record.json
    expected_body           the PretrainedBody a pretraining of `iters` writes under WORK (nothing run)
    finished_pretraining    its record, if that pretraining has finished
    pretrain_body           train it once under WORK/pretrain/ (resumable), evaluate its boxes, write
                            its record; return the PretrainedBody the runs load (runs.load_body)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .. import checkpoints, engine
from ..config import SipMaskConfig
from ..files import read_json
from ..head import HeadOutputs
from ..model import BatchAssignment, SipMask
from .runs import (
    CHECKPOINT_EVERY,
    EVAL_BATCH,
    PretrainedBody,
    ablation_config,
    config_json,
    resume_point,
    synthetic_datasets,
    write_record,
)
from .tables import BASELINE

PRETRAIN_FORMAT = "sipmask_ref.ablation_pretraining/1"  # marker of its record
# 1900 iterations (the demo's length; about 4 minutes on 2 cores): from a body pretrained so, 1000
# iterations gave the baseline mask AP 30.0 and full SipMask 38.7 (seed 0), against 13.3 and 19.4
# (means of 3 seeds) from scratch; from a body pretrained for 1000 iterations, 600-iteration runs
# gave 14.4 and 18.0.
PRETRAIN_ITERS = 1900
PRETRAIN_SEED = 0


class BoxDetector(SipMask):
    """SipMask trained as the FCOS detector of §3 alone: its losses are `detection_losses` (no
    loss_mask), so the coefficients and the basis branch get no gradient. The same modules and
    state-dict keys as SipMask: its body loads into any variant."""

    def compute_losses(
        self,
        outputs: HeadOutputs,
        basis_masks: Tensor,
        targets: list[dict[str, Tensor]],
        assignment: BatchAssignment | None = None,
    ) -> dict[str, Tensor]:
        return self.detection_losses(outputs, targets, assignment)


def pretrain_config(iters: int = PRETRAIN_ITERS, num_classes: int | None = None) -> SipMaskConfig:
    """The baseline variant (its plain head) with the ablation schedule for `iters`, seed PRETRAIN_SEED."""
    return ablation_config(BASELINE, PRETRAIN_SEED, iters, num_classes=num_classes)


def pretrain_record_path(work_dir: str | os.PathLike[str]) -> Path:
    """WORK/pretrain/record.json (the checkpoint lies beside it)."""
    return Path(work_dir) / "pretrain" / "record.json"


def expected_body(work_dir: str | os.PathLike[str], iters: int, num_classes: int) -> PretrainedBody:
    """The PretrainedBody that `pretrain_body(work_dir, ..., iters)` writes, without running anything."""
    config = pretrain_config(iters, num_classes)
    checkpoint = pretrain_record_path(work_dir).parent / checkpoints.CHECKPOINT_NAME
    return PretrainedBody(str(checkpoint), config_json(config), iters)


def finished_pretraining(work_dir: str | os.PathLike[str], body: PretrainedBody) -> dict[str, Any] | None:
    """The record under WORK of the pretraining that trained `body`, if it has finished; else None."""
    path = pretrain_record_path(work_dir)
    if not path.is_file() or not Path(body.checkpoint).is_file():
        return None
    record = read_json(path, "pretraining record")
    if record.get("format") != PRETRAIN_FORMAT or record.get("config") != body.config:
        return None
    return record


def pretrain_body(
    work_dir: str | os.PathLike[str],
    data_root: str | os.PathLike[str],
    iters: int = PRETRAIN_ITERS,
    threads: int | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> tuple[PretrainedBody, dict[str, Any]]:
    """Pretrain the body once (skipped when its record exists), return (PretrainedBody, its record).

    The record holds its config, its training and evaluation seconds, and the box AP of the
    detector on the val split (its mask branch is untrained, so no mask AP). An interrupted
    pretraining resumes from its checkpoint (every CHECKPOINT_EVERY iterations). `threads`:
    torch.set_num_threads for this call (restored afterwards).
    """
    if iters < 1:
        raise ValueError(f"pretraining iterations must be >= 1, got {iters}")
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        train_set, val_set = synthetic_datasets(Path(data_root))
        config = pretrain_config(iters, num_classes=len(train_set.class_names))
        record_path = pretrain_record_path(work_dir)
        body = expected_body(work_dir, iters, len(train_set.class_names))
        checkpoint = Path(body.checkpoint)
        done = finished_pretraining(work_dir, body)
        if done is not None:
            log(f"pretraining: done already ({record_path}), box AP {100 * done['box_AP']:.1f}")
            return body, done

        resume_from = resume_point(checkpoint, config, iters)
        log(
            f"pretraining: the body, as the §3 box detector alone, {iters} iterations"
            + (f" (resumed at {resume_from})" if resume_from else "")
        )
        started = time.perf_counter()
        engine.seed_everything(config.seed)
        model = BoxDetector(config)
        engine.train(
            model,
            config,
            train_set,
            checkpoint.parent,
            iters=iters,
            device="cpu",
            resume=resume_from > 0,
            checkpoint_every=CHECKPOINT_EVERY,
            progress=progress,
        )
        trained = time.perf_counter()
        _, metrics = engine.evaluate(model, val_set, "cpu", EVAL_BATCH, progress=progress)
        record: dict[str, Any] = {
            "format": PRETRAIN_FORMAT,
            "iters": iters,
            "resumed_from_iteration": resume_from,
            "box_AP": metrics["bbox"]["AP"],
            "train_s": round(trained - started, 2),
            "wall_s": round(time.perf_counter() - started, 2),
            "threads": torch.get_num_threads(),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "config": config_json(config),
        }
        write_record(record, record_path)
        log(f"pretraining: box AP {100 * record['box_AP']:.1f} in {record['train_s']:.0f} s")
        return body, record
    finally:
        torch.set_num_threads(previous_threads)
