"""PRISM's state recurrence without an expanded sequence (PRISM_TRITON_IMPL=split_fused, the default).

The extra writes add a state-independent term to every chunk's carried state,
    h_end = gamma_C h_start + (dte ⊙ K)^T (u - w h_start) + E_c,     E_c = Σ_{l>=1} (dte ⊙ K_l)^T W_l,
and the serial kernel (``prism_state_fwd_kernel``, fla's chunk_gated_delta_rule_fwd_h in one [K, BV] tile) adds
E_c as it walks the original chunks: GDN's serial step count and rows, plus L - 1 state-independent [K, C] x [C, BV]
products per chunk. (A separate parallel kernel for E_c cost a launch and a [B, NT, H, K, V] fp32 buffer, 100 MB at
16K tokens and d = 128 with 6 heads, in the forward and again in the backward's recompute.)
Outputs as fla's chunk_gated_delta_rule_fwd_h (h [B, NT, H, K, V] at chunk starts in k's dtype, v_new = u - w h in
u's dtype, fp32 final state); the backward needs nothing new (the split backward takes dE_c = fla's dh of chunk c).
Gates: chunk-local cumulative, log2 units.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.heuristics({
    'USE_H0': lambda args: args['h0'] is not None,
    'STORE_HT': lambda args: args['ht'] is not None,
    'IS_VARLEN': lambda args: args['cu_seqlens'] is not None,
})
@triton.autotune(
    configs=[triton.Config({'BV': BV}, num_warps=w, num_stages=s) for BV in [32, 64] for w in [2, 4, 8]
             for s in [1, 2, 3]],
    key=['H', 'L', 'K', 'V', 'BT', 'BK'],
)
@triton.jit(do_not_specialize=['T'])
def prism_state_fwd_kernel(k, w, u, g, kx, vx, beta, h, v_new, h0, ht, cu_seqlens, chunk_offsets, T,
                           H: tl.constexpr, L: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr,
                           BK: tl.constexpr, BV: tl.constexpr, USE_H0: tl.constexpr, STORE_HT: tl.constexpr,
                           IS_VARLEN: tl.constexpr):
    i_v, i_nh = tl.program_id(0), tl.program_id(1)
    i_n, i_h = i_nh // H, i_nh % H
    if IS_VARLEN:
        bos, eos = tl.load(cu_seqlens + i_n).to(tl.int64), tl.load(cu_seqlens + i_n + 1).to(tl.int64)
        T = (eos - bos).to(tl.int32)
        NT = tl.cdiv(T, BT)
        boh = tl.load(chunk_offsets + i_n).to(tl.int64)
    else:
        bos = (i_n * T).to(tl.int64)
        NT = tl.cdiv(T, BT)
        boh = (i_n * NT).to(tl.int64)
    o_k = tl.arange(0, BK)
    m_k = o_k < K
    o_v = i_v * BV + tl.arange(0, BV)
    m_v = o_v < V
    m_kv = m_k[:, None] & m_v[None, :]
    o_kv = o_k[:, None] * V + o_v[None, :]
    b_h = tl.zeros([BK, BV], dtype=tl.float32)
    if USE_H0:
        b_h += tl.load(h0 + i_nh.to(tl.int64) * (K * V) + o_kv, mask=m_kv, other=0.).to(tl.float32)
    for i_t in range(NT):
        i_c = boh + i_t
        tl.store(h + (i_c * H + i_h) * (K * V) + o_kv, b_h.to(h.dtype.element_ty), mask=m_kv)
        o_t = i_t * BT + tl.arange(0, BT)
        m_t = o_t < T
        r_t = bos + o_t.to(tl.int64)
        m_tk = m_t[:, None] & m_k[None, :]
        m_tv = m_t[:, None] & m_v[None, :]
        b_w = tl.load(w + (r_t[:, None] * H + i_h) * K + o_k[None, :], mask=m_tk, other=0.)
        b_v = tl.load(u + (r_t[:, None] * H + i_h) * V + o_v[None, :], mask=m_tv, other=0.).to(tl.float32)
        b_v -= tl.dot(b_w, b_h.to(b_w.dtype))
        tl.store(v_new + (r_t[:, None] * H + i_h) * V + o_v[None, :], b_v.to(v_new.dtype.element_ty), mask=m_tv)
        last = tl.minimum(i_t * BT + BT, T) - 1
        b_glast = tl.load(g + (bos + last) * H + i_h).to(tl.float32)
        b_g = tl.load(g + r_t * H + i_h, mask=m_t, other=0.).to(tl.float32)
        b_dte = tl.where(m_t, tl.exp2(b_glast - b_g), 0.)
        b_v = b_v * b_dte[:, None]
        b_h *= tl.exp2(b_glast)
        b_k = tl.load(k + (r_t[:, None] * H + i_h) * K + o_k[None, :], mask=m_tk, other=0.)
        b_h += tl.dot(tl.trans(b_k), b_v.to(b_k.dtype))
        for l in range(1, L):  # E_c: the extra writes, decayed to the chunk end
            b_bl = tl.load(beta + (r_t * H + i_h) * L + l, mask=m_t, other=0.).to(tl.float32)
            b_kl = tl.load(kx + (r_t[:, None] * H + i_h) * (L * K) + l * K + o_k[None, :], mask=m_tk, other=0.)
            b_vl = tl.load(vx + (r_t[:, None] * H + i_h) * (L * V) + l * V + o_v[None, :], mask=m_tv,
                           other=0.).to(tl.float32)
            b_h += tl.dot(tl.trans(b_kl), (b_vl * (b_bl * b_dte)[:, None]).to(b_kl.dtype))
    if STORE_HT:
        tl.store(ht + i_nh.to(tl.int64) * (K * V) + o_kv, b_h.to(ht.dtype.element_ty), mask=m_kv)


def prism_state_fwd(k0, w, u, gc, k=None, v=None, beta=None, initial_state=None, output_final_state=False,
                    chunk_size=64, cu_seqlens=None, chunk_indices=None):
    """h [B, NT, H, K, V] (chunk starts), v_new, final state (fp32 or None). k/v/beta [.., L, ..] give the extra
    writes (steps >= 1); without them this is fla's chunk_gated_delta_rule_fwd_h."""
    from fla.ops.utils.index import prepare_chunk_offsets
    B, T, H, K = k0.shape
    V = u.shape[-1]
    BT = chunk_size
    BK = max(16, triton.next_power_of_2(K))
    if cu_seqlens is None:
        N, NT, offsets = B, triton.cdiv(T, BT), None
    else:
        N, NT = len(cu_seqlens) - 1, len(chunk_indices)
        offsets = prepare_chunk_offsets(cu_seqlens, BT)
    L = k.shape[3] if k is not None else 1
    h = k0.new_empty(B, NT, H, K, V)
    v_new = torch.empty_like(u)
    ht = k0.new_zeros(N, H, K, V, dtype=torch.float32) if output_final_state else None

    def grid(meta):
        return (triton.cdiv(V, meta['BV']), N * H)
    prism_state_fwd_kernel[grid](k0, w, u, gc, k, v, beta, h, v_new, initial_state, ht, cu_seqlens, offsets, T,
                                 H=H, L=L, K=K, V=V, BT=BT, BK=BK)
    return h, v_new, ht
