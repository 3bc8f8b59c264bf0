"""The training stream: which images step i trains on, a pure function of (seed, stream position).

Determinism. Which image step i trains on, and whether it is flipped, depends only on
(config.seed, i): epoch e of the stream is `torch.randperm` under a generator seeded with seed + e,
and the flip of stream position p is drawn from a generator seeded with (seed, p). Nothing is drawn
from the global random generators for data, so a run resumed from a checkpoint sees exactly the
batches an uninterrupted run sees, and (with the optimizer, scheduler, scaler and RNG states restored,
run.py) reaches bit-identical weights on CPU. Data-loading worker processes (`num_workers > 0`) do not
change this: a worker only computes positions it is handed, from the same pure function. On CUDA, some
backward kernels (atomics in DeformConv2d, interpolate) are not bitwise deterministic; the data order
still is.

    SizedDataset    what training reads from a dataset
    sample_seed     the seed of stream position p's random draws
    batch_positions the stream positions of one rank's share of a step
    TrainSamples    the stream as a dataset indexed by position (order, flip, video pairs)
    data_loader     the DataLoader of a run's steps for one rank
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ..config import SipMaskConfig
from ..data.transforms import RandomHorizontalFlip, apply_same_transform, collate


class SizedDataset(Protocol):
    """What training reads from a dataset: its length and its items (CocoInstances, YTVISDataset)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Any: ...


def sample_seed(seed: int, position: int) -> int:
    """The seed of the random draws (flip) for stream position `position` of a run seeded `seed`."""
    return int(np.random.SeedSequence([seed, position]).generate_state(1)[0])


def batch_positions(iteration: int, batch_size: int, rank: int = 0, world_size: int = 1) -> list[int]:
    """Stream positions of rank `rank`'s share of step `iteration` (0-based).

    Step i consumes the global positions [i * W * b, (i + 1) * W * b) of the stream (W processes,
    b images each); rank r takes the r-th consecutive slice of b of them.
    """
    start = (iteration * world_size + rank) * batch_size
    return list(range(start, start + batch_size))


class TrainSamples(Dataset):
    """The infinite training stream, as a dataset indexed by stream position p = 0, 1, 2, ...

    Position p is item perm_e[p mod n] of the base dataset (n items, e = p // n the epoch, perm_e =
    torch.randperm(n) under a generator seeded with seed + e), horizontally flipped with probability
    hflip_prob by a draw from a generator seeded with sample_seed(seed, p). The base dataset's own
    transforms, if any, also run under that seed (they draw from torch's CPU generator), so they are
    reproducible too; pass a dataset without a flip of its own to avoid flipping twice.

    Video training pairs (items (image, target, ref_image, ref_target), §3.5) are flipped together:
    both frames or neither. A dataset with `set_epoch` (YTVISDataset) is told the epoch of each
    position before the item is read, so its reference frames change from epoch to epoch and still
    depend only on (seed, position).
    """

    def __init__(self, dataset: SizedDataset, seed: int, hflip_prob: float) -> None:
        if len(dataset) == 0:
            raise ValueError("the training dataset is empty")
        self.dataset = dataset
        self.seed = seed
        self.flip = RandomHorizontalFlip(hflip_prob) if hflip_prob > 0 else None
        self._epoch_order: tuple[int, Tensor] | None = None  # cache: (epoch, permutation)

    def index(self, position: int) -> int:
        """Index into the base dataset of stream position `position`."""
        epoch, offset = divmod(position, len(self.dataset))
        if self._epoch_order is None or self._epoch_order[0] != epoch:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            self._epoch_order = (epoch, torch.randperm(len(self.dataset), generator=generator))
        return int(self._epoch_order[1][offset])

    def __getitem__(self, position: int) -> tuple[Any, ...]:
        with torch.random.fork_rng(devices=[]):  # the global CPU generator is left as it was
            # The CPU generator only: torch.manual_seed would also (lazily) reseed every GPU's
            # generator, which fork_rng(devices=[]) does not restore afterwards.
            torch.default_generator.manual_seed(sample_seed(self.seed, position))
            if hasattr(self.dataset, "set_epoch"):
                self.dataset.set_epoch(position // len(self.dataset))
            item = self.dataset[self.index(position)]
            if len(item) == 4:  # a video pair: the same flip for both frames
                image, target, ref_image, ref_target = item
                if self.flip is not None:
                    (image, target), (ref_image, ref_target) = apply_same_transform(
                        self.flip, [(image, target), (ref_image, ref_target)]
                    )
                return image, target, ref_image, ref_target
            image, target = item
            if self.flip is not None:
                image, target = self.flip(image, target)
        return image, target


class _StepBatches:
    """Batch sampler for DataLoader: the positions of steps start .. stop-1 for one rank."""

    def __init__(self, start: int, stop: int, batch_size: int, rank: int, world_size: int) -> None:
        self.start, self.stop = start, stop
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size

    def __iter__(self) -> Iterator[list[int]]:
        for iteration in range(self.start, self.stop):
            yield batch_positions(iteration, self.batch_size, self.rank, self.world_size)

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def data_loader(
    dataset: SizedDataset,
    config: SipMaskConfig,
    start: int,
    stop: int,
    rank: int,
    world_size: int,
    num_workers: int,
    device: torch.device,
) -> DataLoader[Any]:
    """The batches of steps start .. stop-1 for this rank, from the stream TrainSamples defines."""
    return DataLoader(
        TrainSamples(dataset, config.seed, config.hflip_prob),
        batch_sampler=_StepBatches(start, stop, config.batch_size, rank, world_size),
        collate_fn=collate,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(config.seed),  # keeps the global generator untouched
    )
