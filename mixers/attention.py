"""Softmax attention: torch SDPA (FlashAttention backend on GPU), RoPE, grouped KV heads, sliding window,
KV cache. Positions count real tokens only, so a left-padded sequence attends exactly like the unpadded one.
``conv_size`` > 0 puts a causal depthwise convolution + SiLU in front of the q/k/v projections (the PRISM paper's
probing Transformer uses kernel 3; docs/mixers.md); its tail is part of the decoding state."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .base import Mixer, MixerConfig, MixerState
from .common import ShortConv, segment_positions
from .registry import register_mixer


@dataclass
class AttentionConfig(MixerConfig):
    num_heads: int = 4
    num_kv_heads: Optional[int] = None  # grouped-query attention when < num_heads
    head_dim: Optional[int] = None  # default d_model // num_heads
    window: Optional[int] = None  # sliding window: a token sees itself and the window-1 tokens before it
    rope_theta: float = 10000.0
    conv_size: int = 0  # > 0: causal depthwise conv (this kernel) + SiLU before the q/k/v projections
    conv_bias: bool = False  # a bias in that conv (nn.Conv1d's default; the PRISM authors' Transformer)
    dropout: float = 0.0  # on the attention weights while training (nanoGPT's attn_dropout)
    init_std: float = 0.02


def rope(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotate pairs (x[..., :d/2], x[..., d/2:]) of x [B, T, H, d] by angle position * theta^(-2i/d)."""
    half = x.shape[-1] // 2
    dtype = torch.promote_types(x.dtype, torch.float32)  # fp32; fp64 stays fp64
    freqs = theta ** (-torch.arange(half, device=x.device, dtype=dtype) / half)
    angles = positions.to(dtype)[..., None] * freqs  # [B, T, half]
    cos, sin = angles.cos()[:, :, None], angles.sin()[:, :, None]
    x1, x2 = x.to(dtype)[..., :half], x.to(dtype)[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).to(x.dtype)


@register_mixer("attention")
class Attention(Mixer):
    Config = AttentionConfig

    def __init__(self, d_model: int, config: AttentionConfig, layer_idx: int = 0):
        super().__init__(d_model, config, layer_idx)
        self.num_heads = config.num_heads
        self.num_kv_heads = config.num_kv_heads or config.num_heads
        if config.num_heads < 1 or (config.head_dim is None and d_model % config.num_heads):
            raise ValueError(f"model.mixers.attention.num_heads={config.num_heads} must divide "
                             f"model.d_model={d_model} (or set model.mixers.attention.head_dim)")
        self.head_dim = config.head_dim or d_model // config.num_heads
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"attention: num_heads ({self.num_heads}) must be a multiple of num_kv_heads "
                             f"({self.num_kv_heads})")
        if self.head_dim % 2:
            raise ValueError(f"attention: head_dim must be even for RoPE, got {self.head_dim}")
        if config.conv_size < 0:
            raise ValueError(f"attention: conv_size must be >= 0 (0 = no conv), got {config.conv_size}")
        if not 0.0 <= config.dropout < 1.0:
            raise ValueError(f"model.mixers.attention.dropout={config.dropout} must be in [0, 1)")
        self.conv = (ShortConv(d_model, config.conv_size, "silu", bias=config.conv_bias) if config.conv_size > 0
                     else None)
        kv = self.num_kv_heads * self.head_dim
        self.qkv = nn.Linear(d_model, self.num_heads * self.head_dim + 2 * kv, bias=False)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, d_model, bias=False)
        nn.init.normal_(self.qkv.weight, std=config.init_std)
        nn.init.normal_(self.o_proj.weight, std=config.init_std)

    def forward(self, x, *, mask=None, cu_seqlens=None, state=None, use_cache=False):
        B, T, _ = x.shape
        H, Hkv, d = self.num_heads, self.num_kv_heads, self.head_dim
        conv_tail = None
        if self.conv is not None:
            x, conv_tail = self.conv(x, mask=mask, cu_seqlens=cu_seqlens, state=None if state is None else state.conv,
                                     use_cache=use_cache)
        q, k, v = self.qkv(x).split([H * d, Hkv * d, Hkv * d], dim=-1)
        q, k, v = q.view(B, T, H, d), k.view(B, T, Hkv, d), v.view(B, T, Hkv, d)
        real = mask if mask is not None else torch.ones(B, T, dtype=torch.bool, device=x.device)

        if cu_seqlens is not None:
            if state is not None or use_cache:
                raise NotImplementedError("attention: a KV cache with packed sequences (cu_seqlens) is not supported")
            if B != 1:
                raise ValueError(f"cu_seqlens requires batch size 1 (packed sequences), got batch {B}")
            _, pos = segment_positions(cu_seqlens, T)
            q, k = rope(q, pos[None], self.config.rope_theta), rope(k, pos[None], self.config.rope_theta)
            return self.o_proj(self._attend_documents(q, k, v, cu_seqlens).reshape(B, T, H * d)), None

        cache = state.recurrent if state is not None else None  # KV cache: k, v, pos, real, next_pos
        start = cache["next_pos"] if cache is not None else torch.zeros(B, dtype=torch.long, device=x.device)
        pos_q = start[:, None] + real.long().cumsum(1) - 1
        q, k = rope(q, pos_q, self.config.rope_theta), rope(k, pos_q, self.config.rope_theta)
        if cache is not None:
            k, v = torch.cat([cache["k"], k], 1), torch.cat([cache["v"], v], 1)
            pos_k = torch.cat([cache["pos"], pos_q], 1)
            real_k = torch.cat([cache["real"], real], 1)
        else:
            pos_k, real_k = pos_q, real

        if state is None and mask is None and self.config.window is None:
            y = self._attend(q, k, v, None)
        else:
            S = k.shape[1]
            allowed = real_k[:, None, :] & self._visible(pos_q[:, :, None], pos_k[:, None, :])
            # a padding query sees only itself (its output is ignored) so no row of the mask is empty
            allowed[:, :, S - T:] |= torch.eye(T, dtype=torch.bool, device=x.device)
            y = self._attend(q, k, v, allowed[:, None])
        y = self.o_proj(y.reshape(B, T, H * d))

        new_state = None
        if use_cache:
            keep = k.shape[1] if self.config.window is None else min(k.shape[1], self.config.window)
            new_state = MixerState(conv_tail, {"k": k[:, -keep:], "v": v[:, -keep:], "pos": pos_k[:, -keep:],
                                          "real": real_k[:, -keep:], "next_pos": start + real.long().sum(1)})
        return y, new_state

    def _attend_documents(self, q, k, v, cu_seqlens):
        """Causal attention within each document of a pack [1, T]: documents of one length form one batch (a
        pack of fixed-size windows is one call), so memory grows with the longest document, not the whole pack."""
        bounds = cu_seqlens.tolist()
        if bounds[0] != 0 or bounds[-1] != q.shape[1]:
            raise ValueError(f"cu_seqlens must run from 0 to the packed length {q.shape[1]}, got {bounds}")
        by_length: dict[int, list[int]] = {}
        for a, b in zip(bounds[:-1], bounds[1:]):
            if b > a:
                by_length.setdefault(b - a, []).append(a)
        if len(by_length) == 1:
            (length, starts), = by_length.items()
            if len(starts) * length == q.shape[1]:  # equal windows fill the pack (training): a batch, no gathers
                batch = [t.reshape(len(starts), length, *t.shape[2:]) for t in (q, k, v)]
                return self._attend(*batch, self._window_mask(length, q.device)).reshape(q.shape)
        y = torch.empty_like(q)
        for length, starts in by_length.items():
            rows = torch.tensor(starts, device=q.device)[:, None] + torch.arange(length, device=q.device)
            y[0, rows] = self._attend(q[0, rows], k[0, rows], v[0, rows], self._window_mask(length, q.device))
        return y

    def _window_mask(self, length: int, device) -> torch.Tensor | None:
        if self.config.window is None:
            return None  # plain causal
        pos = torch.arange(length, device=device)
        return self._visible(pos[:, None], pos[None, :])[None, None]

    def _visible(self, pos_q: torch.Tensor, pos_k: torch.Tensor) -> torch.Tensor:
        ok = pos_k <= pos_q
        if self.config.window is not None:
            ok &= pos_q - pos_k < self.config.window
        return ok

    def _attend(self, q, k, v, allowed):
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, H, T, d]
        gqa = self.num_kv_heads != self.num_heads
        p = self.config.dropout if self.training else 0.0
        if allowed is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p, enable_gqa=gqa)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=p, enable_gqa=gqa)
        return y.transpose(1, 2)

    def state_size(self, seq_len: int | None = None) -> int:
        if seq_len is None:
            raise ValueError("attention: the KV cache grows with the sequence; pass seq_len")
        kept = seq_len if self.config.window is None else min(seq_len, self.config.window)
        conv = self.d_model * (self.config.conv_size - 1) if self.conv is not None else 0
        return 2 * kept * self.num_kv_heads * self.head_dim + conv

    def flops(self, seq_len: int) -> int:
        H, Hkv, d, D = self.num_heads, self.num_kv_heads, self.head_dim, self.d_model
        projections = 2 * seq_len * D * (2 * H * d + 2 * Hkv * d)
        w = self.config.window
        pairs = seq_len * (seq_len + 1) // 2 if w is None else sum(min(t + 1, w) for t in range(seq_len))
        conv = 2 * seq_len * D * self.config.conv_size
        return projections + conv + 4 * pairs * H * d  # QK^T and AV over the causal pairs
