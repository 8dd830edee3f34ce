"""linear_attention against its equations in fp64 (the contract checks are in test_baselines.py): the paper's LA,
an unnormalised causal sum of elu+1 features after a causal conv + SiLU, and the optional learned decay."""
import pytest
import torch
import torch.nn.functional as F

from mixers.linear_attention import LinearAttention, LinearAttentionConfig

D = 12


def equations(m: LinearAttention, x):
    """y_t = o_proj(sum_{s<=t} (prod_{s<r<=t} alpha_r) (phi(q_t) . phi(k_s)) v_s / sqrt(d)), per head, as a
    [T, T] weight matrix (no recurrence, no chunks)."""
    B, T, _ = x.shape
    H, d = m.num_heads, m.head_dim
    u = x
    if m.conv is not None:
        K = m.conv.kernel_size
        xp = F.pad(x, (0, 0, K - 1, 0))
        u = F.silu(sum(m.conv.weight[:, j] * xp[:, j:j + T] for j in range(K)))
    q, k, v = (u @ m.qkv.weight.T).view(B, T, 3, H, d).unbind(2)
    q, k = F.elu(q) + 1, F.elu(k) + 1
    scores = torch.einsum("bthd,bshd->bhts", q, k) / d ** 0.5
    log_alpha = F.logsigmoid(m.a_proj(u)) if m.a_proj is not None else x.new_zeros(B, T, H)
    cum = log_alpha.cumsum(1).transpose(1, 2)                           # [B, H, T]
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    decay = (cum[..., :, None] - cum[..., None, :]).masked_fill(~causal, float("-inf")).exp()
    o = torch.einsum("bhts,bshd->bthd", scores * decay, v)
    return o.reshape(B, T, H * d) @ m.o_proj.weight.T


@pytest.mark.parametrize("kw", [{}, dict(num_heads=3, decay="learned"), dict(conv_size=0, num_heads=2),
                                dict(conv_size=3, head_dim=5, num_heads=2)])
@pytest.mark.parametrize("backend", ["torch", "naive"])
def test_mixer_equals_its_equations_in_fp64(kw, backend):
    torch.manual_seed(0)
    m = LinearAttention(D, LinearAttentionConfig(init_std=0.3, chunk_size=8, backend=backend, **kw)).double()
    x = torch.randn(2, 21, D, dtype=torch.float64)
    with torch.no_grad():
        y, _ = m(x)
        ref = equations(m, x)
    assert ((y - ref).norm() / ref.norm()).item() <= 1e-12


def test_defaults_are_the_papers_la():
    m = LinearAttention(16, LinearAttentionConfig())
    assert (m.num_heads, m.head_dim, m.conv.kernel_size, m.a_proj) == (1, 16, 5, None)
    assert m.state_size() == 16 * 16 + 16 * 4
    with pytest.raises(ValueError, match="num_heads"):
        LinearAttention(16, LinearAttentionConfig(num_heads=3))
