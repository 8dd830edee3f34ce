"""Chunked gated linear attention in plain torch (per-channel log decay), exact, differentiable by autograd.

Per head, with S [K, V] and a_t = exp(g_t) in (0, 1]^K:
    S_t = diag(a_t) S_{t-1} + k_t v_t^T,    o_t = S_t^T (scale * q_t)

Within a chunk of C tokens (inclusive cumulative log decay G_i = sum_{s<=i} g_s from the chunk start):
    o_i = (q_i * e^{G_i}) S_0 + sum_{j<=i} (sum_c q_ic k_jc e^{G_ic - G_jc}) v_j
    S_C = diag(e^{G_C}) S_0 + sum_j (k_j * e^{G_C - G_j}) v_j^T
Every factor here is <= 1 except e^{-G_j} inside the intra-chunk scores. Those are taken relative to the start
of the key's sub-chunk r (16 tokens): q_i e^{G_i - G_r} (<= 1 for i >= r) times k_j e^{G_r - G_j}, which stays
finite in fp32 as long as the decay over 16 tokens is above e^{-80} (per-token decay > e^{-5}; GLA's
logsigmoid / 16 gate reaches that only for gate logits below -80).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def chunk_gla_torch(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, *, scale: float,
                    initial_state: torch.Tensor | None = None, output_final_state: bool = False,
                    chunk_size: int = 64, sub_chunk_size: int = 16):
    """q, k, g [B, T, H, K], v [B, T, H, V], initial_state [B, H, K, V] -> (o [B, T, H, V], S_T or None).

    Computes in fp32 (fp64 for fp64 inputs); o in v's dtype, the state in the compute dtype."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    cdt = torch.float64 if q.dtype == torch.float64 else torch.float32
    c = min(sub_chunk_size, chunk_size)
    if chunk_size % c:
        raise ValueError(f"chunk_gla_torch: chunk_size {chunk_size} must be a multiple of sub_chunk_size {c}")
    C = min(chunk_size, max(c, -(-T // c) * c))  # short inputs (decoding): one chunk of whole sub-chunks
    pad = (-T) % C
    N, S = (T + pad) // C, C // c

    def blocks(x):  # [B, T, H, d] -> [B, H, N, C, d], zero-padded at the end (g = 0, k = 0: no effect)
        x = F.pad(x.to(cdt), (0, 0, 0, 0, 0, pad))
        return x.view(B, N, C, H, x.shape[-1]).permute(0, 3, 1, 2, 4)

    q, k, v, g = blocks(q) * scale, blocks(k), blocks(v), blocks(g)
    G = g.cumsum(-2)  # [B, H, N, C, K]

    # Intra-chunk scores, relative to the first token of each key's sub-chunk.
    Gs = G.view(B, H, N, S, c, K)
    ref = Gs[..., :1, :]  # [B, H, N, S, 1, K]
    k_s = k.view(B, H, N, S, c, K) * torch.exp(ref - Gs)  # [B, H, N, S, c, K]
    q_s = q.unsqueeze(3) * torch.exp((G.unsqueeze(3) - ref).clamp(max=0))  # [B, H, N, S, C, K]
    A = q_s @ k_s.transpose(-1, -2)  # [B, H, N, S, C, c]: query i against key j of sub-chunk s
    A = A.permute(0, 1, 2, 4, 3, 5).reshape(B, H, N, C, C)
    causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
    o = (A * causal) @ v

    # Inter-chunk: chunk-local state contributions, then a scan over chunks (elementwise + adds only).
    G_last = G[..., -1, :]  # [B, H, N, K]
    U = (k * torch.exp(G_last.unsqueeze(-2) - G)).transpose(-1, -2) @ v  # [B, H, N, K, V]
    decay = torch.exp(G_last).unsqueeze(-1)  # [B, H, N, K, 1]
    state = initial_state.to(cdt) if initial_state is not None else q.new_zeros(B, H, K, V)
    states = []
    for n in range(N):
        states.append(state)
        state = decay[:, :, n] * state + U[:, :, n]
    o = o + (q * torch.exp(G)) @ torch.stack(states, dim=2)
    o = o.permute(0, 2, 3, 1, 4).reshape(B, N * C, H, V)[:, :T]
    return o.to(v.dtype), (state if output_final_state else None)
