"""fla's Triton causal_conv1d (depthwise, optional SiLU inside) as one torch.library op per direction.

torch.compile cannot keep fla's function whole: its decorators (input guards, device contexts) break the graph
around every call, and then into pieces the CUDA graphs of mode="reduce-overhead" must work around. As custom ops
with fake implementations (as kernels/prism/triton/chunk.py's op), the convolution is one node in the mixer's
graph. Eager calls run the same fla kernels as before.
"""
from __future__ import annotations

import torch


@torch.library.custom_op("prism_fla::causal_conv1d_fwd", mutates_args=())
def _conv_fwd(x: torch.Tensor, weight: torch.Tensor, activation: str | None, cu_seqlens: torch.Tensor | None
              ) -> torch.Tensor:
    from fla.modules.causal_conv1d.ops import causal_conv1d_fwd
    y, _ = causal_conv1d_fwd(x=x, weight=weight, bias=None, residual=None, activation=activation,
                             cu_seqlens=cu_seqlens)
    return y


@_conv_fwd.register_fake
def _(x, weight, activation, cu_seqlens):
    return torch.empty_like(x)


@torch.library.custom_op("prism_fla::causal_conv1d_bwd", mutates_args=())
def _conv_bwd(x: torch.Tensor, weight: torch.Tensor, dy: torch.Tensor, activation: str | None,
              cu_seqlens: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    from fla.modules.causal_conv1d.ops import causal_conv1d_bwd
    dx, dw, _, _, _ = causal_conv1d_bwd(x=x, dy=dy.contiguous(), dht=None, weight=weight, activation=activation,
                                        cu_seqlens=cu_seqlens)
    return dx, dw


@_conv_bwd.register_fake
def _(x, weight, dy, activation, cu_seqlens):
    return torch.empty_like(x), torch.empty_like(weight)


def _setup_context(ctx, inputs, output):
    x, weight, ctx.activation, cu_seqlens = inputs
    ctx.save_for_backward(x, weight, cu_seqlens)


def _backward(ctx, dy):
    x, weight, cu_seqlens = ctx.saved_tensors
    dx, dw = _conv_bwd(x, weight, dy, ctx.activation, cu_seqlens)
    return dx, dw, None, None


torch.library.register_autograd("prism_fla::causal_conv1d_fwd", _backward, setup_context=_setup_context)


def causal_conv1d(x: torch.Tensor, weight: torch.Tensor, activation: str | None = None,
                  cu_seqlens: torch.Tensor | None = None) -> torch.Tensor:
    """y [B, T, D] = activation(causal depthwise conv of x [B, T, D] with weight [D, W]), as fla's causal_conv1d
    without bias, residual or states. cu_seqlens: [N + 1] lengths of N sequences packed in a batch of 1."""
    return _conv_fwd(x.contiguous(), weight, activation, cu_seqlens)
