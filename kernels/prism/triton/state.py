"""PRISM's state recurrence without an expanded sequence (PRISM_TRITON_IMPL=split_fused, the default).

The extra writes add a state-independent term to every chunk's carried state,
    h_end = gamma_C h_start + (dte ⊙ K)^T (u - w h_start) + E_c,     E_c = Σ_{l>=1} (dte ⊙ K_l)^T W_l,
so E_c is computed for all chunks in parallel (``prism_state_extra_kernel``) and the serial kernel
(``prism_state_fwd_kernel``, fla's chunk_gated_delta_rule_fwd_h in one [K, BV] tile, plus E_c) walks the original
chunks: GDN's serial step count and rows. Outputs as fla's chunk_gated_delta_rule_fwd_h (h [B, NT, H, K, V] at
chunk starts in k's dtype, v_new = u - w h in u's dtype, fp32 final state); the backward needs nothing new (the
split backward takes dE_c = fla's dh of chunk c). Gates: chunk-local cumulative, log2 units.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.heuristics({'IS_VARLEN': lambda args: args['cu_seqlens'] is not None})
@triton.autotune(
    configs=[triton.Config({}, num_warps=w, num_stages=s) for w in [2, 4, 8] for s in [2, 3]],
    key=['H', 'L', 'K', 'V', 'BT', 'BK', 'BV', 'IS_VARLEN'],
)
@triton.jit(do_not_specialize=['T'])
def prism_state_extra_kernel(k, v, beta, g, e, cu_seqlens, chunk_indices, T, H: tl.constexpr, L: tl.constexpr,
                             K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr,
                             BV: tl.constexpr, IS_VARLEN: tl.constexpr):
    i_v, i_t, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = i_bh // H, i_bh % H
    if IS_VARLEN:
        i_tg = i_t.to(tl.int64)
        i_n = tl.load(chunk_indices + i_t * 2).to(tl.int32)
        i_t = tl.load(chunk_indices + i_t * 2 + 1).to(tl.int32)
        bos, eos = tl.load(cu_seqlens + i_n).to(tl.int64), tl.load(cu_seqlens + i_n + 1).to(tl.int64)
        T = (eos - bos).to(tl.int32)
    else:
        i_tg = (i_b * tl.cdiv(T, BT) + i_t).to(tl.int64)
        bos = (i_b * T).to(tl.int64)
    o_t = i_t * BT + tl.arange(0, BT)
    m_t = o_t < T
    r_t = bos + o_t.to(tl.int64)
    b_g = tl.load(g + r_t * H + i_h, mask=m_t, other=0.).to(tl.float32)
    last = tl.minimum(i_t * BT + BT, T) - 1
    b_glast = tl.load(g + (bos + last) * H + i_h).to(tl.float32)
    b_dte = tl.where(m_t, tl.exp2(b_glast - b_g), 0.)
    o_k = tl.arange(0, BK)
    m_k = o_k < K
    o_v = i_v * BV + tl.arange(0, BV)
    m_v = o_v < V
    b_e = tl.zeros([BK, BV], dtype=tl.float32)
    for l in range(1, L):
        b_bl = tl.load(beta + (r_t * H + i_h) * L + l, mask=m_t, other=0.).to(tl.float32)
        b_kl = tl.load(k + (r_t[:, None] * H + i_h) * (L * K) + l * K + o_k[None, :], mask=m_t[:, None] & m_k[None, :],
                       other=0.)
        b_vl = tl.load(v + (r_t[:, None] * H + i_h) * (L * V) + l * V + o_v[None, :],
                       mask=m_t[:, None] & m_v[None, :], other=0.).to(tl.float32)
        b_w = (b_vl * (b_bl * b_dte)[:, None]).to(b_kl.dtype)
        b_e += tl.dot(tl.trans(b_kl), b_w)
    p_e = e + (i_tg * H + i_h) * (K * V) + o_k[:, None] * V + o_v[None, :]
    tl.store(p_e, b_e.to(p_e.dtype.element_ty), mask=m_k[:, None] & m_v[None, :])


@triton.heuristics({
    'USE_H0': lambda args: args['h0'] is not None,
    'STORE_HT': lambda args: args['ht'] is not None,
    'HAS_E': lambda args: args['e'] is not None,
    'IS_VARLEN': lambda args: args['cu_seqlens'] is not None,
})
@triton.autotune(
    configs=[triton.Config({'BV': BV}, num_warps=w, num_stages=s) for BV in [32, 64] for w in [2, 4, 8]
             for s in [1, 2, 3]],
    key=['H', 'K', 'V', 'BT', 'BK'],
)
@triton.jit(do_not_specialize=['T'])
def prism_state_fwd_kernel(k, w, u, g, e, h, v_new, h0, ht, cu_seqlens, chunk_offsets, T, H: tl.constexpr,
                           K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
                           USE_H0: tl.constexpr, STORE_HT: tl.constexpr, HAS_E: tl.constexpr,
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
        b_v = b_v * tl.where(m_t, tl.exp2(b_glast - b_g), 0.)[:, None]
        b_h *= tl.exp2(b_glast)
        b_k = tl.load(k + (r_t[:, None] * H + i_h) * K + o_k[None, :], mask=m_tk, other=0.)
        b_h += tl.dot(tl.trans(b_k), b_v.to(b_k.dtype))
        if HAS_E:
            b_h += tl.load(e + (i_c * H + i_h) * (K * V) + o_kv, mask=m_kv, other=0.).to(tl.float32)
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
    e = None
    if k is not None and k.shape[3] > 1:
        L = k.shape[3]
        BVe = min(64, max(16, triton.next_power_of_2(V)))
        e = torch.empty(B, NT, H, K, V, dtype=torch.float32, device=k0.device)
        prism_state_extra_kernel[(triton.cdiv(V, BVe), NT, B * H)](
            k, v, beta, gc, e, cu_seqlens, chunk_indices, T, H=H, L=L, K=K, V=V, BT=BT, BK=BK, BV=BVe)
    h = k0.new_empty(B, NT, H, K, V)
    v_new = torch.empty_like(u)
    ht = k0.new_zeros(N, H, K, V, dtype=torch.float32) if output_final_state else None

    def grid(meta):
        return (triton.cdiv(V, meta['BV']), N * H)
    prism_state_fwd_kernel[grid](k0, w, u, gc, e, h, v_new, initial_state, ht, cu_seqlens, offsets, T, H=H, K=K,
                                 V=V, BT=BT, BK=BK)
    return h, v_new, ht
