"""Gated DeltaNet (Yang et al. 2025), parameterised as fla.layers.GatedDeltaNet: short convolutions (SiLU) on q, k
and v, L2-normalised q and k, write strength beta = sigmoid(b_proj x), Mamba2-style decay
g = -exp(A_log) * softplus(a_proj x + dt_bias), and a per-head RMSNorm times a SiLU output gate.
fla's sizing rule: num_heads * head_dim = 0.75 d_model and values at expand_v = 2 times that (about 6 d_model^2
parameters).

Kernel: kernels.gated_delta_rule (fla's chunk_gated_delta_rule on CUDA; on the CPU the exact chunked torch path of
kernels.prism with one solver step; same function)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from kernels.gated_delta_rule import BACKENDS, chunk_flops, gated_delta_rule
from kernels.gla.utils import resolve_backend

from .base import MixerState
from .common import ChunkedMixerConfig, GatedHeadNorm, MatrixStateMixer, ShortConv, gated_output
from .registry import register_mixer


@dataclass
class GatedDeltaNetConfig(ChunkedMixerConfig):
    num_heads: int = 6
    head_dim: Optional[int] = None  # default: 0.75 * d_model / num_heads (fla's rule)
    expand_v: float = 2.0  # value head dim = expand_v * head_dim
    use_short_conv: bool = True
    conv_size: int = 4
    use_gate: bool = True  # SiLU output gate (else a plain per-head RMSNorm)
    allow_neg_eigval: bool = False  # beta in [0, 2) instead of [0, 1)
    A_init_min: float = 0.0  # A = exp(A_log) ~ U(A_init_min, A_init_max)
    A_init_max: float = 16.0
    dt_min: float = 0.001
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    norm_eps: float = 1e-5


def init_dt_bias(n: int, dt_min: float, dt_max: float, floor: float) -> torch.Tensor:
    """Inverse softplus of dt ~ log-uniform(dt_min, dt_max) (Mamba2's initialisation)."""
    dt = torch.exp(torch.rand(n) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(min=floor)
    return dt + torch.log(-torch.expm1(-dt))


@register_mixer("gdn")
class GatedDeltaNet(MatrixStateMixer):
    Config = GatedDeltaNetConfig
    chunk_flops = staticmethod(chunk_flops)

    def __init__(self, d_model: int, config: GatedDeltaNetConfig, layer_idx: int = 0):
        super().__init__(d_model, config, layer_idx)
        H = config.num_heads
        self.head_k = config.head_dim or int(0.75 * d_model) // H
        self.head_v = int(self.head_k * config.expand_v)
        if self.head_k < 1 or not math.isclose(self.head_k * config.expand_v, self.head_v):
            raise ValueError(f"gdn: head_dim {self.head_k} * expand_v {config.expand_v} must be a positive integer")
        self.key_dim, self.value_dim = H * self.head_k, H * self.head_v
        self.q_proj = nn.Linear(d_model, self.key_dim, bias=False)
        self.k_proj = nn.Linear(d_model, self.key_dim, bias=False)
        self.v_proj = nn.Linear(d_model, self.value_dim, bias=False)
        self.a_proj = nn.Linear(d_model, H, bias=False)
        self.b_proj = nn.Linear(d_model, H, bias=False)
        # one depthwise convolution over [q, k, v] = fla's three (each channel has its own filter)
        self.conv = (ShortConv(2 * self.key_dim + self.value_dim, config.conv_size, bias=config.conv_bias)
                     if config.use_short_conv else None)
        A = torch.empty(H).uniform_(config.A_init_min, config.A_init_max)
        self.A_log = nn.Parameter(torch.log(A))
        self.dt_bias = nn.Parameter(init_dt_bias(H, config.dt_min, config.dt_max, config.dt_init_floor))
        self.g_proj = nn.Linear(d_model, self.value_dim, bias=False) if config.use_gate else None
        self.norm = GatedHeadNorm(self.head_v, eps=config.norm_eps)
        self.o_proj = nn.Linear(self.value_dim, d_model, bias=False)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=config.init_std)

    def forward(self, x, *, mask=None, cu_seqlens=None, state=None, use_cache=False):
        cfg = self.config
        B, T, _ = x.shape
        H = cfg.num_heads
        conv_state, rec_state = (state.conv, state.recurrent) if state is not None else (None, None)
        qkv = torch.cat([self.q_proj(x), self.k_proj(x), self.v_proj(x)], -1)
        if self.conv is not None:
            fused = resolve_backend(cfg.backend, x, "gdn", BACKENDS) == "triton"   # fla's conv with fla's op
            qkv, conv_state = self.conv(qkv, mask=mask, cu_seqlens=cu_seqlens, state=conv_state, use_cache=use_cache,
                                        fused=fused)
        else:
            qkv = F.silu(qkv)
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.value_dim], -1)
        beta = torch.sigmoid(self.b_proj(x).float()) * (2.0 if cfg.allow_neg_eigval else 1.0)
        g = -self.A_log.float().exp() * F.softplus(self.a_proj(x).float() + self.dt_bias.float())
        if mask is not None:  # padding neither erases, writes nor decays
            m = mask.unsqueeze(-1)
            beta, g = beta * m, g * m
        o, rec_state = gated_delta_rule(
            q.view(B, T, H, self.head_k), k.view(B, T, H, self.head_k), v.view(B, T, H, self.head_v), g, beta,
            initial_state=rec_state, output_final_state=use_cache, cu_seqlens=cu_seqlens, use_qk_l2norm=True,
            chunk_size=cfg.chunk_size, backend=cfg.backend)
        y = gated_output(o, x, mask, self.norm, self.g_proj, self.o_proj)
        return y, (MixerState(conv_state, rec_state) if use_cache else None)

    def flops(self, seq_len):
        cfg, D, T = self.config, self.d_model, seq_len
        proj = 2 * T * D * (2 * self.key_dim + self.value_dim + 2 * cfg.num_heads)  # q, k, v, a, b
        proj += 2 * T * D * self.value_dim * (2 if cfg.use_gate else 1)  # output gate, o_proj
        return proj + self.mixing_flops(T)
