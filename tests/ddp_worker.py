"""One process of the 2-process training in tests/test_engine_distributed.py, started by torchrun (gloo, CPU).

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_worker.py ROOT

ROOT holds the synthetic benchmark (ROOT/data/synthetic). Each rank trains SipMask (cpu_tiny) for two
steps with evaluation after each into its own folder ROOT/out_rank<r>, so that anything rank 1
writes is seen; its progress bars and warnings go to ROOT/rank<r>.stderr, and the weights it ends
with to ROOT/final_rank<r>.pt.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from pathlib import Path

import torch

from sipmask_ref import engine
from sipmask_ref.config import preset
from sipmask_ref.data.coco import CocoInstances
from sipmask_ref.model import SipMask


def main(root: Path) -> None:
    rank = int(os.environ["RANK"])
    annotations, images = root / "data" / "synthetic" / "annotations", root / "data" / "synthetic" / "images"
    train_set = CocoInstances(annotations / "instances_train.json", images / "train")
    val_set = CocoInstances(annotations / "instances_val.json", images / "val")
    config = dataclasses.replace(preset("cpu_tiny"), batch_size=1)
    engine.seed_everything(config.seed)
    model = SipMask(config)
    with open(root / f"rank{rank}.stderr", "w") as err, contextlib.redirect_stderr(err):
        engine.train(
            model,
            config,
            train_set,
            root / f"out_rank{rank}",
            val_dataset=val_set,
            iters=2,
            log_every=1,
            checkpoint_every=1,
            eval_every=1,
            progress=True,
        )
    torch.save(model.state_dict(), root / f"final_rank{rank}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
