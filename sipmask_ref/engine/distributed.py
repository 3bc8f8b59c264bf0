"""Multi-GPU (torchrun): the only distributed code of the package.

Under `torchrun` (RANK / WORLD_SIZE in the environment) `train` joins the process group,
wraps the model in DistributedDataParallel and gives rank r the slice r of each global batch of
world_size x config.batch_size stream positions (samples.batch_positions); only rank 0 writes
checkpoints, logs and metrics (and shows progress bars), and evaluation during training runs on rank 0
alone (the others wait at the next collective). DDP runs without `find_unused_parameters`: every
trainable parameter of SipMask and SipMaskVIS gets a gradient at every step, positives or not
(tests/test_model.py and tests/test_video_model.py check it). At the end every rank holds rank 0's
final weights, BatchNorm statistics included (each rank's last forward pass had updated them on its
own images). config.batch_size is images per process (the authors' "images per GPU"); the learning
rate is not rescaled for the number of processes.

    join_process_group / leave_process_group   around a run
    wrap_for_processes / unwrap                 the model in DDP and back
    all_finite                                  the loss guard's vote of all ranks
    share_final_state                           rank 0's buffers to every rank at the end
"""

from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist
from torch import Tensor, nn


def join_process_group(device: torch.device) -> tuple[int, int, torch.device, bool]:
    """(rank, world_size, device, created): join torchrun's process group when RANK / WORLD_SIZE are set.

    CUDA: NCCL, one GPU per process (cuda:LOCAL_RANK). Other devices: gloo. `created` says whether
    this call initialised the group (and so `train` destroys it at the end).
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0, 1, device, False
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    created = not dist.is_initialized()
    if created:  # a long timeout: the other ranks wait while rank 0 evaluates (eval_every)
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo", timeout=datetime.timedelta(hours=2)
        )
    return dist.get_rank(), dist.get_world_size(), device, created


def all_finite(values: Tensor, world_size: int, device: torch.device) -> bool:
    """True when every value is finite on every process (so all ranks stop together)."""
    finite = torch.isfinite(values).all().to(device=device, dtype=torch.int32)  # NCCL needs CUDA
    if world_size > 1:
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    return bool(finite.item())


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def share_final_state(model: nn.Module, world_size: int) -> None:
    """Give every process rank 0's buffers (BatchNorm statistics), so that all ranks end with the model
    rank 0 saved. Parameters are equal already (DDP averages the gradients); buffers are broadcast
    from rank 0 at the start of each forward pass, then each rank's pass updates them on its own batch."""
    if world_size > 1:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def wrap_for_processes(model: nn.Module, device: torch.device, world_size: int) -> nn.Module:
    """The model in DistributedDataParallel under torchrun (world_size > 1), else the model itself."""
    if world_size == 1:
        return model
    # No find_unused_parameters (a traversal of the autograd graph at every step): every parameter
    # of SipMask / SipMaskVIS is in the loss graph at every step, e.g. a batch without positives
    # still adds 0 * (coefficients, basis masks, embeddings) (losses.py, tracking.py). A model with
    # a parameter outside the graph fails at its next step with DDP's "Expected to have finished
    # reduction" error (TORCH_DISTRIBUTED_DEBUG=DETAIL names the parameters).
    return nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )


def leave_process_group(created: bool, wait_for: int = 1) -> None:
    """Wait for all `wait_for` processes (when more than one), then destroy the process group if this
    run created it (see join_process_group)."""
    if wait_for > 1:
        dist.barrier()
    if created:
        dist.destroy_process_group()
