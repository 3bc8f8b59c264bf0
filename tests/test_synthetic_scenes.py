"""Tests of the synthetic images: placement and occlusion (sipmask_ref/data/synthetic/scenes.py)."""

import numpy as np

from sipmask_ref.data.synthetic.adjacency import adjacency_flags
from sipmask_ref.data.synthetic.config import SyntheticConfig
from sipmask_ref.data.synthetic.scenes import sample_image


def test_hidden_instances_are_removed_from_the_scene():
    config = SyntheticConfig()
    for index in range(10):
        sample = sample_image(config, index)
        areas = sample.masks.reshape(len(sample.masks), -1).sum(axis=1)
        assert (areas >= config.min_visible_area).all()


def _measured_adjacency(config: SyntheticConfig, count: int) -> float:
    flags = [adjacency_flags(s.masks, s.class_names) for s in (sample_image(config, i) for i in range(count))]
    return float(np.concatenate(flags).mean())


def test_default_knob_gives_at_least_30_percent_adjacency_and_zero_knob_much_less():
    default = _measured_adjacency(SyntheticConfig(), 40)
    without = _measured_adjacency(SyntheticConfig(adjacency=0.0), 40)
    assert default >= 0.30
    assert without < 0.15 and default - without > 0.2
