"""The ablation runner (sipmask_ref/reproduce.py): table definitions, statistics, verdicts, one tiny run."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from conftest import tiny_synthetic
from sipmask_ref import cli, reproduce
from sipmask_ref.config import preset
from sipmask_ref.reproduce import BASELINE, FULL, TABLES, Variant

SWITCHES = ("sub_regions", "basis_source", "alignment_weight", "feature_alignment")


def _table(key: str) -> reproduce.Table:
    return next(t for t in TABLES if t.key == key)


def _changed(variant: Variant, reference: Variant = FULL) -> set[str]:
    return {name for name in SWITCHES if getattr(variant, name) != getattr(reference, name)}


# ----------------------------------------------------------------------------------------------------
# the tables train exactly the intended switches
# ----------------------------------------------------------------------------------------------------
def test_table2_progression() -> None:
    rows = {row.label: row.variant for row in _table("table2").rows}
    assert list(rows) == ["baseline", "+SP", "+CBM", "+WL"]
    assert rows["baseline"] == Variant(
        sub_regions=(1, 1), basis_source="p3", alignment_weight="none", feature_alignment=False
    )
    # each step turns on exactly its component(s): SP = 2x2 coefficients + feature alignment
    assert _changed(rows["+SP"], rows["baseline"]) == {"sub_regions", "feature_alignment"}
    assert rows["+SP"].sub_regions == (2, 2) and rows["+SP"].feature_alignment
    assert _changed(rows["+CBM"], rows["+SP"]) == {"basis_source"} and rows["+CBM"].basis_source == "p3-p5"
    assert _changed(rows["+WL"], rows["+CBM"]) == {"alignment_weight"}
    assert rows["+WL"] == FULL and FULL.alignment_weight == "cls+loc"


def test_tables_3_to_5_change_one_switch_of_full_sipmask() -> None:
    t3 = {row.label: row.variant for row in _table("table3").rows}
    assert _changed(t3["without alignment"]) == {"feature_alignment"} and t3["with alignment"] == FULL
    t4 = {row.label: row.variant for row in _table("table4").rows}
    assert list(t4) == ["1x1", "1x2", "2x1", "2x2", "3x3", "4x4"]
    for label, variant in t4.items():
        k_h, k_w = (int(k) for k in label.split("x"))
        assert variant == dataclasses.replace(FULL, sub_regions=(k_h, k_w))
    t5 = {row.label: row.variant for row in _table("table5").rows}
    assert {label: v.alignment_weight for label, v in t5.items()} == {
        "none": "none",
        "only cls": "cls",
        "only loc": "loc",
        "cls+loc": "cls+loc",
    }
    assert all(_changed(v) <= {"alignment_weight"} for v in t5.values())


def test_unique_variants_and_paper_numbers() -> None:
    variants = reproduce.unique_variants()
    assert len(variants) == 12 == len({v.key for v in variants})
    assert BASELINE in variants and FULL in variants
    paper = {row.label: row.paper_ap for row in _table("table4").rows}
    assert paper == {"1x1": 31.2, "1x2": 32.2, "2x1": 32.1, "2x2": 32.9, "3x3": 33.1, "4x4": 33.1}
    assert [row.paper_ap for row in _table("table3").rows] == [None, None]  # not transcribed
    for table in TABLES:  # every claim names rows of its own table
        labels = {row.label for row in table.rows}
        assert all(label in labels for claim in table.claims for label, _ in claim.contrast)


def test_ablation_config_switches_and_schedule() -> None:
    base = preset("cpu_tiny")
    config = reproduce.ablation_config(BASELINE, seed=2, iters=200, num_classes=6)
    assert (config.sub_regions, config.basis_source, config.alignment_weight, config.feature_alignment) == (
        (1, 1),
        "p3",
        "none",
        False,
    )
    assert config.seed == 2 and config.max_iters == 200 and config.num_classes == 6
    assert config.lr_steps == (150, 184) and config.warmup_iters == 20  # 75% / 92%, warm-up 10%
    assert (config.optimizer, config.lr) == (reproduce.ABLATION_OPTIMIZER, reproduce.ABLATION_LR)
    schedule = {
        "seed",
        "max_iters",
        "lr_steps",
        "warmup_iters",
        "warmup_method",
        "optimizer",
        "lr",
        "num_classes",
    }
    same = {f.name for f in dataclasses.fields(base)} - set(SWITCHES) - schedule
    assert all(getattr(config, name) == getattr(base, name) for name in same)  # the preset's model


# ----------------------------------------------------------------------------------------------------
# statistics and verdicts on made-up numbers
# ----------------------------------------------------------------------------------------------------
def test_summarize_mean_std_min_max() -> None:
    s = reproduce.summarize([30.0, 32.0, 34.0])
    assert (s["mean"], s["std"], s["min"], s["max"], s["n"]) == (32.0, 2.0, 30.0, 34.0, 3)
    assert reproduce.summarize([5.0])["std"] == 0.0
    with pytest.raises(ValueError, match="no values"):
        reproduce.summarize([])


@pytest.mark.parametrize(
    ("better", "verdict"),
    [
        ([34.0, 35.0, 36.0], "holds"),  # +5.0, se = sqrt(2/3) = 0.82
        ([30.5, 31.0, 31.5], "weak"),  # +1.0 < 2 se
        ([29.0, 30.0, 31.0], "not_seen"),  # 0.0
        ([25.0, 26.0, 27.0], "reversed"),  # -4.0
    ],
)
def test_judge_against_seed_spread(better: list[float], verdict: str) -> None:
    worse = reproduce.summarize([29.0, 30.0, 31.0])
    result = reproduce.judge([(reproduce.summarize(better), 1.0), (worse, -1.0)])
    assert result["verdict"] == verdict
    assert result["se"] == pytest.approx(math.sqrt(1.0 / 3 + reproduce.summarize(better)["std"] ** 2 / 3))
    assert result["text"].startswith(reproduce.VERDICTS[verdict])


def test_judge_needs_two_seeds() -> None:
    one, three = reproduce.summarize([40.0]), reproduce.summarize([29.0, 30.0, 31.0])
    assert reproduce.judge([(one, 1.0), (three, -1.0)])["verdict"] == "one_seed"


def _record(variant: Variant, seed: int, ap: float) -> dict:
    segm = {"AP": ap / 100, "AP50": (ap + 20) / 100, "AP75": (ap - 5) / 100}
    return {
        "variant": variant.key,
        "seed": seed,
        "switches": variant.switches(),
        "metrics": {"segm": segm, "bbox": {"AP": ap / 100}},
    }


def test_assemble_tables_and_missing_rows() -> None:
    sp = _table("table2").rows[1].variant
    records = [_record(BASELINE, s, ap) for s, ap in enumerate([20.0, 21.0, 22.0])]
    records += [_record(sp, s, ap) for s, ap in enumerate([25.0, 26.0, 27.0])]
    out = reproduce.assemble(records)
    assert out["configs"][BASELINE.key]["AP"]["mean"] == pytest.approx(21.0)
    assert out["configs"][BASELINE.key]["AP50"]["mean"] == pytest.approx(41.0)
    table2 = out["tables"][0]
    assert table2["rows"][2]["result"] is None  # +CBM was not run
    first, second = table2["claims"][:2]
    assert first["result"]["verdict"] == "holds" and first["result"]["delta"] == pytest.approx(5.0)
    assert second["result"] is None
    text = reproduce.to_markdown(
        {
            "settings": {
                "base_preset": "cpu_tiny",
                "iters": 5,
                "batch_size": 8,
                "seeds": [0, 1, 2],
                "val_images": 4,
            },
            "environment": {
                "python": "3",
                "torch": "t",
                "torchvision": "v",
                "device": "cpu",
                "jobs": 1,
                "threads_per_job": 1,
                "cpu_count": 2,
                "runs_finished": 6,
                "runs_planned": 36,
                "mean_run_wall_s": 1.0,
                "total_wall_s": 6.0,
            },
            **out,
        }
    )
    assert "| baseline | 21.0 ± 1.0 | 41.0 ± 1.0 | 16.0 ± 1.0 | 20.0-22.0 | 31.2 |" in text
    assert (
        "| +CBM | not run |" in text
        and "| SP improves over the baseline | - | holds: +5.0 AP, 5.0x the seed std of 1.0" in text
    )


# ----------------------------------------------------------------------------------------------------
# one tiny end-to-end run, then a rerun that skips it
# ----------------------------------------------------------------------------------------------------
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
    ]
    assert cli.main(argv) == 0
    assert reproduce.load_report(tmp_path / "cli" / "ablations.json")["configs"] == saved["configs"]
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
