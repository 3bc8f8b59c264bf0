"""video/training.py: the image stage's config and the notebooks' cached video model (trained_vis_model).

(train_vis itself is exercised with SipMaskVIS in test_video_model.py, and through `train --task vis`,
image stage included, in test_video_commands.py.)
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from sipmask_ref import engine, workspace
from sipmask_ref.config import preset
from sipmask_ref.video import training
from sipmask_ref.video.training import IMAGE_STAGE_PRESETS, image_stage_config, schedule_fields
from sipmask_ref.video_model import SipMaskVIS

torch.set_num_threads(1)


def test_image_stage_config_is_the_vis_model_with_a_from_scratch_schedule():
    vis = dataclasses.replace(preset("cpu_tiny_vis"), num_classes=3, seed=7)
    stage = image_stage_config(vis, "cpu_tiny_vis")
    image = preset(IMAGE_STAGE_PRESETS["cpu_tiny_vis"])
    assert stage.task == "image" and stage.max_iters == image.max_iters > vis.max_iters
    for name in schedule_fields():
        assert getattr(stage, name) == getattr(image, name), name
    assert {"lr", "lr_steps", "batch_size", "warmup_iters"} <= set(schedule_fields())
    model_fields = {f.name for f in dataclasses.fields(vis)} - set(schedule_fields()) - {"task"}
    for name in model_fields:  # backbone, channels, classes, switches, input, seed, ...
        assert getattr(stage, name) == getattr(vis, name), name
    # a preset without an image preset (its schedule is already in epochs of video frames): its own
    paper = preset("paper_vis_r50")
    assert image_stage_config(paper, "paper_vis_r50") == dataclasses.replace(paper, task="image")


def test_trained_vis_model_fine_tunes_again_after_the_image_model_changes(ytvis_files, tmp_path, monkeypatch):

    image_checkpoint = tmp_path / "outputs" / "tutorial" / "cpu_tiny" / engine.CHECKPOINT_NAME
    image_checkpoint.parent.mkdir(parents=True)
    image_checkpoint.write_bytes(b"an image model")  # only its age matters here
    calls = []

    def fake_train_vis(config, train_set, out, init_from, iters, **kwargs):
        """Stands in for the fine-tuning: records the call, writes a real (untrained) checkpoint."""
        calls.append({"init_from": init_from, "grad": torch.is_grad_enabled(), "device": kwargs["device"]})
        model = SipMaskVIS(config)
        engine.save_checkpoint(
            {
                "format": engine.CHECKPOINT_FORMAT,
                "model": model.state_dict(),
                "config": dataclasses.asdict(config),
                "iteration": iters,
            },
            Path(out) / engine.CHECKPOINT_NAME,
        )

    monkeypatch.setattr(
        training,
        "synthetic_video_paths",
        lambda root: {
            "train_ann": ytvis_files.ann_file,
            "train_dir": ytvis_files.video_dir,
            "val_ann": ytvis_files.ann_file,
            "val_dir": ytvis_files.video_dir,
        },
    )
    monkeypatch.setattr(training, "train_vis", fake_train_vis)
    monkeypatch.setattr(workspace, "training_device", lambda: torch.device("cuda"))  # as on a GPU machine
    monkeypatch.delenv(workspace.FAST_ENV, raising=False)
    monkeypatch.setenv(workspace.REPO_ENV, str(tmp_path))  # the notebooks' call: no paths given

    with torch.no_grad():  # as a notebook that switched gradients off
        model, _ = training.trained_vis_model(iters=1, image_checkpoint=image_checkpoint)
    assert isinstance(model, SipMaskVIS)
    assert calls == [{"init_from": image_checkpoint, "grad": True, "device": torch.device("cuda")}]
    assert (tmp_path / "outputs" / "tutorial" / "cpu_tiny_vis" / engine.CHECKPOINT_NAME).is_file()
    # cached: newer than the image model
    training.trained_vis_model(iters=1, image_checkpoint=image_checkpoint)
    assert len(calls) == 1
    later = image_checkpoint.stat().st_mtime + 10
    os.utime(image_checkpoint, (later, later))  # the image model was trained again
    training.trained_vis_model(iters=1, root=tmp_path, image_checkpoint=image_checkpoint)
    assert len(calls) == 2
