"""Export the image model to ONNX, run it with ONNX Runtime, and check it against the eager model.

Not a paper section. `python -m sipmask_ref export --checkpoint PATH --out model.onnx` (cli.py).

What is exported: the NETWORK, `SipMask.run_network` on the CPU path: backbone + FPN, the shared
head with the §3.1 feature alignment (its deformable conv written with `grid_sample`,
`spatial_preservation.deform_conv2d_sampled`) and the §3.2 basis-mask branch. One input and
4 L + 1 outputs, all float32:

    images                    [1, 3, Hp, Wp]  resized, normalised, padded (SipMask.preprocess)
    cls_logits_<l>            [1, C, H_l, W_l]          l = 0..L-1 (P3..P7)
    box_regression_<l>        [1, 4, H_l, W_l]          (l, t, r, b) in stride units
    centerness_<l>            [1, 1, H_l, W_l]          logits
    coefficients_<l>          [1, Q, M, H_l, W_l]
    basis_masks               [1, M, Hp/2, Wp/2]

What is not exported, and why: the pre- and post-processing around the network.
- Pre-processing (resize, normalise, pad) has one output size per input size; it is cheap and
  stays in torch, `SipMask.preprocess`.
- Post-processing (`inference.detect`: per-level top-n, Fast NMS / NMS, then `paste_masks`) is
  data-dependent: the number of candidates above the score threshold, of NMS survivors and the
  window of each pasted mask depend on the values, and `paste_masks` loops in Python over the
  detections. A traced graph would freeze one image's counts; ONNX's NonMaxSuppression is standard
  NMS, not the Fast NMS of the 544 models. It stays in torch, `SipMask.postprocess`.
`OnnxSipMask` is the runner: a `SipMask` whose `run_network` is the ONNX Runtime session, so that
`model(images)` takes and returns the same as the eager model, through the library's own
`preprocess` and `postprocess` (inherited, not copied).

What is fixed: the input shape, batch 1 at the preset's padded input size (cpu_tiny 1 x 3 x 128 x 128,
paper_r50_544 1 x 3 x 544 x 544). Only presets with `keep_ratio=False` have one input size, so only
they are exported (the paper's ~800-pixel presets keep the aspect ratio: every image shape gives
another padded size). `OnnxSipMask` runs a batch one image at a time. The config travels with the
file (metadata key CONFIG_KEY), so `OnnxSipMask(path)` needs nothing else.

The exporter: torch.onnx.export with dynamo=True (torch.export, needs onnxscript), torch's default
since 2.9 and its maintained path. The legacy TorchScript exporter (dynamo=False) gives the same
values here (eval mode) and exports ~6x faster (2 s against 12 s for cpu_tiny), but is deprecated
and warns that the trace may not generalise (the shape checks of deform_conv2d_sampled become
constants). The graph is ONNX opset 20 (the exporter's default).

The deformable conv: the exported copy always uses the `grid_sample` kernel (GridSample, opset 16,
and a MatMul), the CPU path of the eager model; it equals torchvision's kernel up to float rounding
(tests/test_head.py). torchvision's kernel (`deform_implementation='torchvision'`) exports too with
dynamo=True, as ONNX DeformConv (opset 19; ONNX Runtime gave the same values, 7e-6, and about the same
CPU time for cpu_tiny), but the legacy exporter fails on it ("unrecognized namespace
torchvision::deform_conv2d") and DeformConv is newer and implemented by fewer runtimes than GridSample.

Parity (`check_parity`, `compare_detections`): on the same images, the eager model and `OnnxSipMask`
must give the same number of detections, and each eager detection an ONNX one with the same label,
score within SCORE_TOLERANCE, box within BOX_TOLERANCE_PX pixels (each coordinate, original image)
and mask IoU >= MIN_MASK_IOU (masks binarised at config.mask_threshold). Detections are paired by
label, score and box rather than by rank, as two nearly equal scores may swap places. The network
outputs themselves differ by < 1e-5 (float32 rounding of other kernels; cpu_tiny and paper_r50_544).
A known limit of the mask check: a mask is discontinuous in its box. A pixel belongs to a box when
x1 <= x < x2 and to a sub-region by comparing it with the box's mid-line (spatial_mask_prediction.py),
so when a box edge or mid-line lies within ~1e-5 of a basis-map pixel, that 1e-5 difference moves a
whole row or column of pixels (out of the box, or to the other sub-region's coefficients) and the
mask IoU can fall below MIN_MASK_IOU with boxes and scores equal. It is rare (seen once while
writing the tests: one of 150 detections on random images, a box whose mid-line lay on a basis-map
row, IoU 0.947) and is reported as a problem, not hidden.

onnx / onnxruntime / onnxscript are optional (`pip install sipmask_ref[export]`); they are imported
inside the functions that need them, with that advice when missing.

    CONFIG_KEY, *_TOLERANCE*    the metadata key and the parity tolerances
    input_shape                 the fixed network input of a config, [1, 3, Hp, Wp]
    output_names                the names of the 4 L + 1 outputs
    ExportedNetwork             run_network with its outputs as one flat tuple (what is traced)
    export_onnx                 write the .onnx file (config in its metadata)
    OnnxSipMask                 the runner: SipMask with run_network on ONNX Runtime
    ParityReport                what check_parity found
    compare_detections          pair the detections of one image and measure the differences
    check_parity                both models on a list of images
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .checkpoints import config_from_dict
from .config import SipMaskConfig
from .geometry import mask_iou
from .head import HeadOutputs
from .model import SipMask
from .model_input import padded_size
from .spatial_preservation import FeatureAlignment

CONFIG_KEY = "sipmask_ref.config"  # ONNX metadata: json.dumps(dataclasses.asdict(config))
INPUT_NAME = "images"
# Parity tolerances (see the module docstring); the measured differences are far smaller
# (docs/USAGE.md, Export to ONNX).
BOX_TOLERANCE_PX = 0.01
SCORE_TOLERANCE = 1e-4
MIN_MASK_IOU = 0.99
INSTALL_HINT = "pip install 'sipmask_ref[export]' (onnx, onnxruntime, onnxscript)"


def input_shape(config: SipMaskConfig) -> tuple[int, int, int, int]:
    """The fixed network input [1, 3, Hp, Wp] of a config: input_size (W, H) padded to size_divisible.

    Raises ValueError for keep_ratio=True configs, whose padded size depends on each image's shape.
    """
    if config.keep_ratio:
        raise ValueError(
            "ONNX export needs one input size: only configs with keep_ratio=False (cpu_tiny, "
            f"paper_*_544, ...) are exported; this one keeps the aspect ratio within {config.input_size}"
        )
    width, height = config.input_size
    padded_height, padded_width = padded_size(height, width, config.size_divisible)
    return 1, 3, padded_height, padded_width


def output_names(num_levels: int) -> list[str]:
    """cls_logits_0.., box_regression_0.., centerness_0.., coefficients_0.., basis_masks."""
    kinds = ("cls_logits", "box_regression", "centerness", "coefficients")
    return [f"{kind}_{level}" for kind in kinds for level in range(num_levels)] + ["basis_masks"]


class ExportedNetwork(nn.Module):
    """`SipMask.run_network` with its outputs as one flat tuple, in the order of `output_names`."""

    def __init__(self, model: SipMask) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        _, outputs, basis_masks = self.model.run_network(images)  # images [1, 3, Hp, Wp]
        return (
            *outputs.cls_logits,
            *outputs.box_regression,
            *outputs.centerness,
            *outputs.coefficients,
            basis_masks,
        )


def export_onnx(model: SipMask, path: str | os.PathLike[str]) -> Path:
    """Write `model`'s network (see the module docstring) to `path`, a single .onnx file.

    The model is copied to the CPU in eval mode with the `grid_sample` deformable conv; the copy is
    traced at `input_shape(model.config)` by torch.onnx.export (dynamo=True). The config is stored in
    the file's metadata under CONFIG_KEY. Returns the path.
    """
    config = model.config
    shape = input_shape(config)
    try:
        import onnxscript  # noqa: F401 - torch.onnx.export(dynamo=True) needs it; fail early and clearly
    except ImportError:
        raise ImportError(f"ONNX export needs onnxscript: {INSTALL_HINT}") from None
    network = copy.deepcopy(model).cpu().eval()
    for module in network.modules():
        if isinstance(module, FeatureAlignment):
            module.implementation = "sampled"  # GridSample rather than DeformConv (see the docstring)
    example = torch.zeros(shape)
    with torch.no_grad():
        program = torch.onnx.export(
            ExportedNetwork(network).eval(),
            (example,),
            input_names=[INPUT_NAME],
            output_names=output_names(len(config.strides)),
            dynamo=True,
            verbose=False,
        )
    assert program is not None  # dynamo=True without a file name returns the ONNXProgram
    program.model.metadata_props[CONFIG_KEY] = json.dumps(dataclasses.asdict(config))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(path), external_data=False)  # one file: the weights inside (< 2 GB)
    return path


class OnnxSipMask(SipMask):
    """SipMask with the network run by ONNX Runtime: `model(images)` -> detections, as `SipMask`.

    It holds no weights (SipMask.__init__ is not run: the layers are in the .onnx file). Only
    `run_network` is replaced; `forward` (eval mode), `preprocess`, `postprocess` and
    `forward_intermediates` are SipMask's own, so the post-processing is the library's, not a copy.
    `forward_intermediates` reports no FPN features (the file does not output them).

    Args:
        path: an .onnx file written by `export_onnx` (its metadata holds the config).
        threads: ONNX Runtime's intra-op threads (default torch.get_num_threads(), as the eager model).
    """

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None) -> None:
        nn.Module.__init__(self)
        try:
            import onnxruntime
        except ImportError:
            raise ImportError(f"running an exported model needs onnxruntime: {INSTALL_HINT}") from None
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {self.path}")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(self.path), options, providers=["CPUExecutionProvider"]
        )
        metadata = self.session.get_modelmeta().custom_metadata_map
        if CONFIG_KEY not in metadata:
            raise ValueError(f"{self.path}: not written by sipmask_ref's export (no '{CONFIG_KEY}' metadata)")
        self.config = config_from_dict(json.loads(metadata[CONFIG_KEY]), source=str(self.path))
        self.num_levels = len(self.config.strides)
        self.eval()

    def run_network(self, images: Tensor) -> tuple[list[Tensor], HeadOutputs, Tensor]:
        """Padded batch [B, 3, Hp, Wp] -> ([] (no FPN features), head outputs, basis masks).

        One session run per image (the file's batch is 1); outputs as SipMask.run_network's, on CPU.
        reg_features are not exported (only the basis-mask branch reads them): an empty list.
        """
        expected = input_shape(self.config)[1:]
        if tuple(images.shape[1:]) != expected:
            raise ValueError(
                f"{self.path}: exported for input [B, {expected[0]}, {expected[1]}, {expected[2]}], "
                f"got {list(images.shape)}"
            )
        runs = [
            self.session.run(None, {INPUT_NAME: image[None].detach().cpu().float().numpy()})
            for image in images
        ]  # per image: 4 L + 1 numpy arrays, each with batch 1
        outputs = [torch.cat([torch.from_numpy(run[k]) for run in runs]) for k in range(len(runs[0]))]
        levels = self.num_levels
        head = HeadOutputs(
            cls_logits=outputs[0:levels],
            box_regression=outputs[levels : 2 * levels],
            centerness=outputs[2 * levels : 3 * levels],
            coefficients=outputs[3 * levels : 4 * levels],
            reg_features=[],
        )
        return [], head, outputs[-1]

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Any]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """Detections (see SipMask); an exported model does not train."""
        if self.training or targets is not None:
            raise ValueError("OnnxSipMask: an exported model runs inference only (eval mode, no targets)")
        return super().forward(images)


@dataclasses.dataclass
class ParityReport:
    """What `check_parity` found, over all images; `problems` is empty when they agree."""

    images: int = 0
    detections: int = 0
    max_box_diff: float = 0.0  # pixels of the original image
    max_score_diff: float = 0.0
    min_mask_iou: float = 1.0
    problems: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        verdict = "agree" if self.ok else f"DISAGREE ({len(self.problems)} problems)"
        return (
            f"eager and ONNX Runtime {verdict} on {self.images} images, {self.detections} detections: "
            f"max |box diff| {self.max_box_diff:.2g} px (tolerance {BOX_TOLERANCE_PX}), "
            f"max |score diff| {self.max_score_diff:.2g} (tolerance {SCORE_TOLERANCE}), "
            f"min mask IoU {self.min_mask_iou:.4f} (>= {MIN_MASK_IOU})"
        )


def compare_detections(
    expected: dict[str, Tensor],
    actual: dict[str, Tensor],
    mask_threshold: float,
    report: ParityReport,
    name: str = "image",
) -> None:
    """Pair the detections of one image (model contract dicts) and add the differences to `report`.

    Each expected detection takes the unpaired actual detection with its label and a score within
    SCORE_TOLERANCE whose box is nearest (largest coordinate difference); then box, score and mask
    IoU (binarised at mask_threshold) are checked against the tolerances.
    """
    count, found = len(expected["scores"]), len(actual["scores"])
    report.images += 1
    report.detections += count
    if count != found:
        report.problems.append(f"{name}: {count} eager detections, {found} ONNX detections")
        return
    free = torch.ones(found, dtype=torch.bool)
    for i in range(count):
        candidates = (
            free
            & (actual["labels"] == expected["labels"][i])
            & ((actual["scores"] - expected["scores"][i]).abs() <= SCORE_TOLERANCE)
        )  # [N]
        if not bool(candidates.any()):
            report.problems.append(
                f"{name}: eager detection {i} (label {int(expected['labels'][i])}, score "
                f"{float(expected['scores'][i]):.5f}) has no ONNX detection of that label and score"
            )
            continue
        box_diff = (actual["boxes"] - expected["boxes"][i]).abs().amax(dim=1)  # [N]
        j = int(torch.where(candidates, box_diff, math.inf).argmin())
        free[j] = False
        mask_a, mask_b = expected["masks"][i, 0] > mask_threshold, actual["masks"][j, 0] > mask_threshold
        iou = mask_iou(mask_a, mask_b) if bool((mask_a | mask_b).any()) else 1.0  # both empty: agree
        score_diff = float((actual["scores"][j] - expected["scores"][i]).abs())
        report.max_box_diff = max(report.max_box_diff, float(box_diff[j]))
        report.max_score_diff = max(report.max_score_diff, score_diff)
        report.min_mask_iou = min(report.min_mask_iou, iou)
        if float(box_diff[j]) > BOX_TOLERANCE_PX or iou < MIN_MASK_IOU:
            report.problems.append(
                f"{name}: detection {i}: box differs by {float(box_diff[j]):.3g} px, mask IoU {iou:.4f}"
            )


@torch.no_grad()
def check_parity(model: SipMask, exported: OnnxSipMask, images: list[Tensor]) -> ParityReport:
    """Run the eager `model` and `exported` on each image and compare their detections.

    `model` is moved to the CPU and put in eval mode (the exported network is the CPU path).
    """
    model.cpu().eval()
    report = ParityReport()
    for k, image in enumerate(images):
        expected, actual = model([image]), exported([image])
        assert isinstance(expected, list) and isinstance(actual, list)  # eval mode: one dict per image
        compare_detections(expected[0], actual[0], model.config.mask_threshold, report, f"image {k}")
    return report
