"""Token-by-token reference of the PRISM delta rule: the ground truth every fast path is tested against.

Per head, with the state S stored as keys-by-values (fla convention, S = sum k v^T, read o = S^T q):

    S_t = alpha_t (I - beta[0]_t k[0]_t k[0]_t^T) S_{t-1} + sum_l beta[l]_t k[l]_t delta[l]_t^T
    o_t = S_t^T (scale * q_t)

which is PRISM.md's S_t = alpha_t S_{t-1} (I - beta1 k1 k1^T) + sum_l beta_l delta_l k_l^T written transposed.
alpha_t = exp(g_t). Step 0's key and strength both erase and write.
"""
from __future__ import annotations

import torch


def _compute_dtype(*tensors: torch.Tensor | None) -> torch.dtype:
    return torch.float64 if any(t is not None and t.dtype == torch.float64 for t in tensors) else torch.float32


def _recurrence(q, k, v, beta, g, h):
    """One sequence batch: q [B,T,H,K], k [B,T,H,L,K], v [B,T,H,L,V], beta [B,T,H,L], g [B,T,H], h [B,H,K,V]."""
    outs = []
    for t in range(q.shape[1]):
        k0, b0 = k[:, t, :, 0], beta[:, t, :, 0]                                  # [B,H,K], [B,H]
        h = h * g[:, t].exp()[..., None, None]                                   # decay of the old state
        h = h - b0[..., None, None] * k0[..., :, None] * torch.einsum("bhk,bhkv->bhv", k0, h)[..., None, :]
        h = h + torch.einsum("bhl,bhlk,bhlv->bhkv", beta[:, t], k[:, t], v[:, t])  # rank-L write
        outs.append(torch.einsum("bhk,bhkv->bhv", q[:, t], h))                   # read after the write
    o = torch.stack(outs, 1) if outs else q.new_zeros(q.shape[0], 0, q.shape[2], v.shape[-1])
    return o, h


def naive_prism_delta_rule(q, k, v, beta, g, *, scale=None, initial_state=None, output_final_state=False,
                           cu_seqlens=None):
    """Same signature and result as ``kernels.prism.prism_delta_rule`` (shapes documented there).

    Computes in fp64 when an input is fp64, fp32 otherwise. Output in v's dtype, final state in the compute dtype.
    """
    dtype = _compute_dtype(q, k, v, beta, g, initial_state)
    out_dtype = v.dtype
    K, V = q.shape[-1], v.shape[-1]
    scale = K ** -0.5 if scale is None else scale
    q, k, v, beta, g = (x.to(dtype) for x in (q, k, v, beta, g))
    q = q * scale
    B, T, H = q.shape[:3]
    if cu_seqlens is None:
        h0 = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.to(dtype)
        o, h = _recurrence(q, k, v, beta, g, h0)
        return o.to(out_dtype), (h if output_final_state else None)
    bounds = cu_seqlens.tolist()
    n = len(bounds) - 1
    outs, finals = [], []
    for i in range(n):
        s, e = bounds[i], bounds[i + 1]
        h0 = q.new_zeros(1, H, K, V) if initial_state is None else initial_state[i:i + 1].to(dtype)
        o, h = _recurrence(q[:, s:e], k[:, s:e], v[:, s:e], beta[:, s:e], g[:, s:e], h0)
        outs.append(o)
        finals.append(h)
    o = torch.cat(outs, 1)
    return o.to(out_dtype), (torch.cat(finals, 0) if output_final_state else None)
