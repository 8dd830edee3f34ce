"""fla's Triton chunk_gated_delta_rule as one torch.library op per direction.

fla 0.6.0 marks chunk_gated_delta_rule ``torch.compiler.disable``: a graph break in every Gated DeltaNet layer, so
a compiled GDN model ran in pieces around it while PRISM's op (kernels/prism/triton/chunk.py) is a custom op inside
one graph. Here fla's forward and backward (fla/ops/gated_delta_rule/chunk.py: ``chunk_gated_delta_rule_fwd`` and
``_bwd``, with the q/k L2 normalisation of ``use_qk_l2norm_in_kernel``) are called with the arguments fla's own
autograd Function passes, as custom ops with fake implementations tied by register_autograd, so that compiled GDN
and PRISM models compare fairly (docs/benchmarks.md). Eager calls run the same kernels as fla's function; fla's
alternative backends (FlashQLA, when installed) are not dispatched to: this is fla's Triton path.
"""
from __future__ import annotations

import torch
from torch import Tensor

_EMPTY = (0,)  # the shape of an output that is not there (custom ops return tensors, not None)


def _chunk_indices(cu_seqlens, chunk_size):
    from fla.ops.utils.index import prepare_chunk_indices

    return None if cu_seqlens is None else prepare_chunk_indices(cu_seqlens, chunk_size)


@torch.library.custom_op("prism_fla::gated_delta_rule_fwd", mutates_args=())
def _gdn_fwd(q: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor,
             h0: Tensor | None, cu_seqlens: Tensor | None, scale: float, output_final_state: bool,
             use_qk_l2norm: bool, chunk_size: int
             ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(o, final state, chunk-local cumulative g, A, normalised q, its rstd, normalised k, its rstd); the last six
    are what fla's Function saves for the backward (empty when not there)."""
    from fla.modules.norm.l2norm import l2norm_fwd
    from fla.ops.gated_delta_rule.chunk import chunk_gated_delta_rule_fwd
    from fla.utils import input_guard

    out_dtype = q.dtype
    empty = lambda: q.new_empty(_EMPTY, dtype=torch.float32)  # noqa: E731 - a new one each: outputs never alias
    q_rstd = k_rstd = None
    if use_qk_l2norm:
        q, q_rstd = l2norm_fwd(q)
        k, k_rstd = l2norm_fwd(k)
    gc, o, A, ht, _, _ = input_guard(chunk_gated_delta_rule_fwd)(
        q=q, k=k, v=v, g=g, beta=beta, scale=scale, initial_state=h0, output_final_state=output_final_state,
        cu_seqlens=cu_seqlens, chunk_indices=_chunk_indices(cu_seqlens, chunk_size), chunk_size=chunk_size)
    if not use_qk_l2norm:  # then q and k are the inputs themselves, which an output must not alias
        q, q_rstd, k, k_rstd = empty(), empty(), empty(), empty()
    return o.to(out_dtype), empty() if ht is None else ht, gc, A, q, q_rstd, k, k_rstd


@_gdn_fwd.register_fake
def _(q, k, v, g, beta, h0, cu_seqlens, scale, output_final_state, use_qk_l2norm, chunk_size):
    B, T, HV, V = v.shape
    N = B if cu_seqlens is None else cu_seqlens.shape[0] - 1
    empty = lambda: q.new_empty(_EMPTY, dtype=torch.float32)  # noqa: E731
    ht = q.new_empty((N, HV, k.shape[-1], V), dtype=torch.float32) if output_final_state else empty()
    o, gc, A = q.new_empty(B, T, HV, V), g.new_empty(g.shape, dtype=torch.float32), k.new_empty(B, T, HV, chunk_size)
    if not use_qk_l2norm:
        return o, ht, gc, A, empty(), empty(), empty(), empty()
    rstd = lambda: q.new_empty(q.shape[:-1], dtype=torch.float32)  # noqa: E731
    return o, ht, gc, A, torch.empty_like(q), rstd(), torch.empty_like(k), rstd()


@torch.library.custom_op("prism_fla::gated_delta_rule_bwd", mutates_args=())
def _gdn_bwd(q: Tensor, k: Tensor, v: Tensor, gc: Tensor, beta: Tensor,
             A: Tensor, h0: Tensor | None, cu_seqlens: Tensor | None, q_rstd: Tensor | None,
             k_rstd: Tensor | None, do: Tensor, dht: Tensor | None, scale: float, chunk_size: int,
             g_dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(dq, dk, dv, dg, dbeta, dh0) in the inputs' dtypes (dh0 empty without h0). q and k are the normalised ones
    when q_rstd and k_rstd are given (use_qk_l2norm)."""
    from fla.modules.norm.l2norm import l2norm_bwd
    from fla.ops.gated_delta_rule.chunk import chunk_gated_delta_rule_bwd
    from fla.utils import input_guard

    dq, dk, dv, db, dg, dh0, _, _ = input_guard(chunk_gated_delta_rule_bwd)(
        q=q, k=k, v=v, g=gc, beta=beta, A=A, scale=scale, initial_state=h0, do=do, dht=dht, cu_seqlens=cu_seqlens,
        chunk_indices=_chunk_indices(cu_seqlens, chunk_size), chunk_size=chunk_size)
    if q_rstd is not None:
        dq = l2norm_bwd(q, q_rstd, dq)
        dk = l2norm_bwd(k, k_rstd, dk)
    dh0 = q.new_empty(_EMPTY, dtype=torch.float32) if dh0 is None else dh0
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), dg.to(g_dtype), db.to(beta.dtype), dh0


@_gdn_bwd.register_fake
def _(q, k, v, gc, beta, A, h0, cu_seqlens, q_rstd, k_rstd, do, dht, scale, chunk_size, g_dtype):
    dh0 = torch.empty_like(h0, dtype=torch.float32) if h0 is not None else q.new_empty(_EMPTY, dtype=torch.float32)
    return (torch.empty_like(q), torch.empty_like(k), torch.empty_like(v), torch.empty_like(gc, dtype=g_dtype),
            torch.empty_like(beta), dh0)


def _setup_context(ctx, inputs, output):
    q, k, v, g, beta, h0, cu_seqlens, scale, output_final_state, use_qk_l2norm, chunk_size = inputs
    _, _, gc, A, q_n, q_rstd, k_n, k_rstd = output
    if use_qk_l2norm:  # fla's Function saves the normalised q and k with their rstd
        q, k = q_n, k_n
    else:
        q_rstd = k_rstd = None
    ctx.save_for_backward(q, k, v, gc, beta, A, h0, cu_seqlens, q_rstd, k_rstd)
    ctx.scale, ctx.chunk_size, ctx.has_ht, ctx.g_dtype = scale, chunk_size, output_final_state, g.dtype


def _backward(ctx, do, dht, *_):
    q, k, v, gc, beta, A, h0, cu_seqlens, q_rstd, k_rstd = ctx.saved_tensors
    dq, dk, dv, dg, db, dh0 = _gdn_bwd(q, k, v, gc, beta, A, h0, cu_seqlens, q_rstd, k_rstd, do.contiguous(),
                                       dht.contiguous() if ctx.has_ht and dht is not None else None, ctx.scale,
                                       ctx.chunk_size, ctx.g_dtype)
    return dq, dk, dv, dg, db, (dh0 if h0 is not None else None), None, None, None, None, None


torch.library.register_autograd("prism_fla::gated_delta_rule_fwd", _backward, setup_context=_setup_context)


def fla_gated_delta_rule(q, k, v, g, beta, *, scale: float, initial_state=None, output_final_state=False,
                         cu_seqlens=None, use_qk_l2norm=False, chunk_size=64):
    """fla's chunk_gated_delta_rule (Triton) with the same arguments and results, as one op for torch.compile:
    (o [B, T, HV, V] in q's dtype, final state [N, HV, K, V] in fp32 or None)."""
    if chunk_size not in (16, 32, 64):
        raise ValueError(f"gated_delta_rule(backend='triton'): chunk_size must be 16, 32 or 64, got {chunk_size}")
    q, k, v, g, beta = (x.contiguous() for x in (q, k, v, g, beta))
    h0 = initial_state.contiguous() if initial_state is not None else None
    o, ht, *_ = _gdn_fwd(q, k, v, g, beta, h0, cu_seqlens, float(scale), output_final_state, use_qk_l2norm,
                         chunk_size)
    return o, (ht if output_final_state else None)
