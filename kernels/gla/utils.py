"""Helpers shared by the ops of kernels/gla, kernels/simple_gla and kernels/gated_delta_rule: backend choice
and packed variable-length sequences (B = 1, ``cu_seqlens``) <-> a right-padded batch for the torch paths.

Right padding is harmless for a recurrence when the padded positions carry zero keys/writes and zero log
decay (they leave the state untouched), so the dense torch paths run packed input as a padded batch
of N sequences with N initial states, and the final state of each sequence is exact."""
from __future__ import annotations

import torch

from ..triton_device import triton_runs_on


def check_cu_seqlens(cu_seqlens: torch.Tensor, total: int, batch: int, op: str) -> list[int]:
    if not isinstance(cu_seqlens, torch.Tensor) or cu_seqlens.dim() != 1 or cu_seqlens.is_floating_point() \
            or cu_seqlens.numel() < 2:
        raise ValueError(f"{op}: cu_seqlens must be a 1-D integer tensor [N + 1] of cumulative sequence lengths")
    if batch != 1:
        raise ValueError(f"{op}: cu_seqlens requires batch size 1 (packed sequences), got batch {batch}")
    cu = cu_seqlens.tolist()
    if cu[0] != 0 or cu[-1] != total or any(b < a for a, b in zip(cu, cu[1:])):
        raise ValueError(f"{op}: cu_seqlens must start at 0, be non-decreasing and end at T = {total}, got {cu}")
    return cu


def packed_index(cu: list[int], device) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(sequence id, position in its sequence) of every packed token, and the longest length."""
    lens = torch.tensor([b - a for a, b in zip(cu, cu[1:])], device=device)
    seg = torch.repeat_interleave(torch.arange(len(lens), device=device), lens)
    starts = torch.tensor(cu[:-1], device=device)
    pos = torch.arange(cu[-1], device=device) - starts[seg]
    return seg, pos, int(lens.max()) if len(lens) else 0


def pad_packed(x: torch.Tensor, seg: torch.Tensor, pos: torch.Tensor, n: int, t_max: int) -> torch.Tensor:
    """[1, T, ...] packed -> [N, t_max, ...] right-padded with zeros (differentiable)."""
    out = x.new_zeros(n, t_max, *x.shape[2:])
    return out.index_put((seg, pos), x[0])


def unpad_packed(y: torch.Tensor, seg: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """[N, t_max, ...] -> [1, T, ...]."""
    return y[seg, pos].unsqueeze(0)


def resolve_backend(backend: str, x: torch.Tensor, op: str, choices: tuple[str, ...]) -> str:
    """"auto": "triton" (fla's Triton kernel) on CUDA, the plain torch path elsewhere. "triton" off CUDA needs
    Triton's interpreter (TRITON_INTERPRET=1 and tools/fla_interpret.py's patches, fp32; kernels/triton_device.py)."""
    if backend not in choices:
        raise ValueError(f"{op}: unknown backend {backend!r}; choose one of {', '.join(choices)}")
    if backend == "auto":
        return "triton" if x.is_cuda else "torch"
    if backend == "triton" and not triton_runs_on(x):
        raise RuntimeError(f"{op}: backend 'triton' runs fla's Triton kernels, which need CUDA tensors (or Triton's "
                           f"interpreter: TRITON_INTERPRET=1 with tools/fla_interpret.py); use backend 'torch' on "
                           f"{x.device.type}")
    return backend
