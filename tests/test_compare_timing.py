"""The same budget for every model (sipmask_ref/compare/timing.py): iterations for a budget, the
schedule scaled to them."""

from __future__ import annotations

import dataclasses

import pytest

from sipmask_ref import compare
from sipmask_ref.config import preset


def test_iterations_for_budget() -> None:
    assert compare.iterations_for_budget(240, 0.5) == 480
    assert compare.iterations_for_budget(240, 0.7) == 342  # int(342.86): whole steps within the budget
    assert compare.iterations_for_budget(1, 5.0) == 1  # always at least one step
    for budget, step in ((0, 1.0), (-1, 1.0), (10, 0.0)):
        with pytest.raises(ValueError, match="must be > 0"):
            compare.iterations_for_budget(budget, step)


def test_budget_config_scales_the_presets_schedule() -> None:
    base = dataclasses.replace(preset("cpu_tiny"), max_iters=1800, lr_steps=(1400, 1700), warmup_iters=100)
    config = compare.budget_config(base, 900)
    assert (config.max_iters, config.lr_steps, config.warmup_iters) == (900, (700, 850), 100)
    assert compare.budget_config(base, 360).lr_steps == (280, 340)  # 77.8% and 94.4% of the run
    short = compare.budget_config(base, 5)
    assert short.lr_steps == (4, 5) and short.warmup_iters == 4  # the warm-up ends at the first step
    assert compare.budget_config(base, 1).lr_steps == (1,)
    schedule = {"max_iters", "lr_steps", "warmup_iters"}
    assert all(
        getattr(config, f.name) == getattr(base, f.name)
        for f in dataclasses.fields(base)
        if f.name not in schedule
    )
    with pytest.raises(ValueError, match="iters must be >= 1"):
        compare.budget_config(base, 0)
