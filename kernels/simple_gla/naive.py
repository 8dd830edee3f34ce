"""Token-by-token simple gated linear attention: the reference of this folder's chunked path."""
from __future__ import annotations

import torch


def naive_recurrent_simple_gla(q, k, v, g, *, scale: float, initial_state=None, output_final_state: bool = False):
    """q, k [B, T, H, K], v [B, T, H, V], g [B, T, H]: S_t = e^{g_t} S_{t-1} + k_t v_t^T, o_t = S_t^T (scale q_t)."""
    B, T, H, K = q.shape
    cdt = torch.float64 if q.dtype == torch.float64 else torch.float32
    q, k, v, g = (x.to(cdt) for x in (q, k, v, g))
    S = initial_state.to(cdt) if initial_state is not None else q.new_zeros(B, H, K, v.shape[-1])
    out = []
    for t in range(T):
        S = S * g[:, t].exp()[..., None, None] + k[:, t].unsqueeze(-1) * v[:, t].unsqueeze(-2)
        out.append(torch.einsum("bhk,bhkv->bhv", q[:, t] * scale, S))
    o = torch.stack(out, 1) if T else v.to(cdt)
    return o.to(v.dtype), (S if output_final_state else None)
