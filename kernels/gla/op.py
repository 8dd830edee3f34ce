"""The public gated-linear-attention op (per-channel decay): argument checks and backend dispatch."""
from __future__ import annotations

import torch

from .. import BACKENDS
from .chunk import chunk_gla_torch
from .naive import naive_recurrent_gla
from .utils import check_cu_seqlens, pad_packed, packed_index, resolve_backend, unpad_packed



def check_shapes(op: str, q, k, v, gates: dict, initial_state, cu_seqlens):
    """q, k [B, T, H, K], v [B, T, H, V]; each gate shape is given as a tuple of (name in q's dims)."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
            raise ValueError(f"{op}: {name} must be a floating-point tensor [B, T, H, d], got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    B, T, H, K = q.shape
    V = v.shape[-1]
    if k.shape != q.shape:
        raise ValueError(f"{op}: k shape {tuple(k.shape)} must equal q shape {tuple(q.shape)} [B, T, H, K]")
    if v.shape[:3] != q.shape[:3]:
        raise ValueError(f"{op}: v shape {tuple(v.shape)} must be [B, T, H, V] = [{B}, {T}, {H}, V]")
    for name, (x, shape, desc) in gates.items():
        if tuple(x.shape) != shape:
            raise ValueError(f"{op}: {name} shape {tuple(x.shape)} must be {desc} = {list(shape)}")
    N = B
    if cu_seqlens is not None:
        N = len(check_cu_seqlens(cu_seqlens, T, B, op)) - 1
    if initial_state is not None and tuple(initial_state.shape) != (N, H, K, V):
        raise ValueError(f"{op}: initial_state shape {tuple(initial_state.shape)} must be [N, H, K, V] = "
                         f"{[N, H, K, V]} (N = number of sequences)")


def run_torch_path(fn, tensors: tuple, *, cu_seqlens, initial_state, output_final_state, **kwargs):
    """Run a dense torch path fn(*tensors, initial_state=, output_final_state=, **kw) on [B, T, H, *] tensors,
    packed input (cu_seqlens, B = 1) as a right-padded batch of its sequences."""
    if cu_seqlens is None:
        return fn(*tensors, initial_state=initial_state, output_final_state=output_final_state, **kwargs)
    cu = cu_seqlens.tolist()
    seg, pos, t_max = packed_index(cu, tensors[0].device)
    n = len(cu) - 1
    o, state = fn(*(pad_packed(x, seg, pos, n, t_max) for x in tensors), initial_state=initial_state,
                  output_final_state=output_final_state, **kwargs)
    return unpad_packed(o, seg, pos), state


def gla(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, *, scale: float | None = None,
        initial_state: torch.Tensor | None = None, output_final_state: bool = False,
        cu_seqlens: torch.Tensor | None = None, chunk_size: int = 64, backend: str = "auto"):
    """Gated linear attention with a per-channel decay, per head (state keys-by-values, as in fla):

        S_t = diag(exp(g_t)) S_{t-1} + k_t v_t^T,    o_t = S_t^T (scale * q_t)

    Args:
        q, k: [B, T, H, K]. v: [B, T, H, V]. g: [B, T, H, K] log decay (<= 0).
        scale: default K ** -0.5. initial_state: [N, H, K, V]. output_final_state: also return S_T [N, H, K, V].
        cu_seqlens: int [N + 1] cumulative lengths of N sequences packed in a batch of 1 (state reset at each).
        chunk_size: chunk length of the torch path (the result does not depend on it).
        backend: "triton" (fla's chunk_gla Triton kernel), "torch" (chunked, plain torch), "naive" (token by
            token), "auto" (triton on CUDA, torch elsewhere).
    Returns:
        (o [B, T, H, V] in v's dtype, final state in fp32 or None).
    """
    check_shapes("gla", q, k, v, {"g": (g, tuple(q.shape), "[B, T, H, K]")}, initial_state, cu_seqlens)
    if scale is None:
        scale = q.shape[-1] ** -0.5
    backend = resolve_backend(backend, q, "gla", BACKENDS)
    if backend == "triton":
        from fla.ops.gla import chunk_gla
        return chunk_gla(q, k, v, g, scale=scale, initial_state=initial_state,
                         output_final_state=output_final_state, cu_seqlens=cu_seqlens)
    if backend == "naive":
        return run_torch_path(naive_recurrent_gla, (q, k, v, g), cu_seqlens=cu_seqlens, scale=scale,
                              initial_state=initial_state, output_final_state=output_final_state)
    return run_torch_path(chunk_gla_torch, (q, k, v, g), cu_seqlens=cu_seqlens, scale=scale,
                          initial_state=initial_state, output_final_state=output_final_state, chunk_size=chunk_size)


def chunk_flops(seq_len: int, num_heads: int, head_k: int, head_v: int, chunk_size: int = 64) -> int:
    """Forward matmul FLOPs of a chunked linear attention over one sequence (GLA, simple GLA): per chunk of C
    tokens the scores Q K^T and their product with V (C x C blocks), the read Q S and the write K^T V."""
    if seq_len <= 0:
        return 0
    C = min(chunk_size, seq_len)
    Tp = -(-seq_len // C) * C
    return num_heads * (2 * Tp * C * (head_k + head_v) + 4 * Tp * head_k * head_v)
