"""fla's Triton causal_conv1d (depthwise, optional SiLU inside) as one torch.library op per direction.

torch.compile cannot keep fla's function whole: its decorators (input guards, device contexts) break the graph
around every call, and then into pieces the CUDA graphs of mode="reduce-overhead" must work around. As custom ops
with fake implementations (as kernels/prism/triton/chunk.py's op), the convolution is one node in the mixer's
graph. Eager calls run the same fla kernels as before.
"""
from __future__ import annotations

import torch


@torch.library.custom_op("prism_fla::causal_conv1d_fwd", mutates_args=())
def _conv_fwd(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, activation: str | None,
              cu_seqlens: torch.Tensor | None) -> torch.Tensor:
    from fla.modules.causal_conv1d.ops import causal_conv1d_fwd
    y, _ = causal_conv1d_fwd(x=x, weight=weight, bias=bias, residual=None, activation=activation,
                             cu_seqlens=cu_seqlens)
    return y


@_conv_fwd.register_fake
def _(x, weight, bias, activation, cu_seqlens):
    return torch.empty_like(x)


@torch.library.custom_op("prism_fla::causal_conv1d_bwd", mutates_args=())
def _conv_bwd(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, dy: torch.Tensor,
              activation: str | None, cu_seqlens: torch.Tensor | None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx, dw, db); without a bias db is empty (a custom op returns tensors only)."""
    from fla.modules.causal_conv1d.ops import causal_conv1d_bwd
    dx, dw, db, _, _ = causal_conv1d_bwd(x=x, dy=dy.contiguous(), dht=None, weight=weight, bias=bias,
                                         activation=activation, cu_seqlens=cu_seqlens)
    return dx, dw, (db if bias is not None else weight.new_empty(0))


@_conv_bwd.register_fake
def _(x, weight, bias, dy, activation, cu_seqlens):
    return torch.empty_like(x), torch.empty_like(weight), (torch.empty_like(bias) if bias is not None
                                                          else weight.new_empty(0))


def _setup_context(ctx, inputs, output):
    x, weight, bias, ctx.activation, cu_seqlens = inputs
    ctx.save_for_backward(x, weight, bias, cu_seqlens)


def _backward(ctx, dy):
    x, weight, bias, cu_seqlens = ctx.saved_tensors
    dx, dw, db = _conv_bwd(x, weight, bias, dy, ctx.activation, cu_seqlens)
    return dx, dw, (db if bias is not None else None), None, None


torch.library.register_autograd("prism_fla::causal_conv1d_fwd", _backward, setup_context=_setup_context)


def causal_conv1d(x: torch.Tensor, weight: torch.Tensor, activation: str | None = None,
                  cu_seqlens: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> torch.Tensor:
    """y [B, T, D] = activation(causal depthwise conv of x [B, T, D] with weight [D, W], plus bias [D] when given),
    as fla's causal_conv1d without residual or states. cu_seqlens: [N + 1] lengths of N sequences packed in a batch
    of 1."""
    return _conv_fwd(x.contiguous(), weight, bias, activation, cu_seqlens)
