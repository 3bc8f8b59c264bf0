"""Engine: schedule, data order, determinism, resume, NaN guard, checkpoint contents, evaluate.

The training tests use a toy detector that follows the model contract (train mode -> dict of scalar
losses; eval mode -> list of dicts) so that they run in well under a second per run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from torch import nn

import sipmask_ref
from conftest import tiny_synthetic
from sipmask_ref import engine
from sipmask_ref.config import preset
from sipmask_ref.data.coco import CocoInstances

DDP_WORKER = Path(__file__).resolve().parent / "ddp_worker.py"


# ----------------------------------------------------------------------------------------------------
# toy model and data following the contracts
# ----------------------------------------------------------------------------------------------------
class ToyDetector(nn.Module):
    """Regresses the mean box and the instance count of an image from a conv feature.

    nan_at / interrupt_at: the training call (1-based, counted in this process) that returns a NaN
    loss_box / raises KeyboardInterrupt, to simulate a diverging or an interrupted run.
    """

    def __init__(self, nan_at: int | None = None, interrupt_at: int | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 5)
        self.nan_at, self.interrupt_at, self.calls = nan_at, interrupt_at, 0

    def features(self, images: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(
            [self.head(self.conv(image[None]).relu().mean((2, 3)))[0] for image in images]
        )  # [B, 5]

    def forward(self, images, targets=None):
        out = self.features(images)
        if not self.training:
            return [
                {
                    "boxes": torch.tensor([[0.0, 0.0, float(im.shape[-1]), float(im.shape[-2])]]),
                    "labels": torch.tensor([1]),
                    "scores": torch.tensor([0.9]),
                    "masks": torch.full((1, 1, *im.shape[-2:]), 0.8),
                }
                for im in images
            ]
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        mean_boxes = torch.stack(
            [t["boxes"].mean(0) / 32 if len(t["boxes"]) else torch.zeros(4) for t in targets]
        )  # [B, 4]
        counts = torch.tensor([float(len(t["labels"])) for t in targets])  # [B]
        loss_box = ((out[:, :4] - mean_boxes) ** 2).mean()
        if self.calls == self.nan_at:
            loss_box = loss_box * float("nan")
        return {"loss_cls": ((out[:, 4] - counts) ** 2).mean(), "loss_box": loss_box}


class ToyDataset(torch.utils.data.Dataset):
    """n images of varying size with 0-2 rectangles each (deterministic per index)."""

    class_names: ClassVar[list[str]] = ["a", "b"]
    label_to_cat_id: ClassVar[dict[int, int]] = {1: 7, 2: 9}

    def __init__(self, n: int = 10) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, idx: int):
        g = torch.Generator().manual_seed(idx)
        h, w = 24 + 4 * (idx % 3), 32
        image = torch.rand(3, h, w, generator=g)
        count = idx % 3
        boxes = torch.tensor([[2.0 + 3 * k, 2.0, 12.0 + 5 * k, 10.0 + k] for k in range(count)]).reshape(
            -1, 4
        )
        masks = torch.zeros(count, h, w, dtype=torch.uint8)
        for k, (x1, y1, x2, y2) in enumerate(boxes.int().tolist()):
            masks[k, y1:y2, x1:x2] = 1
        target = {
            "boxes": boxes,
            "labels": torch.tensor([1 + k % 2 for k in range(count)], dtype=torch.int64),
            "masks": masks,
            "image_id": 100 + idx,
            "iscrowd": torch.zeros(count, dtype=torch.uint8),
        }
        return image, target


def toy_config(**changes):
    base = dataclasses.replace(
        preset("cpu_tiny"),
        lr=0.01,
        warmup_iters=3,
        warmup_factor=0.1,
        lr_steps=(5,),
        max_iters=8,
        batch_size=3,
        seed=3,
    )
    return dataclasses.replace(base, **changes)


def fresh_model(config, **kwargs) -> ToyDetector:
    engine.seed_everything(config.seed)
    return ToyDetector(**kwargs)


def run(tmp: Path, config, *, model=None, **kwargs):
    model = model or fresh_model(config)
    summary = engine.train(model, config, ToyDataset(), tmp, progress=False, **kwargs)
    return model, summary


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


# ----------------------------------------------------------------------------------------------------
# schedule and optimizer
# ----------------------------------------------------------------------------------------------------
def test_lr_factor_by_hand():
    c = toy_config(
        warmup_method="linear", warmup_iters=10, warmup_factor=0.1, lr_steps=(20, 30), max_iters=40
    )
    expected = {
        0: 0.1,
        5: 0.1 + 0.9 * 0.5,
        9: 0.1 + 0.9 * 0.9,
        10: 1.0,
        19: 1.0,
        20: 0.1,
        29: 0.1,
        30: 0.01,
        39: 0.01,
    }
    for it, value in expected.items():
        assert engine.lr_factor(it, c) == pytest.approx(value), it
    c = dataclasses.replace(c, warmup_method="constant", warmup_factor=1 / 3)
    assert [engine.lr_factor(it, c) for it in (0, 9, 10)] == pytest.approx([1 / 3, 1 / 3, 1.0])


def test_train_uses_the_schedule(tmp_path):
    c = toy_config(warmup_iters=3, warmup_factor=0.1, lr_steps=(5,), max_iters=7, lr=0.02)
    _, summary = run(tmp_path, c, log_every=1)
    lrs = [r["lr"] for r in summary["log"]]
    # steps 1..7 use factors at 0..6 completed steps: warm-up 0.1, 0.4, 0.7, then 1, 1, then x0.1
    assert lrs == pytest.approx([0.002, 0.008, 0.014, 0.02, 0.02, 0.002, 0.002])
    logged = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in logged] == list(range(1, 8))


def test_bias_groups_follow_the_800_recipe():
    c = dataclasses.replace(preset("paper_r50_800"), lr=0.01)
    opt = engine.build_optimizer(ToyDetector(), c)
    weights, biases = opt.param_groups
    assert (weights["lr"], weights["weight_decay"]) == (0.01, 1e-4)
    assert (biases["lr"], biases["weight_decay"]) == (0.02, 0.0)
    assert len(biases["params"]) == 2 and all(p.dim() == 1 for p in biases["params"])


# ----------------------------------------------------------------------------------------------------
# data order
# ----------------------------------------------------------------------------------------------------
def test_stream_is_a_pure_function_of_seed_and_position():
    samples = engine.TrainSamples(ToyDataset(7), seed=5, hflip_prob=0.5)
    order = [samples.index(p) for p in range(21)]
    for epoch in range(3):
        assert sorted(order[7 * epoch : 7 * epoch + 7]) == list(range(7))  # each epoch is a permutation
    assert order[:7] != order[7:14]  # a new permutation each epoch
    again = engine.TrainSamples(ToyDataset(7), seed=5, hflip_prob=0.5)
    torch.manual_seed(123)  # the global generator does not matter
    for p in (20, 3, 11):  # nor does the order of access
        a, b = samples[p], again[p]
        assert torch.equal(a[0], b[0]) and torch.equal(a[1]["boxes"], b[1]["boxes"])
    flipped = [not torch.equal(samples[p][0], ToyDataset(7)[samples.index(p)][0]) for p in range(21)]
    assert 0 < sum(flipped) < 21  # some flipped, some not


def test_ranks_split_each_global_batch():
    per_rank = [engine.batch_positions(4, 3, rank, 2) for rank in range(2)]
    assert per_rank == [[24, 25, 26], [27, 28, 29]]
    assert engine.batch_positions(4, 6) == per_rank[0] + per_rank[1]


# ----------------------------------------------------------------------------------------------------
# determinism, resume
# ----------------------------------------------------------------------------------------------------
def test_same_seed_same_weights(tmp_path):
    c = toy_config()
    a, _ = run(tmp_path / "a", c)
    b, _ = run(tmp_path / "b", c)
    assert_same_weights(a, b)
    other, _ = run(tmp_path / "c", dataclasses.replace(c, seed=4))
    assert not torch.equal(a.head.weight, other.head.weight)


def test_worker_processes_do_not_change_the_run(tmp_path):
    c = toy_config(max_iters=4, lr_steps=(3,))
    a, _ = run(tmp_path / "a", c)
    b, _ = run(tmp_path / "b", c, num_workers=2)
    assert_same_weights(a, b)


def test_resume_reaches_the_uninterrupted_weights(tmp_path):
    c = toy_config(max_iters=8)
    full, _ = run(tmp_path / "full", c, checkpoint_every=100)

    _part, summary = run(tmp_path / "part", c, iters=3)
    assert summary["iteration"] == 3
    assert engine.read_checkpoint(tmp_path / "part" / "checkpoint.pt")["iteration"] == 3
    resumed = ToyDetector()  # a new process: fresh weights, restored from the checkpoint
    _, summary = run(tmp_path / "part", c, model=resumed, resume=True)
    assert summary["iteration"] == 8
    assert_same_weights(full, resumed)
    saved_full = engine.read_checkpoint(tmp_path / "full" / "checkpoint.pt")
    saved_resumed = engine.read_checkpoint(tmp_path / "part" / "checkpoint.pt")
    torch.testing.assert_close(saved_full["optimizer"], saved_resumed["optimizer"], rtol=0, atol=0)
    logged = [
        json.loads(line)["iteration"]
        for line in (tmp_path / "part" / "train_log.jsonl").read_text().splitlines()
    ]
    assert logged == [3, 8]


def test_resume_after_a_crash_mid_run(tmp_path):
    c = toy_config(max_iters=8)
    full, _ = run(tmp_path / "full", c)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "crash", c, model=fresh_model(c, interrupt_at=6), checkpoint_every=2, log_every=1)
    assert engine.read_checkpoint(tmp_path / "crash" / "checkpoint.pt")["iteration"] == 4
    resumed = ToyDetector()
    run(tmp_path / "crash", c, model=resumed, resume=True, log_every=1)
    assert_same_weights(full, resumed)
    logged = [
        json.loads(line)["iteration"]
        for line in (tmp_path / "crash" / "train_log.jsonl").read_text().splitlines()
    ]
    assert logged == list(range(1, 9))  # step 5, logged before the crash, is not duplicated


def test_weight_average_by_hand():
    model = nn.Linear(2, 1)
    average = engine.WeightAverage(model, decay=0.9)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    average.update(model, step=1)  # d_1 = min(0.9, 2 / 11)
    d = 2 / 11
    torch.testing.assert_close(average.state["weight"], d * start + (1 - d) * (start + 1.0))
    for step in range(2, 200):
        average.update(model, step)
    torch.testing.assert_close(average.state["weight"], start + 1.0)  # a constant model is its own average


def test_weight_average_resumes_and_is_what_a_checkpoint_evaluates(tmp_path):
    c = toy_config(max_iters=8, ema_decay=0.9)
    full, _ = run(tmp_path / "full", c, checkpoint_every=100)
    run(tmp_path / "part", c, iters=3)
    resumed = ToyDetector()
    run(tmp_path / "part", c, model=resumed, resume=True)
    assert_same_weights(full, resumed)  # both end holding the average
    saved = engine.read_checkpoint(tmp_path / "full" / "checkpoint.pt")
    torch.testing.assert_close(
        saved["ema"], engine.read_checkpoint(tmp_path / "part" / "checkpoint.pt")["ema"], rtol=0, atol=0
    )
    assert engine.evaluation_weights(saved) is saved["ema"]
    torch.testing.assert_close(full.state_dict(), saved["ema"], rtol=0, atol=0)
    assert any(not torch.equal(saved["model"][k], saved["ema"][k]) for k in saved["model"])
    assert engine.evaluation_weights(dict(saved, ema=None)) is saved["model"]


def test_resume_without_checkpoint_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume from"):
        run(tmp_path, toy_config(), resume=True)


# ----------------------------------------------------------------------------------------------------
# NaN guard, checkpoints
# ----------------------------------------------------------------------------------------------------
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    c = toy_config(max_iters=8)
    with pytest.raises(engine.NonFiniteLossError, match=r"step 5 of 8.*loss_box = nan") as info:
        run(tmp_path, c, model=fresh_model(c, nan_at=5), checkpoint_every=2)
    assert "step 4" in str(info.value)  # the message names the checkpoint that is kept
    state = engine.read_checkpoint(tmp_path / "checkpoint.pt")
    assert state["iteration"] == 4
    model = ToyDetector()
    model.load_state_dict(state["model"])
    assert all(torch.isfinite(p).all() for p in model.parameters())
    reference, _ = run(tmp_path / "ref", c, iters=4)  # the checkpoint is the good step-4 state
    assert_same_weights(reference, model)


def test_checkpoint_contents_and_metrics(tmp_path):
    c = toy_config(max_iters=4, lr_steps=(3,))
    calls = []

    def eval_fn(model, dataset):
        calls.append(len(dataset))
        return {"bbox": {"AP": 0.25}}

    _, summary = run(tmp_path, c, val_dataset=ToyDataset(3), eval_fn=eval_fn, eval_every=2)
    assert calls == [3, 3]  # evaluated at step 2 and at the end
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics == {"bbox": {"AP": 0.25}} == summary["metrics"]
    logged = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [r["metrics"] for r in logged if "metrics" in r] == [{"bbox": {"AP": 0.25}}] * 2
    state = engine.read_checkpoint(tmp_path / "checkpoint.pt")
    assert {"model", "optimizer", "scheduler", "scaler", "iteration", "config", "rng"} <= set(state)
    assert set(state["rng"]) >= {"torch", "numpy", "python"}
    assert state["config"] == dataclasses.asdict(c)
    assert state["dataset"] == {"class_names": ["a", "b"], "label_to_cat_id": {1: 7, 2: 9}}
    assert engine.config_from_dict(state["config"]) == c


def test_distributed_world_size_one_matches_single_process(tmp_path, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = toy_config(max_iters=4, lr_steps=(3,))
    single, _ = run(tmp_path / "single", c)
    for key, value in {
        "RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }.items():
        monkeypatch.setenv(key, value)
    ddp, _ = run(tmp_path / "ddp", c)
    assert not torch.distributed.is_initialized()  # the group train() created is gone
    assert_same_weights(single, ddp)


def test_two_processes_under_torchrun_write_once_and_end_equal(tmp_path):
    """A real 2-process run (torchrun, gloo, CPU) of SipMask cpu_tiny, 2 steps, evaluated after each:
    rank 1 writes nothing (no folder, no bar), both ranks end with the weights rank 0 saved. DDP runs
    without find_unused_parameters, so an unused parameter would fail the second step."""
    tiny_synthetic(tmp_path / "data", num_train=4, num_val=1)
    # the worker imports the sipmask_ref this test imports (an installed copy or the source tree)
    package_parent = str(Path(sipmask_ref.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": package_parent + os.pathsep + os.environ.get("PYTHONPATH", "")}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run(
        [*command, str(DDP_WORKER), str(tmp_path)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr

    out = tmp_path / "out_rank0"
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "metrics.json", "train_log.jsonl"]
    assert not (tmp_path / "out_rank1").exists()  # rank 1 did not even create its folder
    logged = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    steps = [(r["iteration"], "metrics" in r) for r in logged]
    assert steps == [(1, False), (1, True), (2, False), (2, True)]
    assert "train: 100%" in (tmp_path / "rank0.stderr").read_text()
    assert "train" not in (tmp_path / "rank1.stderr").read_text()  # no bar on rank 1

    saved = engine.read_checkpoint(out / "checkpoint.pt")
    assert saved["iteration"] == 2
    finals = [torch.load(tmp_path / f"final_rank{r}.pt", weights_only=True) for r in (0, 1)]
    torch.testing.assert_close(finals[0], finals[1], rtol=0, atol=0)  # parameters and BatchNorm buffers
    torch.testing.assert_close(finals[0], engine.evaluation_weights(saved), rtol=0, atol=0)


# ----------------------------------------------------------------------------------------------------
# evaluate
# ----------------------------------------------------------------------------------------------------
def test_evaluate_uses_the_datasets_category_ids(coco_files):
    dataset = CocoInstances(coco_files.ann_file, coco_files.image_dir)
    model = ToyDetector()
    model.train()
    results, metrics = engine.evaluate(model, dataset, "cpu", batch_size=2, progress=False)
    assert model.training  # the mode is restored
    assert len(results) == len(dataset)
    assert {r["category_id"] for r in results} == {dataset.label_to_cat_id[1]}
    assert {r["image_id"] for r in results} == {1, 2, 3}
    assert set(results[0]["segmentation"]) == {"size", "counts"}
    assert set(metrics) == {"bbox", "segm"} and len(metrics["segm"]) == 12


def test_real_model_resume_is_bit_identical(tmp_path):
    """The same check with SipMask itself (cpu_tiny) on 4 synthetic images: no hidden randomness."""
    from sipmask_ref.data.synthetic import make_data
    from sipmask_ref.model import SipMask

    made = make_data(root=tmp_path, num_train=4, num_val=1, video=False, progress=False, verbose=False)
    made = made["synthetic"]
    dataset = CocoInstances(made["train_annotations"], made["train_images"])
    c = dataclasses.replace(preset("cpu_tiny"), batch_size=2)

    def fresh():
        engine.seed_everything(c.seed)
        return SipMask(c)

    full = fresh()
    engine.train(full, c, dataset, tmp_path / "full", iters=3, progress=False)
    engine.train(fresh(), c, dataset, tmp_path / "part", iters=1, progress=False)
    resumed = SipMask(c)
    engine.train(resumed, c, dataset, tmp_path / "part", iters=3, resume=True, progress=False)
    assert_same_weights(full, resumed)
