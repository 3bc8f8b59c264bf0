"""The demo command (sipmask_ref/commands/demo.py): make-data, train, evaluate and draw, in order, on a tiny
synthetic benchmark (8 train / 4 val images of 128 px)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipmask_ref import cli, commands
from sipmask_ref.data.synthetic import make_data

CLASSES = ("disc", "square", "ring")  # 3 of the 6 shapes: num_classes must come from the data


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    make_data(root=root, num_train=8, num_val=4, classes=CLASSES, video=False, progress=False, verbose=False)
    return root


def test_demo_calls_the_library_in_order(data_root, tmp_path, monkeypatch, capsys):
    made = []
    monkeypatch.setattr(commands.demo, "make_synthetic_data", lambda root, quiet: made.append((root, quiet)))
    argv = ["demo", "--data-root", str(data_root), "--out", str(tmp_path), "--iters", "0", "--device", "cpu"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert made == [(data_root, True)]  # the data is there: no statistics
    assert "note: num_classes = 3" in out and "train cpu_tiny:" in out and "demo: box AP" in out
    assert (tmp_path / "checkpoint.pt").is_file() and (tmp_path / "metrics.json").is_file()
    assert (tmp_path / "predictions.png").is_file()
    assert cli.main([*argv, "--iters", "1"]) == 0
    assert "demo: continuing from" in capsys.readouterr().out
    assert cli.main([*argv, "--iters", "-1"]) == 2
