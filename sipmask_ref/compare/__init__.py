"""The paper's Table 1 (speed vs accuracy) on this machine: SipMask, the YOLACT-like baseline and Mask R-CNN.

Paper §4.2 / Table 1 sets SipMask against two-stage Mask R-CNN and single-stage YOLACT-like methods
in accuracy (COCO mask AP) and speed (ms per image). Here the three models are trained on the
synthetic benchmark for the same CPU budget and timed on the same CPU threads:

    sipmask           preset('cpu_tiny'): full SipMask (2x2 spatial coefficients, P3-P5 basis,
                      cls+loc weighting, feature alignment)
    yolact_baseline   preset('cpu_tiny') with reproduce.BASELINE's switches: the YOLACT-like baseline
                      of Table 2 (one set of coefficients, P3 basis, no weighting, no alignment)
    mask_rcnn         torchvision's MaskRCNN on the same tiny body + FPN (build_mask_rcnn)

A package, read in this order (each module imports only those above it):

    models.py   ModelSpec / MODELS (the three models), build_mask_rcnn on our body + FPN
                (PyramidAdapter; every choice in its docstring), load_mask_rcnn, base_config,
                build_model / load_model, count_parameters; the recipe every model shares
    timing.py   the same budget: time_training_steps (the calibration, side by side), iterations_for_budget,
                budget_config (the schedule scaled to the iterations), time_inference (ms per image)
    report.py   to_markdown and write_report: OUT/speed_accuracy.{json,md}
    runs.py     calibrate (the models' step times, together), run_model (calibrate, train resumably
                and evaluate one model alone -> its record) and compare (all of it, side by side: the
                models calibrated together, trained in turns, timed image by image in turn), with how
                a rerun resumes

    python -m sipmask_ref compare [--budget-s 290] [--threads 2] [--only NAME ...] [--lr NAME=LR ...]

The public names of the modules are re-exported here (`from sipmask_ref.compare import compare`). A
test that replaces a setting patches it where it is looked up: `compare.runs` for the calibration and
timing counts compare() passes on and for CHECKPOINT_EVERY, `compare.models` and `compare.runs` for
`preset`.
"""

from .models import (
    ANCHOR_RATIOS,
    ANCHOR_SIZES,
    BASE_PRESET,
    BOX_REPRESENTATION,
    BOX_ROIS_PER_IMAGE,
    MASK_HEAD_LAYERS,
    MASK_RCNN_LR,
    MASK_RCNN_MASK_THRESHOLD,
    MODELS,
    ROI_LEVELS,
    ModelSpec,
    PyramidAdapter,
    base_config,
    build_mask_rcnn,
    build_model,
    count_parameters,
    load_mask_rcnn,
    load_model,
)
from .report import FORMAT, command_line, to_markdown, write_report
from .runs import (
    CHECKPOINT_EVERY,
    DEFAULT_BUDGET_S,
    DEFAULT_THREADS,
    EVAL_BATCH,
    RUN_FORMAT,
    calibrate,
    compare,
    load_finished_record,
    model_dir,
    record_path,
    run_model,
    run_settings,
)
from .timing import (
    CALIBRATION_ROUNDS,
    CALIBRATION_STEPS,
    CALIBRATION_WARMUP,
    INFERENCE_IMAGES,
    INFERENCE_WARMUP,
    budget_config,
    iterations_for_budget,
    time_inference,
    time_training_steps,
)

__all__ = [
    "ANCHOR_RATIOS",
    "ANCHOR_SIZES",
    "BASE_PRESET",
    "BOX_REPRESENTATION",
    "BOX_ROIS_PER_IMAGE",
    "CALIBRATION_ROUNDS",
    "CALIBRATION_STEPS",
    "CALIBRATION_WARMUP",
    "CHECKPOINT_EVERY",
    "DEFAULT_BUDGET_S",
    "DEFAULT_THREADS",
    "EVAL_BATCH",
    "FORMAT",
    "INFERENCE_IMAGES",
    "INFERENCE_WARMUP",
    "MASK_HEAD_LAYERS",
    "MASK_RCNN_LR",
    "MASK_RCNN_MASK_THRESHOLD",
    "MODELS",
    "ROI_LEVELS",
    "RUN_FORMAT",
    "ModelSpec",
    "PyramidAdapter",
    "base_config",
    "budget_config",
    "build_mask_rcnn",
    "build_model",
    "calibrate",
    "command_line",
    "compare",
    "count_parameters",
    "iterations_for_budget",
    "load_finished_record",
    "load_mask_rcnn",
    "load_model",
    "model_dir",
    "record_path",
    "run_model",
    "run_settings",
    "time_inference",
    "time_training_steps",
    "to_markdown",
    "write_report",
]
