"""One run of the ablation study: a variant of cpu_tiny, one seed, the short ABLATION_* schedule.

    ablation_config      preset('cpu_tiny') with a variant's switches, a seed and the ABLATION_* schedule
    PretrainedBody       which pretrained body a run starts from (pretrain.py trains it), load_body
    run_name, run_record_path, run_checkpoint_path
                         where a run's record and weights live under WORK
    write_record         a record or report as JSON, atomically (compare/ writes its files with it too)
    config_json          a config as the JSON a record holds, to compare with a record read back
    load_finished_run    a run's record, if it was finished with exactly the config it would train
    resume_point         the iteration a checkpoint lets a run of a config resume from (0: start afresh)
    synthetic_datasets   (train, val) of the synthetic image benchmark (compare/ reads them too)
    run_one              train one (variant, seed), from the pretrained body when given, and evaluate
                         it on the synthetic val split; writes one JSON record (the unit of resuming)

A run's record lands in WORK/runs/<variant>__seed<k>.json only after its evaluation, and a rerun
skips every record whose config equals the one it would train, so an interrupted reproduction
continues where it stopped; an interrupted run itself continues from its last checkpoint
(WORK/<variant>/seed<k>/checkpoint.pt, every 100 iterations; a run stopped during its evaluation
is only evaluated again).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torchvision

from .. import checkpoints, engine
from ..config import SipMaskConfig, preset
from ..data.coco import CocoInstances
from ..files import read_json, write_json
from ..model import SipMask
from .tables import Variant

RUN_FORMAT = "sipmask_ref.ablation_run/1"  # marker of one run record
BASE_PRESET = "cpu_tiny"  # the model of every run: its architecture, input size, losses, inference
# The schedule of one run, fixed here (not taken from the preset) so that tuning the preset's own
# schedule does not change the tables: AdamW, which learns from scratch in few iterations, linear
# warm-up over the first 10% and the learning rate divided by 10 once, at 95% of the iterations (the
# shape of cpu_tiny's own schedule; until 2026-12-01 lr 4e-3 with steps at 75% and 92%, under which
# the rows reached 8-15 mask AP). 1000 iterations: 12 configurations x 3 seeds took 75 minutes on 2
# cores (2 runs of 1 thread), the body's pretraining included (pretrain.py, 4 minutes).
ABLATION_ITERS = 1000  # training iterations per run (batch: the preset's, 8 images)
ABLATION_OPTIMIZER = "adamw"
ABLATION_LR = 3e-3
ABLATION_LR_STEPS = (0.95,)  # fractions of the iterations
ABLATION_WARMUP = 0.1  # fraction of the iterations
CHECKPOINT_EVERY = 100  # iterations between checkpoints inside one run (resume granularity)
EVAL_BATCH = 8  # images per forward pass in evaluation


def ablation_config(
    variant: Variant, seed: int, iters: int = ABLATION_ITERS, num_classes: int | None = None
) -> SipMaskConfig:
    """preset('cpu_tiny') with the variant's switches, `seed`, and the ablation schedule for `iters`.

    The schedule (optimizer, learning rate, warm-up, lr steps) is this module's ABLATION_* constants;
    model, input, losses, inference and batch size are the preset's.
    """
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    base = preset(BASE_PRESET)
    steps = tuple(sorted({min(iters, max(1, round(f * iters))) for f in ABLATION_LR_STEPS}))
    return dataclasses.replace(
        base,
        **variant.switches(),
        seed=seed,
        optimizer=ABLATION_OPTIMIZER,
        lr=ABLATION_LR,
        max_iters=iters,
        lr_steps=steps,
        warmup_method="linear",
        warmup_iters=round(ABLATION_WARMUP * iters),
        num_classes=base.num_classes if num_classes is None else num_classes,
    )


@dataclasses.dataclass(frozen=True)
class PretrainedBody:
    """The pretrained body a run starts from: a checkpoint of pretrain.py's, named by what trained it.

    checkpoint: its path. config: `config_json` of the config that trained it; iters: its iterations.
    A run's record keeps (config, iters), so a changed pretraining makes every run train again.
    """

    checkpoint: str
    config: dict[str, Any]
    iters: int

    def identity(self) -> dict[str, Any]:
        """What a run record keeps of it (the path is left out: a moved work folder stays valid)."""
        return {"config": self.config, "iters": self.iters}


def load_body(model: SipMask, body: PretrainedBody) -> None:
    """Copy the pretrained body's weights into model.backbone.body (FPN, head and basis branch keep
    their fresh initialisation). Raises ValueError when the checkpoint is not the one `body` names."""
    state = checkpoints.read_checkpoint(body.checkpoint)
    if json.loads(json.dumps(state["config"])) != body.config or int(state["iteration"]) != body.iters:
        raise ValueError(
            f"{body.checkpoint}: not the pretrained body this study expects (trained with another config "
            f"or for {state['iteration']} instead of {body.iters} iterations); run `reproduce` again to "
            f"pretrain it"
        )
    prefix = "backbone.body."
    weights = {k.removeprefix(prefix): v for k, v in state["model"].items() if k.startswith(prefix)}
    model.backbone.body.load_state_dict(weights)


def run_name(variant: Variant, seed: int) -> str:
    return f"{variant.key}__seed{seed}"


def run_record_path(work_dir: str | os.PathLike, variant: Variant, seed: int) -> Path:
    """WORK/runs/<variant>__seed<k>.json: the record of a finished run."""
    return Path(work_dir) / "runs" / f"{run_name(variant, seed)}.json"


def run_checkpoint_path(work_dir: str | os.PathLike, variant: Variant, seed: int) -> Path:
    """WORK/<variant>/seed<k>/checkpoint.pt: the weights of a run (e.g. for the Fig. 6 analogue)."""
    return Path(work_dir) / variant.key / f"seed{seed}" / checkpoints.CHECKPOINT_NAME


def write_record(obj: Any, path: Path) -> Path:
    """Write a record or report as JSON (indent 1, a final newline), atomically (files.write_json)."""
    return write_json(obj, path, indent=1, end="\n")


def machine() -> dict[str, Any]:
    """The software and machine a run record was made on (Python, torch, torchvision, platform, CPUs)."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }


def config_json(config: SipMaskConfig) -> dict[str, Any]:
    """asdict with tuples as lists, so that it compares equal to the same config read back from JSON."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def load_finished_run(
    path: Path, config: SipMaskConfig, body: PretrainedBody | None = None
) -> dict[str, Any] | None:
    """The record at `path` if it is a finished run of exactly `config` from `body`; None otherwise.

    A record of another config or pretrained body (e.g. written before the preset changed) is
    reported with a warning and not used, so that run is trained again.
    """
    if not path.is_file():
        return None
    try:
        record = read_json(path, "run record")
    except ValueError:
        warnings.warn(f"{path}: not valid JSON; running it again", stacklevel=2)
        return None
    pretrained = None if body is None else body.identity()
    if (
        record.get("format") != RUN_FORMAT
        or record.get("config") != config_json(config)
        or record.get("pretrained_body") != pretrained
    ):
        warnings.warn(f"{path}: recorded for another configuration; running it again", stacklevel=2)
        return None
    return record


def resume_point(checkpoint: Path, config: SipMaskConfig, iters: int) -> int:
    """The iteration to resume a run of `config` for `iters` iterations from: the checkpoint's, if it
    holds a run of exactly that config stopped after 1..iters iterations; otherwise 0."""
    if not checkpoint.is_file():
        return 0
    state = checkpoints.read_checkpoint(checkpoint)
    same = state["config"] == dataclasses.asdict(config) and 0 < state["iteration"] <= iters
    return int(state["iteration"]) if same else 0


def synthetic_datasets(data_root: Path) -> tuple[CocoInstances, CocoInstances]:
    """(train, val) of the synthetic image benchmark under data_root/synthetic; the training split keeps
    its items in memory once read (CocoInstances' cache: every run reads each image several times)."""
    folder = data_root / "synthetic"
    train = CocoInstances(
        folder / "annotations" / "instances_train.json", folder / "images" / "train", cache=True
    )
    val = CocoInstances(folder / "annotations" / "instances_val.json", folder / "images" / "val")
    return train, val


def run_one(
    variant: Variant,
    seed: int,
    iters: int,
    work_dir: str | os.PathLike,
    data_root: str | os.PathLike,
    threads: int | None = None,
    body: PretrainedBody | None = None,
) -> dict[str, Any]:
    """Train one variant with one seed, evaluate it on the val split, write its record; return it.

    body: start from this pretrained body (None: every weight from scratch). Skips the work when a
    record of the same config and body exists. `threads`: torch.set_num_threads for this call
    (restored afterwards); None leaves the process's setting alone.
    """
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        train_set, val_set = synthetic_datasets(Path(data_root))
        config = ablation_config(variant, seed, iters, num_classes=len(train_set.class_names))
        record_path = run_record_path(work_dir, variant, seed)
        done = load_finished_run(record_path, config, body)
        if done is not None:
            return done | {"skipped": True}

        out = run_checkpoint_path(work_dir, variant, seed).parent
        checkpoint = out / checkpoints.CHECKPOINT_NAME
        # OUT/start.json names the pretrained body the checkpoint's run started from (none: absent), so
        # that a run from another start is never resumed.
        start_path, start = out / "start.json", None if body is None else body.identity()
        started_from = read_json(start_path, "run start")["pretrained_body"] if start_path.is_file() else None
        resume_from = resume_point(checkpoint, config, iters) if started_from == start else 0
        started, cpu_started = time.perf_counter(), time.process_time()
        engine.seed_everything(seed)  # the initial weights depend on the seed only
        model = SipMask(config)
        if resume_from == 0:  # a resumed run reads its body from its own checkpoint
            write_record({"pretrained_body": start}, start_path)
            if body is not None:
                load_body(model, body)
        summary = engine.train(
            model,
            config,
            train_set,
            out,
            iters=iters,
            device="cpu",
            resume=resume_from > 0,
            checkpoint_every=CHECKPOINT_EVERY,
            log_every=max(1, min(50, iters)),
            progress=False,
        )
        trained = time.perf_counter()
        _, metrics = engine.evaluate(model, val_set, "cpu", EVAL_BATCH, progress=False)
        evaluated = time.perf_counter()
        record = {
            "format": RUN_FORMAT,
            "variant": variant.key,
            "switches": json.loads(json.dumps(variant.switches())),
            "seed": seed,
            "iters": iters,
            "resumed_from_iteration": resume_from,
            "pretrained_body": start,
            "final_losses": summary["losses"],
            "metrics": metrics,  # COCOeval numbers in [0, 1] ('segm' = mask, 'bbox' = box)
            "train_s": round(trained - started, 2),
            "eval_s": round(evaluated - trained, 2),
            "wall_s": round(evaluated - started, 2),
            "cpu_s": round(time.process_time() - cpu_started, 2),  # CPU time of this process
            "threads": torch.get_num_threads(),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "config": config_json(config),
        }
        write_record(record, record_path)
        return record | {"skipped": False}
    finally:
        torch.set_num_threads(previous_threads)
