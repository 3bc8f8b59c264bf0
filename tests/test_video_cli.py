"""Video glue (video.py) and the `--task vis` / `predict --video` commands, end to end on tiny data.

Bad input: a missing frame file, a None (absent) annotation frame, a one-frame video, an identity that
leaves and re-enters, videos without predictions.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from sipmask_ref import cli, engine, video
from sipmask_ref.config import preset
from sipmask_ref.data.synthetic import make_data
from sipmask_ref.data.ytvis import YTVISDataset
from sipmask_ref.tracking import IouTracker, TrackMatcher
from sipmask_ref.video import (
    TRACKERS,
    FrameDetections,
    crossing_objects,
    evaluate_vis,
    make_tracker,
    track_frames,
    video_results,
)
from sipmask_ref.video_model import SipMaskVIS

torch.set_num_threads(1)
CLASSES = ("disc", "square", "ring")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    make_data(
        root=root,
        image_size=64,
        num_train=4,
        num_val=2,
        num_train_videos=3,
        num_val_videos=2,
        num_frames=3,
        classes=CLASSES,
        progress=False,
        verbose=False,
    )
    return root


def untrained_image_run(data_root: Path, out: Path) -> Path:
    """`train --iters 0` of cpu_tiny into `out`: an image checkpoint to start a video model from."""
    argv = ["train", "--config", "cpu_tiny", "--data-root", str(data_root), "--out", str(out)]
    assert cli.main([*argv, "--iters", "0", "--quiet"]) == 0
    return out


def train(argv: list[str], **options) -> dict:
    """`python -m sipmask_ref train ARGV` with the image-stage options (image_stage, image_stage_iters) set
    on the parsed arguments, as their flags --no-image-stage / --image-stage-iters would."""
    args = cli.build_parser().parse_args(["train", *argv])
    for name, value in options.items():
        setattr(args, name, value)
    return args.func(args)


@pytest.fixture(scope="module")
def vis_run(data_root, tmp_path_factory) -> Path:
    """One iteration of cpu_tiny_vis on the synthetic video pairs (val: the synthetic val videos), after a
    one-iteration image stage (no --init-from)."""
    out = tmp_path_factory.mktemp("vis")
    train(
        [
            "--config",
            "cpu_tiny_vis",
            "--data-root",
            str(data_root),
            "--out",
            str(out),
            "--iters",
            "1",
            "--batch-size",
            "2",
            "--log-every",
            "1",
            "--quiet",
        ],
        image_stage_iters=1,
    )
    return out


def small_model(**changes) -> SipMaskVIS:
    config = dataclasses.replace(
        preset("cpu_tiny_vis"), input_size=(64, 64), num_classes=2, embed_dim=8, **changes
    )
    torch.manual_seed(0)
    return SipMaskVIS(config).eval()


# ---------------------------------------------------------------- command line


def test_train_task_vis_writes_a_video_checkpoint_and_metrics(vis_run):
    state = engine.read_checkpoint(vis_run / "checkpoint.pt")
    assert state["config"]["task"] == "vis" and state["iteration"] == 1
    assert state["dataset"]["class_names"] == list(CLASSES)
    metrics = json.loads((vis_run / "metrics.json").read_text())
    assert set(metrics["video segm"]) >= {"AP", "AP50", "AP75", "AR1", "AR10"}
    log = [json.loads(line) for line in (vis_run / "train_log.jsonl").read_text().splitlines()]
    assert "loss_track" in log[0]


def test_evaluate_infers_the_task_and_writes_youtube_vis_results(vis_run, data_root, tmp_path, capsys):
    out = tmp_path / "eval"
    assert (
        cli.main(
            [
                "evaluate",
                "--checkpoint",
                str(vis_run / "checkpoint.pt"),
                "--data-root",
                str(data_root),
                "--out",
                str(out),
                "--tracker",
                "iou_greedy",
                "--quiet",
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tracker"] == "iou_greedy" and 0 <= metrics["video segm"]["AP"] <= 1
    results = json.loads((out / "results.json").read_text())
    val = json.loads((data_root / "synthetic_video/annotations/val.json").read_text())
    for result in results:
        assert result["video_id"] in {v["id"] for v in val["videos"]}
        assert result["category_id"] in {c["id"] for c in val["categories"]}
        assert len(result["segmentations"]) == 3
    assert "identity switches" in capsys.readouterr().out
    # a test-set JSON (no annotations, as YouTube-VIS valid): results are written, metrics are -1
    test_json = tmp_path / "test.json"
    test_json.write_text(json.dumps({k: v for k, v in val.items() if k != "annotations"}))
    assert (
        cli.main(
            [
                "evaluate",
                "--checkpoint",
                str(vis_run / "checkpoint.pt"),
                "--ann",
                str(test_json),
                "--images",
                str(data_root / "synthetic_video/videos/val"),
                "--out",
                str(tmp_path / "test"),
                "--quiet",
            ]
        )
        == 0
    )
    metrics = json.loads((tmp_path / "test" / "metrics.json").read_text())
    assert metrics["video segm"]["AP"] == -1 and metrics["id_switches"] is None
    assert (tmp_path / "test" / "results.json").is_file()


def test_predict_video_writes_strip_gif_and_identities(vis_run, data_root, tmp_path):
    frames = data_root / "synthetic_video/videos/val/vid_0000"
    out = tmp_path / "pred"
    assert (
        cli.main(
            [
                "predict",
                "--checkpoint",
                str(vis_run / "checkpoint.pt"),
                "--video",
                str(frames),
                "--out",
                str(out),
                "--score-threshold",
                "0",
            ]
        )
        == 0
    )
    strip, gif = Image.open(out / "vid_0000_strip.png"), Image.open(out / "vid_0000.gif")
    assert strip.size[0] > strip.size[1] and gif.n_frames == 3
    record = json.loads((out / "vid_0000.json").read_text())
    assert len(record["frames"]) == 3 and record["tracker"] == "sipmask"
    for identity in record["identities"]:  # each identity at most once per frame
        seen = [f["frame"] for f in identity["frames"]]
        assert len(seen) == len(set(seen))
    # the same frames given as files, in order
    files = sorted(str(p) for p in frames.iterdir())
    assert (
        cli.main(
            [
                "predict",
                "--checkpoint",
                str(vis_run / "checkpoint.pt"),
                "--video",
                *files,
                "--out",
                str(tmp_path / "files"),
            ]
        )
        == 0
    )
    assert (tmp_path / "files" / "video.gif").is_file()


def test_video_command_mistakes_exit_with_code_2(vis_run, data_root, tmp_path, capsys):
    checkpoint = str(vis_run / "checkpoint.pt")
    frames = str(data_root / "synthetic_video/videos/val/vid_0000")
    image_run = untrained_image_run(data_root, tmp_path / "image")
    cases = [
        ["predict", "--checkpoint", checkpoint, "--video", str(tmp_path / "nowhere"), "--out", str(tmp_path)],
        ["predict", "--checkpoint", checkpoint, "--out", str(tmp_path)],
        [
            "predict",
            "--checkpoint",
            checkpoint,
            "--video",
            frames,
            "--tracker",
            "magic",
            "--out",
            str(tmp_path),
        ],
        [
            "predict",
            "--checkpoint",
            str(image_run / "checkpoint.pt"),
            "--video",
            frames,
            "--out",
            str(tmp_path),
        ],
        [
            "evaluate",
            "--checkpoint",
            str(image_run / "checkpoint.pt"),
            "--task",
            "vis",
            "--data-root",
            str(data_root),
            "--out",
            str(tmp_path),
        ],
        [
            "train",
            "--config",
            "cpu_tiny_vis",
            "--out",
            str(tmp_path),
            "--data-root",
            str(data_root),
            "--init-from",
            str(tmp_path / "missing.pt"),
        ],
        ["train", "--config", "cpu_tiny", "--out", str(tmp_path), "--init-from", checkpoint],
    ]
    for argv in cases:
        capsys.readouterr()
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "error" in err, err


def test_train_vis_from_an_image_checkpoint(data_root, tmp_path, capsys):
    image_run = untrained_image_run(data_root, tmp_path / "image")
    out = tmp_path / "vis"
    capsys.readouterr()
    assert (
        cli.main(
            [
                "train",
                "--task",
                "vis",
                "--config",
                "cpu_tiny",
                "--data-root",
                str(data_root),
                "--out",
                str(out),
                "--iters",
                "0",
                "--init-from",
                str(image_run / "checkpoint.pt"),
                "--quiet",
            ]
        )
        == 0
    )
    assert "tensors copied" in capsys.readouterr().out
    vis_model, _ = engine.load_checkpoint(out / "checkpoint.pt")
    image_model, _ = engine.load_checkpoint(image_run / "checkpoint.pt")
    assert isinstance(vis_model, SipMaskVIS)
    torch.testing.assert_close(vis_model.head.cls_logits.weight, image_model.head.cls_logits.weight)


def _video_train_args(data_root: Path, out: Path) -> list[str]:
    """train cpu_tiny_vis on the synthetic training videos alone (no val set), 0 fine-tuning steps."""
    videos = data_root / "synthetic_video"
    return [
        "--config",
        "cpu_tiny_vis",
        "--train-ann",
        str(videos / "annotations/train.json"),
        "--train-images",
        str(videos / "videos/train"),
        "--out",
        str(out),
        "--iters",
        "0",
        "--log-every",
        "1",
        "--quiet",
    ]


def test_train_vis_without_init_from_trains_the_image_model_first(data_root, tmp_path, capsys):
    out = tmp_path / "vis"
    summary = train(_video_train_args(data_root, out), image_stage_iters=2)
    printed = capsys.readouterr().out
    assert "no --init-from: training the image model on the 9 annotated frames" in printed
    stage = engine.read_checkpoint(out / "image_stage" / "checkpoint.pt")
    assert stage["config"]["task"] == "image" and stage["iteration"] == 2
    assert stage["config"]["batch_size"] == preset("cpu_tiny").batch_size  # cpu_tiny's schedule
    assert stage["dataset"]["class_names"] == list(CLASSES)
    vis = engine.read_checkpoint(out / "checkpoint.pt")
    assert vis["config"]["task"] == "vis" and vis["iteration"] == 0
    # the fine-tuning started from the stage (--iters 0: its weights are the stage's, tracking branch aside)
    assert "tensors copied" in printed and len(summary["init"]["loaded"]) > 50
    assert all(name.startswith("tracking.") for name in summary["init"]["not_in_source"])
    weights = stage["ema"] if stage.get("ema") is not None else stage["model"]
    for name in summary["init"]["loaded"]:
        assert torch.equal(vis["model"][name], weights[name]), name

    # run again: the finished stage is reused as it is
    written = (out / "image_stage" / "checkpoint.pt").stat().st_mtime_ns
    with pytest.warns(UserWarning, match="will be overwritten"):  # the fine-tuning is a fresh run again
        again = train(_video_train_args(data_root, out), image_stage_iters=2)
    assert "is finished (iteration 2 of 2, same config); skipping it" in capsys.readouterr().out
    assert (out / "image_stage" / "checkpoint.pt").stat().st_mtime_ns == written
    assert again["init"]["loaded"] == summary["init"]["loaded"]


def test_resume_continues_an_interrupted_image_stage_then_fine_tunes(data_root, tmp_path, capsys):
    out = tmp_path / "vis"
    train(_video_train_args(data_root, out), image_stage_iters=1)
    (out / "checkpoint.pt").unlink()  # as if stopped in the image stage, before the fine-tuning
    train([*_video_train_args(data_root, out), "--resume"], image_stage_iters=2)
    printed = capsys.readouterr().out
    assert "continuing" in printed and "from iteration 1 to 2" in printed and "tensors copied" in printed
    assert engine.read_checkpoint(out / "image_stage" / "checkpoint.pt")["iteration"] == 2
    assert engine.read_checkpoint(out / "checkpoint.pt")["config"]["task"] == "vis"
    # stopped in the fine-tuning: it resumes from its own checkpoint, the stage is not run
    written = (out / "image_stage" / "checkpoint.pt").stat().st_mtime_ns
    summary = train([*_video_train_args(data_root, out), "--resume"], image_stage_iters=3)
    assert "the image stage is not run" in capsys.readouterr().out and summary["init"] is None
    assert (out / "image_stage" / "checkpoint.pt").stat().st_mtime_ns == written


def test_no_image_stage_fine_tunes_from_random_weights(data_root, tmp_path, capsys):
    out = tmp_path / "vis"
    summary = train(_video_train_args(data_root, out), image_stage=False)
    printed = capsys.readouterr().out
    assert summary["init"] is None and "tensors copied" not in printed and "no --init-from" not in printed
    assert not (out / "image_stage").exists()
    assert engine.read_checkpoint(out / "checkpoint.pt")["config"]["task"] == "vis"
    with pytest.raises(cli.UsageError, match="--image-stage-iters must be >= 0"):
        train(_video_train_args(data_root, tmp_path / "bad"), image_stage_iters=-1)


# ---------------------------------------------------------------- tracking glue and bad input


def _detections(embeds, boxes, labels=None, scores=None) -> FrameDetections:
    n = len(boxes)
    masks = torch.zeros(n, 32, 48, dtype=torch.bool)
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        masks[k, y1:y2, x1:x2] = True
    return FrameDetections(
        torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        torch.tensor(labels or [1] * n),
        torch.tensor(scores or [0.9] * n),
        torch.tensor(embeds, dtype=torch.float32).reshape(n, -1),
        masks,
    )


def test_identity_that_leaves_and_reenters_keeps_its_id_with_the_matcher_only():
    a, b = [8.0, 0.0], [0.0, 8.0]
    video = [
        _detections([a, b], [[2, 2, 12, 12], [30, 2, 40, 12]]),
        _detections([b], [[30, 4, 40, 14]]),  # A has left
        None,  # a missing frame: skipped, memory unchanged
        _detections([b, a], [[30, 6, 40, 16], [20, 18, 30, 28]]),  # A is back, elsewhere
    ]
    ids = track_frames(video, TrackMatcher())
    assert [None if i is None else i.tolist() for i in ids] == [[0, 1], [1], None, [1, 0]]
    baseline = track_frames(video, IouTracker())
    assert baseline[3].tolist() == [1, 2]  # the IoU baseline forgets A and opens a new identity
    results = video_results(7, video, ids, {1: 10})
    assert [r["segmentations"][1] is None for r in results] == [True, False]
    assert all(r["segmentations"][2] is None for r in results)
    assert [r["video_id"] for r in results] == [7, 7]


def test_make_tracker_names_and_switches():
    config = preset("cpu_tiny_vis")
    assert isinstance(make_tracker("iou_greedy", config), IouTracker)
    for name in TRACKERS[:-1]:
        assert isinstance(make_tracker(name, config), TrackMatcher)
    assert (
        make_tracker("no_iou", config).iou_weight == 0
        and not make_tracker("no_embedding", config).use_embedding
    )
    assert make_tracker("embedding_only", config).label_weight == 0
    with pytest.raises(ValueError, match="unknown tracker"):
        make_tracker("kalman", config)


def test_crossing_objects_are_same_class_overlaps():
    targets = [
        {
            "boxes": torch.tensor([[0.0, 0, 10, 10], [5, 5, 15, 15], [8, 8, 20, 20]]),
            "labels": torch.tensor([1, 1, 2]),
            "obj_ids": torch.tensor([4, 5, 6]),
        },
        None,
    ]
    assert crossing_objects(targets) == {4, 5}


def test_evaluation_survives_missing_frames_absent_objects_and_one_frame_videos(ytvis_files):
    """Fixture: video 10 has an object absent (None) in frame 2, video 20 has one frame, video 30 no
    objects. Frame 1 of video 10 is deleted: a warning, that frame's entries are None."""
    (ytvis_files.video_dir / "walk" / "00001.png").unlink()
    dataset = YTVISDataset(ytvis_files.ann_file, ytvis_files.video_dir, mode="frames")
    model = small_model(score_threshold=0.0)
    with pytest.warns(UserWarning, match="00001.png"):
        found = evaluate_vis(model, dataset, trackers=("sipmask", "iou_greedy"), progress=False)
    for name in ("sipmask", "iou_greedy"):
        results = found[name]["results"]
        assert {r["video_id"] for r in results} == {10, 20, 30}
        walk = [r for r in results if r["video_id"] == 10]
        assert walk and all(r["segmentations"][1] is None for r in walk)
        assert all(len(r["segmentations"]) == 1 for r in results if r["video_id"] == 20)
        assert 0 <= found[name]["metrics"]["AP"] <= 1
    assert found["sipmask"]["num_gt_objects"] == 2  # object 12 is only in the missing frame


def test_no_predictions_gives_zeros_not_a_crash(ytvis_files):
    dataset = YTVISDataset(ytvis_files.ann_file, ytvis_files.video_dir, mode="frames")
    model = small_model(score_threshold=1.0)  # nothing passes
    found = evaluate_vis(model, dataset, trackers=TRACKERS, frame_ap=True, progress=False)
    for name in TRACKERS:
        assert found[name]["results"] == []
        assert (
            found[name]["frame_metrics"]["segm"]["AP"] == 0
            and found[name]["frame_metrics"]["bbox"]["AR100"] == 0
        )
        metrics = found[name]["metrics"]
        assert metrics["AP"] == 0 and metrics["AR10"] == 0
        assert found[name]["id_switches"] == 0
    # Association alone (the ground truth as detections): object 11 leaves at frame 2 and comes back at
    # frame 3; the IoU baseline remembers only the previous frame, so it gives it a new identity.
    assert found["iou_greedy"]["gt_box_id_switches"] == 1


def test_reproduce_video_is_a_verb_of_the_main_command_and_the_old_one_forwards(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(video, "reproduce", lambda *args, **kwargs: calls.append((args, kwargs)) or {})
    argv = ["--seeds", "4", "5", "--iters", "3", "--out", "somewhere", "--quiet"]
    assert cli.main(["reproduce-video", *argv]) == 0
    assert video.main(["reproduce", *argv]) == 0
    assert "python -m sipmask_ref reproduce-video" in capsys.readouterr().err  # the old command says the new
    defaults = ("data", None, "outputs/video_reproduce", 40, "cpu")  # data root ... device
    expected = (("somewhere", [4, 5], 3, *defaults), {"progress": False})
    assert calls == [expected, expected]
    assert cli.main(["reproduce-video", "--iters", "-1"]) == 2
