"""video/commands.py: the `--task vis` / `predict --video` / `reproduce-video` commands, end to end on tiny
data (through cli.py, which registers them; the image stage of `train --task vis` included).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from sipmask_ref import cli, engine, video
from sipmask_ref.config import preset
from sipmask_ref.data.synthetic import make_data
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


def test_reproduce_video_is_a_verb_of_the_main_command_and_the_old_one_forwards(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(
        video.commands, "reproduce", lambda *args, **kwargs: calls.append((args, kwargs)) or {}
    )
    argv = ["--seeds", "4", "5", "--iters", "3", "--out", "somewhere", "--quiet"]
    assert cli.main(["reproduce-video", *argv]) == 0
    assert video.main(["reproduce", *argv]) == 0
    assert "python -m sipmask_ref reproduce-video" in capsys.readouterr().err  # the old command says the new
    defaults = ("data", None, "outputs/video_reproduce", 40, "cpu")  # data root ... device
    expected = (("somewhere", [4, 5], 3, *defaults), {"progress": False})
    assert calls == [expected, expected]
    assert cli.main(["reproduce-video", "--iters", "-1"]) == 2
