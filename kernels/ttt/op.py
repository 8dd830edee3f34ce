"""The public TTT-MLP op: layout, padding to whole mini-batches, learning-rate matrix, backend dispatch."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .dual import ttt_mlp_dual
from .naive import naive_ttt_mlp

BACKENDS = ("naive", "torch", "auto")


def ttt_mlp(xq: torch.Tensor, xk: torch.Tensor, xv: torch.Tensor, lr: torch.Tensor, params: tuple,
            ln_weight: torch.Tensor, ln_bias: torch.Tensor, token_eta: torch.Tensor, *, mini_batch_size: int = 16,
            n_valid: torch.Tensor | None = None, eps: float = 1e-6, checkpoint_group: int = 0, compile: bool = False,
            compile_backend: str = "inductor", backend: str = "auto"):
    """TTT-MLP's inner loop (Sun et al. 2024), per head, over mini-batches of ``mini_batch_size`` tokens that
    start at position 0 of every row.

    Args:
        xq, xk, xv: [B, T, H, d]. lr: [B, T, H] inner learning rate of each token (0 = the token does not train
            the inner model: padding). params: (W1 [B|1, H, d, f], b1 [B|1, H, 1, f], W2 [B|1, H, f, d],
            b2 [B|1, H, 1, d]) inner weights at position 0. ln_weight, ln_bias: [H, d] the inner LayerNorm.
        token_eta: [mini_batch_size] factor of each position in a mini-batch (1/i plus a learned offset, >= 0).
        n_valid: [B] number of leading real tokens per row (default T). Only complete mini-batches (all b tokens
            within n_valid) update the returned weights; a trailing partial mini-batch is computed (its outputs
            are exact) but left out of the returned weights, so that a later call can continue it.
        checkpoint_group: recompute the forward of groups of this many mini-batches in the backward (0 = keep
            every mini-batch's activations). compile: run each mini-batch step under torch.compile.
        backend: "torch" (dual form, batched over rows and heads, serial over mini-batches), "naive" (primal
            form token by token, autograd inner gradients: the test reference), "auto" = "torch".
    Returns:
        (z = xq + LN(f_bar(xq)) [B, T, H, d], (W1, b1, W2, b2) per row after the last complete mini-batch).
    """
    if backend not in BACKENDS:
        raise ValueError(f"ttt_mlp: unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    B, T, H, d = xq.shape
    if xk.shape != xq.shape or xv.shape != xq.shape or tuple(lr.shape) != (B, T, H):
        raise ValueError(f"ttt_mlp: xq, xk, xv must share a shape [B, T, H, d] and lr be [B, T, H]; got "
                         f"{tuple(xq.shape)}, {tuple(xk.shape)}, {tuple(xv.shape)}, {tuple(lr.shape)}")
    b = mini_batch_size
    if token_eta.shape != (b,):
        raise ValueError(f"ttt_mlp: token_eta must have shape [mini_batch_size] = [{b}], got {tuple(token_eta.shape)}")
    if backend == "naive":
        return naive_ttt_mlp(xq, xk, xv, lr, params, ln_weight, ln_bias, token_eta, mini_batch_size=b,
                             n_valid=n_valid, eps=eps)
    M = -(-T // b)
    pad = M * b - T

    def blocks(x):  # [B, T, H, *] -> [B, H, M, b, *]
        x = F.pad(x, (0, 0) * (x.dim() - 3) + (0, 0, 0, pad))
        return x.view(B, M, b, H, *x.shape[3:]).transpose(1, 3).transpose(2, 3)

    xq_, xk_, xv_ = blocks(xq), blocks(xk), blocks(xv)
    cdt = torch.promote_types(lr.dtype, torch.float32)
    lr_ = blocks(lr.to(cdt).unsqueeze(-1)).squeeze(-1)  # [B, H, M, b]
    eta = (token_eta.to(cdt)[:, None] * lr_[..., None, :]).tril()  # [B, H, M, b, b]
    if n_valid is None:
        commit = [None] * (T // b) + [False] * (M - T // b)
    else:
        commit = [n_valid >= (m + 1) * b for m in range(M)]
    z, params = ttt_mlp_dual(xq_, xk_, xv_, eta, params, ln_weight.view(H, 1, d), ln_bias.view(H, 1, d),
                             commit=commit, eps=eps, checkpoint_group=checkpoint_group, compile=compile,
                             compile_backend=compile_backend)
    z = z.transpose(1, 2).transpose(2, 3).reshape(B, M * b, H, d)[:, :T]
    return z, params
