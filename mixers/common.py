"""Layers shared by several mixers: the causal short convolution with its decoding tail, and the
per-head gated RMSNorm of the output path."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from kernels import BACKENDS

from .base import Mixer, MixerConfig


@dataclass
class ChunkedMixerConfig(MixerConfig):
    """What every mixer on a chunked linear-recurrence op shares (gdn, gla, mamba2, linear_attention, prism)."""
    chunk_size: int = 64  # the torch path's chunk length (the result does not depend on it)
    init_std: float = 0.02  # normal init of every projection weight (as fla and the attention mixer)
    conv_bias: bool = False  # a bias in the short convolution (nn.Conv1d's default; the PRISM authors' models)
    backend: Literal[BACKENDS] = "auto"  # naive | torch | triton | auto (docs/mixers.md)


def segment_positions(cu_seqlens: torch.Tensor, total: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For packed sequences: (segment id, position inside its segment) of each of ``total`` tokens."""
    cu = cu_seqlens.long()
    seg = torch.bucketize(torch.arange(total, device=cu.device), cu[1:], right=True)
    return seg, torch.arange(total, device=cu.device) - cu[seg]


class ShortConv(nn.Module):
    """Causal depthwise convolution over time (kernel K) followed by an activation.

    The decoding state is the last K-1 inputs, shape [N, D, K-1]. Padding (mask False) inputs count as zero.
    """

    def __init__(self, dim: int, kernel_size: int = 4, activation: str | None = "silu", bias: bool = False):
        super().__init__()
        if kernel_size < 1:
            raise ValueError(f"conv kernel size must be >= 1, got {kernel_size}")
        self.dim, self.kernel_size, self.activation = dim, kernel_size, activation
        self.weight = nn.Parameter(torch.empty(dim, kernel_size))
        nn.init.kaiming_uniform_(self.weight.unsqueeze(1), a=5 ** 0.5)  # as nn.Conv1d initialises itself
        # a per-channel offset before the activation, U(+-1/sqrt(kernel_size)) as nn.Conv1d's bias (the PRISM
        # authors' convolutions have one)
        self.bias = nn.Parameter(torch.empty(dim).uniform_(-kernel_size ** -0.5, kernel_size ** -0.5)) if bias else None

    def forward(self, x: torch.Tensor, *, mask: torch.Tensor | None = None, cu_seqlens: torch.Tensor | None = None,
                state: torch.Tensor | None = None, use_cache: bool = False, fused: bool | None = None):
        """fused (default: for CUDA tensors) runs calls without a decoding state through fla's Triton
        causal_conv1d, as fla's own layers do: one kernel each way with the activation inside, and a contiguous
        [B, T, D] output. The torch path's output is a transposed view, which every Linear reading it would copy."""
        if mask is not None:
            x = x * mask.unsqueeze(-1).to(x.dtype)
        if (x.is_cuda if fused is None else fused) and state is None and not use_cache:
            return self._fla(x, cu_seqlens), None
        if cu_seqlens is None:
            y, tail = self._dense(x, state)
        else:
            y, tail = self._packed(x, cu_seqlens, state)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        if self.activation == "silu":
            y = F.silu(y)
        return y, (tail if use_cache else None)

    def _fla(self, x, cu_seqlens):
        from kernels.causal_conv import causal_conv1d
        if torch.is_autocast_enabled(x.device.type):  # autocast skips custom ops; conv1d would cast
            x = x.to(torch.get_autocast_dtype(x.device.type))
        return causal_conv1d(x, self.weight, self.activation, cu_seqlens, self.bias)

    def _dense(self, x, state):
        B, T, D = x.shape
        K = self.kernel_size
        if state is None:
            state = x.new_zeros(B, D, K - 1)
        xp = torch.cat([state.to(x.dtype), x.transpose(1, 2)], dim=-1)  # [B, D, K-1+T]
        y = F.conv1d(xp, self.weight.unsqueeze(1).to(x.dtype), groups=D).transpose(1, 2)
        return y, xp[..., xp.shape[-1] - (K - 1):]

    def _packed(self, x, cu_seqlens, state):
        if x.shape[0] != 1:
            raise ValueError(f"cu_seqlens requires batch size 1 (packed sequences), got batch {x.shape[0]}")
        K, T = self.kernel_size, x.shape[1]
        seg, pos = segment_positions(cu_seqlens, T)
        w = self.weight.to(x.dtype)
        y = torch.zeros_like(x)
        for shift in range(K):  # x[t - shift] contributes with tap K-1-shift
            shifted = F.pad(x, (0, 0, shift, 0))[:, :T]
            inside = (pos >= shift)[None, :, None]
            if state is not None and shift > 0:
                tail_idx = (K - 1 - (shift - pos)).clamp(0, K - 2)
                from_tail = state.to(x.dtype)[seg, :, tail_idx]  # [T, D]
                shifted = torch.where(inside, shifted, from_tail.unsqueeze(0))
            else:
                shifted = shifted * inside
            y = y + shifted * w[:, K - 1 - shift]
        # New tail per sequence: the last K-1 inputs, reaching into the old tail for short sequences.
        n = cu_seqlens.numel() - 1
        old = state.to(x.dtype) if state is not None else x.new_zeros(n, self.dim, K - 1)
        tails = []
        for i in range(n):
            start, end = int(cu_seqlens[i]), int(cu_seqlens[i + 1])
            tails.append(torch.cat([old[i], x[0, start:end].T], dim=-1)[:, -(K - 1):] if K > 1 else old[i])
        return y, torch.stack(tails)


class GatedHeadNorm(nn.Module):
    """Per-head RMSNorm of the mixer output times a SiLU gate (the output path of every linear mixer)."""

    def __init__(self, head_dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(head_dim))
        self.eps = eps

    def forward(self, o: torch.Tensor, gate: torch.Tensor | None) -> torch.Tensor:
        """o, gate: [B, T, H, d]; without a gate (None) the plain per-head RMSNorm, in fp32 (fp64 stays fp64)."""
        dtype = torch.promote_types(o.dtype, torch.float32)
        o = F.rms_norm(o.to(dtype), (o.shape[-1],), self.weight.to(dtype), self.eps)
        return o if gate is None else o.to(gate.dtype) * F.silu(gate)


def gated_output(o: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None, norm: GatedHeadNorm,
                 g_proj: nn.Linear | None, o_proj: nn.Linear) -> torch.Tensor:
    """The output path of gdn and gla (as fla's layers): per-head RMSNorm of o [B, T, H, d_v] times silu(g_proj(x))
    (plain without g_proj), o_proj, and zeros at padding."""
    B, T, H, dv = o.shape
    gate = None if g_proj is None else g_proj(x).view(B, T, H, dv)
    y = o_proj(norm(o, gate).reshape(B, T, H * dv).to(x.dtype))
    return y if mask is None else y * mask.unsqueeze(-1).to(y.dtype)


def matrix_state_size(num_heads: int, d_k: int, d_v: int, conv: ShortConv | None) -> int:
    """Numbers in the MixerState of one sequence of a linear mixer: a [num_heads, d_k, d_v] matrix and the short
    convolution's tail."""
    return num_heads * d_k * d_v + (conv.dim * (conv.kernel_size - 1) if conv is not None else 0)


class MatrixStateMixer(Mixer):
    """A linear mixer (gdn, gla) whose state is one [head_k, head_v] matrix per head plus its short convolution's
    tail over [q, k, v]. Subclasses set head_k, head_v, key_dim, value_dim and conv, and name their op's FLOP count."""
    chunk_flops = None  # staticmethod(kernels.<op>.chunk_flops)

    def state_size(self, seq_len=None):
        return matrix_state_size(self.config.num_heads, self.head_k, self.head_v, self.conv)

    def mixing_flops(self, seq_len: int) -> int:
        """The short convolution and the chunked recurrence (the projections are each mixer's own)."""
        c = self.config
        conv = 2 * seq_len * c.conv_size * (2 * self.key_dim + self.value_dim) if self.conv is not None else 0
        return conv + self.chunk_flops(seq_len, c.num_heads, self.head_k, self.head_v, c.chunk_size)

