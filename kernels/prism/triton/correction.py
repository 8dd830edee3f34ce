"""Triton kernels for PRISM's chunk-local corrected value (PRISM.md §2), forward and backward.

Per chunk of BT tokens and head, with K0 = k[:, :, :, 0] rows, K_l = k[:, :, :, l], W_l = beta[l] * v[l] (l >= 1),
Γ_ij = exp(G_i - G_j) (G the chunk-local cumulative log decay) and M the strictly lower mask:

    Δ' = v[0] - Σ_{l>=1} S_l W_l,          S_l = M ⊙ Γ ⊙ (K0 K_l^T)

Backward, given D = dL/dΔ' (E_l = -M ⊙ Γ ⊙ (D W_l^T) is dL/d(K0 K_l^T)):

    dW_l = -S_l^T D   (-> dv[l] = beta[l] dW_l, dbeta[l] = rowsum(dW_l ⊙ v[l]))
    dK_l = E_l^T K0,  dK0 += E_l K_l,  dG_i += Σ_j F_ij - Σ_j F_ji with F = E_l ⊙ (K0 K_l^T) (the gradient with
    respect to the natural-log cumulative gate; fla's reverse chunk cumsum turns it into dg).

Layouts: k [B,T,H,L,K], v [B,T,H,L,V], beta [B,T,H,L], g [B,T,H] chunk-local cumulative gate in log2 units (fla's
chunk_local_cumsum(scale=RCP_LN2)), all contiguous; varlen through fla's cu_seqlens / chunk_indices. Dots
accumulate in fp32; their operands are fp32 except for products of two input tensors (K0 K_l^T, Q K_l^T, K_l dh,
W dh^T in the split kernels), which run in the inputs' dtype.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

NUM_WARPS = [2, 4, 8]


@triton.heuristics({'IS_VARLEN': lambda args: args['cu_seqlens'] is not None})
@triton.autotune(
    configs=[triton.Config({}, num_warps=w, num_stages=s) for w in NUM_WARPS for s in [2, 3]],
    key=['H', 'L', 'K', 'V', 'BT', 'BK', 'BV', 'IS_VARLEN'],
)
@triton.jit(do_not_specialize=['T'])
def prism_corr_fwd_kernel(k, v, beta, g, out, cu_seqlens, chunk_indices, T, H: tl.constexpr, L: tl.constexpr,
                          K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
                          IS_VARLEN: tl.constexpr):
    i_v, i_t, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = i_bh // H, i_bh % H
    if IS_VARLEN:
        i_n = tl.load(chunk_indices + i_t * 2).to(tl.int32)
        i_t = tl.load(chunk_indices + i_t * 2 + 1).to(tl.int32)
        bos, eos = tl.load(cu_seqlens + i_n).to(tl.int64), tl.load(cu_seqlens + i_n + 1).to(tl.int64)
        T = (eos - bos).to(tl.int32)
    else:
        bos = (i_b * T).to(tl.int64)
    o_t = i_t * BT + tl.arange(0, BT)
    m_t = o_t < T
    r_t = bos + o_t.to(tl.int64)                                     # global token rows
    b_g = tl.load(g + r_t * H + i_h, mask=m_t, other=0.).to(tl.float32)
    m_A = (o_t[:, None] > o_t[None, :]) & m_t[:, None] & m_t[None, :]
    b_gam = tl.where(m_A, tl.exp2(b_g[:, None] - b_g[None, :]), 0.)
    o_v = i_v * BV + tl.arange(0, BV)
    m_v = o_v < V
    m_tv = m_t[:, None] & m_v[None, :]
    p_k = k + (r_t[:, None] * H + i_h) * (L * K)
    p_v = v + (r_t[:, None] * H + i_h) * (L * V) + o_v[None, :]
    p_b = beta + (r_t * H + i_h) * L
    b_acc = tl.zeros([BT, BV], dtype=tl.float32)
    for l in range(1, L):
        b_P = tl.zeros([BT, BT], dtype=tl.float32)
        for i_k in range(tl.cdiv(K, BK)):
            o_k = i_k * BK + tl.arange(0, BK)
            m_tk = m_t[:, None] & (o_k < K)[None, :]
            b_k0 = tl.load(p_k + o_k[None, :], mask=m_tk, other=0.).to(tl.float32)
            b_kl = tl.load(p_k + l * K + o_k[None, :], mask=m_tk, other=0.).to(tl.float32)
            b_P += tl.dot(b_k0, tl.trans(b_kl))
        b_bl = tl.load(p_b + l, mask=m_t, other=0.).to(tl.float32)
        b_w = tl.load(p_v + l * V, mask=m_tv, other=0.).to(tl.float32) * b_bl[:, None]
        b_acc += tl.dot(b_P * b_gam, b_w)
    b_v0 = tl.load(p_v, mask=m_tv, other=0.).to(tl.float32)
    p_o = out + (r_t[:, None] * H + i_h) * V + o_v[None, :]
    tl.store(p_o, (b_v0 - b_acc).to(p_o.dtype.element_ty), mask=m_tv)


@triton.heuristics({'IS_VARLEN': lambda args: args['cu_seqlens'] is not None})
@triton.autotune(
    configs=[triton.Config({}, num_warps=w, num_stages=s) for w in NUM_WARPS for s in [2, 3]],
    key=['H', 'L', 'K', 'V', 'BT', 'BK', 'BV', 'IS_VARLEN'],
)
@triton.jit(do_not_specialize=['T'])
def prism_corr_bwd_kernel(k, v, beta, g, dd, dk, dk0p, dv, dbeta, dgc, cu_seqlens, chunk_indices, T,
                          H: tl.constexpr, L: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr,
                          BK: tl.constexpr, BV: tl.constexpr, IS_VARLEN: tl.constexpr):
    i_t, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    if IS_VARLEN:
        i_n = tl.load(chunk_indices + i_t * 2).to(tl.int32)
        i_t = tl.load(chunk_indices + i_t * 2 + 1).to(tl.int32)
        bos, eos = tl.load(cu_seqlens + i_n).to(tl.int64), tl.load(cu_seqlens + i_n + 1).to(tl.int64)
        T = (eos - bos).to(tl.int32)
    else:
        bos = (i_b * T).to(tl.int64)
    o_t = i_t * BT + tl.arange(0, BT)
    m_t = o_t < T
    r_t = bos + o_t.to(tl.int64)
    b_g = tl.load(g + r_t * H + i_h, mask=m_t, other=0.).to(tl.float32)
    m_A = (o_t[:, None] > o_t[None, :]) & m_t[:, None] & m_t[None, :]
    b_gam = tl.where(m_A, tl.exp2(b_g[:, None] - b_g[None, :]), 0.)
    p_k = k + (r_t[:, None] * H + i_h) * (L * K)
    p_v = v + (r_t[:, None] * H + i_h) * (L * V)
    p_b = beta + (r_t * H + i_h) * L
    p_dd = dd + (r_t[:, None] * H + i_h) * V
    p_dk = dk + (r_t[:, None] * H + i_h) * (L * K)
    p_dk0 = dk0p + (r_t[:, None] * H + i_h) * ((L - 1) * K)
    p_dv = dv + (r_t[:, None] * H + i_h) * (L * V)
    p_db = dbeta + (r_t * H + i_h) * L
    b_dg = tl.zeros([BT], dtype=tl.float32)
    for l in range(1, L):
        b_bl = tl.load(p_b + l, mask=m_t, other=0.).to(tl.float32)
        b_P = tl.zeros([BT, BT], dtype=tl.float32)
        for i_k in range(tl.cdiv(K, BK)):
            o_k = i_k * BK + tl.arange(0, BK)
            m_tk = m_t[:, None] & (o_k < K)[None, :]
            b_k0 = tl.load(p_k + o_k[None, :], mask=m_tk, other=0.).to(tl.float32)
            b_kl = tl.load(p_k + l * K + o_k[None, :], mask=m_tk, other=0.).to(tl.float32)
            b_P += tl.dot(b_k0, tl.trans(b_kl))
        b_dS = tl.zeros([BT, BT], dtype=tl.float32)                 # D W_l^T
        for i_v in range(tl.cdiv(V, BV)):
            o_v = i_v * BV + tl.arange(0, BV)
            m_tv = m_t[:, None] & (o_v < V)[None, :]
            b_d = tl.load(p_dd + o_v[None, :], mask=m_tv, other=0.).to(tl.float32)
            b_w = tl.load(p_v + l * V + o_v[None, :], mask=m_tv, other=0.).to(tl.float32) * b_bl[:, None]
            b_dS += tl.dot(b_d, tl.trans(b_w))
        b_S = b_P * b_gam
        b_E = -b_dS * b_gam                                           # dL/d(K0 K_l^T)
        b_F = b_E * b_P
        b_dg += tl.sum(b_F, axis=1) - tl.sum(b_F, axis=0)
        b_db = tl.zeros([BT], dtype=tl.float32)
        for i_v in range(tl.cdiv(V, BV)):
            o_v = i_v * BV + tl.arange(0, BV)
            m_tv = m_t[:, None] & (o_v < V)[None, :]
            b_d = tl.load(p_dd + o_v[None, :], mask=m_tv, other=0.).to(tl.float32)
            b_vl = tl.load(p_v + l * V + o_v[None, :], mask=m_tv, other=0.).to(tl.float32)
            b_dw = -tl.dot(tl.trans(b_S), b_d)
            b_db += tl.sum(b_dw * b_vl, axis=1)
            tl.store(p_dv + l * V + o_v[None, :], (b_dw * b_bl[:, None]).to(dv.dtype.element_ty), mask=m_tv)
        tl.store(p_db + l, b_db.to(dbeta.dtype.element_ty), mask=m_t)
        for i_k in range(tl.cdiv(K, BK)):
            o_k = i_k * BK + tl.arange(0, BK)
            m_tk = m_t[:, None] & (o_k < K)[None, :]
            b_k0 = tl.load(p_k + o_k[None, :], mask=m_tk, other=0.).to(tl.float32)
            b_kl = tl.load(p_k + l * K + o_k[None, :], mask=m_tk, other=0.).to(tl.float32)
            tl.store(p_dk + l * K + o_k[None, :], tl.dot(tl.trans(b_E), b_k0).to(dk.dtype.element_ty), mask=m_tk)
            tl.store(p_dk0 + (l - 1) * K + o_k[None, :], tl.dot(b_E, b_kl).to(dk0p.dtype.element_ty), mask=m_tk)
    tl.store(dgc + r_t * H + i_h, b_dg.to(dgc.dtype.element_ty), mask=m_t)


def _blocks(K, V):
    BK = min(64, max(16, triton.next_power_of_2(K)))
    BV = min(64, max(16, triton.next_power_of_2(V)))
    return BK, BV


def corrected_value_fwd(k, v, beta, gc, chunk_size, cu_seqlens=None, chunk_indices=None, out_dtype=None):
    """Δ' [B,T,H,V] (out_dtype, default v's dtype). gc: fla's chunk-local cumulative gate in log2 units."""
    B, T, H, L, K = k.shape
    V = v.shape[-1]
    BT = chunk_size
    BK, BV = _blocks(K, V)
    NT = triton.cdiv(T, BT) if cu_seqlens is None else len(chunk_indices)
    out = torch.empty(B, T, H, V, dtype=out_dtype or v.dtype, device=v.device)
    prism_corr_fwd_kernel[(triton.cdiv(V, BV), NT, B * H)](
        k, v, beta, gc, out, cu_seqlens, chunk_indices, T, H=H, L=L, K=K, V=V, BT=BT, BK=BK, BV=BV)
    return out


def corrected_value_bwd(k, v, beta, gc, dd, chunk_size, cu_seqlens=None, chunk_indices=None):
    """Gradients of Δ' given dd = dL/dΔ': dk [B,T,H,L,K], dv [B,T,H,L,V], dbeta [B,T,H,L] (fp32; step 0's
    slots hold only what flows through K0 (dk) and nothing for v[0]/beta[0]: add dd to dv[0] yourself) and dgc
    [B,T,H] (fp32, with respect to the natural-log chunk-local cumulative gate)."""
    B, T, H, L, K = k.shape
    V = v.shape[-1]
    BT = chunk_size
    BK, BV = _blocks(K, V)
    NT = triton.cdiv(T, BT) if cu_seqlens is None else len(chunk_indices)
    f = torch.float32
    dk = torch.zeros(B, T, H, L, K, dtype=f, device=k.device)
    dk0p = torch.empty(B, T, H, L - 1, K, dtype=f, device=k.device)
    dv = torch.zeros(B, T, H, L, V, dtype=f, device=k.device)
    dbeta = torch.zeros(B, T, H, L, dtype=f, device=k.device)
    dgc = torch.empty(B, T, H, dtype=f, device=k.device)
    prism_corr_bwd_kernel[(NT, B * H)](
        k, v, beta, gc, dd, dk, dk0p, dv, dbeta, dgc, cu_seqlens, chunk_indices, T, H=H, L=L, K=K, V=V, BT=BT,
        BK=BK, BV=BV)
    dk[:, :, :, 0] = dk0p.sum(3)
    return dk, dv, dbeta, dgc


# ---------------------------------------------------------------------------------------------------------------
# "split" design: every chunk-local term of the extra writes in one forward and one backward kernel, so that fla's
# output / backward kernels run on the original sequence (only the state recurrence sees the extra rows).
#
#   Δ'    = v[0] - Σ_l S_l W_l,                     S_l = M_s ⊙ Γ ⊙ (K0 K_l^T)          (corrected value)
#   O_x   = scale Σ_l R_l W_l,                       R_l = M_i ⊙ Γ ⊙ (Q K_l^T)           (extra writes' output)
#   h_end += Σ_l (dte ⊙ K_l)^T W_l                                                       (extra writes' state)
# The backward takes dd = dL/dΔ', do = dL/dO and dh = fla's per-chunk dL/d(state at chunk end).

@triton.heuristics({'IS_VARLEN': lambda args: args['cu_seqlens'] is not None})
@triton.autotune(
    configs=[triton.Config({}, num_warps=w, num_stages=s) for w in NUM_WARPS for s in [2, 3]],
    key=['H', 'L', 'K', 'V', 'BT', 'BK', 'BV', 'IS_VARLEN', 'WITH_O'],
)
@triton.jit(do_not_specialize=['T'])
def prism_extra_fwd_kernel(q, k, v, beta, g, dvp, ox, scale, cu_seqlens, chunk_indices, T, H: tl.constexpr,
                           L: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr,
                           BV: tl.constexpr, IS_VARLEN: tl.constexpr, WITH_O: tl.constexpr):
    i_v, i_t, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = i_bh // H, i_bh % H
    if IS_VARLEN:
        i_n = tl.load(chunk_indices + i_t * 2).to(tl.int32)
        i_t = tl.load(chunk_indices + i_t * 2 + 1).to(tl.int32)
        bos, eos = tl.load(cu_seqlens + i_n).to(tl.int64), tl.load(cu_seqlens + i_n + 1).to(tl.int64)
        T = (eos - bos).to(tl.int32)
    else:
        bos = (i_b * T).to(tl.int64)
    o_t = i_t * BT + tl.arange(0, BT)
    m_t = o_t < T
    r_t = bos + o_t.to(tl.int64)
    b_g = tl.load(g + r_t * H + i_h, mask=m_t, other=0.).to(tl.float32)
    m_v2 = m_t[:, None] & m_t[None, :]
    b_gd = b_g[:, None] - b_g[None, :]
    b_gs = tl.where((o_t[:, None] > o_t[None, :]) & m_v2, tl.exp2(b_gd), 0.)
    b_gi = tl.where((o_t[:, None] >= o_t[None, :]) & m_v2, tl.exp2(b_gd), 0.)
    o_v = i_v * BV + tl.arange(0, BV)
    m_tv = m_t[:, None] & (o_v < V)[None, :]
    p_k = k + (r_t[:, None] * H + i_h) * (L * K)
    p_q = q + (r_t[:, None] * H + i_h) * K
    p_v = v + (r_t[:, None] * H + i_h) * (L * V) + o_v[None, :]
    p_b = beta + (r_t * H + i_h) * L
    b_ac = tl.zeros([BT, BV], dtype=tl.float32)
    b_ao = tl.zeros([BT, BV], dtype=tl.float32)
    for l in range(1, L):
        b_P = tl.zeros([BT, BT], dtype=tl.float32)
        b_R = tl.zeros([BT, BT], dtype=tl.float32)
        for i_k in range(tl.cdiv(K, BK)):
            o_k = i_k * BK + tl.arange(0, BK)
            m_tk = m_t[:, None] & (o_k < K)[None, :]
            b_kl = tl.load(p_k + l * K + o_k[None, :], mask=m_tk, other=0.)
            b_k0 = tl.load(p_k + o_k[None, :], mask=m_tk, other=0.)
            b_P += tl.dot(b_k0, tl.trans(b_kl))                      # inputs' dtype, fp32 accumulation
            if WITH_O:
                b_qq = tl.load(p_q + o_k[None, :], mask=m_tk, other=0.)
                b_R += tl.dot(b_qq, tl.trans(b_kl))
        b_bl = tl.load(p_b + l, mask=m_t, other=0.).to(tl.float32)
        # matmul operands in the inputs' dtype (bf16 on the GPU), fp32 accumulation, as in fla's kernels
        b_w = (tl.load(p_v + l * V, mask=m_tv, other=0.).to(tl.float32) * b_bl[:, None]).to(k.dtype.element_ty)
        b_ac += tl.dot((b_P * b_gs).to(b_w.dtype), b_w)
        if WITH_O:
            b_ao += tl.dot((b_R * b_gi).to(b_w.dtype), b_w)
    b_v0 = tl.load(p_v, mask=m_tv, other=0.).to(tl.float32)
    p_d = dvp + (r_t[:, None] * H + i_h) * V + o_v[None, :]
    tl.store(p_d, (b_v0 - b_ac).to(p_d.dtype.element_ty), mask=m_tv)
    if WITH_O:
        p_o = ox + (r_t[:, None] * H + i_h) * V + o_v[None, :]
        tl.store(p_o, (b_ao * scale).to(p_o.dtype.element_ty), mask=m_tv)


@triton.heuristics({'IS_VARLEN': lambda args: args['cu_seqlens'] is not None})
@triton.autotune(  # no 2-warp configs: 128-164 KiB of tiles; in fp32 each took ptxas ~85 s (tools/compile_check.py)
    configs=[triton.Config({}, num_warps=w, num_stages=s) for w in [4, 8] for s in [2, 3]],
    key=['H', 'L', 'K', 'V', 'BT', 'BK', 'BV', 'IS_VARLEN'],
)
@triton.jit(do_not_specialize=['T'])
def prism_extra_bwd_kernel(q, k, v, beta, g, dd, do, dh, db0, dq0, dk0f, dk0w, dk, dqo, acc, dv, dbeta, dgc, scale,
                           cu_seqlens, chunk_indices, T, H: tl.constexpr, L: tl.constexpr, K: tl.constexpr,
                           V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
                           IS_VARLEN: tl.constexpr):
    i_t, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    dt = k.dtype.element_ty  # the matmuls' operand dtype
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
    m_v2 = m_t[:, None] & m_t[None, :]
    b_gd = b_g[:, None] - b_g[None, :]
    b_gs = tl.where((o_t[:, None] > o_t[None, :]) & m_v2, tl.exp2(b_gd), 0.)
    b_gi = tl.where((o_t[:, None] >= o_t[None, :]) & m_v2, tl.exp2(b_gd), 0.)
    p_k = k + (r_t[:, None] * H + i_h) * (L * K)
    p_q = q + (r_t[:, None] * H + i_h) * K
    p_v = v + (r_t[:, None] * H + i_h) * (L * V)
    p_b = beta + (r_t * H + i_h) * L
    p_dd = dd + (r_t[:, None] * H + i_h) * V
    p_do = do + (r_t[:, None] * H + i_h) * V
    p_dh = dh + (i_tg * H + i_h) * (K * V)
    p_dk = dk + (r_t[:, None] * H + i_h) * (L * K)
    # dK0 = fla's two gradients of K0 (dk0f, dk0w) + the steps' shares, dq = fla's dq0 + theirs: summed in fp32 and
    # rounded once into dk's slot 0 and dqo at the last step; only L > 2 carries the sums between steps in acc
    p_rows = (r_t[:, None] * H + i_h) * K
    p_acc = acc + (r_t[:, None] * H + i_h) * (2 * K)
    p_dv = dv + (r_t[:, None] * H + i_h) * (L * V)
    p_db = dbeta + (r_t * H + i_h) * L
    b_dg = tl.zeros([BT], dtype=tl.float32)
    b_dglast = tl.zeros([BT], dtype=tl.float32)
    for l in range(1, L):
        b_bl = tl.load(p_b + l, mask=m_t, other=0.).to(tl.float32)
        b_P = tl.zeros([BT, BT], dtype=tl.float32)
        b_R = tl.zeros([BT, BT], dtype=tl.float32)
        for i_k in range(tl.cdiv(K, BK)):
            o_k = i_k * BK + tl.arange(0, BK)
            m_tk = m_t[:, None] & (o_k < K)[None, :]
            b_kl = tl.load(p_k + l * K + o_k[None, :], mask=m_tk, other=0.)
            b_k0 = tl.load(p_k + o_k[None, :], mask=m_tk, other=0.)
            b_qq = tl.load(p_q + o_k[None, :], mask=m_tk, other=0.)
            b_P += tl.dot(b_k0, tl.trans(b_kl))                      # inputs' dtype, fp32 accumulation
            b_R += tl.dot(b_qq, tl.trans(b_kl))
        b_dSc = tl.zeros([BT, BT], dtype=tl.float32)
        b_dSo = tl.zeros([BT, BT], dtype=tl.float32)
        for i_v in range(tl.cdiv(V, BV)):
            o_v = i_v * BV + tl.arange(0, BV)
            m_tv = m_t[:, None] & (o_v < V)[None, :]
            # matmul operands in the inputs' dtype (bf16 on the GPU), fp32 accumulation, as in fla's kernels
            b_w = (tl.load(p_v + l * V + o_v[None, :], mask=m_tv, other=0.).to(tl.float32)
                   * b_bl[:, None]).to(dt)
            b_d = tl.load(p_dd + o_v[None, :], mask=m_tv, other=0.).to(dt)
            b_o = tl.load(p_do + o_v[None, :], mask=m_tv, other=0.).to(dt)
            b_dSc += tl.dot(b_d, tl.trans(b_w))
            b_dSo += tl.dot(b_o, tl.trans(b_w))
        b_S = b_P * b_gs
        b_Ro = b_R * b_gi * scale
        b_Ec = -b_dSc * b_gs
        b_Eo = b_dSo * b_gi * scale
        b_F = b_Ec * b_P + b_Eo * b_R
        b_Slo, b_Rolo, b_Eclo, b_Eolo = b_S.to(dt), b_Ro.to(dt), b_Ec.to(dt), b_Eo.to(dt)
        b_dg += tl.sum(b_F, axis=1) - tl.sum(b_F, axis=0)
        b_db = tl.zeros([BT], dtype=tl.float32)
        b_fs = tl.zeros([BT], dtype=tl.float32)
        for i_v in range(tl.cdiv(V, BV)):
            o_v = i_v * BV + tl.arange(0, BV)
            m_v = o_v < V
            m_tv = m_t[:, None] & m_v[None, :]
            b_d = tl.load(p_dd + o_v[None, :], mask=m_tv, other=0.).to(dt)
            b_o = tl.load(p_do + o_v[None, :], mask=m_tv, other=0.).to(dt)
            b_vl = tl.load(p_v + l * V + o_v[None, :], mask=m_tv, other=0.).to(tl.float32)
            b_ws = tl.zeros([BT, BV], dtype=tl.float32)               # K_l dh
            for i_k in range(tl.cdiv(K, BK)):
                o_k = i_k * BK + tl.arange(0, BK)
                m_k = o_k < K
                b_kl = tl.load(p_k + l * K + o_k[None, :], mask=m_t[:, None] & m_k[None, :], other=0.)
                b_h = tl.load(p_dh + o_k[:, None] * V + o_v[None, :], mask=m_k[:, None] & m_v[None, :], other=0.)
                b_ws += tl.dot(b_kl, b_h.to(b_kl.dtype))
            b_fs += tl.sum(b_ws * b_vl, axis=1) * b_bl * b_dte
            b_dw = tl.dot(tl.trans(b_Rolo), b_o) - tl.dot(tl.trans(b_Slo), b_d) + b_ws * b_dte[:, None]
            b_db += tl.sum(b_dw * b_vl, axis=1)
            tl.store(p_dv + l * V + o_v[None, :], (b_dw * b_bl[:, None]).to(dv.dtype.element_ty), mask=m_tv)
        tl.store(p_db + l, b_db.to(dbeta.dtype.element_ty), mask=m_t)
        b_dg -= b_fs
        b_dglast += b_fs
        for i_k in range(tl.cdiv(K, BK)):
            o_k = i_k * BK + tl.arange(0, BK)
            m_k = o_k < K
            m_tk = m_t[:, None] & m_k[None, :]
            b_k0 = tl.load(p_k + o_k[None, :], mask=m_tk, other=0.).to(dt)
            b_kl = tl.load(p_k + l * K + o_k[None, :], mask=m_tk, other=0.).to(dt)
            b_qq = tl.load(p_q + o_k[None, :], mask=m_tk, other=0.).to(dt)
            b_hk = tl.zeros([BT, BK], dtype=tl.float32)               # W_l dh^T
            for i_v in range(tl.cdiv(V, BV)):
                o_v = i_v * BV + tl.arange(0, BV)
                m_v = o_v < V
                b_w = tl.load(p_v + l * V + o_v[None, :], mask=m_t[:, None] & m_v[None, :], other=0.)
                b_h = tl.load(p_dh + o_k[:, None] * V + o_v[None, :], mask=m_k[:, None] & m_v[None, :], other=0.)
                b_hk += tl.dot(b_w, tl.trans(b_h.to(b_w.dtype)))
            b_dkl = tl.dot(tl.trans(b_Eclo), b_k0) + tl.dot(tl.trans(b_Eolo), b_qq) + b_hk * (b_bl * b_dte)[:, None]
            tl.store(p_dk + l * K + o_k[None, :], b_dkl.to(dk.dtype.element_ty), mask=m_tk)
            if l == 1:
                b_sk = (tl.load(dk0f + p_rows + o_k[None, :], mask=m_tk, other=0.).to(tl.float32)
                        + tl.load(dk0w + p_rows + o_k[None, :], mask=m_tk, other=0.).to(tl.float32))
                b_sq = tl.load(dq0 + p_rows + o_k[None, :], mask=m_tk, other=0.).to(tl.float32)
            else:
                b_sk = tl.load(p_acc + o_k[None, :], mask=m_tk, other=0.)
                b_sq = tl.load(p_acc + K + o_k[None, :], mask=m_tk, other=0.)
            b_sk += tl.dot(b_Eclo, b_kl)
            b_sq += tl.dot(b_Eolo, b_kl)
            if l == L - 1:
                tl.store(p_dk + o_k[None, :], b_sk.to(dk.dtype.element_ty), mask=m_tk)
                tl.store(dqo + p_rows + o_k[None, :], b_sq.to(dqo.dtype.element_ty), mask=m_tk)
            else:
                tl.store(p_acc + o_k[None, :], b_sk, mask=m_tk)
                tl.store(p_acc + K + o_k[None, :], b_sq, mask=m_tk)
        if L > 2:
            tl.debug_barrier()  # acc's stores are read back by the next step, by other threads
    b_dg += tl.where(o_t == last, tl.sum(b_dglast, axis=0), 0.)
    tl.store(dgc + r_t * H + i_h, b_dg.to(dgc.dtype.element_ty), mask=m_t)
    # the rest of slot 0, in the outputs' dtypes: d(Δ') and fla's dbeta0
    for i_v in range(tl.cdiv(V, BV)):
        o_v = i_v * BV + tl.arange(0, BV)
        m_tv = m_t[:, None] & (o_v < V)[None, :]
        tl.store(p_dv + o_v[None, :], tl.load(p_dd + o_v[None, :], mask=m_tv, other=0.).to(dv.dtype.element_ty),
                 mask=m_tv)
    tl.store(p_db, tl.load(db0 + r_t * H + i_h, mask=m_t, other=0.).to(dbeta.dtype.element_ty), mask=m_t)


def extra_fwd(q, k, v, beta, gc, scale, chunk_size, cu_seqlens=None, chunk_indices=None, with_output=True):
    """(Δ' [B,T,H,V] in v's dtype, O_x [B,T,H,V] fp32): corrected value and the extra writes' chunk-local output.
    with_output=False (the backward's recompute, which needs only Δ'): O_x is None, and neither computed nor
    stored."""
    B, T, H, L, K = k.shape
    V = v.shape[-1]
    BT = chunk_size
    BK, BV = _blocks(K, V)
    NT = triton.cdiv(T, BT) if cu_seqlens is None else len(chunk_indices)
    dvp = torch.empty(B, T, H, V, dtype=v.dtype, device=v.device)
    ox = torch.empty(B, T, H, V, dtype=torch.float32, device=v.device) if with_output else None
    prism_extra_fwd_kernel[(triton.cdiv(V, BV), NT, B * H)](
        q, k, v, beta, gc, dvp, ox, scale, cu_seqlens, chunk_indices, T, H=H, L=L, K=K, V=V, BT=BT, BK=BK, BV=BV,
        WITH_O=with_output)
    return dvp, ox


def extra_bwd(q, k, v, beta, gc, dd, do, dh, dq, dk0, dk0_wy, db0, scale, chunk_size, cu_seqlens=None,
              chunk_indices=None):
    """Gradients of (Δ', O_x, the extra writes' state term) given dd = d(Δ'), do and fla's per-chunk dh (dL/d state
    at chunk end). dq, dk0 and dk0_wy [B,T,H,K] are fla's GDN gradients of q and K0 (chunk_bwd_dqkwg's and
    prepare_wy_repr_bwd's, in their dtype): the kernel adds the extra writes' shares to them in fp32 and rounds the
    sums once. Returns the final dq [B,T,H,K], dk [B,T,H,L,K], dv [B,T,H,L,V], dbeta [B,T,H,L] in the dtypes of q,
    k, v, beta (slot 0: dK0 with the shares, dd and fla's db0 [B,T,H]), and fp32 dgc [B,T,H] (natural-log cumulative
    gate). Final gradients go straight into the inputs' dtype: fp32 copies of dk and dv (L times q's size each) would
    double the backward's peak memory in bf16, and fp32 copies of dq and dK0 cost a round trip each."""
    B, T, H, L, K = k.shape
    V = v.shape[-1]
    BT = chunk_size
    BK, BV = _blocks(K, V)
    NT = triton.cdiv(T, BT) if cu_seqlens is None else len(chunk_indices)
    f = torch.float32
    assert dq.is_contiguous() and dk0.is_contiguous() and dk0_wy.is_contiguous() and db0.is_contiguous()
    dqo = torch.empty_like(q)
    dk = torch.empty(B, T, H, L, K, dtype=k.dtype, device=k.device)
    dv = torch.empty(B, T, H, L, V, dtype=v.dtype, device=k.device)
    dbeta = torch.empty(B, T, H, L, dtype=beta.dtype, device=k.device)
    dgc = torch.empty(B, T, H, dtype=f, device=k.device)
    # fp32 sums of dK0 and dq carried between the solver steps: only L > 2 has a step between the first and the last
    acc = torch.empty(B, T, H, 2 * K if L > 2 else 1, dtype=f, device=k.device)
    prism_extra_bwd_kernel[(NT, B * H)](
        q, k, v, beta, gc, dd, do, dh, db0, dq, dk0, dk0_wy, dk, dqo, acc, dv, dbeta, dgc, scale, cu_seqlens,
        chunk_indices, T, H=H, L=L, K=K, V=V, BT=BT, BK=BK, BV=BV)
    return dqo, dk, dv, dbeta, dgc
