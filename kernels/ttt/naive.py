"""TTT-MLP in primal form, token by token: the reference of the dual form (slow; tiny inputs).

For every token i of a mini-batch starting from weights W0, the inner gradient of the lr-weighted losses of
tokens j <= i is taken by autograd at W0 (not with the hand-written LN-L2 backward, so this also checks it),
the weights W_i = W0 - eta_i * that gradient are materialised, and token i's output is x_q + LN(f_{W_i}(x_q)).
The autograd graph is kept (create_graph), so the outer gradients can be compared too.
"""
from __future__ import annotations

import torch

from .inner import gelu_tanh, layer_norm


def _f(W1, b1, W2, b2, x):
    return gelu_tanh(x @ W1 + b1) @ W2 + b2


def naive_ttt_mlp(xq, xk, xv, lr, params, ln_w, ln_b, token_eta, *, mini_batch_size: int, n_valid=None,
                  eps: float = 1e-6):
    """Same arguments and result as kernels.ttt.ttt_mlp (layout [B, T, H, d])."""
    B, T, H, d = xq.shape
    b = mini_batch_size
    xq, xk, xv = (x.transpose(1, 2) for x in (xq, xk, xv))  # [B, H, T, d]
    lr = lr.transpose(1, 2)  # [B, H, T]
    ln_w, ln_b = ln_w.view(H, 1, d), ln_b.view(H, 1, d)
    W = [p.expand(B, *p.shape[1:]) for p in params]
    W = [w if w.requires_grad else w.detach().requires_grad_() for w in W]
    outs = []
    for s in range(0, T, b):
        e = min(s + b, T)
        k, v = xk[:, :, s:e], xv[:, :, s:e]
        losses = 0.5 * (layer_norm(_f(*W, k), ln_w, ln_b, eps) - (v - k)).pow(2).sum(-1)  # [B, H, n]
        weighted = losses * lr[:, :, s:e]
        for i in range(e - s):
            grads = torch.autograd.grad(weighted[:, :, :i + 1].sum(), W, create_graph=True)
            Wi = [w - token_eta[i] * g for w, g in zip(W, grads)]
            q = xq[:, :, s + i:s + i + 1]
            outs.append(q + layer_norm(_f(*Wi, q), ln_w, ln_b, eps))
        if e - s == b:  # a complete mini-batch: carry W_b (per row: only where all its b tokens are real)
            if n_valid is None:
                W = Wi
            else:
                full = (n_valid >= e).view(-1, 1, 1, 1)
                W = [torch.where(full, wi, w) for wi, w in zip(Wi, W)]
    z = torch.cat(outs, 2).transpose(1, 2)
    return z, tuple(W)
