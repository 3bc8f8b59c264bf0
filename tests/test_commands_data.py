"""The data commands (sipmask_ref/commands/data.py): make-data writes the synthetic benchmark and its
sample figure (check-data: tests/test_check_data.py)."""

from __future__ import annotations

import json

from sipmask_ref import cli


def test_make_data_command(tmp_path):
    assert (
        cli.main(
            [
                "make-data",
                "--root",
                str(tmp_path),
                "--num-train",
                "2",
                "--num-val",
                "1",
                "--no-video",
                "--quiet",
            ]
        )
        == 0
    )
    synthetic = tmp_path / "synthetic"
    assert len(list((synthetic / "images/train").glob("*.png"))) == 2
    assert json.loads((synthetic / "annotations/instances_val.json").read_text())["images"][0]["id"] == 1
    assert (synthetic / "samples.png").is_file()
    assert not (tmp_path / "synthetic_video").exists()
