"""TTT-MLP in mini-batch dual form, batched over sequences and heads; serial over mini-batches.

Inside a mini-batch of b tokens every inner gradient is taken at the weights W0 the mini-batch starts from, and
token i sees W_i = W0 - eta_i * sum_{j<=i} lr_j grad l_j(W0) (eta_i: the factor of position i in the mini-batch,
lr_j: token j's inner learning rate). The dual form computes f_{W_i}(x_q,i) for all i at once with causal
masks instead of materialising W_i; the weights carried to the next mini-batch are W_b (the last row).
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from .inner import gelu_tanh_grad, layer_norm, ln_fused_l2_bwd


def _up(x: torch.Tensor) -> torch.Tensor:
    """At least fp32 (the LayerNorm statistics of the inner loss are kept out of bf16)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def dual_step(W1, b1, W2, b2, xq, xk, target, eta, eta_attn1, ln_w, ln_b, eps: float):
    """One mini-batch. W1 [B,H,d,f], b1 [B,H,1,f], W2 [B,H,f,d], b2 [B,H,1,d]; xq, xk [B,H,b,d];
    target = x_v - x_k [B,H,b,d] (at least fp32); eta [B,H,b,b] lower triangular, eta[i, j] = eta_i * lr_j;
    eta_attn1 = eta * (x_q x_k^T) (it does not depend on the weights: computed for all mini-batches at once);
    ln_w, ln_b [H,1,d]. Returns (f_bar(xq) [B,H,b,d], W1', b1', W2', b2')."""
    Z1 = xk @ W1 + b1
    X2 = F.gelu(Z1, approximate="tanh")
    Z2 = X2 @ W2 + b2
    gZ2 = ln_fused_l2_bwd(_up(Z2), target, ln_w, ln_b, eps)
    gZ1 = gelu_tanh_grad(gZ2 @ W2.transpose(-1, -2), Z1)

    Z1_bar = xq @ W1 - eta_attn1 @ gZ1 + b1 - eta @ gZ1
    X2_bar = F.gelu(Z1_bar, approximate="tanh")
    eta_attn2 = eta * (X2_bar @ X2.transpose(-1, -2))
    Z2_bar = X2_bar @ W2 - eta_attn2 @ gZ2 + b2 - eta @ gZ2

    last = eta[..., -1, :, None]  # [B,H,b,1]: eta_b * lr_j
    W1 = W1 - (last * xk).transpose(-1, -2) @ gZ1
    b1 = b1 - (last * gZ1).sum(-2, keepdim=True)
    W2 = W2 - (last * X2).transpose(-1, -2) @ gZ2
    b2 = b2 - (last * gZ2).sum(-2, keepdim=True)
    return Z2_bar, W1, b1, W2, b2


@functools.lru_cache(maxsize=None)
def compiled_dual_step(backend: str = "inductor", mode: str | None = None):
    """dual_step under torch.compile (one graph, reused for every mini-batch)."""
    return torch.compile(dual_step, backend=backend, mode=mode, fullgraph=True, dynamic=False)


def _scan(step, params, xq, xk, target, eta, eta_attn1, commit, ln_w, ln_b, eps):
    """Mini-batches m = 0..M-1 of xq... [B,H,M,b,d]; commit [M] of None (all) or bool [B] (per row)."""
    W = params
    outs = []
    for m in range(xq.shape[2]):
        z, *new = step(*W, xq[:, :, m], xk[:, :, m], target[:, :, m], eta[:, :, m], eta_attn1[:, :, m], ln_w, ln_b,
                       eps)
        c = commit[m]
        if c is None:
            W = new
        elif c is not False:
            W = [torch.where(c.view(-1, 1, 1, 1), n, w) for n, w in zip(new, W)]
        outs.append(z)
    return torch.stack(outs, 2), W


def ttt_mlp_dual(xq, xk, xv, eta, params, ln_w, ln_b, *, commit, eps: float = 1e-6, checkpoint_group: int = 0,
                 compile: bool = False, compile_backend: str = "inductor"):
    """xq, xk, xv [B,H,M,b,d], eta [B,H,M,b,b]; params (W1, b1, W2, b2) per sequence (leading dim B or 1);
    commit: list of M entries (None: update, False: keep, bool [B]: per row). Returns (z [B,H,M,b,d], params)."""
    B = xq.shape[0]
    params = [p.expand(B, *p.shape[1:]) for p in params]
    step = compiled_dual_step(compile_backend) if compile else dual_step
    # everything that does not depend on the inner weights, for all mini-batches at once
    target = _up(xv - xk)
    eta = eta.to(target.dtype)
    eta_attn1 = eta * (xq @ xk.transpose(-1, -2))  # eta is lower triangular: so is this
    M = xq.shape[2]
    G = checkpoint_group if (checkpoint_group and torch.is_grad_enabled()) else M
    outs = []
    for s in range(0, M, max(G, 1)):
        e = min(s + G, M)
        args = (xq[:, :, s:e], xk[:, :, s:e], target[:, :, s:e], eta[:, :, s:e], eta_attn1[:, :, s:e], commit[s:e],
                ln_w, ln_b, eps)
        if G < M:
            z, params = checkpoint(lambda p, *a: _scan(step, p, *a), params, *args, use_reentrant=False)
        else:
            z, params = _scan(step, params, *args)
        outs.append(z)
    z = torch.cat(outs, 2)
    z = layer_norm(_up(z), ln_w.unsqueeze(1), ln_b.unsqueeze(1), eps)  # [H, 1, 1, d] against [B, H, M, b, d]
    return xq + z.to(xq.dtype), tuple(params)
