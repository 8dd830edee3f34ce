"""PRISM (Jiang et al., arXiv 2602.10796): a gated delta rule whose write is an L-step residual solver.

Per head (PRISM.md §1; paper Eq. 9-18):

    U        = silu(causal_depthwise_conv(x))                 anchor (anchor: none -> U = x)
    q, v     = l2norm(U Wq), U Wv
    k[l]     = l2norm(U Wk[l]),  beta[l] = sigmoid(U Wb[l]),  p[l] = U Wp[l]       l = 1..L
    alpha    = sigmoid(U Wa + ba)                            (decay: gdn -> exp(-exp(A_log) softplus(U Wa + dt_bias)))
    r[1]     = v - U_h                                        (U sliced per head; a linear map when H*d != D)
    delta[l] = gelu(p[l] * r[l]),  r[l+1] = r[l] - delta[l]
    S_t      = alpha_t S_{t-1} (I - beta[1] k[1] k[1]^T) + sum_l beta[l] delta[l] k[l]^T      (kernels.prism)
    y        = o_proj(rmsnorm_per_head(S_t q_t) * silu(x Wg))

solver: closed_form is the authors' LM variant: delta[l] = P[l] prod_{j<l} (1 - P[j]) v, P = sigmoid(map of U).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import nn

from kernels.prism import prism_delta_rule, prism_delta_rule_flops
from kernels.prism.triton.qk_norm import prism_qk_l2norm, prism_qk_l2norm_reference
from kernels.prism.triton.solver import prism_solver, prism_solver_reference

from .base import Mixer, MixerState
from .common import ChunkedMixerConfig, GatedHeadNorm, ShortConv, matrix_state_size
from .registry import register_mixer


@dataclass
class PRISMConfig(ChunkedMixerConfig):
    num_heads: int = 4
    head_dim: Optional[int] = None   # None: d_model // num_heads (keys and values share it)
    steps: int = 2                   # solver steps L, 1..4 (L = 1 is the paper's ablation)
    # paper: Eq. 15-16 | closed_form: the authors' LM code, delta[l] = P[l] prod_{j<l}(1 - P[j]) v
    solver: Literal["paper", "closed_form"] = "paper"
    shared_key: bool = False         # one key for all solver steps
    anchor: Literal["conv", "none"] = "conv"        # conv: U = silu(ShortConv(x)) | none: U = x
    conv_size: int = 4
    gain: Literal["learned", "none"] = "learned"    # learned: p[l] = U Wp[l] | none: p = 1 (paper solver)
    gain_rank: int = 0               # 0: full Wp per step (Eq. 13); r > 0: rank-r map (also closed_form's P)
    nonlinearity: Literal["gelu", "identity"] = "gelu"  # of the paper solver
    decay: Literal["sigmoid", "gdn"] = "sigmoid"    # sigmoid: paper Alg. 1 | gdn: Gated DeltaNet's form
    alpha_init_min: float = 0.95     # each head's decay starts uniformly in [min, max]
    alpha_init_max: float = 0.99
    norm_eps: float = 1e-6


@register_mixer("prism")
class PRISM(Mixer):
    """State: MixerState(conv tail [N, D, conv_size - 1] (None with anchor: none), matrix [N, H, d, d] (keys by
    values, fp32 or fp64))."""
    Config = PRISMConfig

    def __init__(self, d_model: int, config: PRISMConfig | None = None, layer_idx: int = 0):
        config = PRISMConfig() if config is None else config
        super().__init__(d_model, config, layer_idx)
        c = config
        if not 1 <= c.steps <= 4:
            raise ValueError(f"prism.steps (solver steps L) must be in 1..4, got {c.steps}")
        if c.solver == "closed_form" and c.gain == "none":
            raise ValueError("prism.gain: none is only defined for solver: paper (closed_form's gain P is its solver)")
        if c.head_dim is None and d_model % c.num_heads:
            raise ValueError(f"prism: d_model {d_model} is not divisible by num_heads {c.num_heads}; set head_dim")
        if not 0.0 < c.alpha_init_min <= c.alpha_init_max < 1.0:
            raise ValueError(f"prism: need 0 < alpha_init_min <= alpha_init_max < 1, got "
                             f"{c.alpha_init_min}, {c.alpha_init_max}")
        H = c.num_heads
        d = c.head_dim if c.head_dim is not None else d_model // H
        L = c.steps
        self.num_heads, self.head_dim, self.steps = H, d, L
        HD = H * d

        self.conv = ShortConv(d_model, c.conv_size, "silu", bias=c.conv_bias) if c.anchor == "conv" else None
        # Every full-rank projection of U is one matmul (in_proj), split afterwards: one GEMM and one autograd node
        # instead of six, which at training sizes is host time, not GPU time (docs/benchmarks.md). Output order:
        # q and keys (adjacent: one normalisation kernel reads both), v, [r: r[1] = v - U_h needs U in value width
        # when H*d != D], [p: gains], b (betas), a (decay). Only p, b and a have biases (in_bias, from p on); with
        # decay: gdn the decay's bias is dt_bias, so in_bias stops after b and the a columns get none.
        needs_res = c.solver == "paper" and HD != d_model
        full_p = c.gain_rank == 0 and (c.solver == "closed_form" or c.gain == "learned")
        self._widths = [HD * (1 + (1 if c.shared_key else L)), HD, HD if needs_res else 0, L * HD if full_p else 0,
                        H * L, H]
        self.in_proj = nn.Linear(d_model, sum(self._widths), bias=False)
        alpha0 = torch.empty(H).uniform_(c.alpha_init_min, c.alpha_init_max)
        p_bias = torch.full((self._widths[3],), 1.0 if c.solver == "paper" else 0.0)  # p starts near 1; P at 1/2
        a_bias = torch.logit(alpha0) if c.decay == "sigmoid" else torch.zeros(0)
        self.in_bias = nn.Parameter(torch.cat([p_bias, torch.zeros(H * L), a_bias]))
        self._bias_start = sum(self._widths[:3])                          # in_bias covers columns from p on
        # a rank-r gain map is its own two matmuls
        self.p_proj = None
        if c.gain_rank > 0 and (c.solver == "closed_form" or c.gain == "learned"):
            self.p_proj = nn.Sequential(nn.Linear(d_model, c.gain_rank, bias=False),
                                        nn.Linear(c.gain_rank, L * HD, bias=True))
            nn.init.constant_(self.p_proj[1].bias, 1.0 if c.solver == "paper" else 0.0)
        if c.decay == "gdn":  # Gated DeltaNet: g = -exp(A_log) softplus(U Wa + dt_bias); A ~ U(1, 16), dt for alpha0
            A = torch.empty(H).uniform_(1, 16)
            dt = -torch.log(alpha0) / A
            self.A_log = nn.Parameter(torch.log(A))
            self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))   # inverse softplus
        self.g_proj = nn.Linear(d_model, HD, bias=False)
        self.o_norm = GatedHeadNorm(d, eps=c.norm_eps)
        self.o_proj = nn.Linear(HD, d_model, bias=False)
        for module in self.modules():  # biases keep the values set above
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=c.init_std)

    # ------------------------------------------------------------------------------------------------------------
    def _project(self, u: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(q and keys, v, r, p, b, a) = U in_proj (+ in_bias), views of one [B, T, n] output. n is padded to a
        multiple of 64: with the odd width of b and a (3 H), cuBLAS fell back to unaligned sm80 kernels for this GEMM
        and its backward (two of them took 0.97 ms per step at 16K tokens on an H200, 2026-12-02; padded, the
        three take about 0.45 ms)."""
        n = sum(self._widths)
        pad = -n % 64
        w = F.pad(self.in_proj.weight, (0, 0, 0, pad))
        bias = F.pad(self.in_bias, (self._bias_start, n + pad - self._bias_start - self.in_bias.numel()))
        return F.linear(u, w, bias).split(self._widths + [pad], -1)[:6]

    def _log_decay(self, a: torch.Tensor) -> torch.Tensor:
        """log alpha from the decay projection a = U Wa (+ ba)."""
        a = a.to(torch.promote_types(a.dtype, torch.float32))            # gates in >= fp32
        if self.config.decay == "sigmoid":
            return F.logsigmoid(a)
        return -self.A_log.to(a.dtype).exp() * F.softplus(a + self.dt_bias.to(a.dtype))

    def _fused(self, x: torch.Tensor) -> bool:
        """Triton kernels for the conv, the q/key norm and the solver too (the op's backend: triton, or auto on
        CUDA)."""
        return self.config.backend == "triton" or (self.config.backend == "auto" and x.is_cuda)

    def _solver(self, u: torch.Tensor, v: torch.Tensor, r: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """Per-step written values delta [B, T, H, L, d] from the anchor U [B,T,D], values v [B,T,H*d], the
        residual map r (width 0 when U is sliced per head) and the gains p (width 0 without in_proj gains)."""
        c = self.config
        res = None if c.solver == "closed_form" else (r if r.shape[-1] else u)
        p = self.p_proj(u) if self.p_proj is not None else (p if p.shape[-1] else None)
        solve = prism_solver if self._fused(v) else prism_solver_reference  # one kernel, not L x several ops
        return solve(v, res, p, self.steps, self.head_dim, c.solver, c.nonlinearity)

    def forward(self, x: torch.Tensor, *, mask: torch.Tensor | None = None, cu_seqlens: torch.Tensor | None = None,
                state: MixerState | None = None, use_cache: bool = False):
        c = self.config
        B, T, D = x.shape
        H, d, L = self.num_heads, self.head_dim, self.steps
        if mask is not None and tuple(mask.shape) != (B, T):
            raise ValueError(f"prism: mask must have shape [B, T] = {(B, T)}, got {tuple(mask.shape)}")
        if self.conv is not None:
            u, conv_tail = self.conv(x, mask=mask, cu_seqlens=cu_seqlens, state=None if state is None else state.conv,
                                     use_cache=use_cache, fused=self._fused(x))
        else:
            u, conv_tail = (x if mask is None else x * mask[..., None].to(x.dtype)), None

        qk, v, r, p, b, a = self._project(u)
        # one kernel normalises q and the keys from their strided columns into the op's layouts, in their dtype
        # (F.normalize under CUDA autocast would hand the kernels fp32 q, k)
        normalise = prism_qk_l2norm if self._fused(x) else prism_qk_l2norm_reference
        q, k = normalise(qk, H, d, 1 if c.shared_key else L)                # [B,T,H,d], [B,T,H,L or 1,d]
        if c.shared_key:
            k = k.expand(B, T, H, L, d)
        beta = torch.sigmoid(b).view(B, T, H, L)
        g = self._log_decay(a)
        delta = self._solver(u, v, r, p)                                  # [B,T,H,L,d]
        if mask is not None:  # padding neither writes nor decays the state
            m = mask.to(beta.dtype)
            beta = beta * m[..., None, None]
            g = g * m[..., None].to(g.dtype)

        o, h = prism_delta_rule(q, k, delta, beta, g, scale=d ** -0.5,
                                initial_state=None if state is None else state.recurrent,
                                output_final_state=use_cache, cu_seqlens=cu_seqlens,
                                chunk_size=c.chunk_size, backend=c.backend)
        o = self.o_norm(o.to(x.dtype), self.g_proj(x).view(B, T, H, d))
        y = self.o_proj(o.reshape(B, T, H * d))
        return y, (MixerState(conv_tail, h) if use_cache else None)

    # ------------------------------------------------------------------------------------------------------------
    def state_size(self, seq_len: int | None = None) -> int:
        return matrix_state_size(self.num_heads, self.head_dim, self.head_dim, self.conv)

    def flops(self, seq_len: int) -> int:
        c, D, H, d, L = self.config, self.d_model, self.num_heads, self.head_dim, self.steps
        HD = H * d
        per_token = 2 * D * sum(self._widths) + 2 * D * HD * 2           # in_proj; output gate, o_proj
        if self.conv is not None:
            per_token += 2 * D * c.conv_size                              # depthwise conv
        if self.p_proj is not None:                                       # rank-r gains
            per_token += 2 * (D * c.gain_rank + c.gain_rank * L * HD)
        per_token += 4 * L * HD                                           # solver: gain, nonlinearity, residual
        recurrence = prism_delta_rule_flops(seq_len, H, d, d, L, c.chunk_size)
        return per_token * seq_len + recurrence
