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
    """The written-out formula: the references (naive.py, the tests) use it; the dual form uses F.gelu."""
    return 0.5 * x * (1.0 + torch.tanh(_GELU_C * (x + 0.044715 * x * x * x)))


def gelu_tanh_grad(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """grad * d gelu_tanh(x) / dx as one aten op with a built-in double backward: the serial mini-batch loop is
    bound by kernel launches, and the written-out derivative costs about fifteen of them (forward and backward)."""
    return torch.ops.aten.gelu_backward(grad, x, approximate="tanh")


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """LayerNorm over the last dim with per-head affine; x [..., H, n, d], weight/bias [H, 1, d]."""
    mu = x.mean(-1, keepdim=True)
    var = x.var(-1, keepdim=True, unbiased=False)
    return weight * ((x - mu) * torch.rsqrt(var + eps)) + bias


def ln_fused_l2_bwd(x: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                    eps: float) -> torch.Tensor:
    """Gradient of 1/2 ||LN(x) - target||^2 with respect to x (per row). The per-head affine is applied by hand
    and the normalisation's forward and backward are aten's fused ops (with their double backward): a few
    kernels instead of about twenty, which is what the launch-bound mini-batch loop pays for."""
    D = x.shape[-1]
    x_hat, mean, rstd = torch.native_layer_norm(x, [D], None, None, eps)
    grad_x_hat = (weight * x_hat + bias - target) * weight
    return torch.ops.aten.native_layer_norm_backward(grad_x_hat, x, [D], mean, rstd, None, None,
                                                     [True, False, False])[0]
