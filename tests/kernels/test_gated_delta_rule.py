"""kernels.gated_delta_rule: the torch path (kernels.prism's exact chunked delta rule with L = 1) equals fla's naive
reference (fp32), forward and backward, odd lengths, initial state, packed sequences, in-kernel q/k L2 norm."""
import pytest
import torch
import torch.nn.functional as F
from fla.ops.gated_delta_rule.naive import naive_recurrent_gated_delta_rule as fla_naive

from kernels.gated_delta_rule import chunk_flops, gated_delta_rule, l2norm
from tests.kernels.weighted_grads import fwd_bwd

NAMES = ["o", "state", "dq", "dk", "dv", "dg", "dbeta", "dh0"]


def rel(a, b):
    return ((a.double() - b.double()).pow(2).mean().sqrt() / b.double().pow(2).mean().sqrt().clamp_min(1e-30)).item()


def inputs(B=2, T=37, H=2, K=8, V=6, seed=0, N=None):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, H, K, generator=g)
    k = F.normalize(torch.randn(B, T, H, K, generator=g), dim=-1)
    v = torch.randn(B, T, H, V, generator=g)
    gl = F.logsigmoid(torch.randn(B, T, H, generator=g) * 3)
    beta = torch.rand(B, T, H, generator=g)
    h0 = torch.randn(N or B, H, K, V, generator=g)
    return [x.requires_grad_() for x in (q, k, v, gl, beta, h0)]



def fla_ref(q, k, v, g, beta, h):
    return fla_naive(q, k, v, beta, g, initial_state=h, output_final_state=True)


@pytest.mark.parametrize("chunk_size", [16, 64])
def test_torch_path_matches_fla_naive(chunk_size):
    xs = inputs()
    ours = fwd_bwd(lambda q, k, v, g, b, h: gated_delta_rule(q, k, v, g, b, initial_state=h, output_final_state=True,
                                                             chunk_size=chunk_size, backend="torch"), *xs)
    ref = fwd_bwd(fla_ref, *xs)
    for name, a, b in zip(NAMES, ours, ref):
        assert rel(a, b) < 1e-5, name


def test_qk_l2norm_option_equals_normalising_outside():
    xs = inputs()
    raw_k = (xs[1].detach() * 3).requires_grad_()
    xs = [xs[0], raw_k, *xs[2:]]
    ours = fwd_bwd(lambda q, k, v, g, b, h: gated_delta_rule(q, k, v, g, b, initial_state=h, output_final_state=True,
                                                             use_qk_l2norm=True, backend="torch"), *xs)
    ref = fwd_bwd(lambda q, k, v, g, b, h: fla_ref(F.normalize(q, dim=-1), F.normalize(k, dim=-1), v, g, b, h), *xs)
    for name, a, b in zip(NAMES, ours, ref):
        assert rel(a, b) < 1e-5, name
    x = torch.randn(3, 5)
    torch.testing.assert_close(l2norm(x), F.normalize(x, dim=-1), rtol=1e-5, atol=1e-6)


def test_packed_sequences_equal_separate_runs():
    lens = [5, 1, 30, 17]
    cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], dtype=torch.int32)
    xs = inputs(B=1, T=sum(lens), N=len(lens))
    ours = fwd_bwd(lambda q, k, v, g, b, h: gated_delta_rule(q, k, v, g, b, initial_state=h, output_final_state=True,
                                                             cu_seqlens=cu, chunk_size=16, backend="torch"), *xs)

    def separate(q, k, v, g, beta, h):
        outs = [fla_ref(q[:, a:b], k[:, a:b], v[:, a:b], g[:, a:b], beta[:, a:b], h[i:i + 1])
                for i, (a, b) in enumerate(zip(cu[:-1], cu[1:]))]
        return torch.cat([o for o, _ in outs], 1), torch.cat([s for _, s in outs])

    ref = fwd_bwd(separate, *xs)
    for name, a, b in zip(NAMES, ours, ref):
        assert rel(a, b) < 1e-5, name


def test_naive_backend_and_checks():
    xs = [x.detach() for x in inputs(T=9)]
    o, s = gated_delta_rule(*xs[:5], initial_state=xs[5], output_final_state=True, backend="naive")
    r, rs = fla_ref(*xs)
    assert rel(o, r) < 1e-5 and rel(s, rs) < 1e-5
    with pytest.raises(ValueError, match="beta shape"):
        gated_delta_rule(*xs[:4], xs[4][..., None])
    assert chunk_flops(100, 2, 8, 6, 64) > 0 and chunk_flops(0, 2, 8, 6) == 0
