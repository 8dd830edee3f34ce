"""Linear attention (Katharopoulos et al. 2020) as the PRISM paper's "LA" baseline (docs/mixers.md): a causal
depthwise convolution (kernel 5) + SiLU on the input, q, k, v projections, the elu+1 feature map on q and k, and
an unnormalised causal sum of key-value outer products, per head:

    u        = silu(causal_depthwise_conv(x))             (conv_size 0: u = x)
    q, k, v  = elu(u Wq) + 1, elu(u Wk) + 1, u Wv
    S_t      = alpha_t S_{t-1} + k_t v_t^T,   o_t = S_t^T q_t / sqrt(d)      (decay none: alpha = 1)
    y        = o_proj(o)

As in the authors' probe code there is no normaliser (no division by q_t . sum_s k_s) and no output norm or gate.
``decay: learned`` adds a data-dependent scalar decay per head, alpha_t = sigmoid(u Wa + ba), starting in
[0.95, 0.99].

Kernel: kernels.simple_gla with g = log alpha (zeros without decay): fla's chunk_simple_gla on CUDA, a chunked
torch path on the CPU.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import nn

from kernels.gla import chunk_flops
from kernels.gla.utils import resolve_backend
from kernels.simple_gla import BACKENDS, simple_gla

from .base import Mixer, MixerState
from .common import ChunkedMixerConfig, ShortConv, matrix_state_size
from .registry import register_mixer


@dataclass
class LinearAttentionConfig(ChunkedMixerConfig):
    num_heads: int = 1               # the paper's LA: one head as wide as the model
    head_dim: Optional[int] = None   # default d_model // num_heads
    conv_size: int = 5               # causal depthwise conv + SiLU before the projections; 0 = none
    decay: Literal["none", "learned"] = "none"   # none: the paper's LA | learned: alpha_t = sigmoid(u Wa + ba)


@register_mixer("linear_attention")
class LinearAttention(Mixer):
    """State: MixerState(conv tail [N, D, conv_size - 1] (None without the conv), matrix [N, H, d, d])."""
    Config = LinearAttentionConfig

    def __init__(self, d_model: int, config: LinearAttentionConfig, layer_idx: int = 0):
        super().__init__(d_model, config, layer_idx)
        c = config
        if c.head_dim is None and d_model % c.num_heads:
            raise ValueError(f"linear_attention: d_model {d_model} is not divisible by num_heads {c.num_heads}; "
                             f"set head_dim")
        if c.conv_size < 0:
            raise ValueError(f"linear_attention: conv_size must be >= 0 (0 = no conv), got {c.conv_size}")
        self.num_heads = c.num_heads
        self.head_dim = c.head_dim or d_model // c.num_heads
        inner = self.num_heads * self.head_dim
        self.conv = ShortConv(d_model, c.conv_size, "silu", bias=c.conv_bias) if c.conv_size > 0 else None
        self.qkv = nn.Linear(d_model, 3 * inner, bias=False)
        self.o_proj = nn.Linear(inner, d_model, bias=False)
        self.a_proj = None
        if c.decay == "learned":
            self.a_proj = nn.Linear(d_model, self.num_heads)
            with torch.no_grad():
                self.a_proj.bias.copy_(torch.logit(torch.empty(self.num_heads).uniform_(0.95, 0.99)))
        for module in (self.qkv, self.o_proj, self.a_proj):
            if module is not None:
                nn.init.normal_(module.weight, std=c.init_std)

    def forward(self, x, *, mask=None, cu_seqlens=None, state=None, use_cache=False):
        c = self.config
        B, T, _ = x.shape
        H, d = self.num_heads, self.head_dim
        conv_state, rec_state = (state.conv, state.recurrent) if state is not None else (None, None)
        backend = resolve_backend(c.backend, x, "linear_attention", BACKENDS)
        u = x
        if self.conv is not None:
            u, conv_state = self.conv(x, mask=mask, cu_seqlens=cu_seqlens, state=conv_state, use_cache=use_cache,
                                      fused=backend == "triton")
        q, k, v = self.qkv(u).view(B, T, 3, H, d).unbind(2)
        q, k = F.elu(q) + 1, F.elu(k) + 1
        compute = torch.promote_types(x.dtype, torch.float32)
        if self.a_proj is None:
            g = x.new_zeros(B, T, H, dtype=compute)
        else:
            g = F.logsigmoid(self.a_proj(u).to(compute))
        if mask is not None:  # padding writes nothing and does not decay the state
            m = mask.unsqueeze(-1)
            k, g = k * m.unsqueeze(-1).to(k.dtype), g * m.to(g.dtype)
        o, rec_state = simple_gla(q, k, v, g, scale=d ** -0.5, initial_state=rec_state, output_final_state=use_cache,
                                  cu_seqlens=cu_seqlens, chunk_size=c.chunk_size, backend=backend)
        y = self.o_proj(o.reshape(B, T, H * d).to(x.dtype))
        if mask is not None:
            y = y * mask.unsqueeze(-1).to(y.dtype)
        return y, (MixerState(conv_state, rec_state) if use_cache else None)

    def state_size(self, seq_len=None):
        return matrix_state_size(self.num_heads, self.head_dim, self.head_dim, self.conv)

    def flops(self, seq_len):
        c, D, T, inner = self.config, self.d_model, seq_len, self.num_heads * self.head_dim
        proj = 2 * T * D * 4 * inner + (2 * T * D * self.num_heads if self.a_proj is not None else 0)
        conv = 2 * T * D * c.conv_size
        return proj + conv + chunk_flops(T, self.num_heads, self.head_dim, self.head_dim, c.chunk_size)
