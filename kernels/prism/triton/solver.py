"""PRISM's residual solver (paper Eq. 14-16, and the authors' closed form) as one fused Triton kernel per direction.

The mixer's solver is elementwise over (token, head, channel) but runs L steps of several small ops each (gain,
GELU, residual update; or sigmoid, retain product), i.e. L×several kernel launches and as many [B,T,H,d] round
trips in forward and backward. Here one kernel reads v, the residual source and the gains once and writes all L
deltas; the backward recomputes the (cheap) forward in registers and writes dv, d(residual source), d(gains).

    paper:        r_1 = v - res;  z_l = p_l * r_l (or r_l without gain);  delta_l = gelu(z_l) (or z_l);
                  r_{l+1} = r_l - delta_l
    closed_form:  P_l = sigmoid(p_l);  delta_l = P_l * prod_{j<l} (1 - P_j) * v

Layouts (contiguous): v, res [B, T, H*d] (res = U sliced per head, or r_proj(U)); p [B, T, L, H*d] (the mixer's
p_proj output viewed as [B, T, L, H, d]); delta [B, T, H, L, d] (what kernels.prism.prism_delta_rule takes). GELU is
the exact (erf) form, as torch.nn.functional.gelu's default. fp32 arithmetic, outputs in the input dtype.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

_SQRT1_2 = tl.constexpr(0.7071067811865476)  # a jit-visible global must be a constexpr
_INV_SQRT_2PI = tl.constexpr(0.3989422804014327)


@triton.jit
def _load(ptr, offs, mask):
    return tl.load(ptr + offs, mask=mask, other=0.).to(tl.float32)


@triton.jit
def prism_solver_fwd_kernel(v, res, p, delta, N, HD: tl.constexpr, d: tl.constexpr, L: tl.constexpr,
                            CLOSED_FORM: tl.constexpr, HAS_GAIN: tl.constexpr, GELU: tl.constexpr,
                            BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < N
    bt = offs // HD
    hd = offs % HD
    o_p = bt * (L * HD) + hd                                          # p[b, t, l, hd] at o_p + l * HD
    o_d = bt * (L * HD) + (hd // d) * (L * d) + hd % d                # delta[b, t, h, l, e] at o_d + l * d
    b_v = _load(v, offs, m)
    if CLOSED_FORM:
        b_ret = tl.full([BLOCK], 1.0, tl.float32)
        for l in tl.static_range(L):
            b_P = tl.sigmoid(_load(p, o_p + l * HD, m))
            tl.store(delta + o_d + l * d, (b_P * b_ret * b_v).to(delta.dtype.element_ty), mask=m)
            b_ret = b_ret * (1. - b_P)
    else:
        b_r = b_v - _load(res, offs, m)
        for l in tl.static_range(L):
            b_z = b_r * _load(p, o_p + l * HD, m) if HAS_GAIN else b_r
            b_dl = 0.5 * b_z * (1. + tl.math.erf(b_z * _SQRT1_2)) if GELU else b_z
            tl.store(delta + o_d + l * d, b_dl.to(delta.dtype.element_ty), mask=m)
            b_r = b_r - b_dl


@triton.jit
def prism_solver_bwd_kernel(v, res, p, ddelta, dv, dres, dp, N, HD: tl.constexpr, d: tl.constexpr,
                            L: tl.constexpr, CLOSED_FORM: tl.constexpr, HAS_GAIN: tl.constexpr, GELU: tl.constexpr,
                            BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < N
    bt = offs // HD
    hd = offs % HD
    o_p = bt * (L * HD) + hd
    o_d = bt * (L * HD) + (hd // d) * (L * d) + hd % d
    b_v = _load(v, offs, m)
    if CLOSED_FORM:
        b_dret = tl.zeros([BLOCK], dtype=tl.float32)                  # dL/d retain_{l+1}
        b_dv = tl.zeros([BLOCK], dtype=tl.float32)
        for l in tl.static_range(L - 1, -1, -1):  # a constexpr assigned inside the loop fails to compile on GPU
            b_ret = tl.full([BLOCK], 1.0, tl.float32)                 # retain_l = prod_{j<l} (1 - P_j), recomputed
            for j in tl.static_range(l):
                b_ret = b_ret * (1. - tl.sigmoid(_load(p, o_p + j * HD, m)))
            b_P = tl.sigmoid(_load(p, o_p + l * HD, m))
            b_g = _load(ddelta, o_d + l * d, m)
            b_dP = b_g * b_ret * b_v - b_dret * b_ret
            b_dv += b_g * b_P * b_ret
            b_dret = b_dret * (1. - b_P) + b_g * b_P * b_v
            tl.store(dp + o_p + l * HD, (b_dP * b_P * (1. - b_P)).to(dp.dtype.element_ty), mask=m)
        tl.store(dv + offs, b_dv.to(dv.dtype.element_ty), mask=m)
    else:
        b_r0 = b_v - _load(res, offs, m)
        b_dr = tl.zeros([BLOCK], dtype=tl.float32)                    # dL/d r_{l+1}
        for l in tl.static_range(L - 1, -1, -1):
            b_r = b_r0                                                # r_l, recomputed
            for j in tl.static_range(l):
                b_zj = b_r * _load(p, o_p + j * HD, m) if HAS_GAIN else b_r
                b_r = b_r - (0.5 * b_zj * (1. + tl.math.erf(b_zj * _SQRT1_2)) if GELU else b_zj)
            b_pl = _load(p, o_p + l * HD, m) if HAS_GAIN else tl.full([BLOCK], 1.0, tl.float32)
            b_z = b_r * b_pl
            b_gd = _load(ddelta, o_d + l * d, m) - b_dr                 # total gradient of delta_l
            if GELU:
                b_dz = b_gd * (0.5 * (1. + tl.math.erf(b_z * _SQRT1_2))
                               + b_z * _INV_SQRT_2PI * tl.exp(-0.5 * b_z * b_z))
            else:
                b_dz = b_gd
            if HAS_GAIN:
                tl.store(dp + o_p + l * HD, (b_dz * b_r).to(dp.dtype.element_ty), mask=m)
            b_dr = b_dr + b_dz * b_pl
        tl.store(dv + offs, b_dr.to(dv.dtype.element_ty), mask=m)
        tl.store(dres + offs, (-b_dr).to(dres.dtype.element_ty), mask=m)


BLOCK = 1024


# Forward and backward are torch.library custom ops tied by register_autograd (as the chunk op), so that
# torch.compile keeps each whole in its graph instead of tracing into the Triton launches.
@torch.library.custom_op("prism_triton::solver_fwd", mutates_args=())
def _solver_fwd(v: torch.Tensor, res: torch.Tensor | None, p: torch.Tensor | None, L: int, head_dim: int,
                closed_form: bool, gelu: bool) -> torch.Tensor:
    B, T, HD = v.shape
    delta = v.new_empty(B, T, HD // head_dim, L, head_dim)
    N = v.numel()
    prism_solver_fwd_kernel[(triton.cdiv(N, BLOCK),)](
        v, res if res is not None else v, p if p is not None else v, delta, N, HD=HD, d=head_dim, L=L,
        CLOSED_FORM=closed_form, HAS_GAIN=p is not None, GELU=gelu, BLOCK=BLOCK)
    return delta


@_solver_fwd.register_fake
def _(v, res, p, L, head_dim, closed_form, gelu):
    B, T, HD = v.shape
    return v.new_empty(B, T, HD // head_dim, L, head_dim)


@torch.library.custom_op("prism_triton::solver_bwd", mutates_args=())
def _solver_bwd(v: torch.Tensor, res: torch.Tensor | None, p: torch.Tensor | None, ddelta: torch.Tensor, L: int,
                head_dim: int, closed_form: bool, gelu: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dv, dres, dp); dres and dp are empty where res and p are None."""
    B, T, HD = v.shape
    N = v.numel()
    dv = torch.empty_like(v)
    dres = torch.empty_like(res) if res is not None else v.new_empty(0)
    dp = torch.empty_like(p) if p is not None else v.new_empty(0)
    prism_solver_bwd_kernel[(triton.cdiv(N, BLOCK),)](
        v, res if res is not None else v, p if p is not None else v, ddelta.contiguous(), dv,
        dres if res is not None else dv, dp if p is not None else dv, N, HD=HD, d=head_dim, L=L,
        CLOSED_FORM=closed_form, HAS_GAIN=p is not None, GELU=gelu, BLOCK=BLOCK)
    return dv, dres, dp


@_solver_bwd.register_fake
def _(v, res, p, ddelta, L, head_dim, closed_form, gelu):
    return (torch.empty_like(v), torch.empty_like(res) if res is not None else v.new_empty(0),
            torch.empty_like(p) if p is not None else v.new_empty(0))


def _solver_setup_context(ctx, inputs, output):
    v, res, p, *ctx.cfg = inputs
    ctx.save_for_backward(v, res, p)


def _solver_backward(ctx, ddelta):
    v, res, p = ctx.saved_tensors
    dv, dres, dp = _solver_bwd(v, res, p, ddelta, *ctx.cfg)
    return dv, dres if res is not None else None, dp if p is not None else None, None, None, None, None


torch.library.register_autograd("prism_triton::solver_fwd", _solver_backward, setup_context=_solver_setup_context)


def prism_solver(v: torch.Tensor, res: torch.Tensor | None, p: torch.Tensor | None, steps: int, head_dim: int,
                 solver: str = "paper", nonlinearity: str = "gelu") -> torch.Tensor:
    """Fused solver: delta [B, T, H, L, d]. v [B, T, H*d]; res [B, T, H*d] (paper: r_1 = v - res; unused for
    closed_form); p [B, T, L*H*d] gains (paper: optional; closed_form: required, P = sigmoid(p))."""
    if solver not in ("paper", "closed_form"):
        raise ValueError(f"prism_solver: solver must be 'paper' or 'closed_form', got {solver!r}")
    closed = solver == "closed_form"
    if closed and p is None:
        raise ValueError("prism_solver: closed_form needs the gains p")
    if not closed and res is None:
        raise ValueError("prism_solver: the paper solver needs the residual source res")
    v = v.contiguous()
    res = None if closed else res.contiguous()
    p = p.contiguous() if p is not None else None
    return _solver_fwd(v, res, p, steps, head_dim, closed, nonlinearity == "gelu")


def prism_solver_reference(v, res, p, steps, head_dim, solver="paper", nonlinearity="gelu"):
    """The solver in plain torch on the same layouts: the PRISM mixer's path off the Triton backend, and the
    fused kernel's reference in tests."""
    B, T, HD = v.shape
    H, d, L = HD // head_dim, head_dim, steps
    v = v.view(B, T, H, d)
    p = p.view(B, T, L, H, d) if p is not None else None
    deltas = []
    if solver == "closed_form":
        retain = torch.ones_like(v)
        for step in range(L):
            P = torch.sigmoid(p[:, :, step])
            deltas.append(P * retain * v)
            retain = retain * (1 - P)
    else:
        r = v - res.view(B, T, H, d)
        for step in range(L):
            z = r if p is None else p[:, :, step] * r
            delta = torch.nn.functional.gelu(z) if nonlinearity == "gelu" else z
            deltas.append(delta)
            r = r - delta
    return torch.stack(deltas, 3)
