"""ONNX export (export.py): the exported network under ONNX Runtime against the eager model.

The model is cpu_tiny with a fixed seed and no training (training on this CPU takes minutes): its
prediction convs are re-initialised wider than at the start of training, so that scores, labels and
boxes spread out, the masks cover part of their boxes and the deformable conv's offsets are ~1 pixel
(at initialisation they are 0 and the layer is a plain conv). The tests that need onnxruntime and
onnxscript skip without them; the checks of shapes and of the detection comparison run always.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import tiny_synthetic
from sipmask_ref import cli, export
from sipmask_ref.checkpoints import CHECKPOINT_FORMAT, save_checkpoint
from sipmask_ref.config import preset
from sipmask_ref.data.coco import CocoInstances
from sipmask_ref.model import SipMask


def _spread_model() -> SipMask:
    """cpu_tiny, seed 0, with wider prediction convs (see the module docstring); eval mode."""
    torch.manual_seed(0)
    model = SipMask(dataclasses.replace(preset("cpu_tiny"), max_detections=20)).eval()
    head = model.head
    assert head.feature_alignment.conv_offset is not None  # cpu_tiny has feature alignment
    for conv, std in (
        (head.cls_logits, 0.05),
        (head.box_regression, 0.05),
        (head.spatial_coefficients.conv, 0.05),
        (head.feature_alignment.conv_offset, 0.3),  # offsets of ~1 pixel
    ):
        nn.init.normal_(conv.weight, std=std)
    nn.init.constant_(head.cls_logits.bias, -1.0)  # probabilities ~0.27 instead of 0.01: detections
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[SipMask, Path, Path, str]:
    """(eager model, data root, .onnx file, what `export` printed) after the export command."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    root = tiny_synthetic(tmp_path_factory.mktemp("data"), num_train=1, num_val=2)
    model = _spread_model()
    work = tmp_path_factory.mktemp("export")
    checkpoint = work / "checkpoint.pt"
    state = {
        "format": CHECKPOINT_FORMAT,
        "iteration": 0,
        "model": model.state_dict(),
        "config": dataclasses.asdict(model.config),
    }
    save_checkpoint(state, checkpoint)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = cli.main(
            [
                "export",
                "--checkpoint",
                str(checkpoint),
                "--out",
                str(work / "m.onnx"),
                "--data-root",
                str(root),
            ]
        )
    assert code == 0, printed.getvalue()
    return model, root, work / "m.onnx", printed.getvalue()


def test_export_command_writes_the_file_and_checks_it(exported):
    _, _, path, printed = exported
    assert path.is_file()
    assert f"wrote {path}" in printed and "fixed input 1x3x128x128" in printed
    assert "agree on 2 images" in printed


def test_onnx_runtime_gives_the_eager_detections(exported):
    model, root, path, _ = exported
    onnx_model = export.OnnxSipMask(path)
    assert onnx_model.config == model.config  # read back from the file's metadata
    val = CocoInstances(root / "synthetic/annotations/instances_val.json", root / "synthetic/images/val")
    # + one image of another size (the resize path)
    generator = torch.Generator().manual_seed(3)
    images = [val[k][0] for k in range(len(val))] + [torch.rand(3, 96, 150, generator=generator)]
    report = export.ParityReport()
    with torch.no_grad():
        for k, image in enumerate(images):
            expected, actual = model([image])[0], onnx_model([image])[0]
            assert len(actual["scores"]) == len(expected["scores"]) > 0
            assert sorted(actual["labels"].tolist()) == sorted(expected["labels"].tolist())
            assert (
                actual["masks"].shape
                == expected["masks"].shape
                == (len(expected["scores"]), 1, *image.shape[1:])
            )
            export.compare_detections(expected, actual, model.config.mask_threshold, report, f"image {k}")
    assert report.problems == []
    assert report.detections == 20 * len(images)
    assert report.max_box_diff <= export.BOX_TOLERANCE_PX
    assert report.max_score_diff <= export.SCORE_TOLERANCE
    assert report.min_mask_iou >= export.MIN_MASK_IOU


def test_onnx_runtime_gives_the_eager_network_outputs(exported):
    model, _, path, _ = exported
    onnx_model = export.OnnxSipMask(path)
    images = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(2))  # a batch of 2
    with torch.no_grad():
        _, expected, expected_basis = model.run_network(images)
    _, actual, actual_basis = onnx_model.run_network(images)
    for name in ("cls_logits", "box_regression", "centerness", "coefficients"):
        for a, e in zip(getattr(actual, name), getattr(expected, name), strict=True):
            torch.testing.assert_close(a, e, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(actual_basis, expected_basis, atol=1e-4, rtol=1e-4)


def test_exported_model_runs_inference_only_at_its_size(exported):
    _, _, path, _ = exported
    onnx_model = export.OnnxSipMask(path)
    with pytest.raises(ValueError, match=r"exported for input \[B, 3, 128, 128\]"):
        onnx_model.run_network(torch.zeros(1, 3, 64, 64))
    onnx_model.train()
    with pytest.raises(ValueError, match="inference only"):
        onnx_model([torch.rand(3, 64, 64)])


def test_input_shape_is_the_padded_input_size():
    assert export.input_shape(preset("cpu_tiny")) == (1, 3, 128, 128)
    assert export.input_shape(preset("paper_r50_544")) == (1, 3, 544, 544)
    assert export.input_shape(dataclasses.replace(preset("cpu_tiny"), input_size=(100, 70))) == (
        1,
        3,
        96,
        128,
    )
    with pytest.raises(ValueError, match="keep_ratio=False"):
        export.input_shape(preset("paper_r50_800"))  # ~800 pixels, aspect ratio kept: no single size


def _detections(scores: list[float], labels: list[int]) -> dict[str, torch.Tensor]:
    n = len(scores)
    boxes = torch.tensor([[4.0 * k, 2.0, 4.0 * k + 10, 12.0] for k in range(n)]).reshape(n, 4)
    masks = torch.zeros(n, 1, 16, 64)
    for k in range(n):
        masks[k, 0, 2:12, 4 * k : 4 * k + 10] = 0.9
    return {"boxes": boxes, "scores": torch.tensor(scores), "labels": torch.tensor(labels), "masks": masks}


def test_compare_detections_pairs_by_label_score_and_box():
    expected = _detections([0.5, 0.3, 0.3], [1, 2, 2])
    swapped = {k: v[[0, 2, 1]] for k, v in expected.items()}  # equal scores in the other order
    report = export.ParityReport()
    export.compare_detections(expected, swapped, 0.4, report)
    assert report.ok and report.detections == 3 and report.min_mask_iou == 1.0

    moved = {k: v.clone() for k, v in expected.items()}
    moved["boxes"][1, 0] += 0.5
    moved["masks"][2, 0, 2:12, 8:12] = 0.0  # 40 of the 100 mask pixels lost: IoU 0.6
    report = export.ParityReport()
    export.compare_detections(expected, moved, 0.4, report, "img")
    assert report.problems == [
        "img: detection 1: box differs by 0.5 px, mask IoU 1.0000",
        "img: detection 2: box differs by 0 px, mask IoU 0.6000",
    ]

    report = export.ParityReport()
    export.compare_detections(expected, {k: v[:2] for k, v in expected.items()}, 0.4, report, "img")
    assert report.problems == ["img: 3 eager detections, 2 ONNX detections"]
    relabelled = {k: v.clone() for k, v in expected.items()}
    relabelled["labels"][0] = 3
    report = export.ParityReport()
    export.compare_detections(expected, relabelled, 0.4, report, "img")
    assert not report.ok and "has no ONNX detection of that label and score" in report.problems[0]


def test_export_command_errors(tmp_path, capsys):
    assert cli.main(["export", "--checkpoint", str(tmp_path / "missing.pt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    config = dataclasses.replace(preset("cpu_tiny"), keep_ratio=True)
    for task, expected in (("vis", "is a video (vis) checkpoint"), ("image", "keep_ratio=False")):
        state = {
            "format": CHECKPOINT_FORMAT,
            "iteration": 0,
            "model": SipMask(config).state_dict(),
            "config": dataclasses.asdict(config) | {"task": task},
        }
        save_checkpoint(state, tmp_path / "checkpoint.pt")
        argv = ["export", "--checkpoint", str(tmp_path / "checkpoint.pt"), "--out", str(tmp_path / "m.onnx")]
        assert cli.main(argv) == 2
        assert expected in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()
