"""YTVISDataset: training pairs (§3.5), frames, identities, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import HEIGHT, WIDTH, YtvisFiles, frame_pixels
from sipmask_ref.data.coco import AnnotationWarning
from sipmask_ref.data.transforms import RandomHorizontalFlip, collate
from sipmask_ref.data.ytvis import FRAME_ID_STRIDE, YTVISDataset


def load(files: YtvisFiles, **kwargs) -> YTVISDataset:
    return YTVISDataset(files.ann_file, files.video_dir, **kwargs)


def pair_index(dataset: YTVISDataset, video_index: int, frame_index: int) -> int:
    return dataset.items.index((video_index, frame_index))


def test_pairs_items_are_the_annotated_frames(ytvis_files: YtvisFiles) -> None:
    dataset = load(ytvis_files)
    assert dataset.annotated_frames == [[0, 1, 3], [0], []]
    assert dataset.items == [(0, 0), (0, 1), (0, 3), (1, 0)]
    assert dataset.class_names == ["car", "person"] and dataset.cat_id_to_label == {2: 1, 5: 2}
    image, target, ref_image, ref_target = dataset[1]
    for img, tgt in ((image, target), (ref_image, ref_target)):
        num = tgt["boxes"].shape[0]
        assert img.dtype == torch.float32 and img.shape == (3, HEIGHT, WIDTH)
        assert tgt["masks"].dtype == torch.uint8 and tgt["masks"].shape == (num, HEIGHT, WIDTH)
        assert tgt["labels"].dtype == torch.int64 and tgt["obj_ids"].dtype == torch.int64
        assert tgt["iscrowd"].dtype == torch.uint8 and tgt["boxes"].dtype == torch.float32
        assert tgt["video_id"] == 10 and num >= 1
        assert tgt["image_id"] == 10 * FRAME_ID_STRIDE + tgt["frame_index"]
    assert target["frame_index"] == 1 and target["obj_ids"].tolist() == [11, 12]
    assert target["labels"].tolist() == [2, 1]
    np.testing.assert_allclose(image.permute(1, 2, 0).numpy(), frame_pixels(10, 1) / 255.0, atol=1e-6)


def test_reference_is_drawn_from_the_other_annotated_frames(ytvis_files: YtvisFiles) -> None:
    seen = set()
    for seed in range(40):
        dataset = load(ytvis_files, seed=seed)
        ref = dataset.sample_reference(pair_index(dataset, 0, 0))
        assert ref in (1, 3)  # never itself, never the empty frame 2
        seen.add(ref)
    assert seen == {1, 3}
    dataset = load(ytvis_files)
    _, target, ref_image, ref_target = dataset[pair_index(dataset, 0, 3)]
    assert ref_target["frame_index"] in (0, 1) and target["frame_index"] == 3
    np.testing.assert_allclose(
        ref_image.permute(1, 2, 0).numpy(), frame_pixels(10, ref_target["frame_index"]) / 255.0, atol=1e-6
    )


def test_reference_sampling_is_reproducible_and_changes_with_epoch(ytvis_files: YtvisFiles) -> None:
    a, b = load(ytvis_files, seed=7), load(ytvis_files, seed=7)
    refs_a = [a.sample_reference(i) for i in range(len(a))]
    assert refs_a == [b.sample_reference(i) for i in range(len(b))]
    per_epoch = set()
    for epoch in range(20):
        a.set_epoch(epoch)
        per_epoch.add(a.sample_reference(0))
    assert per_epoch == {1, 3}


def test_one_frame_video_in_both_modes(ytvis_files: YtvisFiles) -> None:
    dataset = load(ytvis_files)
    index = pair_index(dataset, 1, 0)
    assert dataset.sample_reference(index) == 0
    image, target, ref_image, ref_target = dataset[index]
    torch.testing.assert_close(ref_image, image)
    assert ref_target["frame_index"] == 0 and ref_target["obj_ids"].tolist() == [13]
    np.testing.assert_array_equal(target["masks"][0].numpy(), ytvis_files.masks[(13, 0)])
    frames = load(ytvis_files, mode="frames")
    image, target = frames[frames.items.index((1, 0))]
    assert target["obj_ids"].tolist() == [13] and target["video_id"] == 20


def test_frames_mode_none_frames_and_reentering_identity(ytvis_files: YtvisFiles) -> None:
    dataset = load(ytvis_files, mode="frames")
    assert len(dataset) == 4 + 1 + 3
    expected = {0: [11], 1: [11, 12], 2: [], 3: [11]}  # object 11 is absent (None) in frame 2, then back
    for frame_index, obj_ids in expected.items():
        _, target = dataset[frame_index]
        assert target["frame_index"] == frame_index and target["obj_ids"].tolist() == obj_ids
        for k, obj_id in enumerate(obj_ids):
            np.testing.assert_array_equal(
                target["masks"][k].numpy(), ytvis_files.masks[(obj_id, frame_index)]
            )
    _, target = dataset[2]
    assert target["boxes"].shape == (0, 4) and target["masks"].shape == (0, HEIGHT, WIDTH)
    _, target = dataset[3]  # polygon frame
    assert target["boxes"].tolist() == [[8.0, 6.0, 18.0, 14.0]]
    _, target = dataset[len(dataset) - 1]  # video 30 has no objects
    assert target["video_id"] == 30 and target["labels"].shape == (0,)


def test_images_mode(ytvis_files: YtvisFiles) -> None:
    dataset = load(ytvis_files, mode="images")
    assert len(dataset) == 4
    _image, target = dataset[0]
    assert target["obj_ids"].tolist() == [11]


def test_iter_video_and_video_frames(ytvis_files: YtvisFiles) -> None:
    dataset = load(ytvis_files)
    frames = list(dataset.video_frames(10))
    assert [f for f, _, _ in frames] == [0, 1, 2, 3]
    for f, image, target in frames:
        assert target["frame_index"] == f
        np.testing.assert_allclose(image.permute(1, 2, 0).numpy(), frame_pixels(10, f) / 255.0, atol=1e-6)
    assert [f for f, _, _ in dataset.iter_video(2)] == [0, 1, 2]
    assert [v["id"] for v in dataset.videos] == [10, 20, 30]
    with pytest.raises(KeyError, match="video id 99"):
        dataset.video_frames(99)


def test_same_flip_for_frame_and_reference(ytvis_files: YtvisFiles) -> None:
    plain = load(ytvis_files)
    flipping = load(ytvis_files, transforms=RandomHorizontalFlip(0.5))
    index = pair_index(plain, 0, 0)
    image, _target, ref_image, ref_target = plain[index]
    outcomes = set()
    torch.manual_seed(0)
    for _ in range(12):
        image_f, _target_f, ref_image_f, ref_target_f = flipping[index]
        assert ref_target_f["frame_index"] == ref_target["frame_index"]  # same reference for the same item
        flipped = torch.equal(image_f, image.flip(-1))
        assert flipped or torch.equal(image_f, image)
        assert torch.equal(ref_image_f, ref_image.flip(-1) if flipped else ref_image)
        assert torch.equal(
            ref_target_f["masks"], ref_target["masks"].flip(-1) if flipped else ref_target["masks"]
        )
        outcomes.add(flipped)
    assert outcomes == {True, False}


def test_iter_video_flips_every_frame_alike(ytvis_files: YtvisFiles) -> None:
    dataset = load(ytvis_files, transforms=RandomHorizontalFlip(0.5))
    outcomes = set()
    torch.manual_seed(1)
    for _ in range(8):
        flips = {
            torch.equal(image, torch.from_numpy(frame_pixels(10, f)).permute(2, 0, 1).flip(-1) / 255.0)
            for f, image, _ in dataset.iter_video(0)
        }
        assert len(flips) == 1
        outcomes |= flips
    assert outcomes == {True, False}


def test_dataloader_with_pairs(ytvis_files: YtvisFiles) -> None:
    loader = torch.utils.data.DataLoader(load(ytvis_files), batch_size=3, collate_fn=collate)
    images, _targets, _ref_images, ref_targets = next(iter(loader))
    assert len(images) == len(ref_targets) == 3


def test_test_set_without_annotations(ytvis_files: YtvisFiles) -> None:
    data = ytvis_files.copy()
    del data["annotations"]
    path = ytvis_files.write(data)
    assert len(YTVISDataset(path, ytvis_files.video_dir)) == 0
    frames = YTVISDataset(path, ytvis_files.video_dir, mode="frames")
    assert len(frames) == 8 and frames[0][1]["obj_ids"].shape == (0,)
    data["annotations"] = None
    assert len(YTVISDataset(ytvis_files.write(data), ytvis_files.video_dir, mode="frames")) == 8


# ---------------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------------


def test_missing_frame_file(ytvis_files: YtvisFiles) -> None:
    (ytvis_files.video_dir / "walk" / "00002.png").unlink()
    dataset = load(ytvis_files, mode="frames")
    dataset[1]
    with pytest.raises(FileNotFoundError, match=r"walk/00002\.png \(video id 10, frame 2\) does not exist"):
        dataset[2]
    with pytest.raises(
        FileNotFoundError, match=r"1 of 8 frame files .*walk/00002\.png \(video id 10, frame 2\)"
    ):
        dataset.check_files()


def test_inconsistent_lengths(ytvis_files: YtvisFiles) -> None:
    data = ytvis_files.copy()
    data["annotations"][1]["segmentations"].append(None)
    message = (
        r"annotation id 12 in .*variant\.json: 'segmentations' has 5 entries but video id 10 has 4 frames"
    )
    with pytest.raises(ValueError, match=message):
        YTVISDataset(ytvis_files.write(data), ytvis_files.video_dir)
    data = ytvis_files.copy()
    data["annotations"][0]["bboxes"] = data["annotations"][0]["bboxes"][:2]
    with pytest.raises(ValueError, match=r"annotation id 11 in .*'bboxes' has 2 entries"):
        YTVISDataset(ytvis_files.write(data), ytvis_files.video_dir)
    data = ytvis_files.copy()
    data["videos"][0]["length"] = 5
    with pytest.raises(ValueError, match=r"variant\.json: video id 10 has length 5 but 4 file_names"):
        YTVISDataset(ytvis_files.write(data), ytvis_files.video_dir)


def test_not_ytvis_json(ytvis_files: YtvisFiles) -> None:
    coco_like = {"images": [], "annotations": [], "categories": []}
    with pytest.raises(
        ValueError, match=r"coco\.json is not a YouTube-VIS file: missing key 'videos' \(it has 'images'"
    ):
        YTVISDataset(ytvis_files.write(coco_like, "coco.json"), ytvis_files.video_dir)
    with pytest.raises(ValueError, match=r"list\.json is not a YouTube-VIS file"):
        YTVISDataset(ytvis_files.write([1], "list.json"), ytvis_files.video_dir)
    (ytvis_files.root / "broken.json").write_text("{")
    with pytest.raises(ValueError, match=r"broken\.json is not valid JSON"):
        YTVISDataset(ytvis_files.root / "broken.json", ytvis_files.video_dir)
    with pytest.raises(ValueError, match="mode must be one of"):
        load(ytvis_files, mode="clips")


def test_unknown_video_or_category(ytvis_files: YtvisFiles) -> None:
    data = ytvis_files.copy()
    data["annotations"][2]["video_id"] = 99
    with pytest.raises(ValueError, match=r"annotation id 13 in .*refers to video id 99"):
        YTVISDataset(ytvis_files.write(data), ytvis_files.video_dir)
    data = ytvis_files.copy()
    data["annotations"][2]["category_id"] = 1
    with pytest.raises(ValueError, match=r"annotation id 13 in .*refers to category id 1"):
        YTVISDataset(ytvis_files.write(data), ytvis_files.video_dir)


def test_degenerate_frame_warns_and_skips_only_that_frame(ytvis_files: YtvisFiles) -> None:
    data = ytvis_files.copy()
    data["annotations"][0]["bboxes"][1] = [4.0, 3.0, 0.0, 8.0]
    path = ytvis_files.write(data)
    message = r"annotation id 11 \(video id 10, frame 1\) in .*variant\.json: degenerate bbox"
    with pytest.warns(AnnotationWarning, match=message):
        dataset = YTVISDataset(path, ytvis_files.video_dir, mode="frames")
    assert dataset.skipped_annotations == {(11, 1): "degenerate bbox [4.0, 3.0, 0.0, 8.0] (w <= 0 or h <= 0)"}
    assert dataset[1][1]["obj_ids"].tolist() == [12]
    assert dataset[0][1]["obj_ids"].tolist() == [11]
    with pytest.raises(ValueError, match=r"annotation id 11 \(video id 10, frame 1\)"):
        YTVISDataset(path, ytvis_files.video_dir, skip_invalid=False)


def test_missing_bbox_comes_from_the_mask(ytvis_files: YtvisFiles) -> None:
    data = ytvis_files.copy()
    del data["annotations"][0]["bboxes"]
    dataset = YTVISDataset(ytvis_files.write(data), ytvis_files.video_dir, mode="frames")
    assert dataset[0][1]["boxes"].tolist() == [[2.0, 2.0, 12.0, 10.0]]
