"""Engine, distributed.py: torchrun with one process, and a real two-process run (tests/ddp_worker.py)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

import sipmask_ref
from conftest import tiny_synthetic
from engine_toys import assert_same_weights, run, toy_config
from sipmask_ref import engine

DDP_WORKER = Path(__file__).resolve().parent / "ddp_worker.py"


def test_distributed_world_size_one_matches_single_process(tmp_path, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = toy_config(max_iters=4, lr_steps=(3,))
    single, _ = run(tmp_path / "single", c)
    for key, value in {
        "RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }.items():
        monkeypatch.setenv(key, value)
    ddp, _ = run(tmp_path / "ddp", c)
    assert not torch.distributed.is_initialized()  # the group train() created is gone
    assert_same_weights(single, ddp)


def test_two_processes_under_torchrun_write_once_and_end_equal(tmp_path):
    """A real 2-process run (torchrun, gloo, CPU) of SipMask cpu_tiny, 2 steps, evaluated after each:
    rank 1 writes nothing (no folder, no bar), both ranks end with the weights rank 0 saved. DDP runs
    without find_unused_parameters, so an unused parameter would fail the second step."""
    tiny_synthetic(tmp_path / "data", num_train=4, num_val=1)
    # the worker imports the sipmask_ref this test imports (an installed copy or the source tree)
    package_parent = str(Path(sipmask_ref.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": package_parent + os.pathsep + os.environ.get("PYTHONPATH", "")}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run(
        [*command, str(DDP_WORKER), str(tmp_path)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr

    out = tmp_path / "out_rank0"
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "metrics.json", "train_log.jsonl"]
    assert not (tmp_path / "out_rank1").exists()  # rank 1 did not even create its folder
    logged = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    steps = [(r["iteration"], "metrics" in r) for r in logged]
    assert steps == [(1, False), (1, True), (2, False), (2, True)]
    assert "train: 100%" in (tmp_path / "rank0.stderr").read_text()
    assert "train" not in (tmp_path / "rank1.stderr").read_text()  # no bar on rank 1

    saved = engine.read_checkpoint(out / "checkpoint.pt")
    assert saved["iteration"] == 2
    finals = [torch.load(tmp_path / f"final_rank{r}.pt", weights_only=True) for r in (0, 1)]
    torch.testing.assert_close(finals[0], finals[1], rtol=0, atol=0)  # parameters and BatchNorm buffers
    torch.testing.assert_close(finals[0], engine.evaluation_weights(saved), rtol=0, atol=0)
