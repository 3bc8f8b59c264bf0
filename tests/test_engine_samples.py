"""Engine, samples.py: the training stream is a pure function of (seed, position); ranks and workers."""

from __future__ import annotations

import torch

from engine_toys import ToyDataset, assert_same_weights, run, toy_config
from sipmask_ref import engine


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


def test_worker_processes_do_not_change_the_run(tmp_path):
    c = toy_config(max_iters=4, lr_steps=(3,))
    a, _ = run(tmp_path / "a", c)
    b, _ = run(tmp_path / "b", c, num_workers=2)
    assert_same_weights(a, b)
