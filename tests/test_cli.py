"""The entry point (sipmask_ref/cli.py): `python -m sipmask_ref` reports a mistake in one line, no traceback.

The commands themselves are tested through `cli.main(argv)` in test_commands_image.py,
test_commands_data.py, test_commands_demo.py, test_check_data.py, test_export.py, test_video_commands.py
and, for reproduce and compare, test_reproduce_driver.py and test_compare_runs.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sipmask_ref.config import PRESETS

REPO = Path(__file__).resolve().parents[1]


def test_python_dash_m_reports_errors_without_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(
        [sys.executable, "-m", "sipmask_ref", "train", "--config", "nope", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"sipmask_ref train: error: unknown preset 'nope'; choose one of {', '.join(PRESETS)}"
    ]
