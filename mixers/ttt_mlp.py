"""TTT-MLP (Sun et al., "Learning to (Learn at Test Time)", 2024), following ttt-lm-pytorch's ``TTTMLP``.

Per head the state is an inner MLP f (W1 d x 4d, b1, W2 4d x d, b2, tanh-GELU) trained while reading: on each
token, one gradient step on 1/2 ||LN(f(x_k)) - (x_v - x_k)||^2 with a learned per-head LayerNorm, taken in
mini-batches of 16 tokens in dual form (kernels.ttt). Inner learning rate of token j: base_lr * sigmoid(x_j w_h +
b_h) / d; the step seen by token i of a mini-batch is scaled by 1/i plus a learned offset (clamped >= 0).
Output: x_q + LN(f_bar(x_q)) per head, a LayerNorm over the heads, an optional tanh-GELU gate, o_proj. RoPE on q
and k with positions modulo the mini-batch size (optional).

Mini-batches start at the first real token of every sequence. The decoding state holds the inner weights after
the last complete mini-batch, plus the keys, values and learning rates of the tokens of the current, incomplete
mini-batch (at most 15): each call re-runs that mini-batch with its new tokens, so running a sequence in one call
or token by token gives the same outputs. The scan over mini-batches is serial by construction.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from kernels.ttt import BACKENDS, ttt_mlp

from .attention import rope
from .base import Mixer, MixerConfig, MixerState
from .common import segment_positions
from .registry import register_mixer


@dataclass
class TTTMLPConfig(MixerConfig):
    head_dim: int = 64  # num_heads = d_model // head_dim (ttt-lm-pytorch 125M: 12 heads of 64 at d_model 768)
    mini_batch_size: int = 16
    mlp_ratio: int = 4  # inner MLP hidden width = mlp_ratio * head_dim
    base_lr: float = 1.0  # inner learning rate scale (the paper uses 0.1 for TTT-MLP)
    use_gate: bool = True  # tanh-GELU output gate (ttt-lm-pytorch: Mamba backbone)
    rope: bool = True  # RoPE on q, k with positions modulo mini_batch_size
    rope_theta: float = 10000.0
    inner_eps: float = 1e-6  # the inner LayerNorm's epsilon
    norm_eps: float = 1e-6  # the post-norm's epsilon
    checkpoint_group: int = 0  # recompute groups of this many mini-batches in the backward (0 = off)
    compile: bool = False  # run the mini-batch step under torch.compile (for the GPU)
    init_std: float = 0.02
    backend: Literal[BACKENDS] = "auto"  # the op's backends (kernels.ttt)


@register_mixer("ttt_mlp")
class TTTMLP(Mixer):
    Config = TTTMLPConfig

    def __init__(self, d_model: int, config: TTTMLPConfig, layer_idx: int = 0):
        super().__init__(d_model, config, layer_idx)
        b, d = config.mini_batch_size, config.head_dim
        if d < 1 or d_model % d:
            raise ValueError(f"ttt_mlp: d_model {d_model} must be a multiple of head_dim {d}")
        H = self.num_heads = d_model // d
        self.head_dim = d
        if config.rope and d % 2:
            raise ValueError(f"ttt_mlp: head_dim must be even for RoPE, got {d}")
        f = self.inner_dim = config.mlp_ratio * d
        std = config.init_std
        self.q_proj = nn.Linear(d_model, H * d, bias=False)
        self.k_proj = nn.Linear(d_model, H * d, bias=False)
        self.v_proj = nn.Linear(d_model, H * d, bias=False)
        self.g_proj = nn.Linear(d_model, H * d, bias=False) if config.use_gate else None
        self.o_proj = nn.Linear(H * d, d_model, bias=False)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=std)
        self.lr_weight = nn.Parameter(torch.randn(H, d_model) * std)
        self.lr_bias = nn.Parameter(torch.zeros(H))
        self.register_buffer("token_idx", 1.0 / torch.arange(1, b + 1, dtype=torch.float32), persistent=False)
        self.token_idx_offset = nn.Parameter(torch.zeros(b))
        self.ttt_norm_weight = nn.Parameter(torch.ones(H, d))
        self.ttt_norm_bias = nn.Parameter(torch.zeros(H, d))
        self.W1 = nn.Parameter(torch.randn(H, d, f) * std)
        self.W2 = nn.Parameter(torch.randn(H, f, d) * std)
        self.b1 = nn.Parameter(torch.zeros(H * f))  # flat: vectors are not weight-decayed (lit_modules/optim.py)
        self.b2 = nn.Parameter(torch.zeros(H * d))
        self.post_norm = nn.LayerNorm(H * d, eps=config.norm_eps)

    def _inner_params(self):
        H, d, f = self.num_heads, self.head_dim, self.inner_dim
        return self.W1[None], self.b1.view(1, H, 1, f), self.W2[None], self.b2.view(1, H, 1, d)

    def _run(self, xq, xk, xv, lr, params, n_valid):
        cfg = self.config
        token_eta = (self.token_idx + self.token_idx_offset).clamp_min(0.0)
        return ttt_mlp(xq, xk, xv, lr, params, self.ttt_norm_weight, self.ttt_norm_bias, token_eta,
                       mini_batch_size=cfg.mini_batch_size, n_valid=n_valid, eps=cfg.inner_eps,
                       checkpoint_group=cfg.checkpoint_group, compile=cfg.compile, backend=cfg.backend)

    def forward(self, x, *, mask=None, cu_seqlens=None, state=None, use_cache=False):
        cfg = self.config
        B, T, _ = x.shape
        H, d, b = self.num_heads, self.head_dim, cfg.mini_batch_size
        xq, xk, xv = (p(x).view(B, T, H, d) for p in (self.q_proj, self.k_proj, self.v_proj))
        lr = torch.sigmoid(torch.einsum("btc,hc->bth", x.float(), self.lr_weight.float()) + self.lr_bias.float())
        lr = lr * (cfg.base_lr / d)

        if mask is None and cu_seqlens is None and state is None and not use_cache:
            # Training: every row starts a mini-batch at position 0.
            if cfg.rope:
                pos = (torch.arange(T, device=x.device) % b).expand(B, T)
                xq, xk = rope(xq, pos, cfg.rope_theta), rope(xk, pos, cfg.rope_theta)
            z, _ = self._run(xq, xk, xv, lr, self._inner_params(), None)
            new_state = None
        else:
            z, new_state = self._forward_rows(xq, xk, xv, lr, mask, cu_seqlens, state, use_cache)

        y = self.post_norm(z.reshape(B, T, H * d))
        if self.g_proj is not None:
            y = F.gelu(self.g_proj(x), approximate="tanh") * y
        y = self.o_proj(y)
        if mask is not None:
            y = y * mask.unsqueeze(-1).to(y.dtype)
        return y, new_state

    def _forward_rows(self, xq, xk, xv, lr, mask, cu_seqlens, state, use_cache):
        """General path: lay the real tokens of each sequence out in a row of slots after the buffered tokens of
        its incomplete mini-batch (slot 0 = start of a mini-batch), run, and scatter the outputs back."""
        cfg = self.config
        B, T, H, d = xq.shape
        b, dev = cfg.mini_batch_size, xq.device
        if cu_seqlens is not None:
            if B != 1:
                raise ValueError(f"cu_seqlens requires batch size 1 (packed sequences), got batch {B}")
            R = cu_seqlens.numel() - 1
            row, pos = segment_positions(cu_seqlens, T)
            tok_b, tok_t = torch.zeros_like(row), torch.arange(T, device=dev)
            if mask is not None:
                raise NotImplementedError("ttt_mlp: give either mask or cu_seqlens, not both")
        else:
            R = B
            real = mask if mask is not None else torch.ones(B, T, dtype=torch.bool, device=dev)
            tok_b, tok_t = real.nonzero(as_tuple=True)
            row, pos = tok_b, (real.long().cumsum(1) - 1)[tok_b, tok_t]
        memory = state.recurrent if state is not None else None
        count = memory["count"] if memory is not None else torch.zeros(R, dtype=torch.long, device=dev)
        if count.shape != (R,):
            raise ValueError(f"ttt_mlp: the state holds {count.shape[0]} sequences, this input has {R}")
        slot = count[row] + pos
        n_valid = count + torch.bincount(row, minlength=R)
        S = max(int(n_valid.max()), 1)

        q_t, k_t, v_t, lr_t = xq[tok_b, tok_t], xk[tok_b, tok_t], xv[tok_b, tok_t], lr[tok_b, tok_t]
        if cfg.rope:
            rp = (slot % b)[None]
            q_t, k_t = rope(q_t[None], rp, cfg.rope_theta)[0], rope(k_t[None], rp, cfg.rope_theta)[0]
        Xq = xq.new_zeros(R, S, H, d).index_put((row, slot), q_t)
        Xk, Xv, Lr = xk.new_zeros(R, S, H, d), xv.new_zeros(R, S, H, d), lr.new_zeros(R, S, H)
        if memory is not None:  # the buffered tokens of each row's incomplete mini-batch take slots [0, count)
            rb, sb = (torch.arange(b - 1, device=dev)[None] < count[:, None]).nonzero(as_tuple=True)
            Xk = Xk.index_put((rb, sb), memory["k"][rb, sb].to(Xk.dtype))
            Xv = Xv.index_put((rb, sb), memory["v"][rb, sb].to(Xv.dtype))
            Lr = Lr.index_put((rb, sb), memory["lr"][rb, sb].to(Lr.dtype))
            params = (memory["W1"], memory["b1"], memory["W2"], memory["b2"])
        else:
            params = self._inner_params()
        Xk, Xv, Lr = Xk.index_put((row, slot), k_t), Xv.index_put((row, slot), v_t), Lr.index_put((row, slot), lr_t)

        z, params = self._run(Xq, Xk, Xv, Lr, params, n_valid)
        out = xq.new_zeros(B, T, H, d).index_put((tok_b, tok_t), z[row, slot].to(xq.dtype))
        if not use_cache:
            return out, None
        c_new = n_valid % b
        idx = ((n_valid - c_new)[:, None] + torch.arange(b - 1, device=dev)[None]).clamp(max=S - 1)
        keep = (torch.arange(b - 1, device=dev)[None] < c_new[:, None])
        rows = torch.arange(R, device=dev)[:, None]
        memory = {"W1": params[0], "b1": params[1], "W2": params[2], "b2": params[3],
                  "k": Xk[rows, idx] * keep[..., None, None], "v": Xv[rows, idx] * keep[..., None, None],
                  "lr": Lr[rows, idx] * keep[..., None], "count": c_new}
        return out, MixerState(None, memory)

    def state_size(self, seq_len=None):
        H, d, f, b = self.num_heads, self.head_dim, self.inner_dim, self.config.mini_batch_size
        return H * (2 * d * f + f + d) + (b - 1) * H * (2 * d + 1) + 1

    def flops(self, seq_len):
        cfg, D, T = self.config, self.d_model, seq_len
        H, d, f, b = self.num_heads, self.head_dim, self.inner_dim, cfg.mini_batch_size
        proj = 2 * T * D * H * d * (5 if cfg.use_gate else 4) + 2 * T * D * H  # q, k, v, (gate), o; inner lr
        Tp = -(-T // b) * b
        # per token and head: f(x_k), the gradient through W2, f_bar(x_q) and the weight update (14 d f), and the
        # mini-batch's causal score matrices in the dual form (6 b d + 6 b f)
        inner = H * Tp * (14 * d * f + 6 * b * (d + f))
        return proj + inner
