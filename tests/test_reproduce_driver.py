"""The whole ablation study (sipmask_ref/reproduce/driver.py): one tiny end-to-end run, a rerun that
skips it, the `reproduce` command, a resumed evaluation, and its mistakes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import tiny_synthetic
from sipmask_ref import cli, reproduce
from sipmask_ref.reproduce import BASELINE


def test_reproduce_tiny_run_writes_reports_and_resumes(tmp_path: Path) -> None:
    tiny_synthetic(tmp_path / "data")
    kwargs = dict(
        out=tmp_path / "results",
        seeds=1,
        iters=3,
        jobs=1,
        work_dir=tmp_path / "work",
        data_root=tmp_path / "data",
        only=[BASELINE.key],
        threads=1,
        pretrain_iters=2,
        log=lambda line: None,
    )
    threads = torch.get_num_threads()
    report = reproduce.reproduce(**kwargs)
    assert torch.get_num_threads() == threads  # run with 1 thread, then the caller's count is restored
    saved = reproduce.load_report(tmp_path / "results" / "ablations.json")
    assert saved == json.loads(json.dumps(report))
    assert saved["environment"]["runs_finished"] == 1 == saved["environment"]["runs_this_invocation"]
    assert saved["environment"]["torch"] == torch.__version__
    assert saved["runs"][0]["variant"] == BASELINE.key and saved["runs"][0]["iters"] == 3
    # every run starts from the body pretrained once (2 iterations here), and its record says so
    pretraining = saved["settings"]["pretraining"]
    assert saved["settings"]["pretrain_iters"] == 2 and pretraining["iters"] == 2
    assert saved["runs"][0]["pretrained_body"]["iters"] == 2
    assert (tmp_path / "work" / "pretrain" / "checkpoint.pt").is_file()
    assert (
        "pretrained once as the backbone of the §3 box detector"
        in (tmp_path / "results" / "ablations.md").read_text()
    )
    assert (
        0.0 <= saved["runs"][0]["metrics"]["segm"]["AP"] <= 1.0
        or saved["runs"][0]["metrics"]["segm"]["AP"] == -1
    )
    assert reproduce.run_checkpoint_path(tmp_path / "work", BASELINE, 0).is_file()
    markdown = (tmp_path / "results" / "ablations.md").read_text()
    assert markdown.startswith("# SipMask ablations") and "| baseline |" in markdown

    record = reproduce.run_record_path(tmp_path / "work", BASELINE, 0)
    stamp = record.stat().st_mtime_ns
    again = reproduce.reproduce(**kwargs)
    assert again["environment"]["runs_this_invocation"] == 0  # skipped: nothing trained
    assert again["settings"]["pretraining"] == pretraining  # the pretraining too
    assert record.stat().st_mtime_ns == stamp
    assert again["configs"] == report["configs"]

    # the CLI: --report-only assembles the finished runs without training
    argv = [
        "reproduce",
        "--report-only",
        "--seeds",
        "1",
        "--iters",
        "3",
        "--out",
        str(tmp_path / "cli"),
        "--work-dir",
        str(tmp_path / "work"),
        "--data-root",
        str(tmp_path / "data"),
        "--pretrain-iters",
        "2",
    ]
    assert cli.main(argv) == 0
    from_cli = reproduce.load_report(tmp_path / "cli" / "ablations.json")
    assert from_cli["configs"] == saved["configs"] and from_cli["environment"]["runs_finished"] == 1
    assert from_cli["settings"]["pretraining"] == pretraining
    assert cli.main(argv[:2] + ["--seeds", "0"] + argv[4:]) == 2  # a usage error, one line on stderr

    record.unlink()  # as if stopped during the evaluation: the finished checkpoint is only evaluated
    third = reproduce.reproduce(**kwargs)
    assert third["environment"]["runs_this_invocation"] == 1
    assert third["runs"][0]["resumed_from_iteration"] == 3
    assert third["configs"] == report["configs"]


def test_reproduce_rejects_unknown_variant(tmp_path: Path) -> None:
    tiny_synthetic(tmp_path / "data", num_train=2, num_val=1)
    with pytest.raises(ValueError, match="unknown variant"):
        reproduce.reproduce(out=tmp_path, data_root=tmp_path / "data", only=["nope"], log=lambda line: None)
    with pytest.raises(FileNotFoundError, match="no synthetic benchmark"):
        reproduce.reproduce(out=tmp_path, data_root=tmp_path / "missing", log=lambda line: None)
