"""L2-normalised q and keys straight from the mixer's merged projection, one kernel per direction.

The PRISM mixer computes q and its keys as adjacent columns of one GEMM output ([.., T, n] with n >= (1 + Lk) H d).
fla's l2norm needs contiguous rows, so q and k each cost a copy of their strided columns, and then two launches and
two autograd nodes each way. Here one kernel reads the (1 + Lk) H rows of d per token from the strided columns and
writes contiguous q [B, T, H, d] and k [B, T, H, Lk, d] (the op's layouts); the backward writes the gradient of
those columns as one contiguous tensor.

    y = x / sqrt(sum(x^2) + eps),   dx = rstd * (dy - y * sum(dy * y))       (fla's l2norm, eps = 1e-6)

fp32 statistics, outputs in the input dtype.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def prism_qk_l2norm_fwd_kernel(x, q, k, rstd, N, stride_x, H: tl.constexpr, LH: tl.constexpr, D: tl.constexpr,
                               BR: tl.constexpr, BD: tl.constexpr, EPS: tl.constexpr):
    o_r = tl.program_id(0).to(tl.int64) * BR + tl.arange(0, BR)          # rows: token * (H + LH) + head
    o_d = tl.arange(0, BD)
    m_r = o_r < N
    m = m_r[:, None] & (o_d < D)[None, :]
    t = o_r // (H + LH)
    j = o_r % (H + LH)
    b_x = tl.load(x + (t * stride_x + j * D)[:, None] + o_d[None, :], mask=m, other=0.).to(tl.float32)
    b_rstd = 1. / tl.sqrt(tl.sum(b_x * b_x, axis=1) + EPS)
    b_y = b_x * b_rstd[:, None]
    is_q = j < H
    o_q = (t * H + j) * D
    o_k = (t * LH + j - H) * D
    tl.store(q + tl.where(is_q, o_q, 0)[:, None] + o_d[None, :], b_y.to(q.dtype.element_ty),
             mask=m & is_q[:, None])
    tl.store(k + tl.where(is_q, 0, o_k)[:, None] + o_d[None, :], b_y.to(k.dtype.element_ty),
             mask=m & (~is_q)[:, None])
    tl.store(rstd + o_r, b_rstd, mask=m_r)


@triton.jit
def prism_qk_l2norm_bwd_kernel(q, k, dq, dk, rstd, dx, N, H: tl.constexpr, LH: tl.constexpr, D: tl.constexpr,
                               BR: tl.constexpr, BD: tl.constexpr):
    o_r = tl.program_id(0).to(tl.int64) * BR + tl.arange(0, BR)
    o_d = tl.arange(0, BD)
    m_r = o_r < N
    m = m_r[:, None] & (o_d < D)[None, :]
    t = o_r // (H + LH)
    j = o_r % (H + LH)
    is_q = j < H
    o_y = tl.where(is_q, (t * H + j) * D, (t * LH + j - H) * D)[:, None] + o_d[None, :]
    m_q = m & is_q[:, None]
    m_k = m & (~is_q)[:, None]
    b_y = tl.load(q + o_y, mask=m_q, other=0.).to(tl.float32) + tl.load(k + o_y, mask=m_k, other=0.).to(tl.float32)
    b_dy = tl.load(dq + o_y, mask=m_q, other=0.).to(tl.float32) + tl.load(dk + o_y, mask=m_k, other=0.).to(tl.float32)
    b_rstd = tl.load(rstd + o_r, mask=m_r, other=0.)
    b_dx = (b_dy - b_y * tl.sum(b_dy * b_y, axis=1)[:, None]) * b_rstd[:, None]
    tl.store(dx + (o_r * D)[:, None] + o_d[None, :], b_dx.to(dx.dtype.element_ty), mask=m)


def _blocks(D: int) -> tuple[int, int]:
    BD = triton.next_power_of_2(D)
    return max(1, 4096 // BD), BD


# Forward and backward are torch.library custom ops tied by register_autograd (as the chunk op), which
# torch.compile keeps whole. It traced into the autograd.Function this replaced, down to its Triton launch, and
# Inductor, failing to analyse that kernel, assumed every input mutated and gave up CUDA graphs (H200, 2026-12-02).
@torch.library.custom_op("prism_triton::qk_l2norm_fwd", mutates_args=())
def _qk_l2norm_fwd(x: torch.Tensor, num_heads: int, head_dim: int, key_steps: int, eps: float
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    B, T, _ = x.shape
    H, D, LH = num_heads, head_dim, num_heads * key_steps
    if x.stride(-1) != 1 or x.stride(0) != T * x.stride(1):  # rows must be one stride apart
        x = x.contiguous()
    q = x.new_empty(B, T, H, D)
    k = x.new_empty(B, T, H, key_steps, D)
    N = B * T * (H + LH)
    rstd = torch.empty(N, dtype=torch.float32, device=x.device)
    BR, BD = _blocks(D)
    prism_qk_l2norm_fwd_kernel[(triton.cdiv(N, BR),)](x, q, k, rstd, N, x.stride(1), H=H, LH=LH, D=D, BR=BR, BD=BD,
                                                      EPS=eps)
    return q, k, rstd


@_qk_l2norm_fwd.register_fake
def _(x, num_heads, head_dim, key_steps, eps):
    B, T, _ = x.shape
    return (x.new_empty(B, T, num_heads, head_dim), x.new_empty(B, T, num_heads, key_steps, head_dim),
            x.new_empty(B * T * num_heads * (1 + key_steps), dtype=torch.float32))


@torch.library.custom_op("prism_triton::qk_l2norm_bwd", mutates_args=())
def _qk_l2norm_bwd(q: torch.Tensor, k: torch.Tensor, rstd: torch.Tensor, dq: torch.Tensor, dk: torch.Tensor
                   ) -> torch.Tensor:
    B, T, H, D = q.shape
    LH = k.shape[2] * k.shape[3]
    dx = q.new_empty(B, T, H * D + LH * D)
    N = rstd.numel()
    BR, BD = _blocks(D)
    prism_qk_l2norm_bwd_kernel[(triton.cdiv(N, BR),)](q, k, dq.contiguous(), dk.contiguous(), rstd, dx, N, H=H, LH=LH,
                                                      D=D, BR=BR, BD=BD)
    return dx


@_qk_l2norm_bwd.register_fake
def _(q, k, rstd, dq, dk):
    B, T, H, D = q.shape
    return q.new_empty(B, T, H * D + k.shape[2] * k.shape[3] * D)


def _qk_setup_context(ctx, inputs, output):
    ctx.save_for_backward(*output)


def _qk_backward(ctx, dq, dk, drstd):
    q, k, rstd = ctx.saved_tensors
    dq = torch.zeros_like(q) if dq is None else dq
    dk = torch.zeros_like(k) if dk is None else dk
    return _qk_l2norm_bwd(q, k, rstd, dq, dk), None, None, None, None


torch.library.register_autograd("prism_triton::qk_l2norm_fwd", _qk_backward, setup_context=_qk_setup_context)


def prism_qk_l2norm(x: torch.Tensor, num_heads: int, head_dim: int, key_steps: int, eps: float = 1e-6):
    """(q [B, T, H, d], k [B, T, H, key_steps, d]), each row of d L2-normalised, from x [B, T, (1 + key_steps) H d]:
    q's columns, then the keys' (head-major: head, step, channel), as in the mixer's in_proj. x may be a column
    slice of a wider tensor."""
    if x.shape[-1] != (1 + key_steps) * num_heads * head_dim:
        raise ValueError(f"prism_qk_l2norm: x has {x.shape[-1]} columns, expected (1 + {key_steps}) * {num_heads} "
                         f"* {head_dim}")
    q, k, _ = _qk_l2norm_fwd(x, num_heads, head_dim, key_steps, eps)
    return q, k


def prism_qk_l2norm_reference(x, num_heads, head_dim, key_steps, eps=1e-6):
    """The same in torch (the mixer's path off the Triton backend): fp32 statistics (fp64 for fp64 x), outputs in
    x's dtype."""
    from kernels.gated_delta_rule import l2norm
    B, T, _ = x.shape
    q, k = x.split([num_heads * head_dim, key_steps * num_heads * head_dim], -1)
    return (l2norm(q.reshape(B, T, num_heads, head_dim), eps),
            l2norm(k.reshape(B, T, num_heads, key_steps, head_dim), eps))
