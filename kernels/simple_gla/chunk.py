"""Chunked simple gated linear attention (one scalar log decay per head and token: the Mamba2 / SSD
recurrence) in plain torch, exact, differentiable by autograd.

Per head, with S [K, V]: S_t = e^{g_t} S_{t-1} + k_t v_t^T, o_t = S_t^T (scale * q_t). Within a chunk, with the
inclusive cumulative log decay G_i from the chunk start, every decay factor is a difference G_i - G_j <= 0
(j <= i) taken in log space before exp, so nothing can overflow whatever the decay.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def chunk_simple_gla_torch(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, *, scale: float,
                           initial_state: torch.Tensor | None = None, output_final_state: bool = False,
                           chunk_size: int = 64):
    """q, k [B, T, H, K], v [B, T, H, V], g [B, T, H], initial_state [B, H, K, V] -> (o, S_T or None).

    Computes in fp32 (fp64 for fp64 inputs); o in v's dtype, the state in the compute dtype."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    cdt = torch.float64 if q.dtype == torch.float64 else torch.float32
    C = max(1, min(chunk_size, T))  # short inputs (decoding): one chunk
    pad = (-T) % C
    N = (T + pad) // C

    def blocks(x):  # [B, T, H, *] -> [B, H, N, C, *], zero-padded at the end (g = 0, k = 0: no effect)
        x = x.to(cdt)
        x = F.pad(x, (0, 0) * (x.dim() - 2) + (0, pad))
        return x.view(B, N, C, H, *x.shape[3:]).transpose(1, 3).transpose(2, 3)

    q, k, v, G = blocks(q) * scale, blocks(k), blocks(v), blocks(g).cumsum(-1)  # G [B, H, N, C]
    causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
    D = (G.unsqueeze(-1) - G.unsqueeze(-2)).masked_fill(~causal, float("-inf")).exp()  # [B, H, N, C, C]
    o = ((q @ k.transpose(-1, -2)) * D) @ v

    G_last = G[..., -1:]  # [B, H, N, 1]
    U = (k * torch.exp(G_last - G).unsqueeze(-1)).transpose(-1, -2) @ v  # [B, H, N, K, V]
    decay = torch.exp(G_last).unsqueeze(-1)  # [B, H, N, 1, 1]
    state = initial_state.to(cdt) if initial_state is not None else q.new_zeros(B, H, K, V)
    states = []
    for n in range(N):
        states.append(state)
        state = decay[:, :, n] * state + U[:, :, n]
    o = o + (q * torch.exp(G).unsqueeze(-1)) @ torch.stack(states, dim=2)
    o = o.permute(0, 2, 3, 1, 4).reshape(B, N * C, H, V)[:, :T]
    return o.to(v.dtype), (state if output_final_state else None)
