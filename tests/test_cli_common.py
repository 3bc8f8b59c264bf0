"""cli_common.py: the checks that commands/ and video/commands.py share (each a one-line UsageError)."""

from __future__ import annotations

import argparse

import pytest
import torch

from sipmask_ref import cli, cli_common, video
from sipmask_ref.config import preset


def test_checked_device():
    assert cli_common.checked_device("cpu") == torch.device("cpu")
    with pytest.raises(cli_common.UsageError, match="unknown device 'warp'"):
        cli_common.checked_device("warp")


def test_same_categories_and_checked_checkpoint(tmp_path):
    cli_common.same_categories({1: 3, 2: 5}, {2: 5, 1: 3}, "sets")
    with pytest.raises(cli_common.UsageError, match="sets: the category ids differ"):
        cli_common.same_categories({1: 3}, {1: 4}, "sets")
    with pytest.raises(cli_common.UsageError, match="checkpoint not found"):
        cli_common.checked_checkpoint(str(tmp_path / "missing.pt"))


def test_train_target_and_config_for_training(tmp_path):
    args = argparse.Namespace(
        out=str(tmp_path),
        resume=True,
        iters=None,
        device="cpu",
        config="cpu_tiny",
        batch_size=2,
        seed=None,
        lr=None,
    )
    with pytest.raises(cli_common.UsageError, match="--resume: no checkpoint to resume from"):
        cli_common.train_target(args)
    assert cli_common.train_target(argparse.Namespace(**vars(args) | {"resume": False})) == (
        torch.device("cpu"),
        tmp_path,
    )
    train_set = argparse.Namespace(class_names=["a", "b"], ann_file="train.json")
    config = cli_common.config_for_training(preset("cpu_tiny"), args, train_set, task="image")
    assert (config.num_classes, config.batch_size, config.task) == (2, 2, "image")


def test_one_usage_error_for_both_command_modules():
    assert cli.UsageError is video.commands.UsageError is cli_common.UsageError
