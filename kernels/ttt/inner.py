"""The inner model of TTT-MLP and its hand-written gradients (Sun et al. 2024; ttt-lm-pytorch ``TTTMLP``).

Per head: f(x) = gelu_tanh(x W1 + b1) W2 + b2, inner loss l(x_k, x_v) = 1/2 ||LN(f(x_k)) - (x_v - x_k)||^2 with a
learned per-head LayerNorm (weight, bias). The gradient of l with respect to f's output is the fused
LayerNorm + L2 backward below; everything is plain differentiable torch, so the outer model trains through it.
"""
from __future__ import annotations

import math

import torch

_GELU_C = math.sqrt(2.0 / math.pi)


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.tanh(_GELU_C * (x + 0.044715 * x * x * x)))


def gelu_tanh_bwd(x: torch.Tensor) -> torch.Tensor:
    """d gelu_tanh(x) / dx."""
    t = torch.tanh(_GELU_C * x * (1.0 + 0.044715 * x * x))
    return 0.5 * x * ((1.0 - t * t) * (_GELU_C + 3 * 0.044715 * _GELU_C * x * x)) + 0.5 * (1.0 + t)


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """LayerNorm over the last dim with per-head affine; x [..., H, n, d], weight/bias [H, 1, d]."""
    mu = x.mean(-1, keepdim=True)
    var = x.var(-1, keepdim=True, unbiased=False)
    return weight * ((x - mu) * torch.rsqrt(var + eps)) + bias


def ln_fused_l2_bwd(x: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                    eps: float) -> torch.Tensor:
    """Gradient of 1/2 ||LN(x) - target||^2 with respect to x (per row), written by hand."""
    D = x.shape[-1]
    mu = x.mean(-1, keepdim=True)
    rstd = torch.rsqrt(x.var(-1, keepdim=True, unbiased=False) + eps)
    x_hat = (x - mu) * rstd
    grad_x_hat = (weight * x_hat + bias - target) * weight
    return (D * grad_x_hat - grad_x_hat.sum(-1, keepdim=True)
            - x_hat * (grad_x_hat * x_hat).sum(-1, keepdim=True)) * (rstd / D)
