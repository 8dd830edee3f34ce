"""Gated Linear Attention (Yang et al. 2024), parameterised as fla.layers.GatedLinearAttention: keys at half the
model width (expand_k 0.5), values at full width, a per-channel forget gate from a rank-16 projection squashed by
logsigmoid / 16, an optional short convolution, and a per-head RMSNorm times a SiLU output gate.

Kernel: kernels.gla (fla's chunk_gla on CUDA, a chunked torch path on the CPU; same function)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from kernels.gla import chunk_flops, gla

from .base import MixerState
from .common import ChunkedMixerConfig, GatedHeadNorm, MatrixStateMixer, ShortConv, gated_output
from .registry import register_mixer


@dataclass
class GLAConfig(ChunkedMixerConfig):
    num_heads: int = 4
    expand_k: float = 0.5  # key width = expand_k * d_model (split over heads)
    expand_v: float = 1.0  # value width = expand_v * d_model
    gate_low_rank_dim: int = 16
    gate_logit_normalizer: float = 16.0  # log decay = logsigmoid(gate logits) / this
    clamp_min: Optional[float] = None  # lower bound of the log decay
    use_short_conv: bool = False
    conv_size: int = 4
    use_output_gate: bool = True
    norm_eps: float = 1e-5


@register_mixer("gla")
class GatedLinearAttention(MatrixStateMixer):
    Config = GLAConfig
    chunk_flops = staticmethod(chunk_flops)

    def __init__(self, d_model: int, config: GLAConfig, layer_idx: int = 0):
        super().__init__(d_model, config, layer_idx)
        H = config.num_heads
        self.key_dim, self.value_dim = round(d_model * config.expand_k), round(d_model * config.expand_v)
        if self.key_dim % H or self.value_dim % H:
            raise ValueError(f"gla: key width {self.key_dim} (expand_k * d_model) and value width {self.value_dim} "
                             f"(expand_v * d_model) must be multiples of num_heads = {H}")
        self.head_k, self.head_v = self.key_dim // H, self.value_dim // H
        self.q_proj = nn.Linear(d_model, self.key_dim, bias=False)
        self.k_proj = nn.Linear(d_model, self.key_dim, bias=False)
        self.v_proj = nn.Linear(d_model, self.value_dim, bias=False)
        self.conv = (ShortConv(2 * self.key_dim + self.value_dim, config.conv_size, bias=config.conv_bias)
                     if config.use_short_conv else None)
        self.gk_proj = nn.Sequential(nn.Linear(d_model, config.gate_low_rank_dim, bias=False),
                                     nn.Linear(config.gate_low_rank_dim, self.key_dim, bias=True))
        self.g_proj = nn.Linear(d_model, self.value_dim, bias=False) if config.use_output_gate else None
        self.norm = GatedHeadNorm(self.head_v, eps=config.norm_eps)
        self.o_proj = nn.Linear(self.value_dim, d_model, bias=False)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=config.init_std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x, *, mask=None, cu_seqlens=None, state=None, use_cache=False):
        cfg = self.config
        B, T, _ = x.shape
        H = cfg.num_heads
        conv_state, rec_state = (state.conv, state.recurrent) if state is not None else (None, None)
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        if self.conv is not None:
            qkv, conv_state = self.conv(torch.cat([q, k, v], -1), mask=mask, cu_seqlens=cu_seqlens,
                                        state=conv_state, use_cache=use_cache)
            q, k, v = qkv.split([self.key_dim, self.key_dim, self.value_dim], -1)
        gk = F.logsigmoid(self.gk_proj(x).float()) / cfg.gate_logit_normalizer
        if cfg.clamp_min is not None:
            gk = gk.clamp_min(cfg.clamp_min)
        if mask is not None:  # padding writes nothing and does not decay the state
            m = mask.unsqueeze(-1)
            k, gk = k * m.to(k.dtype), gk * m
        o, rec_state = gla(q.view(B, T, H, self.head_k), k.view(B, T, H, self.head_k), v.view(B, T, H, self.head_v),
                           gk.view(B, T, H, self.head_k), initial_state=rec_state, output_final_state=use_cache,
                           cu_seqlens=cu_seqlens, chunk_size=cfg.chunk_size, backend=cfg.backend)
        y = gated_output(o, x, mask, self.norm, self.g_proj, self.o_proj)
        return y, (MixerState(conv_state, rec_state) if use_cache else None)

    def flops(self, seq_len):
        cfg, D, T = self.config, self.d_model, seq_len
        proj = 2 * T * D * (2 * self.key_dim + self.value_dim)  # q, k, v
        proj += 2 * T * (D * cfg.gate_low_rank_dim + cfg.gate_low_rank_dim * self.key_dim)  # gate
        proj += 2 * T * D * self.value_dim * (2 if cfg.use_output_gate else 1)  # output gate, o_proj
        return proj + self.mixing_flops(T)
