"""The public gated-delta-rule op (Gated DeltaNet): checks and dispatch. Its torch path is the exact chunked
PRISM delta rule (kernels/prism) with one solver step (L = 1), which is the gated delta rule itself."""
from __future__ import annotations

import torch

from kernels import BACKENDS
from kernels.gla.op import check_shapes
from kernels.gla.utils import resolve_backend



def l2norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """x / sqrt(sum x^2 + eps) over the last dim, in fp32 (fp64 stays fp64): fla's l2norm
    (use_qk_l2norm_in_kernel)."""
    xf = x.to(torch.promote_types(x.dtype, torch.float32))
    return (xf * torch.rsqrt((xf * xf).sum(-1, keepdim=True) + eps)).to(x.dtype)


def gated_delta_rule(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor, *,
                     scale: float | None = None, initial_state: torch.Tensor | None = None,
                     output_final_state: bool = False, cu_seqlens: torch.Tensor | None = None,
                     use_qk_l2norm: bool = False, chunk_size: int = 64, backend: str = "auto"):
    """The gated delta rule, per head (state keys-by-values, as in fla):

        S_t = exp(g_t) (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T,    o_t = S_t^T (scale * q_t)

    Args:
        q, k: [B, T, H, K] (k unit-norm for a stable recurrence: pass use_qk_l2norm=True to normalise q and k
            here, fused into fla's kernel). v: [B, T, H, V]. g: [B, T, H] log decay (<= 0).
        beta: [B, T, H] write strength in [0, 1] (after the sigmoid).
        scale: default K ** -0.5. initial_state: [N, H, K, V]. output_final_state: also return S_T [N, H, K, V].
        cu_seqlens: int [N + 1] cumulative lengths of N sequences packed in a batch of 1 (state reset at each).
        chunk_size: chunk length (fla: 16, 32 or 64; the result does not depend on it).
        backend: "triton" (fla's chunk_gated_delta_rule Triton kernels, as one custom op for torch.compile:
            fla_op.py), "torch" (kernels.prism's exact chunked torch path with L = 1), "naive" (token by token),
            "auto" (triton on CUDA, torch elsewhere).
    Returns:
        (o [B, T, H, V] in v's dtype, final state in fp32 or None).
    """
    shape = tuple(q.shape[:3])
    check_shapes("gated_delta_rule", q, k, v, {"g": (g, shape, "[B, T, H]"), "beta": (beta, shape, "[B, T, H]")},
                 initial_state, cu_seqlens)
    if scale is None:
        scale = q.shape[-1] ** -0.5
    backend = resolve_backend(backend, q, "gated_delta_rule", BACKENDS)
    if backend == "triton":  # fla's chunk_gated_delta_rule as one op for torch.compile (fla_op.py)
        from .fla_op import fla_gated_delta_rule
        return fla_gated_delta_rule(q, k, v, g, beta, scale=scale, initial_state=initial_state,
                                    output_final_state=output_final_state, cu_seqlens=cu_seqlens,
                                    use_qk_l2norm=use_qk_l2norm, chunk_size=chunk_size)
    from kernels.prism import prism_delta_rule
    if use_qk_l2norm:
        q, k = l2norm(q), l2norm(k)
    return prism_delta_rule(q, k.unsqueeze(3), v.unsqueeze(3), beta.unsqueeze(3), g, scale=scale,
                            initial_state=initial_state, output_final_state=output_final_state,
                            cu_seqlens=cu_seqlens, chunk_size=chunk_size,
                            backend="naive" if backend == "naive" else "torch")


def chunk_flops(seq_len: int, num_heads: int, head_k: int, head_v: int, chunk_size: int = 64) -> int:
    """Forward matmul FLOPs of the chunked gated delta rule over one sequence: a chunked linear attention (scores,
    scores x values, read and write of the state) plus the WY representation of the chunk's erasures (K K^T,
    the triangular solve for W and U, and W S)."""
    if seq_len <= 0:
        return 0
    C = min(chunk_size, seq_len)
    Tp = -(-seq_len // C) * C
    K, V = head_k, head_v
    linear = 2 * Tp * C * (K + V) + 4 * Tp * K * V
    wy = 2 * Tp * C * K + Tp * C * (K + V) + 2 * Tp * K * V
    return num_heads * (linear + wy)
