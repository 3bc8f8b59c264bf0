"""§3.5 training SipMaskVIS: the image stage, then the fine-tuning on frame pairs; the notebooks' model.

Read top to bottom:

    image_stage_config   the config of the image stage: the VIS model as an image model, with a
                         from-scratch schedule (IMAGE_STAGE_PRESETS: cpu_tiny_vis -> cpu_tiny's;
                         schedule_fields: the fields it takes)
    train_image_stage    SipMask (image model) on the annotated frames of the training videos
    train_vis            engine.train on frame pairs, optionally starting from an image checkpoint,
                         scored with evaluate_vis (tracks.py) on a val set
    synthetic_video_paths  the synthetic video benchmark under a data root (generated if missing)
    trained_vis_model    the notebooks' cached cpu_tiny_vis model (under workspace.repo_root())

The image stage. The authors always start SipMask-VIS from a COCO-trained image SipMask; a tracking
model fine-tuned from random weights on the short VIS schedule is unusable. So `train --task vis`
without --init-from first trains the image model SipMask (task 'image', the same backbone, channels,
classes and switches as the VIS config) on the annotated frames of the same training videos
(YTVISDataset mode 'images', each frame an independent image), for the schedule of
image_stage_config (cpu_tiny_vis: cpu_tiny's 1900 iterations of 8 images with AdamW; other presets:
their own schedule; --image-stage-iters overrides the length), into OUT/image_stage/checkpoint.pt,
then fine-tunes SipMaskVIS from that checkpoint exactly as --init-from does. A finished stage
(same config and classes) is reused, a shorter one continued; --no-image-stage fine-tunes from
random weights as before. (commands.cmd_train_vis runs the two in turn.)
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .. import checkpoints, engine, workspace
from ..config import SipMaskConfig, preset
from ..data.synthetic import make_data
from ..data.ytvis import YTVISDataset
from ..model import SipMask
from ..video_model import SipMaskVIS, load_image_weights
from .tracks import evaluate_vis

FAST_VIS_ITERS = 10  # fine-tuning iterations of trained_vis_model in fast mode (SIPMASK_FAST=1)


def _vis_metrics_fn(device: str | torch.device):
    """engine.train's eval_fn for a video val set: {'video segm': video AP numbers} (sipmask tracker)."""

    def evaluate(model: SipMaskVIS, dataset: YTVISDataset) -> dict[str, Any]:
        found = evaluate_vis(model, dataset, device, ("sipmask",), count_switches=False, progress=False)
        return {"video segm": found["sipmask"]["metrics"]}

    return evaluate


# The image stage (see the module docstring). A VIS preset whose own schedule is a short fine-tuning
# takes its image stage's schedule from the image preset it is meant to start from; the others
# (paper_vis_r50: 12 epochs of YouTube-VIS frames) train the image stage on their own schedule.
IMAGE_STAGE_PRESETS: dict[str, str] = {"cpu_tiny_vis": "cpu_tiny"}
IMAGE_STAGE_DIR = "image_stage"  # OUT/image_stage/checkpoint.pt
# The schedule and optimizer fields an image stage takes from IMAGE_STAGE_PRESETS' preset; those this
# version of SipMaskConfig lacks (ema_decay in older ones) are left out by schedule_fields().
SCHEDULE_FIELDS: tuple[str, ...] = (
    "optimizer",
    "lr",
    "momentum",
    "weight_decay",
    "bias_lr_factor",
    "bias_weight_decay",
    "warmup_method",
    "warmup_iters",
    "warmup_factor",
    "lr_steps",
    "max_iters",
    "batch_size",
    "ema_decay",
)


def schedule_fields() -> tuple[str, ...]:
    """SCHEDULE_FIELDS that SipMaskConfig has."""
    known = {field.name for field in dataclasses.fields(SipMaskConfig)}
    return tuple(name for name in SCHEDULE_FIELDS if name in known)


def image_stage_config(vis_config: SipMaskConfig, preset_name: str) -> SipMaskConfig:
    """The config of the image stage of a `train --task vis` run of preset `preset_name`.

    `vis_config` (after the command line's changes: classes, seed, ...) with task 'image': the same
    model fields (backbone, channels, num_classes, switches, input), so that every image-model tensor
    fits SipMaskVIS. The schedule: for a preset in IMAGE_STAGE_PRESETS, the schedule_fields() of the
    image preset it maps to (cpu_tiny_vis: cpu_tiny's from-scratch AdamW schedule, 1900 iterations of
    8 images; --lr / --batch-size of the command line then apply to the fine-tuning only); for any
    other preset, vis_config's own schedule.
    """
    changes: dict[str, Any] = {"task": "image"}
    if preset_name in IMAGE_STAGE_PRESETS:
        schedule = preset(IMAGE_STAGE_PRESETS[preset_name])
        changes.update({name: getattr(schedule, name) for name in schedule_fields()})
    return dataclasses.replace(vis_config, **changes)


def _reuse_problem(state: dict[str, Any], config: SipMaskConfig, dataset: YTVISDataset) -> str | None:
    """Why an existing image-stage checkpoint cannot be reused for `config` on `dataset` (None: it can).

    The length (max_iters) may differ: a shorter stage is continued, a longer one is used as it is.
    """
    try:
        saved = dataclasses.asdict(checkpoints.config_from_dict(state["config"], "image stage checkpoint"))
    except checkpoints.CheckpointError as error:
        return str(error)
    current = dataclasses.asdict(config)
    changed = sorted(k for k in current if k != "max_iters" and saved.get(k) != current[k])
    if changed:
        return f"its config differs in {changed}"
    trained_on = state.get("dataset", {}).get("label_to_cat_id")
    if trained_on is not None and {int(k): int(v) for k, v in trained_on.items()} != dict(
        dataset.label_to_cat_id
    ):
        return "it was trained on other categories"
    return None


def train_image_stage(
    config: SipMaskConfig,
    train_ann: str | os.PathLike,
    train_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    iters: int | None = None,
    progress: bool = True,
    resume: bool = True,
    **train_kwargs: Any,
) -> Path:
    """Train the image model SipMask on the annotated frames of a YouTube-VIS training set.

    config: the image stage's config (image_stage_config); its task is set to 'image'.
    The data: YTVISDataset(train_ann, train_dir, mode='images'), every frame with at least one object
    as an independent image (the boxes, labels and masks of engine.train's image contract); no
    validation (the video val set scores the fine-tuned model). Runs engine.train for `iters` steps
    (default config.max_iters) into OUT/image_stage/ (checkpoint.pt, train_log.jsonl).
    resume True: an OUT/image_stage/checkpoint.pt of the same config (max_iters aside) and categories
    is reused: skipped when it reached `iters` steps, continued when shorter; a different one is
    trained again from scratch (overwritten). resume False: always trained from scratch.
    Prints one line when an existing checkpoint is skipped, continued or replaced.
    train_kwargs go to engine.train (log_every, checkpoint_every, grad_clip, num_workers).
    Returns the checkpoint path.
    """
    if config.task != "image":
        config = dataclasses.replace(config, task="image")
    out = Path(out_dir) / IMAGE_STAGE_DIR
    checkpoint = out / checkpoints.CHECKPOINT_NAME
    length = config.max_iters if iters is None else int(iters)
    dataset = YTVISDataset(train_ann, train_dir, mode="images", seed=config.seed)
    continue_it = False
    if resume and checkpoint.is_file():
        state = checkpoints.read_checkpoint(checkpoint)
        done = int(state["iteration"])
        problem = _reuse_problem(state, config, dataset)
        if problem is not None:
            print(f"image stage: {checkpoint} is not reusable ({problem}); training it again")
        elif done >= length:
            print(
                f"image stage: {checkpoint} is finished (iteration {done} of {length}, same config); "
                f"skipping it"
            )
            return checkpoint
        else:
            print(f"image stage: continuing {checkpoint} from iteration {done} to {length}")
            continue_it = True
    engine.seed_everything(config.seed)  # the initial weights depend on the seed only
    model = SipMask(config)
    engine.train(
        model,
        config,
        dataset,
        out,
        iters=length,
        device=device,
        resume=continue_it,
        progress=progress,
        **train_kwargs,
    )
    return checkpoint


def _image_weights(init_from: str | os.PathLike) -> dict[str, Tensor]:
    """The weights of an image checkpoint to start from: its weight average when the run kept one
    (the weights it is evaluated with), else its trained weights."""
    return checkpoints.evaluation_weights(checkpoints.read_checkpoint(init_from))


def train_vis(
    config: SipMaskConfig,
    train_set: YTVISDataset,
    out_dir: str | os.PathLike,
    *,
    init_from: str | os.PathLike | None = None,
    val_set: YTVISDataset | None = None,
    iters: int | None = None,
    device: str | torch.device = "cpu",
    resume: bool = False,
    progress: bool = True,
    verbose: bool = True,
    **train_kwargs: Any,
) -> dict[str, Any]:
    """Train SipMaskVIS on the frame pairs of `train_set` (mode 'pairs') with engine.train.

    init_from: an image SipMask checkpoint whose weights are copied where shapes match
    (load_image_weights; its weight average when it kept one; ignored when resuming, the checkpoint
    has them). `train --task vis` without --init-from passes the checkpoint of its image stage
    (train_image_stage: OUT/image_stage/checkpoint.pt). val_set: a YTVISDataset
    scored with evaluate_vis (sipmask tracker) at the end (and every eval_every steps).
    progress: progress bars; verbose: one line on what init_from copied.
    train_kwargs go to engine.train (log_every, checkpoint_every, eval_every, grad_clip, num_workers).
    Returns engine.train's summary plus 'init' (load_image_weights' report, or None).
    """
    if train_set.mode != "pairs":
        raise ValueError(f"train_vis: the training set must be in mode 'pairs', got {train_set.mode!r}")
    if config.task != "vis":
        config = dataclasses.replace(config, task="vis")
    engine.seed_everything(config.seed)  # the initial weights depend on the seed only
    model = SipMaskVIS(config)
    report = None
    if init_from is not None and not resume:
        report = load_image_weights(model, _image_weights(init_from), verbose=False)
        if verbose:
            print(
                f"initialised from {init_from}: {len(report['loaded'])} tensors copied, "
                f"{len(report['not_in_source'])} new (tracking branch"
                + (f"; skipped: {', '.join(report['skipped'])}" if report["skipped"] else "")
                + ")"
            )
    summary = engine.train(
        model,
        config,
        train_set,
        out_dir,
        val_dataset=val_set,
        iters=iters,
        device=device,
        resume=resume,
        eval_fn=_vis_metrics_fn(device),
        progress=progress,
        **train_kwargs,
    )
    summary["init"] = report
    return summary


def synthetic_video_paths(root: str | os.PathLike = "data") -> dict[str, Path]:
    """Paths of the synthetic video benchmark under root (generated with the image one if missing)."""
    root = Path(root)
    video_root = root / "synthetic_video"
    paths = {
        "train_ann": video_root / "annotations" / "train.json",
        "train_dir": video_root / "videos" / "train",
        "val_ann": video_root / "annotations" / "val.json",
        "val_dir": video_root / "videos" / "val",
    }
    if not all(p.exists() for p in paths.values()):
        print(f"synthetic video benchmark not found under {root}; generating it (make-data)")
        make_data(root=root, verbose=False)
    return paths


def trained_vis_model(
    iters: int | None = None,
    *,
    root: str | os.PathLike | None = None,
    image_checkpoint: str | os.PathLike | None = None,
) -> tuple[SipMaskVIS, SipMaskConfig]:
    """The notebooks' SipMaskVIS: cpu_tiny_vis fine-tuned from the notebooks' image model, cached.

    root: the folder holding data/ and outputs/ (default workspace.repo_root(): $SIPMASK_REPO, else
    the repository found from the working directory, as the notebooks run in notebooks/).
    image_checkpoint: the image model to start from (default workspace.trained_checkpoint(root=root),
    the cpu_tiny model of tutorial.trained_model(), trained first if needed).
    Checkpoint: <root>/outputs/tutorial/cpu_tiny_vis[_fast]/; data: the synthetic videos under
    <root>/data. In fast mode (SIPMASK_FAST=1) the image model and the fine-tuning are both short. A
    cached checkpoint older than the image model it starts from (say, the image model was retrained
    after a preset changed) is fine-tuned again. The fine-tuning runs on workspace.training_device()
    (CUDA when available; the cache does not depend on it). Returns the model in eval mode on the CPU
    and its config.
    """
    root = workspace.repo_root() if root is None else Path(root)
    out = workspace.model_dir("cpu_tiny_vis", root)
    checkpoint = out / checkpoints.CHECKPOINT_NAME
    if image_checkpoint is None:
        image_checkpoint = workspace.trained_checkpoint(root=root)  # trains the image model first if needed
    image_checkpoint = Path(image_checkpoint)
    if checkpoint.is_file() and checkpoint.stat().st_mtime < image_checkpoint.stat().st_mtime:
        print(f"{checkpoint}: older than the image model {image_checkpoint}; fine-tuning again")
        checkpoint.unlink()
    if not checkpoint.is_file():
        paths = synthetic_video_paths(root / "data")
        config = preset("cpu_tiny_vis")
        train_set = YTVISDataset(paths["train_ann"], paths["train_dir"], mode="pairs", seed=config.seed)
        config = dataclasses.replace(config, num_classes=len(train_set.class_names))
        steps = (
            iters if iters is not None else (FAST_VIS_ITERS if workspace.fast_mode() else config.max_iters)
        )
        with torch.enable_grad():  # even where the caller switched gradients off
            train_vis(
                config,
                train_set,
                out,
                init_from=image_checkpoint,
                iters=steps,
                device=workspace.training_device(),
                checkpoint_every=max(steps, 1),
                log_every=max(steps // 10, 1),
            )
    model, config = engine.load_checkpoint(checkpoint, "cpu")
    if not isinstance(model, SipMaskVIS):
        raise checkpoints.CheckpointError(f"{checkpoint} holds an image model, not SipMaskVIS")
    return model.eval(), config
