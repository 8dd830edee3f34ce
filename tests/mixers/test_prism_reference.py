"""The PRISM mixer against a reference written from the paper's equations (docs/prism.md, "What it computes"), in
fp64, token by token, for every variant config in configs/mixer/prism*.yaml and both torch-side backends.

The reference shares no code with the mixer or kernels/prism: it reads the mixer's parameters by their documented
layout, computes U, q, k, v, beta, p, alpha, the solver and the recurrence S_t = alpha_t S_{t-1} (I - beta[1] k[1]
k[1]^T) + sum_l beta[l] delta[l] k[l]^T per token with S as values-by-keys (the paper's orientation; the kernels
store its transpose), then the output path. Every parameter is perturbed first, so each bias, gain and decay column
has a value of its own: a shifted bias layout, a wrong erase key or a wrong residual changes the output.
"""
import math
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from mixers.prism import PRISM, PRISMConfig

D, H = 16, 2
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "mixer"
VARIANT_FILES = sorted(CONFIG_DIR.glob("prism*.yaml"))
EXTRA = {  # what the YAMLs do not reach: a residual map (H d != D) and a low-rank gain under the paper solver
    "narrow_heads": dict(head_dim=6),
    "low_rank_gain": dict(gain_rank=4, steps=3),
    "gdn_decay_l3_shared_key": dict(decay="gdn", steps=3, shared_key=True),
}


def variant_config(path: Path) -> PRISMConfig:
    body = yaml.safe_load(path.read_text())
    fields = OmegaConf.merge(OmegaConf.structured(PRISMConfig), body["model"].get("mixers", {}).get("prism", {}))
    return OmegaConf.to_object(fields)


def perturbed_mixer(cfg: PRISMConfig, seed: int = 0) -> PRISM:
    cfg.num_heads, cfg.chunk_size = H, 8
    torch.manual_seed(seed)
    m = PRISM(D, cfg).double()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return m


# ---- the reference ------------------------------------------------------------------------------------------------
def l2norm(x, eps=1e-6):
    return x / torch.sqrt((x * x).sum(-1, keepdim=True) + eps)


def gelu(z):
    return 0.5 * z * (1 + torch.erf(z / math.sqrt(2)))


def anchor(m: PRISM, x):
    """U = silu(causal depthwise conv(x)) (Eq. 9), tap K-1 on the current token; U = x without the conv."""
    if m.config.anchor == "none":
        return x
    w = m.conv.weight                                                  # [D, K]
    K, T = w.shape[1], x.shape[1]
    xp = torch.cat([x.new_zeros(x.shape[0], K - 1, x.shape[2]), x], 1)
    conv = sum(w[:, j] * xp[:, j:j + T] for j in range(K))
    return conv * torch.sigmoid(conv)


def reference(m: PRISM, x):
    """y [B, T, D] of the PRISM mixer m for x [B, T, D] (fp64), from the equations."""
    c = m.config
    B, T, _ = x.shape
    L, d = c.steps, (c.head_dim or D // H)
    HD = H * d
    Lk = 1 if c.shared_key else L
    full_gain = c.gain_rank == 0 and (c.solver == "closed_form" or c.gain == "learned")
    residual_map = c.solver == "paper" and HD != D
    # in_proj's rows: q, keys (head, step, channel), v, [r], [p (step, head, channel)], b (head, step), a (head);
    # in_bias: p, b, and a with the sigmoid decay
    widths = [HD, Lk * HD, HD, HD if residual_map else 0, L * HD if full_gain else 0, H * L, H]
    Wq, Wk, Wv, Wr, Wp, Wb, Wa = m.in_proj.weight.split(widths, 0)
    bias = m.in_bias
    bp, bb = bias[:widths[4]], bias[widths[4]:widths[4] + H * L]
    ba = bias[widths[4] + H * L:]
    assert ba.numel() == (H if c.decay == "sigmoid" else 0) and bias.numel() == widths[4] + H * L + ba.numel()

    U = anchor(m, x)
    q = l2norm((U @ Wq.T).view(B, T, H, d))
    k = l2norm((U @ Wk.T).view(B, T, H, Lk, d)).expand(B, T, H, L, d)
    v = (U @ Wv.T).view(B, T, H, d)
    beta = torch.sigmoid(U @ Wb.T + bb).view(B, T, H, L)
    if c.decay == "sigmoid":                                           # Eq. 18 (Alg. 1)
        alpha = torch.sigmoid(U @ Wa.T + ba)
    else:                                                              # Gated DeltaNet's form
        z = U @ Wa.T + m.dt_bias
        alpha = torch.exp(-torch.exp(m.A_log) * torch.log1p(torch.exp(z)))
    if full_gain:
        p = (U @ Wp.T + bp).view(B, T, L, H, d)
    elif c.gain_rank > 0:
        down, up = m.p_proj
        p = ((U @ down.weight.T) @ up.weight.T + up.bias).view(B, T, L, H, d)
    else:
        p = torch.ones(B, T, L, H, d, dtype=x.dtype)

    delta = []                                                         # Eq. 14-16, or the closed form
    if c.solver == "paper":
        r = v - (U @ Wr.T if residual_map else U).view(B, T, H, d)
        for l in range(L):
            z = p[:, :, l] * r
            delta.append(gelu(z) if c.nonlinearity == "gelu" else z)
            r = r - delta[-1]
    else:
        retain = torch.ones_like(v)
        for l in range(L):
            P = torch.sigmoid(p[:, :, l])
            delta.append(P * retain * v)
            retain = retain * (1 - P)
    delta = torch.stack(delta, 3)                                      # [B, T, H, L, d]

    S = x.new_zeros(B, H, d, d)                                        # values x keys
    eye = torch.eye(d, dtype=x.dtype)
    outs = []
    for t in range(T):                                                 # Eq. 17-18
        k1, b1 = k[:, t, :, 0], beta[:, t, :, 0]
        erase = eye - b1[..., None, None] * k1[..., :, None] * k1[..., None, :]
        S = alpha[:, t, :, None, None] * (S @ erase)
        for l in range(L):
            S = S + beta[:, t, :, l, None, None] * delta[:, t, :, l, :, None] * k[:, t, :, l, None, :]
        outs.append((S @ q[:, t, :, :, None])[..., 0] / math.sqrt(d))  # read after the write
    o = torch.stack(outs, 1)                                           # [B, T, H, d]
    o = o / torch.sqrt(o.pow(2).mean(-1, keepdim=True) + c.norm_eps) * m.o_norm.weight
    gate = (x @ m.g_proj.weight.T).view(B, T, H, d)
    return (o * gate * torch.sigmoid(gate)).reshape(B, T, HD) @ m.o_proj.weight.T


# ---- tests --------------------------------------------------------------------------------------------------------
CASES = [(p.stem, lambda p=p: variant_config(p)) for p in VARIANT_FILES] + \
        [(name, lambda kw=kw: PRISMConfig(**kw)) for name, kw in EXTRA.items()]


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("backend", ["torch", "naive"])
@pytest.mark.parametrize("name,make_config", CASES, ids=[c[0] for c in CASES])
def test_mixer_equals_the_equations_in_fp64(name, make_config, backend):
    cfg = make_config()
    cfg.backend = backend
    m = perturbed_mixer(cfg)
    x = torch.randn(2, 19, D, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y, _ = m(x)
        ref = reference(m, x)
    assert y.dtype == torch.float64
    assert rel(y, ref) <= 1e-12, f"{name} ({backend}): relative error {rel(y, ref):.2e}"


def test_every_variant_config_is_covered():
    assert len(VARIANT_FILES) >= 10 and {p.stem for p in VARIANT_FILES} >= {"prism", "prism_gdn_decay",
                                                                             "prism_closed_form"}
