"""Evaluation: a checkpoint back into a model, eval mode over a dataset, the 12 COCO numbers.

model_from_checkpoint  a checkpoint dict -> (model, config); load_checkpoint the same from a file
                       (writing and reading the files: checkpoints.py)
predict_images         eval-mode outputs of a list of images, on the CPU
evaluate               eval mode over a dataset -> COCO results + the 12 COCO numbers per type
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..checkpoints import CheckpointError, config_from_dict, evaluation_weights, read_checkpoint
from ..config import SipMaskConfig
from ..eval.coco import evaluate_coco, predictions_to_coco_results
from ..model import SipMask
from ..video_model import SipMaskVIS
from .samples import SizedDataset

METRICS_NAME = "metrics.json"


class CocoLikeDataset(SizedDataset, Protocol):
    """What `evaluate` reads: items (image, target), the category ids and the pycocotools COCO object."""

    @property
    def label_to_cat_id(self) -> dict[int, int]: ...

    @property
    def coco(self) -> Any: ...


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
