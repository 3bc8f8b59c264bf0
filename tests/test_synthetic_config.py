"""Tests of the synthetic benchmark's parameters and random streams (sipmask_ref/data/synthetic/config.py)."""

import numpy as np
import pytest

from sipmask_ref.data.synthetic.config import SyntheticConfig
from sipmask_ref.data.synthetic.scenes import sample_image
from sipmask_ref.data.synthetic.writing import generate_image_dataset


def test_train_and_val_differ_and_images_do_not_depend_on_the_split_size():
    config = SyntheticConfig()
    train, val = sample_image(config, 0, "train"), sample_image(config, 0, "val")
    assert not np.array_equal(train.image, val.image)
    bigger = sample_image(SyntheticConfig(num_train=5000), 0, "train")
    assert np.array_equal(train.image, bigger.image) and np.array_equal(train.masks, bigger.masks)


def test_bad_configuration_raises():
    with pytest.raises(ValueError, match="classes"):
        SyntheticConfig(classes=("disc", "hexagon"))
    with pytest.raises(ValueError, match="adjacency"):
        SyntheticConfig(adjacency=1.5)
    with pytest.raises(ValueError, match="unknown SyntheticConfig field"):
        generate_image_dataset("unused", num_imgs=3)
