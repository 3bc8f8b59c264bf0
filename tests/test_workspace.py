"""workspace.py: the repository root (SIPMASK_REPO or found from the working directory), fast mode, paths."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from sipmask_ref import engine, workspace
from sipmask_ref.config import preset
from sipmask_ref.data.coco import CocoInstances
from sipmask_ref.data.synthetic import generate_image_dataset

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("value", "expected"), [("", False), ("0", False), ("false", False), ("1", True), ("yes", True)]
)
def test_fast_mode_reads_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv(workspace.FAST_ENV, value)
    assert workspace.fast_mode() is expected


def test_repo_root_is_found_from_the_working_directory(monkeypatch):
    monkeypatch.delenv(workspace.REPO_ENV, raising=False)
    monkeypatch.chdir(REPO / "notebooks")  # where the notebooks run
    assert workspace.repo_root() == REPO
    assert (workspace.repo_root() / "pyproject.toml").is_file()


def test_repo_root_from_the_environment_or_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(workspace.REPO_ENV, str(tmp_path))
    assert workspace.repo_root() == tmp_path.resolve()
    monkeypatch.setenv(workspace.REPO_ENV, str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match=r"SIPMASK_REPO=.*missing: no such folder"):
        workspace.repo_root()
    monkeypatch.delenv(workspace.REPO_ENV)
    (tmp_path / "pyproject.toml").write_text("")  # a project, but not this one: no notebooks/
    with pytest.raises(FileNotFoundError, match="set SIPMASK_REPO"):
        workspace.repo_root()


def test_paths_under_a_given_root(tmp_path, monkeypatch):
    monkeypatch.setenv(workspace.FAST_ENV, "1")
    assert workspace.model_dir("cpu_tiny", tmp_path) == tmp_path / "outputs" / "tutorial" / "cpu_tiny_fast"
    monkeypatch.setenv(workspace.REPO_ENV, str(tmp_path))
    assert workspace.model_dir("x") == tmp_path.resolve() / "outputs" / "tutorial" / "x_fast"


def test_repo_relative_paths_do_not_name_this_machine(tmp_path, monkeypatch):
    monkeypatch.setenv(workspace.REPO_ENV, str(REPO))  # whatever the working directory pytest runs in
    root = workspace.repo_root()
    assert workspace.repo_relative(root / "outputs" / "x.pt") == "outputs/x.pt"
    assert workspace.repo_relative(tmp_path / "elsewhere.json") == str(tmp_path / "elsewhere.json")


def test_training_device_is_cuda_when_available_unless_the_environment_says_otherwise(monkeypatch):
    monkeypatch.delenv(workspace.DEVICE_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert workspace.training_device() == torch.device("cuda")
    monkeypatch.setenv(workspace.DEVICE_ENV, "cpu")
    assert workspace.training_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv(workspace.DEVICE_ENV)
    assert workspace.training_device() == torch.device("cpu")
    for wrong in ("cuda", "cuda:1", "gpu0"):  # no CUDA here, or not a device at all
        monkeypatch.setenv(workspace.DEVICE_ENV, wrong)
        with pytest.raises(ValueError, match=workspace.DEVICE_ENV):
            workspace.training_device()


def test_trained_checkpoint_trains_on_the_chosen_device_and_is_reused_on_another(tmp_path, monkeypatch):
    paths = generate_image_dataset(tmp_path / "data", num_train=2, num_val=1, image_size=32, progress=False)
    small = CocoInstances(paths["train_annotations"], paths["train_images"])
    monkeypatch.setenv(workspace.REPO_ENV, str(tmp_path))
    monkeypatch.delenv(workspace.FAST_ENV, raising=False)
    devices = []

    def fake_train(model, config, train_set, out, *, iters, device, **kwargs):
        """Stands in for engine.train: records the device, writes a checkpoint as the real one does."""
        devices.append(device)
        state = {"format": engine.CHECKPOINT_FORMAT, "model": model.state_dict(), "iteration": iters}
        engine.save_checkpoint({**state, "config": dataclasses.asdict(config)}, out / engine.CHECKPOINT_NAME)

    monkeypatch.setattr(engine, "train", fake_train)
    monkeypatch.setattr(workspace, "training_device", lambda: torch.device("cuda"))  # a GPU machine
    checkpoint = workspace.trained_checkpoint(preset("cpu_tiny"), name="tiny", iters=1, train_set=small)
    assert devices == [torch.device("cuda")]
    monkeypatch.setattr(workspace, "training_device", lambda: torch.device("cpu"))  # then a CPU one
    assert (
        workspace.trained_checkpoint(preset("cpu_tiny"), name="tiny", iters=1, train_set=small) == checkpoint
    )
    assert devices == [torch.device("cuda")]  # reused: the cache does not depend on the device
