"""What the task modules and the datamodules share about labels and data parallelism: the label of positions
without a loss, this process's rank and the world size, and sums and losses taken over all ranks.

Plain torch.distributed rather than the Trainer's strategy: the loaders and modules also run outside a Trainer
(tests, scripts), where these are the single-process answers."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist

IGNORE_INDEX = -100  # label of a position without a loss (torch's cross_entropy default ignore_index)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank_and_world() -> tuple[int, int]:
    """(rank of this process, number of processes); (0, 1) without torch.distributed."""
    return (dist.get_rank(), dist.get_world_size()) if _distributed() else (0, 1)


def is_launch_rank_zero() -> bool:
    """Whether this process is rank 0 as its launcher numbered it, before torch.distributed starts: torchrun sets
    RANK, srun SLURM_PROCID (with SLURM_NTASKS > 1), Lightning's own DDP launcher LOCAL_RANK and NODE_RANK."""
    env = os.environ
    if "RANK" in env:
        return int(env["RANK"]) == 0
    if int(env.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_PROCID" in env:
        return int(env["SLURM_PROCID"]) == 0
    return int(env.get("LOCAL_RANK", 0)) == 0 and int(env.get("NODE_RANK", env.get("GROUP_RANK", 0))) == 0


def sum_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """A copy of t summed over all ranks (t itself in one process)."""
    if not _distributed():
        return t
    t = t.clone()
    dist.all_reduce(t)
    return t


def mean_over_targets(loss_sum: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """The training loss: this rank's summed loss over its ``count`` targets, divided by the number of targets on
    all ranks and multiplied by the world size. DDP averages gradients over ranks, so the gradient is that of the
    mean over every target of the global batch, however unevenly the targets fall on the ranks."""
    world = rank_and_world()[1]
    return loss_sum * world / sum_over_ranks(count).clamp(min=1)


def sums_over_ranks(sums: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Each named sum over all ranks, in float64 on ``device``, for the names of every rank (a rank without a name
    adds zero to it: ranks that evaluated different slices of the data know different names). One all-reduce."""
    names = set(sums)
    if _distributed():
        gathered: list = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, sorted(names))
        names = set().union(*gathered)
    names = sorted(names)
    zero = torch.zeros((), dtype=torch.float64, device=device)
    vector = torch.stack([sums[n].to(device, torch.float64) if n in sums else zero for n in names] + [zero])
    vector = sum_over_ranks(vector)
    return {n: vector[i] for i, n in enumerate(names)}
