"""Judging the claims (sipmask_ref/reproduce/verdicts.py) on made-up numbers: the seed statistics, the
verdicts, the tables assembled from run records, and those tables as Markdown (report.py)."""

from __future__ import annotations

import math

import pytest

from sipmask_ref import reproduce
from sipmask_ref.reproduce import BASELINE, TABLES, Variant


def _table(key: str) -> reproduce.Table:
    return next(t for t in TABLES if t.key == key)


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
