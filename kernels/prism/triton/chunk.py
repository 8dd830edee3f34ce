"""PRISM delta rule on Triton: exact chunked forward and backward built from fla's Gated DeltaNet kernels.

Design (PRISM.md §2). Inside a chunk of C tokens the PRISM recurrence is Gated DeltaNet's WY form with two changes:

1. the value fed to the triangular solve is the corrected value
       Δ' = Δ - Σ_{l>=1} (Γ ⊙ tril_strict(K K_l^T)) W_l,      W_l = beta[l] * v[l]
   (chunk-local, no state dependence), computed by correction.py's Triton kernels; fla's
   ``chunk_gated_delta_rule_fwd_intra`` (kkt + solve_tril + recompute_w_u) then gives w = A^-1 diag(beta gamma) K
   and u = A^-1 diag(beta) Δ' exactly as for GDN.
2. the extra writes W_l on keys K_l enter the carried state and the output exactly like additional value rows
   that are decayed but never erased (no w·h term). For the state recurrence every token t becomes
   Lp = next_pow2(L) consecutive sub-rows of an *expanded* sequence
       (t, 0): key K_t,   w_t,  u_t,      gate G_t          (step 0: the erase-corrected write, v_new = u - w h)
       (t, l): key K_l,t, 0,    W_l,t,    gate G_t          (extra writes: v_new = W_l; padding sub-rows are zero)
   and fla's ``chunk_gated_delta_rule_fwd_h`` runs unchanged on it with chunk Lp*C (an expanded chunk is an
   original chunk; the per-chunk states h are those of the original chunks).

Two implementations ($PRISM_TRITON_IMPL):
- "split": only the state kernel sees the expanded sequence. The output is fla's ``chunk_fwd_o`` on the
  original sequence (q, K, v_new of step 0, h) plus the extra writes' chunk-local output
  scale Σ_l (Γ ⊙ tril(Q K_l^T)) W_l (correction.py ``extra_fwd``, fused with Δ'). The backward is GDN's: fla's
  ``chunk_bwd_dv_local``, ``chunk_gated_delta_rule_bwd_dhu`` (serial; the extra writes do not change dh's
  recursion since they do not depend on the state), ``chunk_bwd_dqkwg`` and ``prepare_wy_repr_bwd`` on the original
  sequence at chunk C, plus correction.py ``extra_bwd``: every gradient of the extra writes (through Δ', the
  output term and, via fla's dh = dL/d(state at chunk end), the state term). Cost ≈ GDN + the state kernel's
  extra rows + two matmul-bound chunk-local kernels.
- "expanded": every fla kernel (output and backward too) runs on the token-major expanded sequence (q on the last
  sub-row), so the causal mask of an expanded chunk is "all sub-rows of tokens <= t". Simpler, Lp× the rows in
  every kernel; kept as an independent cross-check.

``_corrected_value`` below is the torch reference of Δ' (tests). Gates: fla's kernels take chunk-local cumulative
gates in log2 units (``chunk_local_cumsum(scale=RCP_LN2)``); the gate gradients they return are with respect to the
natural-log cumulative gate, as in fla's GDN backward; one reverse chunk cumsum at the end gives dg.
"""
from __future__ import annotations

import math

import os

import torch

from ...triton_device import triton_runs_on
from .correction import corrected_value_bwd, corrected_value_fwd, extra_bwd, extra_fwd

# Largest expanded chunk Lp * C (the state kernel's chunk) picked by default. With the "split" implementation
# only fla's state kernel sees the expanded sequence, so 128 (C = 64 for L = 2: GDN's chunk and
# serial step count) is the default. With the "expanded" implementation every fla kernel runs at Lp * C, and 64
# keeps them at GDN's tile shapes (C = 32 for L = 2). Override with PRISM_TRITON_EXPANDED_MAX (read at every call).
EXPANDED_MAX = {"split": 128, "expanded": 64, "split_fused": 256}   # split_fused: no expansion, C = 64


def pick_chunk_size(chunk_size: int, steps: int, expanded_max: int | None = None) -> tuple[int, int]:
    """(C, Lp): the WY chunk C in {16, 32, 64} and the sub-row count Lp = next_pow2(L) of the expanded sequence.
    C = min(chunk_size, 64) rounded down to a power of two, halved (not below 16) while Lp * C > expanded_max
    (default: $PRISM_TRITON_EXPANDED_MAX, else EXPANDED_MAX of the implementation $PRISM_TRITON_IMPL)."""
    if expanded_max is None:
        expanded_max = int(os.environ.get("PRISM_TRITON_EXPANDED_MAX", EXPANDED_MAX[_impl()]))
    Lp = 1 << (steps - 1).bit_length()
    C = 1 << (max(16, min(64, chunk_size)).bit_length() - 1)
    while C > 16 and Lp * C > expanded_max:
        C //= 2
    return C, Lp


def _chunk_slots(B, T, C, cu_seqlens, device):
    """Chunk-aligned layout of the B*T tokens: src [M, C] (token index of each chunk slot; B*T = padding) and
    inv [B*T] (slot of each token). Chunks never straddle a sequence boundary."""
    ar = torch.arange(C, device=device)
    if cu_seqlens is None:
        NT = math.ceil(T / C)
        m = torch.arange(B * NT, device=device)
        pos = (m % NT)[:, None] * C + ar
        valid = pos < T
        src = torch.where(valid, (m // NT)[:, None] * T + pos, B * T)
    else:
        from fla.ops.utils.index import prepare_chunk_indices
        ci = prepare_chunk_indices(cu_seqlens, C).long()
        cu = cu_seqlens.long()
        bos, eos = cu[ci[:, 0]], cu[ci[:, 0] + 1]
        pos = bos[:, None] + ci[:, 1:2] * C + ar
        valid = pos < eos[:, None]
        src = torch.where(valid, pos, B * T)
    inv = torch.empty(B * T, dtype=torch.long, device=device)
    flat_valid = valid.reshape(-1)
    inv[src.reshape(-1)[flat_valid]] = torch.nonzero(flat_valid, as_tuple=True)[0]
    return src, valid, inv


def _gather(x, src):
    """[B,T,...] -> [M, C, ...] by chunk slots (padding rows are zero)."""
    xf = x.reshape(-1, *x.shape[2:])
    xf = torch.cat([xf, xf.new_zeros(1, *xf.shape[1:])], 0)
    return xf[src]


def _corrected_value(k, v, beta, g, slots):
    """Δ' = v[0] - Σ_{l>=1} (Γ ⊙ tril_strict(k[0] k[l]^T)) (beta[l] v[l]) per chunk, fp32, [B,T,H,V].
    k [B,T,H,L,K], v [B,T,H,L,V], beta [B,T,H,L], g [B,T,H] raw log decay. Differentiable (torch)."""
    src, valid, inv = slots
    B, T, H, L, K = k.shape
    V = v.shape[-1]
    f = torch.float32
    kc = _gather(k.to(f), src).permute(0, 2, 3, 1, 4)                       # [M,H,L,C,K]
    wc = _gather((beta[..., 1:, None].to(f) * v[:, :, :, 1:].to(f)), src).permute(0, 2, 3, 1, 4)  # [M,H,L-1,C,V]
    gc = _gather(g.to(f), src).cumsum(1).transpose(1, 2)                      # [M,H,C]
    M, C = src.shape
    idx = torch.arange(C, device=k.device)
    mask = (idx[:, None] > idx[None, :]) & valid[:, None, :, None] & valid[:, None, None, :]   # [M,1,C,C]
    gam = (gc[..., :, None] - gc[..., None, :]).masked_fill(~mask, float("-inf")).exp()         # [M,H,C,C]
    p = kc[:, :, :1] @ kc[:, :, 1:].transpose(-1, -2)                          # [M,H,L-1,C,C]
    corr = ((p * gam[:, :, None]) @ wc).sum(2)                                 # [M,H,C,V]
    corr = corr.transpose(1, 2).reshape(M * C, H, V)[inv].view(B, T, H, V)
    return v[:, :, :, 0].to(f) - corr


def _expand(rows, Lp):
    """Interleave per-token rows (list of [B,T,H,D], len <= Lp; missing trailing rows are zero) -> [B,T*Lp,H,D]."""
    ref = next(r for r in rows if r is not None)
    B, T, H, D = ref.shape
    out = ref.new_zeros(B, T, Lp, H, D)
    for i, r in enumerate(rows):
        if r is not None:
            out[:, :, i] = r
    return out.view(B, T * Lp, H, D)


class _Ctx:
    """Everything the forward and the backward recompute from the inputs (cheap, state-free)."""

    def __init__(self, q, k, v, beta, g, cu_seqlens, C, Lp, Ai=None, gc=None):
        from fla.ops.gated_delta_rule.chunk_fwd import chunk_gated_delta_rule_fwd_intra
        from fla.ops.gated_delta_rule.wy_fast import recompute_w_u_fwd
        from fla.ops.utils import chunk_local_cumsum
        from fla.ops.utils.constant import RCP_LN2
        from fla.ops.utils.index import prepare_chunk_indices

        B, T, H, L, K = k.shape
        self.shape = (B, T, H, L, K, v.shape[-1])
        self.C, self.Lp = C, Lp
        self.cu = cu_seqlens
        self.ci = prepare_chunk_indices(cu_seqlens, C) if cu_seqlens is not None else None
        self.cu_x = cu_seqlens * Lp if cu_seqlens is not None else None
        self.ci_x = self.ci  # the expanded chunks are the original chunks
        self.gc = gc if gc is not None else chunk_local_cumsum(
            g.float().contiguous(), chunk_size=C, scale=RCP_LN2, cu_seqlens=cu_seqlens, chunk_indices=self.ci)
        # [B,T,H] fp32, log2 units
        self.k0 = k[:, :, :, 0].contiguous()
        self.b0 = beta[:, :, :, 0].contiguous()
        if L > 1:
            self.dv = corrected_value_fwd(k, v, beta, self.gc, C, cu_seqlens, self.ci)
        else:
            self.dv = v[:, :, :, 0].contiguous()
        if Ai is None:
            self.w, self.u, self.Ai = chunk_gated_delta_rule_fwd_intra(
                k=self.k0, v=self.dv, g=self.gc, beta=self.b0, cu_seqlens=cu_seqlens, chunk_size=C,
                chunk_indices=self.ci)
        else:
            self.Ai = Ai
            self.w, self.u = recompute_w_u_fwd(k=self.k0, v=self.dv, beta=self.b0, A=Ai, g=self.gc,
                                               cu_seqlens=cu_seqlens, chunk_indices=self.ci)
        # expanded sequence
        self.W = [(beta[:, :, :, l, None] * v[:, :, :, l]).to(v.dtype) for l in range(1, L)]
        self.k_x = _expand([k[:, :, :, l] for l in range(L)], Lp)
        self.w_x = _expand([self.w], Lp) if Lp > 1 else self.w
        self.u_x = _expand([self.u] + self.W, Lp) if Lp > 1 else self.u
        self.q_x = _expand([None] * (Lp - 1) + [q], Lp) if Lp > 1 else q.contiguous()
        self.g_x = self.gc.repeat_interleave(Lp, 1).contiguous() if Lp > 1 else self.gc

    def state(self, h0, output_final_state):
        from fla.ops.common.chunk_delta_h import chunk_gated_delta_rule_fwd_h
        return chunk_gated_delta_rule_fwd_h(
            k=self.k_x, w=self.w_x, u=self.u_x, g=self.g_x, initial_state=h0, output_final_state=output_final_state,
            chunk_size=self.Lp * self.C, cu_seqlens=self.cu_x, chunk_indices=self.ci_x)


def prism_fwd(q, k, v, beta, g, scale, h0, output_final_state, cu_seqlens, C, Lp):
    from fla.ops.common.chunk_o import chunk_fwd_o
    B, T, H, L, K = k.shape
    c = _Ctx(q, k, v, beta, g, cu_seqlens, C, Lp)
    h, v_new, ht = c.state(h0, output_final_state)
    o_x = chunk_fwd_o(q=c.q_x, k=c.k_x, v=v_new, h=h, g=c.g_x, scale=scale, cu_seqlens=c.cu_x,
                      chunk_size=Lp * C, chunk_indices=c.ci_x)
    o = o_x.view(B, T, Lp, H, -1)[:, :, Lp - 1].contiguous() if Lp > 1 else o_x
    return o, ht, c.Ai, c.gc


def prism_bwd(q, k, v, beta, g, scale, h0, cu_seqlens, C, Lp, Ai, gc, do, dht):
    from fla.ops.common.chunk_delta_h import chunk_gated_delta_rule_bwd_dhu
    from fla.ops.common.chunk_o import chunk_bwd_dqkwg, chunk_bwd_dv_local
    from fla.ops.gated_delta_rule.wy_fast import prepare_wy_repr_bwd
    from fla.ops.utils import chunk_local_cumsum

    B, T, H, L, K = k.shape
    V = v.shape[-1]
    f = torch.float32
    c = _Ctx(q, k, v, beta, g, cu_seqlens, C, Lp, Ai=Ai, gc=gc)
    h, v_new, _ = c.state(h0, False)
    BTx = Lp * C
    do_x = _expand([None] * (Lp - 1) + [do.to(q.dtype)], Lp) if Lp > 1 else do.to(q.dtype).contiguous()
    dv_x = chunk_bwd_dv_local(q=c.q_x, k=c.k_x, do=do_x, g=c.g_x, scale=scale, cu_seqlens=c.cu_x,
                              chunk_size=BTx, chunk_indices=c.ci_x)
    dh, dh0, dv_x = chunk_gated_delta_rule_bwd_dhu(
        q=c.q_x, k=c.k_x, w=c.w_x, do=do_x, dv=dv_x, g=c.g_x, h0=h0, dht=dht, scale=scale, cu_seqlens=c.cu_x,
        chunk_size=BTx, chunk_indices=c.ci_x)
    dq_x, dk_x, dw_x, dg_x = chunk_bwd_dqkwg(
        q=c.q_x, k=c.k_x, v=v_new, do=do_x, h=h, dh=dh, w=c.w_x, g=c.g_x, dv=dv_x, scale=scale,
        cu_seqlens=c.cu_x, chunk_size=BTx, chunk_indices=c.ci_x)
    dq = dq_x.view(B, T, Lp, H, K)[:, :, Lp - 1].float()
    dk = dk_x.view(B, T, Lp, H, K)[:, :, :L].transpose(2, 3).float()           # [B,T,H,L,K]
    dw = dw_x.view(B, T, Lp, H, K)[:, :, 0].contiguous()
    dvx = dv_x.view(B, T, Lp, H, V)
    du = dvx[:, :, 0].contiguous()
    dgc = dg_x.view(B, T, Lp, H).float().sum(2)

    dk0, ddv, db0, dgc2 = prepare_wy_repr_bwd(k=c.k0, v=c.dv, beta=c.b0, A=c.Ai, dw=dw, du=du, g=c.gc,
                                              cu_seqlens=cu_seqlens, chunk_indices=c.ci)
    dk[:, :, :, 0] += dk0.float()
    dgc = dgc + dgc2.float()
    if L > 1:
        dk_c, dv_, dbeta, dgc_c = corrected_value_bwd(k, v, beta, c.gc, ddv, C, cu_seqlens, c.ci)
        dk += dk_c
        dgc = dgc + dgc_c
        dW = dvx[:, :, 1:L].transpose(2, 3).float()                            # [B,T,H,L-1,V]
        dbeta[:, :, :, 1:] += (dW * v[:, :, :, 1:].float()).sum(-1)
        dv_[:, :, :, 1:] += dW * beta[:, :, :, 1:, None].float()
    else:
        dv_ = torch.zeros(B, T, H, L, V, dtype=f, device=v.device)
        dbeta = torch.zeros(B, T, H, L, dtype=f, device=v.device)
    dv_[:, :, :, 0] += ddv.float()
    dbeta[:, :, :, 0] += db0.float()
    dg = chunk_local_cumsum(dgc.contiguous(), chunk_size=C, reverse=True, cu_seqlens=cu_seqlens,
                            chunk_indices=c.ci).float()
    return dq, dk, dv_, dbeta, dg, dh0


# ---------------------------------------------------------------------------------------------------------------
# "split" implementation: only the state recurrence runs on the expanded sequence; the output and every
# backward kernel of fla run on the original sequence at chunk C (GDN's cost), and correction.py's extra kernels
# add the extra writes' chunk-local output term and all their gradients (including their share of the carried
# state, through fla's per-chunk dh = dL/d(state at chunk end)).

def _prep_split(q, k, v, beta, g, scale, cu_seqlens, C, Lp, Ai=None, gc=None):
    from fla.ops.gated_delta_rule.chunk_fwd import chunk_gated_delta_rule_fwd_intra
    from fla.ops.gated_delta_rule.wy_fast import recompute_w_u_fwd
    from fla.ops.utils import chunk_local_cumsum
    from fla.ops.utils.constant import RCP_LN2
    from fla.ops.utils.index import prepare_chunk_indices
    B, T, H, L, K = k.shape
    c = _Ctx.__new__(_Ctx)
    c.C, c.Lp, c.cu = C, Lp, cu_seqlens
    c.ci = prepare_chunk_indices(cu_seqlens, C) if cu_seqlens is not None else None
    c.cu_x = cu_seqlens * Lp if cu_seqlens is not None else None
    c.ci_x = c.ci
    c.gc = gc if gc is not None else chunk_local_cumsum(g, chunk_size=C, scale=RCP_LN2, cu_seqlens=cu_seqlens,
                                                        chunk_indices=c.ci)
    c.k0 = k[:, :, :, 0].contiguous()
    c.b0 = beta[:, :, :, 0].contiguous()
    c.ox = None
    if L > 1:
        # the backward (Ai given) recomputes only the corrected value, not the forward's output term
        c.dv, c.ox = extra_fwd(q, k, v, beta, c.gc, scale, C, cu_seqlens, c.ci, with_output=Ai is None)
    else:
        c.dv = v[:, :, :, 0].contiguous()
    if Ai is None:
        c.w, c.u, c.Ai = chunk_gated_delta_rule_fwd_intra(k=c.k0, v=c.dv, g=c.gc, beta=c.b0, cu_seqlens=cu_seqlens,
                                                          chunk_size=C, chunk_indices=c.ci)
    else:
        c.Ai = Ai
        c.w, c.u = recompute_w_u_fwd(k=c.k0, v=c.dv, beta=c.b0, A=Ai, g=c.gc, cu_seqlens=cu_seqlens,
                                     chunk_indices=c.ci)
    if _impl() == "split_fused":
        return c
    W = [(beta[:, :, :, l, None] * v[:, :, :, l]).to(v.dtype) for l in range(1, L)]
    if Lp > 1:
        c.k_x = _expand([k[:, :, :, l] for l in range(L)], Lp)
        c.w_x = _expand([c.w], Lp)
        c.u_x = _expand([c.u] + W, Lp)
        c.g_x = c.gc.repeat_interleave(Lp, 1).contiguous()
    else:
        c.k_x, c.w_x, c.u_x, c.g_x = c.k0, c.w, c.u, c.gc
    return c


def _state_split(c, h0, output_final_state, k=None, v=None, beta=None):
    B, T, H, V = c.u.shape
    if _impl() == "split_fused":
        from .state import prism_state_fwd
        return prism_state_fwd(c.k0, c.w, c.u, c.gc, k, v, beta, initial_state=h0,
                               output_final_state=output_final_state, chunk_size=c.C, cu_seqlens=c.cu,
                               chunk_indices=c.ci)
    h, v_new, ht = c.state(h0, output_final_state)
    if c.Lp > 1:
        v_new = v_new.view(B, T, c.Lp, H, V)[:, :, 0].contiguous()
    return h, v_new, ht


def prism_fwd_split(q, k, v, beta, g, scale, h0, output_final_state, cu_seqlens, C, Lp):
    from fla.ops.common.chunk_o import chunk_fwd_o
    c = _prep_split(q, k, v, beta, g, scale, cu_seqlens, C, Lp)
    h, v_new, ht = _state_split(c, h0, output_final_state, k, v, beta)
    o = chunk_fwd_o(q=q, k=c.k0, v=v_new, h=h, g=c.gc, scale=scale, cu_seqlens=cu_seqlens, chunk_size=C,
                    chunk_indices=c.ci)
    if c.ox is not None:
        o.add_(c.ox)  # summed in fp32, rounded once: one kernel, no fp32 copy of o
    return o, ht, c.Ai, c.gc


def prism_bwd_split(q, k, v, beta, g, scale, h0, cu_seqlens, C, Lp, Ai, gc, do, dht):
    from fla.ops.common.chunk_delta_h import chunk_gated_delta_rule_bwd_dhu
    from fla.ops.common.chunk_o import chunk_bwd_dqkwg, chunk_bwd_dv_local
    from fla.ops.gated_delta_rule.wy_fast import prepare_wy_repr_bwd
    from fla.ops.utils import chunk_local_cumsum
    L = k.shape[3]
    c = _prep_split(q, k, v, beta, g, scale, cu_seqlens, C, Lp, Ai=Ai, gc=gc)
    h, v_new, _ = _state_split(c, h0, False, k, v, beta)
    do = do.to(q.dtype).contiguous()
    kw = dict(cu_seqlens=cu_seqlens, chunk_size=C, chunk_indices=c.ci)
    dv = chunk_bwd_dv_local(q=q, k=c.k0, do=do, g=c.gc, scale=scale, **kw)
    dh, dh0, dv = chunk_gated_delta_rule_bwd_dhu(q=q, k=c.k0, w=c.w, do=do, dv=dv, g=c.gc, h0=h0, dht=dht,
                                                 scale=scale, **kw)
    dq, dk0, dw, dgc = chunk_bwd_dqkwg(q=q, k=c.k0, v=v_new, do=do, h=h, dh=dh, w=c.w, g=c.gc, dv=dv, scale=scale,
                                       **kw)
    del h, v_new, c.w, c.u  # each buffer goes as soon as it is used: the extra kernel below runs at the peak
    dk0_wy, ddv, db0, dgc_wy = prepare_wy_repr_bwd(k=c.k0, v=c.dv, beta=c.b0, A=c.Ai, dw=dw, du=dv, g=c.gc,
                                                   cu_seqlens=cu_seqlens, chunk_indices=c.ci)
    del dw, dv, c.dv, c.k0
    dgc = dgc.float() + dgc_wy.float()
    del dgc_wy
    if L > 1:  # sums fla's dq and dK0 with the extra writes' shares, and writes every slot of dk, dv, dbeta
        dq, dk_, dv_, dbeta, dgc_x = extra_bwd(q, k, v, beta, c.gc, ddv, do, dh, dq, dk0, dk0_wy, db0.contiguous(),
                                               scale, C, cu_seqlens, c.ci)
        dgc += dgc_x
    else:  # GDN's gradients as they are (dk0 summed in fp32, rounded once)
        dk0 = dk0.float()
        dk0 += dk0_wy  # in place: no second fp32 [B,T,H,K]
        dk_, dv_, dbeta = dk0.unsqueeze(3), ddv.unsqueeze(3), db0.unsqueeze(3)
    dg = chunk_local_cumsum(dgc.contiguous(), chunk_size=C, reverse=True, cu_seqlens=cu_seqlens,
                            chunk_indices=c.ci).float()
    return dq, dk_, dv_, dbeta, dg, dh0


def _impl():
    """PRISM_TRITON_IMPL: split_fused (default; split with state.py's state kernel: no expanded sequence at all),
    split (only the state kernel on the expanded sequence) or expanded (every fla kernel on it)."""
    impl = os.environ.get("PRISM_TRITON_IMPL", "split_fused")  # fastest on an H200 (docs/benchmarks.md)
    if impl not in ("split", "split_fused", "expanded"):
        raise ValueError(f"PRISM_TRITON_IMPL must be 'split', 'split_fused' or 'expanded', got {impl!r}")
    return impl


# One op for autograd and torch.compile: forward and backward are torch.library custom ops (opaque to the
# compiler, with fake implementations for tracing), tied together by register_autograd.
_EMPTY = (0,)


@torch.library.custom_op("prism_triton::chunk_fwd", mutates_args=())
def _chunk_fwd_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor, g: torch.Tensor,
                  h0: torch.Tensor | None, cu_seqlens: torch.Tensor | None, scale: float, output_final_state: bool,
                  C: int, Lp: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    # Ai (the chunks' inverted triangular systems) and gc (the chunk-local cumulative log2 decay) are kept for
    # the backward, which would otherwise recompute them
    fwd = prism_fwd if _impl() == "expanded" else prism_fwd_split
    o, ht, Ai, gc = fwd(q, k, v, beta, g, scale, h0, output_final_state, cu_seqlens, C, Lp)
    if ht is None:
        ht = q.new_empty(_EMPTY, dtype=torch.float32)
    return o, ht, Ai, gc


@_chunk_fwd_op.register_fake
def _(q, k, v, beta, g, h0, cu_seqlens, scale, output_final_state, C, Lp):
    B, T, H, L, K = k.shape
    N = B if cu_seqlens is None else cu_seqlens.shape[0] - 1
    ht = q.new_empty((N, H, K, v.shape[-1]) if output_final_state else _EMPTY, dtype=torch.float32)
    return v.new_empty(B, T, H, v.shape[-1]), ht, k.new_empty(B, T, H, C), g.new_empty(B, T, H)


@torch.library.custom_op("prism_triton::chunk_bwd", mutates_args=())
def _chunk_bwd_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor, g: torch.Tensor,
                  h0: torch.Tensor | None, cu_seqlens: torch.Tensor | None, Ai: torch.Tensor, gc: torch.Tensor,
                  do: torch.Tensor, dht: torch.Tensor | None, scale: float, C: int, Lp: int
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    bwd = prism_bwd if _impl() == "expanded" else prism_bwd_split
    dq, dk, dv, db, dg, dh0 = bwd(q, k, v, beta, g, scale, h0, cu_seqlens, C, Lp, Ai, gc, do.contiguous(),
                                  dht.contiguous() if dht is not None else None)
    if dh0 is None:
        dh0 = q.new_empty(_EMPTY, dtype=torch.float32)
    return tuple(x.to(y.dtype).contiguous() for x, y in ((dq, q), (dk, k), (dv, v), (db, beta), (dg, g))) + (dh0,)


@_chunk_bwd_op.register_fake
def _(q, k, v, beta, g, h0, cu_seqlens, Ai, gc, do, dht, scale, C, Lp):
    dh0 = torch.empty_like(h0, dtype=torch.float32) if h0 is not None else q.new_empty(_EMPTY, dtype=torch.float32)
    return (torch.empty_like(q), torch.empty_like(k), torch.empty_like(v), torch.empty_like(beta),
            torch.empty_like(g), dh0)


def _setup_context(ctx, inputs, output):
    q, k, v, beta, g, h0, cu_seqlens, scale, output_final_state, C, Lp = inputs
    ctx.save_for_backward(q, k, v, beta, g, h0, cu_seqlens, output[2], output[3])
    ctx.scale, ctx.C, ctx.Lp, ctx.has_ht = scale, C, Lp, output_final_state


def _backward(ctx, do, dht, dAi, dgc):
    q, k, v, beta, g, h0, cu_seqlens, Ai, gc = ctx.saved_tensors
    if not ctx.has_ht:
        dht = None
    dq, dk, dv, db, dg, dh0 = _chunk_bwd_op(q, k, v, beta, g, h0, cu_seqlens, Ai, gc, do, dht, ctx.scale, ctx.C,
                                            ctx.Lp)
    return dq, dk, dv, db, dg, (dh0 if h0 is not None else None), None, None, None, None, None


torch.library.register_autograd("prism_triton::chunk_fwd", _backward, setup_context=_setup_context)


def triton_prism_delta_rule(q, k, v, beta, g, *, scale=None, initial_state=None, output_final_state=False,
                            cu_seqlens=None, chunk_size=64):
    """PRISM delta rule on fla's Triton kernels; arguments and results as ``kernels.prism.prism_delta_rule``.
    bf16/fp16/fp32 inputs (fp32 accumulation in every kernel); the final state is fp32. ``chunk_size`` is an
    upper bound: the WY chunk is C in {16, 32, 64} with Lp * C <= 64 where possible (see ``pick_chunk_size``)."""
    if not triton_runs_on(q):
        raise NotImplementedError("prism_delta_rule(backend='triton'): the Triton kernels need CUDA tensors (or "
                                  "Triton's interpreter: TRITON_INTERPRET=1 and tools/fla_interpret.py's patches); "
                                  "use backend='torch' on the CPU")
    B, T, H, L, K = k.shape
    V = v.shape[-1]
    if K > 256 or V > 256:
        raise ValueError(f"prism_delta_rule(backend='triton'): head dims up to 256, got K = {K}, V = {V}")
    out_dtype = v.dtype
    dt = q.dtype if q.dtype in (torch.float16, torch.bfloat16, torch.float32) else torch.float32
    scale = K ** -0.5 if scale is None else float(scale)
    C, Lp = pick_chunk_size(chunk_size, L)
    q, k, v, beta = (x.to(dt).contiguous() for x in (q, k, v, beta))
    g = g.float().contiguous()
    h0 = initial_state.float().contiguous() if initial_state is not None else None
    if cu_seqlens is not None:
        cu_seqlens = cu_seqlens.to(device=q.device, dtype=torch.long).contiguous()
    if T == 0:
        N = B if cu_seqlens is None else cu_seqlens.numel() - 1
        ht = h0 if h0 is not None else q.new_zeros(N, H, K, V, dtype=torch.float32)
        return v.new_zeros(B, 0, H, V), (ht if output_final_state else None)
    o, ht, _, _ = _chunk_fwd_op(q, k, v, beta, g, h0, cu_seqlens, scale, output_final_state, C, Lp)
    return o.to(out_dtype), (ht if output_final_state else None)
