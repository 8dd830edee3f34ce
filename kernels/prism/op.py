"""The public PRISM delta-rule op: argument checks and backend dispatch."""
from __future__ import annotations

import math

import torch

from .. import BACKENDS
from .chunk import chunk_prism_delta_rule
from .naive import naive_prism_delta_rule



def _check(name, x, ndim, shape_desc):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"prism_delta_rule: {name} must be a tensor {shape_desc}, got {type(x).__name__}")
    if x.dim() != ndim:
        raise ValueError(f"prism_delta_rule: {name} must have shape {shape_desc} ({ndim} dims), "
                         f"got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"prism_delta_rule: {name} must be a floating-point tensor, got {x.dtype}")


def _validate(q, k, v, beta, g, initial_state, cu_seqlens, chunk_size):
    _check("q", q, 4, "[B, T, H, K]")
    _check("k", k, 5, "[B, T, H, L, K] (L solver steps; for L = 1 pass k[:, :, :, None])")
    _check("v", v, 5, "[B, T, H, L, V] (per-step written values; for L = 1 pass v[:, :, :, None])")
    _check("beta", beta, 4, "[B, T, H, L]")
    _check("g", g, 3, "[B, T, H]")
    B, T, H, K = q.shape
    L = k.shape[3]
    if L < 1:
        raise ValueError("prism_delta_rule: k must have at least one solver step (L >= 1), got L = 0")
    if tuple(k.shape) != (B, T, H, L, K):
        raise ValueError(f"prism_delta_rule: k shape {tuple(k.shape)} does not match q {tuple(q.shape)}: "
                         f"expected [B, T, H, L, K] = {(B, T, H, L, K)}")
    V = v.shape[-1]
    if tuple(v.shape) != (B, T, H, L, V):
        raise ValueError(f"prism_delta_rule: v shape {tuple(v.shape)} does not match: expected "
                         f"[B, T, H, L, V] = {(B, T, H, L, V)} (same L as k)")
    if tuple(beta.shape) != (B, T, H, L):
        raise ValueError(f"prism_delta_rule: beta shape {tuple(beta.shape)} does not match: expected "
                         f"[B, T, H, L] = {(B, T, H, L)}")
    if tuple(g.shape) != (B, T, H):
        raise ValueError(f"prism_delta_rule: g shape {tuple(g.shape)} does not match: expected "
                         f"[B, T, H] = {(B, T, H)}")
    N = B
    if cu_seqlens is not None:
        if not isinstance(cu_seqlens, torch.Tensor) or cu_seqlens.dim() != 1 or cu_seqlens.is_floating_point() \
                or cu_seqlens.numel() < 2:
            raise ValueError("prism_delta_rule: cu_seqlens must be a 1-D integer tensor [N + 1] of cumulative "
                             "sequence lengths")
        if B != 1:
            raise ValueError(f"prism_delta_rule: cu_seqlens requires batch size 1 (packed sequences), got B = {B}")
        cu = cu_seqlens.tolist()
        if cu[0] != 0 or cu[-1] != T or any(b < a for a, b in zip(cu, cu[1:])):
            raise ValueError(f"prism_delta_rule: cu_seqlens must start at 0, be non-decreasing and end at T = {T}, "
                             f"got {cu}")
        N = len(cu) - 1
    if initial_state is not None:
        _check("initial_state", initial_state, 4, "[N, H, K, V]")
        if tuple(initial_state.shape) != (N, H, K, V):
            raise ValueError(f"prism_delta_rule: initial_state shape {tuple(initial_state.shape)} does not match: "
                             f"expected [N, H, K, V] = {(N, H, K, V)} (N = number of sequences)")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"prism_delta_rule: chunk_size must be a positive int, got {chunk_size!r}")


def _triton_ok(q, k, v, initial_state) -> bool:
    """auto picks the Triton kernels for CUDA tensors of 16/32-bit floats and head dims <= 256."""
    return (q.is_cuda and all(x.dtype in (torch.float32, torch.bfloat16, torch.float16) for x in (q, k, v))
            and (initial_state is None or initial_state.dtype != torch.float64)
            and k.shape[-1] <= 256 and v.shape[-1] <= 256)


def prism_delta_rule(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor, g: torch.Tensor, *,
                     scale: float | None = None, initial_state: torch.Tensor | None = None,
                     output_final_state: bool = False, cu_seqlens: torch.Tensor | None = None,
                     chunk_size: int = 64, backend: str = "auto"):
    """PRISM's gated delta rule with a rank-L write (paper Eq. 17-18), per head:

        S_t = alpha_t (I - beta[0]_t k[0]_t k[0]_t^T) S_{t-1} + sum_l beta[l]_t k[l]_t v[l]_t^T,  alpha_t = exp(g_t)
        o_t = S_t^T (scale * q_t)                                                   (read after the write)

    S is stored keys-by-values as in fla ([.., K, V]). With L = 1 this is exactly Gated DeltaNet.

    Args:
        q: [B, T, H, K] queries. k: [B, T, H, L, K] keys of the L solver steps (step 0's key also erases).
        v: [B, T, H, L, V] values written by each step (PRISM's delta[l]). beta: [B, T, H, L] write strengths
        (beta[..., 0] is also the erase strength). g: [B, T, H] log decay of the old state (log alpha <= 0).
        scale: multiplies q; default K ** -0.5. initial_state: [N, H, K, V]. output_final_state: return S_T.
        cu_seqlens: int [N + 1] cumulative lengths of N sequences packed in a batch of 1 (state reset at each).
        chunk_size: chunk length of the chunked form (the result does not depend on it).
        backend: "naive" (token-by-token reference), "torch" (exact chunked torch), "triton" (fla-based Triton
        kernels, kernels/prism/triton; CUDA, or the CPU under TRITON_INTERPRET=1), "auto" (triton for CUDA
        tensors of 16/32-bit floats with head dims <= 256, torch otherwise).
    Returns:
        (o [B, T, H, V] in v's dtype, final state [N, H, K, V] in fp32 (fp64 for fp64 inputs) or None).
    """
    if backend not in BACKENDS:
        raise ValueError(f"prism_delta_rule: unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    _validate(q, k, v, beta, g, initial_state, cu_seqlens, chunk_size)
    kwargs = dict(scale=scale, initial_state=initial_state, output_final_state=output_final_state,
                  cu_seqlens=cu_seqlens)
    if backend == "auto":
        backend = "triton" if _triton_ok(q, k, v, initial_state) else "torch"
    if backend == "triton":
        from .triton import triton_prism_delta_rule
        return triton_prism_delta_rule(q, k, v, beta, g, chunk_size=chunk_size, **kwargs)
    if backend == "naive":
        return naive_prism_delta_rule(q, k, v, beta, g, **kwargs)
    return chunk_prism_delta_rule(q, k, v, beta, g, chunk_size=chunk_size, **kwargs)


def prism_delta_rule_flops(seq_len: int, num_heads: int, key_dim: int, value_dim: int, steps: int,
                           chunk_size: int = 64) -> int:
    """Forward FLOPs (matmul = 2mnk, triangular solve = C^2 per right-hand-side column) of the chunked op for
    one sequence of ``seq_len`` tokens, counting the zero padding of the last chunk as the op computes it."""
    if seq_len <= 0:
        return 0
    T, H, K, V, L = seq_len, num_heads, key_dim, value_dim, steps
    C = max(1, min(chunk_size, T))
    X = (L - 1) * C                       # rows of the extra solver steps in a chunk
    per_chunk = (2 * C * C * K            # K K^T
                 + 2 * C * X * (K + V)    # K K_l^T and its product with W_l (corrected values)
                 + C * C * (V + K)        # unit lower-triangular solve for U and Wk
                 + 2 * C * L * C * (K + V)  # Q [K; K_l]^T and its product with [U; W_l]
                 + 2 * C * C * K          # P_0 Wk (state read-out map)
                 + 2 * K * C * K          # (dte K)^T Wk (state transition)
                 + 2 * K * L * C * V      # (dte [K; K_l])^T [U; W_l] (chunk write)
                 + 2 * K * K * V          # serial: Atr h
                 + 2 * C * K * V)         # read-out: Qeff h
    return H * math.ceil(T / C) * per_chunk
