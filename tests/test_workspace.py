"""workspace.py: the repository root (SIPMASK_REPO or found from the working directory), fast mode, paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipmask_ref import workspace

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
