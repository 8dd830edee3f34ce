"""kernels.simple_gla (scalar decay per head: Mamba2's SSD): the chunked torch path equals fla's naive reference
(fp32) and our naive reference (fp64), forward and backward, odd lengths, initial state, packed sequences."""
import pytest
import torch
import torch.nn.functional as F
from fla.ops.simple_gla.naive import naive_recurrent_simple_gla as fla_naive

from kernels.simple_gla import simple_gla
from tests.kernels.weighted_grads import fwd_bwd

NAMES = ["o", "state", "dq", "dk", "dv", "dg", "dh0"]


def rel(a, b):
    return ((a.double() - b.double()).pow(2).mean().sqrt() / b.double().pow(2).mean().sqrt().clamp_min(1e-30)).item()


def inputs(B=2, T=37, H=2, K=8, V=6, dtype=torch.float32, seed=0, N=None):
    g = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(B, T, H, K, generator=g, dtype=dtype) for _ in range(2))
    v = torch.randn(B, T, H, V, generator=g, dtype=dtype)
    gl = F.logsigmoid(torch.randn(B, T, H, generator=g, dtype=dtype) * 3)
    h0 = torch.randn(N or B, H, K, V, generator=g, dtype=dtype)
    return [x.requires_grad_() for x in (q, k, v, gl, h0)]



@pytest.mark.parametrize("chunk_size,scale", [(16, None), (64, 1.0)])
def test_torch_path_matches_fla_naive(chunk_size, scale):
    xs = inputs()
    ours = fwd_bwd(lambda q, k, v, g, h: simple_gla(q, k, v, g, scale=scale, initial_state=h,
                                                    output_final_state=True, chunk_size=chunk_size,
                                                    backend="torch"), *xs)
    ref = fwd_bwd(lambda q, k, v, g, h: fla_naive(q, k, v, g, scale=scale, initial_state=h,
                                                  output_final_state=True), *xs)
    for name, a, b in zip(NAMES, ours, ref):
        assert rel(a, b) < 1e-5, name


def test_torch_path_fp64_matches_naive_and_very_strong_decay_is_safe():
    xs = inputs(T=45, dtype=torch.float64)
    xs[3] = (xs[3].detach() * 20).requires_grad_()  # log decays down to -100 per token: exact in log space
    ours = fwd_bwd(lambda q, k, v, g, h: simple_gla(q, k, v, g, initial_state=h, output_final_state=True,
                                                    chunk_size=32, backend="torch"), *xs)
    ref = fwd_bwd(lambda q, k, v, g, h: simple_gla(q, k, v, g, initial_state=h, output_final_state=True,
                                                   backend="naive"), *xs)
    for a, b in zip(ours, ref):
        assert torch.isfinite(a).all() and rel(a, b) < 1e-12


def test_packed_sequences_equal_separate_runs():
    lens = [5, 1, 30, 17]
    cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], dtype=torch.int32)
    xs = inputs(B=1, T=sum(lens), N=len(lens))
    ours = fwd_bwd(lambda q, k, v, g, h: simple_gla(q, k, v, g, initial_state=h, output_final_state=True,
                                                    cu_seqlens=cu, backend="torch"), *xs)

    def separate(q, k, v, g, h):
        outs = [fla_naive(q[:, a:b], k[:, a:b], v[:, a:b], g[:, a:b], initial_state=h[i:i + 1],
                          output_final_state=True) for i, (a, b) in enumerate(zip(cu[:-1], cu[1:]))]
        return torch.cat([o for o, _ in outs], 1), torch.cat([s for _, s in outs])

    ref = fwd_bwd(separate, *xs)
    for name, a, b in zip(NAMES, ours, ref):
        assert rel(a, b) < 1e-5, name


def test_shape_checks():
    q, k, v, gl, h0 = inputs()
    with pytest.raises(ValueError, match="g shape"):
        simple_gla(q, k, v, gl[..., None])
    with pytest.raises(ValueError, match="batch size 1"):
        simple_gla(q, k, v, gl, cu_seqlens=torch.tensor([0, 37], dtype=torch.int32))
