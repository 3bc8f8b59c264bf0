"""One run of the ablation study (sipmask_ref/reproduce/runs.py): the switches and the schedule of its
configuration."""

from __future__ import annotations

import dataclasses

from sipmask_ref import reproduce
from sipmask_ref.config import preset
from sipmask_ref.reproduce import BASELINE

SWITCHES = ("sub_regions", "basis_source", "alignment_weight", "feature_alignment")


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
    assert config.lr_steps == (190,) and config.warmup_iters == 20  # 95%, warm-up 10%
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
