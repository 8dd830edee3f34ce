"""Exact chunked parallel form of the PRISM delta rule in plain torch (PRISM.md §2), differentiable by autograd.

Inside a chunk of C tokens with incoming state h (keys-by-values), G = cumsum(g), gamma = exp(G),
Γ_ij = exp(G_i - G_j) (i >= j), K = k[0] rows, beta = beta[0], Δ = v[0] rows, and for the extra solver steps
l >= 1 the rows K_l = k[l], W_l = beta[l] * v[l]:

    A   = I + diag(beta) (Γ ⊙ tril_strict(K K^T))                                   (unit lower triangular)
    A U = diag(beta) [Δ - Σ_l (Γ ⊙ tril_strict(K K_l^T)) W_l]        A Wk = diag(beta gamma) K
    Y   = U - Wk h                                                    (the erase-corrected step-0 writes)
    O   = diag(gamma) Q h + (Γ ⊙ tril(Q K^T)) Y + Σ_l (Γ ⊙ tril(Q K_l^T)) W_l
    h'  = gamma_C h + (dte ⊙ K)^T Y + Σ_l (dte ⊙ K_l)^T W_l,          dte = gamma_C / gamma

Everything that does not touch h is computed for all chunks at once (batched matmuls and one batched triangular
solve). What remains is an affine map per chunk,

    h' = Atr h + Btr,   Atr = gamma_C I - (dte ⊙ K)^T Wk,   O = Qeff h + Obase,   Qeff = diag(gamma) Q - P_0 Wk

so the serial loop over chunks is a single [K,K] x [K,V] product per chunk and head.

Packed sequences (cu_seqlens) are laid out chunk-aligned: every chunk belongs to one sequence (the tail of a
sequence is padded with zeros: beta = 0, g = 0 leave the state unchanged), the parallel part runs over the real
chunks only, and the serial loop walks a [N, max chunks] grid batched over sequences.
"""
from __future__ import annotations

import math

import torch

from .naive import _compute_dtype


def _intra_chunk(q, k, v, beta, g):
    """Parallel part. Inputs per chunk: q [M,H,C,K], k [M,H,L,C,K], v [M,H,L,C,V], beta [M,H,L,C], g [M,H,C].
    Returns the affine maps (Atr [M,H,K,K], Btr [M,H,K,V]) and the readout (Qeff [M,H,C,K], Obase [M,H,C,V])."""
    M, H, L, C, K = k.shape
    k0, b0, d0 = k[:, :, 0], beta[:, :, 0], v[:, :, 0]                          # step 0: erases and writes
    G = g.cumsum(-1)                                                             # [M,H,C]
    idx = torch.arange(C, device=q.device)
    incl = idx[:, None] >= idx[None, :]
    strict = idx[:, None] > idx[None, :]
    diff = G[..., :, None] - G[..., None, :]
    gam = diff.masked_fill(~incl, 0.0).exp() * incl                            # Γ with zeros above the diagonal
    gam_s = gam * strict
    gamma = G.exp()                                                              # decay from chunk start
    dte = (G[..., -1:] - G).exp()                                                # decay to chunk end

    rhs_v = d0
    if L > 1:
        kx = k[:, :, 1:].reshape(M, H, (L - 1) * C, K)                           # extra keys, step-major rows
        wx = (beta[:, :, 1:, :, None] * v[:, :, 1:]).reshape(M, H, (L - 1) * C, -1)
        kkx = (k0 @ kx.transpose(-1, -2)).view(M, H, C, L - 1, C) * gam_s[..., :, None, :]
        rhs_v = d0 - kkx.view(M, H, C, (L - 1) * C) @ wx
    # unit lower triangular: solve_triangular(unitriangular=True) reads only the strictly lower part
    a = b0[..., :, None] * (gam_s * (k0 @ k0.transpose(-1, -2)))
    rhs = torch.cat([b0[..., None] * rhs_v, (b0 * gamma)[..., None] * k0], -1)
    if rhs.shape[-1] > C:  # cheaper on CPU: invert A once (C right-hand sides), then one batched matmul
        eye_c = torch.eye(C, dtype=q.dtype, device=q.device).expand_as(a)
        sol = torch.linalg.solve_triangular(a, eye_c, upper=False, unitriangular=True) @ rhs
    else:
        sol = torch.linalg.solve_triangular(a, rhs, upper=False, unitriangular=True)
    u, wk = sol.split([rhs_v.shape[-1], K], -1)

    if L > 1:
        k_all = torch.cat([k0, kx], -2)                                          # [M,H,LC,K]
        w_all = torch.cat([u, wx], -2)                                           # [M,H,LC,V]
        p = ((q @ k_all.transpose(-1, -2)).view(M, H, C, L, C) * gam[..., :, None, :]).view(M, H, C, L * C)
        kd = (k_all.view(M, H, L, C, K) * dte[:, :, None, :, None]).view(M, H, L * C, K)
    else:
        k_all, w_all = k0, u
        p = gam * (q @ k0.transpose(-1, -2))
        kd = k0 * dte[..., None]
    qeff = gamma[..., None] * q - p[..., :C] @ wk
    obase = p @ w_all
    eye_k = torch.eye(K, dtype=q.dtype, device=q.device)
    atr = G[..., -1, None, None].exp() * eye_k - kd[..., :C, :].transpose(-1, -2) @ wk
    btr = kd.transpose(-1, -2) @ w_all
    return atr, btr, qeff, obase


def _to_chunks(x, C, pad):
    """[B,T,H,...] -> [B*NC, C, H, ...], zero-padded at the end of T (zeros: no decay, no write, no read)."""
    if pad:
        x = torch.nn.functional.pad(x, (0, 0) * (x.dim() - 2) + (0, pad))
    B, Tp = x.shape[:2]
    return x.reshape(B * (Tp // C), C, *x.shape[2:])


def chunk_prism_delta_rule(q, k, v, beta, g, *, scale=None, initial_state=None, output_final_state=False,
                           cu_seqlens=None, chunk_size=64):
    """Chunked parallel PRISM delta rule; arguments and results as ``kernels.prism.prism_delta_rule``.

    Computes in fp64 when an input is fp64, fp32 otherwise (bf16/fp16 inputs are upcast). The output has v's
    dtype, the final state the compute dtype.
    """
    dtype = _compute_dtype(q, k, v, beta, g, initial_state)
    out_dtype = v.dtype
    B, T, H, L, K = k.shape
    V = v.shape[-1]
    scale = K ** -0.5 if scale is None else scale
    q, k, v, beta, g = (x.to(dtype) for x in (q, k, v, beta, g))
    q = q * scale

    if cu_seqlens is None:
        N = B
        C = max(1, min(chunk_size, T))
        NC = math.ceil(T / C)
        pad = NC * C - T
        chunks = [_to_chunks(x, C, pad) for x in (q, k, v, beta, g)]             # [M, C, H, ...], M = B*NC
        grid, pos = None, None
    else:
        bounds = cu_seqlens.tolist()
        N = len(bounds) - 1
        lens = [bounds[i + 1] - bounds[i] for i in range(N)]
        C = max(1, min(chunk_size, max(lens, default=1)))
        nc = [math.ceil(n / C) for n in lens]
        M = sum(nc)
        NC = max(nc, default=0)
        # src[slot] = packed token index of each chunk slot (T = the zero row appended below)
        src, grid_rows, m = [], [], 0
        for i in range(N):
            start = bounds[i]
            for j in range(nc[i]):
                lo = j * C
                hi = min(lens[i], lo + C)
                src.extend(range(start + lo, start + hi))
                src.extend([T] * (C - (hi - lo)))
            grid_rows.append(list(range(m, m + nc[i])) + [M] * (NC - nc[i]))
            m += nc[i]
        src = torch.tensor(src, dtype=torch.long, device=q.device)
        grid = torch.tensor(grid_rows, dtype=torch.long, device=q.device).reshape(N, NC)
        valid = grid < M
        pos = torch.nonzero(valid.reshape(-1), as_tuple=True)[0]                 # grid slot of each real chunk
        chunks = []
        for x in (q, k, v, beta, g):
            xp = torch.cat([x[0], x.new_zeros(1, *x.shape[2:])], 0)
            chunks.append(xp[src].reshape(M, C, *x.shape[2:]))

    qc, kc, vc, bc, gc = chunks
    # [M, C, H, ...] -> head-major layouts used by _intra_chunk
    qc = qc.transpose(1, 2)                                                      # [M,H,C,K]
    kc = kc.permute(0, 2, 3, 1, 4)                                               # [M,H,L,C,K]
    vc = vc.permute(0, 2, 3, 1, 4)                                               # [M,H,L,C,V]
    bc = bc.permute(0, 2, 3, 1)                                                  # [M,H,L,C]
    gc = gc.transpose(1, 2)                                                      # [M,H,C]
    M = qc.shape[0]

    h = q.new_zeros(N, H, K, V) if initial_state is None else initial_state.to(dtype)
    if M == 0:
        o = q.new_zeros(B, T, H, V)
        return o.to(out_dtype), (h if output_final_state else None)

    atr, btr, qeff, obase = _intra_chunk(qc, kc, vc, bc, gc)

    if grid is None:
        atr_g = atr.view(N, NC, H, K, K)
        btr_g = btr.view(N, NC, H, K, V)
    else:  # sentinel chunk M: identity map, so sequences with fewer chunks keep their state
        eye = torch.eye(K, dtype=dtype, device=q.device).expand(1, H, K, K)
        atr_g = torch.cat([atr, eye], 0)[grid]
        btr_g = torch.cat([btr, btr.new_zeros(1, H, K, V)], 0)[grid]
    states = []
    for a_n, b_n in zip(atr_g.unbind(1), btr_g.unbind(1)):  # unbind: its backward is one stack, not NC scatters
        states.append(h)
        h = torch.baddbmm(b_n.flatten(0, 1), a_n.flatten(0, 1), h.flatten(0, 1)).view(N, H, K, V)
    h_in = torch.stack(states, 1).reshape(N * NC, H, K, V)
    if pos is not None:
        h_in = h_in[pos]
    o = qeff @ h_in + obase                                                      # [M,H,C,V]

    o = o.transpose(1, 2).reshape(M * C, H, V)                                   # chunk slots, token-major
    if grid is None:
        o = o.reshape(B, NC * C, H, V)[:, :T]
    else:
        inv = torch.empty(T, dtype=torch.long, device=q.device)
        keep = src < T
        inv[src[keep]] = torch.nonzero(keep, as_tuple=True)[0]
        o = o[inv].unsqueeze(0)
    return o.to(out_dtype), (h if output_final_state else None)
