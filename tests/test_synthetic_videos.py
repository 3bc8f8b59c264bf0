"""Tests of the synthetic videos: masks, leaving and coming back (sipmask_ref/data/synthetic/videos.py)."""

import json

import numpy as np
from pycocotools import mask as mask_utils

from conftest import SMALL_SYNTHETIC_VIDEOS
from sipmask_ref.data.synthetic.adjacency import video_stats
from sipmask_ref.data.synthetic.config import SyntheticVideoConfig
from sipmask_ref.data.synthetic.videos import sample_video


def test_video_masks_are_the_sampled_ones_and_none_exactly_where_absent(synthetic_video_set):
    data = json.loads(synthetic_video_set["train_annotations"].read_text())
    config = SyntheticVideoConfig(**SMALL_SYNTHETIC_VIDEOS)
    for video in data["videos"]:
        sample = sample_video(config, video["id"] - 1, "train")
        anns = [a for a in data["annotations"] if a["video_id"] == video["id"]]
        assert len(anns) == len(sample.masks)
        for ann, masks in zip(anns, sample.masks, strict=True):
            for segm, mask in zip(ann["segmentations"], masks, strict=True):
                assert (segm is None) == (mask is None)
                if mask is not None:
                    assert np.array_equal(mask_utils.decode(segm).astype(bool), mask)
        for t in range(video["length"]):
            present = [m[t] for m in sample.masks if m[t] is not None]
            assert not present or np.sum(present, axis=0).max() <= 1


def _absent_then_present_again(masks: list) -> bool:
    """True when an identity is absent in a frame between two frames where it is present."""
    present = [t for t, m in enumerate(masks) if m is not None]
    return len(present) < present[-1] - present[0] + 1


def test_an_identity_leaves_and_comes_back(synthetic_video_set):
    data = json.loads(synthetic_video_set["train_annotations"].read_text())
    stats = video_stats(data)
    assert stats["reappearing"] >= 1
    assert stats["videos"] == 3 and stats["frames"] == 24
    every = SyntheticVideoConfig(reenter=1.0, num_frames=6)
    for index in range(4):  # with reenter=1 every video holds one
        assert any(_absent_then_present_again(m) for m in sample_video(every, index).masks)
