"""lit_modules.distributed in two CPU processes (gloo): rank/world, sums over ranks, and the training loss whose
average over ranks (what DDP does to gradients) is the mean over every target, however unevenly they fall."""
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lit_modules.distributed import mean_over_targets, rank_and_world, sum_over_ranks


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, results) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        loss_sum = torch.tensor([3.0, 5.0][rank])  # rank 0 holds 1 target, rank 1 holds 3
        count = torch.tensor([1, 3][rank])
        results[rank] = (rank_and_world(), float(sum_over_ranks(count)), float(mean_over_targets(loss_sum, count)))
    finally:
        dist.destroy_process_group()


def test_one_process_answers():
    assert rank_and_world() == (0, 1)
    t = torch.tensor([2.0])
    assert sum_over_ranks(t) is t
    assert float(mean_over_targets(torch.tensor(6.0), torch.tensor(4))) == 1.5
    assert float(mean_over_targets(torch.tensor(0.0), torch.tensor(0))) == 0.0  # a batch without targets


def test_two_ranks_average_to_the_global_mean():
    results = mp.Manager().dict()
    mp.spawn(_worker, args=(_free_port(), results), nprocs=2, join=True)
    assert results[0][0] == (0, 2) and results[1][0] == (1, 2)
    assert results[0][1] == results[1][1] == 4
    assert (results[0][2] + results[1][2]) / 2 == (3.0 + 5.0) / 4  # DDP's gradient average = global mean
