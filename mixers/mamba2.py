"""Mamba2 (Dao & Gu 2024) with its own parameterisation: one input projection to [z, x, B, C, dt], a causal
depthwise convolution (with bias, SiLU) over [x, B, C], dt = softplus(dt + dt_bias), A = -exp(A_log), a D skip,
a gated RMSNorm (norm of y * silu(z), per group) and out_proj.

Its SSD recurrence is a linear attention with one scalar decay per head, h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t^T,
y_t = h_t^T C_t + D x_t, so it runs on kernels.simple_gla (fla's chunk_simple_gla on CUDA, a chunked torch path
on the CPU) with q = C, k = B, v = dt * x, g = dt * A and scale 1; the state is [N, H, state_size, head_dim].
(fla's own Mamba2 layer needs mamba_ssm for a fast path; see BASELINES.md.)"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from kernels.simple_gla import simple_gla
from kernels.gla import chunk_flops

from .base import Mixer, MixerState
from .common import ChunkedMixerConfig, ShortConv, matrix_state_size
from .gdn import init_dt_bias
from .registry import register_mixer


@dataclass
class Mamba2Config(ChunkedMixerConfig):
    expand: int = 2  # inner width = expand * d_model
    head_dim: int = 64  # num_heads = inner width / head_dim
    state_size: int = 128
    n_groups: int = 1  # heads share B and C within a group
    conv_size: int = 4
    conv_bias: bool = True
    A_init_min: float = 1.0  # A = exp(A_log) ~ U(A_init_min, A_init_max)
    A_init_max: float = 16.0
    dt_min: float = 0.001
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    D_has_hdim: bool = False  # D per channel instead of per head
    norm_eps: float = 1e-5


def _rename_old_conv_bias(module, state_dict, prefix, *_):
    """Checkpoints written before the conv bias moved into ShortConv name it ``conv_bias``: load them as ``conv.bias``."""
    if prefix + "conv_bias" in state_dict:
        state_dict[prefix + "conv.bias"] = state_dict.pop(prefix + "conv_bias")


@register_mixer("mamba2")
class Mamba2(Mixer):
    Config = Mamba2Config

    def __init__(self, d_model: int, config: Mamba2Config, layer_idx: int = 0):
        super().__init__(d_model, config, layer_idx)
        self.d_inner = config.expand * d_model
        if self.d_inner % config.head_dim:
            raise ValueError(f"mamba2: expand * d_model = {self.d_inner} must be a multiple of head_dim "
                             f"{config.head_dim}")
        self.num_heads = self.d_inner // config.head_dim
        G, N = config.n_groups, config.state_size
        if self.num_heads % G:
            raise ValueError(f"mamba2: num_heads {self.num_heads} must be a multiple of n_groups {G}")
        self.conv_dim = self.d_inner + 2 * G * N
        self.in_proj = nn.Linear(d_model, self.d_inner + self.conv_dim + self.num_heads, bias=False)
        self.conv = ShortConv(self.conv_dim, config.conv_size, activation=None, bias=config.conv_bias)
        if self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)  # Mamba2 starts its conv bias at zero
        self.register_load_state_dict_pre_hook(_rename_old_conv_bias)
        self.dt_bias = nn.Parameter(init_dt_bias(self.num_heads, config.dt_min, config.dt_max, config.dt_init_floor))
        A = torch.empty(self.num_heads).uniform_(config.A_init_min, config.A_init_max)
        self.A_log = nn.Parameter(torch.log(A))
        self.D = nn.Parameter(torch.ones(self.d_inner if config.D_has_hdim else self.num_heads))
        self.norm_weight = nn.Parameter(torch.ones(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)
        for module in (self.in_proj, self.out_proj):
            nn.init.normal_(module.weight, std=config.init_std)

    def forward(self, x, *, mask=None, cu_seqlens=None, state=None, use_cache=False):
        cfg = self.config
        B_, T, _ = x.shape
        H, P, G, N = self.num_heads, cfg.head_dim, cfg.n_groups, cfg.state_size
        conv_state, rec_state = (state.conv, state.recurrent) if state is not None else (None, None)
        z, xbc, dt = self.in_proj(x).split([self.d_inner, self.conv_dim, H], -1)
        xbc, conv_state = self.conv(xbc, mask=mask, cu_seqlens=cu_seqlens, state=conv_state, use_cache=use_cache)
        xs, Bm, Cm = F.silu(xbc).split([self.d_inner, G * N, G * N], -1)
        dt = F.softplus(dt.float() + self.dt_bias.float())  # [B, T, H]
        if mask is not None:  # padding: dt = 0 means no decay (g = 0) and no write (v = 0)
            dt = dt * mask.unsqueeze(-1)
        g = -self.A_log.float().exp() * dt
        xs = xs.view(B_, T, H, P)
        q = Cm.view(B_, T, G, N).repeat_interleave(H // G, dim=2)
        k = Bm.view(B_, T, G, N).repeat_interleave(H // G, dim=2)
        v = (xs * dt.unsqueeze(-1)).to(xs.dtype)
        y, rec_state = simple_gla(q, k, v, g, scale=1.0, initial_state=rec_state, output_final_state=use_cache,
                                  cu_seqlens=cu_seqlens, chunk_size=cfg.chunk_size, backend=cfg.backend)
        D = self.D.view(H, P) if cfg.D_has_hdim else self.D.view(H, 1)
        y = (y.float() + xs.float() * D.float()).reshape(B_, T, self.d_inner)
        # gated RMSNorm (norm_before_gate=False): rmsnorm(y * silu(z)) over groups of d_inner / n_groups channels
        y = (y * F.silu(z.float())).view(B_, T, G, self.d_inner // G)
        y = F.rms_norm(y, (self.d_inner // G,), eps=cfg.norm_eps).view(B_, T, self.d_inner) * self.norm_weight.float()
        out = self.out_proj(y.to(x.dtype))
        if mask is not None:
            out = out * mask.unsqueeze(-1).to(out.dtype)
        return out, (MixerState(conv_state, rec_state) if use_cache else None)

    def state_size(self, seq_len=None):
        return matrix_state_size(self.num_heads, self.config.state_size, self.config.head_dim, self.conv)

    def flops(self, seq_len):
        cfg, D, T = self.config, self.d_model, seq_len
        proj = 2 * T * D * self.in_proj.out_features + 2 * T * self.d_inner * D
        conv = 2 * T * cfg.conv_size * self.conv_dim
        return proj + conv + chunk_flops(T, self.num_heads, cfg.state_size, cfg.head_dim, cfg.chunk_size)
