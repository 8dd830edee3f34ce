"""The public simple-GLA op (scalar decay per head: the Mamba2 / SSD recurrence): checks and dispatch."""
from __future__ import annotations

import torch

from kernels import BACKENDS
from kernels.gla.op import check_shapes, run_torch_path
from kernels.gla.utils import resolve_backend

from .chunk import chunk_simple_gla_torch
from .naive import naive_recurrent_simple_gla



def simple_gla(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, *, scale: float | None = None,
               initial_state: torch.Tensor | None = None, output_final_state: bool = False,
               cu_seqlens: torch.Tensor | None = None, chunk_size: int = 64, backend: str = "auto"):
    """Linear attention with one scalar decay per head and token, per head (state keys-by-values, as in fla):

        S_t = exp(g_t) S_{t-1} + k_t v_t^T,    o_t = S_t^T (scale * q_t)

    Args:
        q, k: [B, T, H, K]. v: [B, T, H, V]. g: [B, T, H] log decay (<= 0).
        scale: default K ** -0.5. initial_state: [N, H, K, V]. output_final_state: also return S_T [N, H, K, V].
        cu_seqlens: int [N + 1] cumulative lengths of N sequences packed in a batch of 1 (state reset at each).
        chunk_size: chunk length of the torch path (the result does not depend on it).
        backend: "triton" (fla's chunk_simple_gla Triton kernel), "torch" (chunked, plain torch), "naive" (token
            by token), "auto" (triton on CUDA, torch elsewhere).
    Returns:
        (o [B, T, H, V] in v's dtype, final state in fp32 or None).
    """
    check_shapes("simple_gla", q, k, v, {"g": (g, tuple(q.shape[:3]), "[B, T, H]")}, initial_state, cu_seqlens)
    if scale is None:
        scale = q.shape[-1] ** -0.5
    backend = resolve_backend(backend, q, "simple_gla", BACKENDS)
    if backend == "triton":
        from fla.ops.simple_gla import chunk_simple_gla
        return chunk_simple_gla(q, k, v, g, scale=scale, initial_state=initial_state,
                                output_final_state=output_final_state, cu_seqlens=cu_seqlens)
    if backend == "naive":
        return run_torch_path(naive_recurrent_simple_gla, (q, k, v, g), cu_seqlens=cu_seqlens, scale=scale,
                              initial_state=initial_state, output_final_state=output_final_state)
    return run_torch_path(chunk_simple_gla_torch, (q, k, v, g), cu_seqlens=cu_seqlens, scale=scale,
                          initial_state=initial_state, output_final_state=output_final_state, chunk_size=chunk_size)
