"""Training and evaluation engine: the loop that turns the §3.4 losses into weights.

Not a paper section; the recipe is the authors' (SGD, lr 0.01, momentum 0.9, weight decay 1e-4,
warm-up, x0.1 steps), written iteration by iteration. The package, in reading order:

    schedule.py     lr_factor (warm-up, x0.1 steps), build_optimizer, WeightAverage (config.ema_decay)
    samples.py      TrainSamples: the training stream, sample p a pure function of (seed, p); why a
                    resumed run is bit-identical on CPU; batch_positions, data_loader
    distributed.py  torchrun: process group, DistributedDataParallel, what each rank writes
    evaluation.py   model_from_checkpoint / load_checkpoint, predict_images, evaluate
    run.py          Run: what a run trains and a checkpoint holds (start = resume or seed, save);
                    seed_everything
    loop.py         train, the loop, and its pieces: _train_step (forward, loss guard, backward, AMP
                    scaler, optimizer, weight average), _Progress (bar and log), _Evaluation

`from sipmask_ref import engine` then `engine.train`, `engine.evaluate`, ...: the public names of
these modules are re-exported here, with the checkpoint names of checkpoints.py (writing and reading
the files lives there).
"""

from __future__ import annotations

# Checkpoint files live in checkpoints.py; these names stay importable from engine (notebooks, tests).
from ..checkpoints import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_NAME,
    CheckpointError,
    config_from_dict,
    evaluation_weights,
    read_checkpoint,
    save_checkpoint,
)
from .evaluation import (
    METRICS_NAME,
    CocoLikeDataset,
    evaluate,
    load_checkpoint,
    model_from_checkpoint,
    predict_images,
)
from .loop import LOG_NAME, NonFiniteLossError, train
from .run import seed_everything
from .samples import SizedDataset, TrainSamples, batch_positions, sample_seed
from .schedule import WeightAverage, build_optimizer, lr_factor

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_NAME",
    "LOG_NAME",
    "METRICS_NAME",
    "CheckpointError",
    "CocoLikeDataset",
    "NonFiniteLossError",
    "SizedDataset",
    "TrainSamples",
    "WeightAverage",
    "batch_positions",
    "build_optimizer",
    "config_from_dict",
    "evaluate",
    "evaluation_weights",
    "load_checkpoint",
    "lr_factor",
    "model_from_checkpoint",
    "predict_images",
    "read_checkpoint",
    "sample_seed",
    "save_checkpoint",
    "seed_everything",
    "train",
]
