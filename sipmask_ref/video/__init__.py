"""§3.5 / §4.4 video instance segmentation glue: train on frame pairs, track, evaluate, draw, reproduce.

Not a new equation: this package runs SipMaskVIS (video_model.py) through whole videos and scores it.
Its modules, each importing only those above it in this list:

    tracks.py        make_tracker (TRACKERS), FrameDetections, detect_frames, track_frames,
                     video_results, the identity-switch counts' ground truth (crossing_objects,
                     gt_tracks, predicted_tracks, ground_truth_detections) and evaluate_vis: every
                     video of a YouTube-VIS set, one or several trackers on the same detections
    drawing.py       draw_video_strip, save_video_gif (paper Fig. 7: one colour per identity)
    training.py      the image stage (image_stage_config, train_image_stage), train_vis (frame pairs),
                     synthetic_video_paths, trained_vis_model (the notebooks' cached model)
    reproduction.py  reproduce: on the synthetic videos, seeds x trackers -> results/video/
    commands.py      the `--task vis` / `predict --video` / `reproduce-video` command-line handlers
                     (commands/image.py and cli.py call them) and main, the old entry point
    __main__.py      `python -m sipmask_ref.video reproduce ...`, forwarded to `reproduce-video`

    python -m sipmask_ref reproduce-video [--seeds 0 1 2] [--iters N] [--out results/video]
    (python -m sipmask_ref.video reproduce, the old command, still runs it)

The public names of the modules are re-exported here (`from sipmask_ref.video import evaluate_vis`).
A test that replaces a function patches it where it is looked up: `video.training.train_vis` for
trained_vis_model, `video.commands.reproduce` for the `reproduce-video` command.
"""

from .commands import (
    IMAGE_SUFFIXES,
    add_reproduce_arguments,
    cmd_evaluate_vis,
    cmd_predict_video,
    cmd_reproduce_video,
    cmd_train_vis,
    main,
    video_frame_paths,
)
from .drawing import draw_video_strip, save_video_gif
from .reproduction import REPORTED, REPRODUCE_COMMAND, markdown_table, reproduce, summarize
from .tracks import (
    SWITCHES,
    TRACKER_DESCRIPTIONS,
    TRACKERS,
    FrameDetections,
    crossing_objects,
    detect_frames,
    evaluate_vis,
    frames_as_coco_gt,
    ground_truth_detections,
    gt_tracks,
    make_tracker,
    predicted_tracks,
    track_frames,
    video_results,
)
from .training import (
    FAST_VIS_ITERS,
    IMAGE_STAGE_DIR,
    IMAGE_STAGE_PRESETS,
    SCHEDULE_FIELDS,
    image_stage_config,
    schedule_fields,
    synthetic_video_paths,
    train_image_stage,
    train_vis,
    trained_vis_model,
)

__all__ = [
    "FAST_VIS_ITERS",
    "IMAGE_STAGE_DIR",
    "IMAGE_STAGE_PRESETS",
    "IMAGE_SUFFIXES",
    "REPORTED",
    "REPRODUCE_COMMAND",
    "SCHEDULE_FIELDS",
    "SWITCHES",
    "TRACKERS",
    "TRACKER_DESCRIPTIONS",
    "FrameDetections",
    "add_reproduce_arguments",
    "cmd_evaluate_vis",
    "cmd_predict_video",
    "cmd_reproduce_video",
    "cmd_train_vis",
    "crossing_objects",
    "detect_frames",
    "draw_video_strip",
    "evaluate_vis",
    "frames_as_coco_gt",
    "ground_truth_detections",
    "gt_tracks",
    "image_stage_config",
    "main",
    "make_tracker",
    "markdown_table",
    "predicted_tracks",
    "reproduce",
    "save_video_gif",
    "schedule_fields",
    "summarize",
    "synthetic_video_paths",
    "track_frames",
    "train_image_stage",
    "train_vis",
    "trained_vis_model",
    "video_frame_paths",
    "video_results",
]
