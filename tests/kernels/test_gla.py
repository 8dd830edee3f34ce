"""kernels.gla: the chunked torch path equals fla's naive reference (fp32) and our naive reference (fp64),
forward and backward, odd lengths, initial state, packed sequences."""
import pytest
import torch
import torch.nn.functional as F
from fla.ops.gla.naive import naive_recurrent_gla as fla_naive

from kernels.gla import chunk_flops, gla
from tests.kernels.weighted_grads import fwd_bwd


def rel(a, b):
    return ((a.double() - b.double()).pow(2).mean().sqrt() / b.double().pow(2).mean().sqrt().clamp_min(1e-30)).item()


def inputs(B=2, T=37, H=2, K=8, V=6, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(B, T, H, K, generator=g, dtype=dtype) for _ in range(2))
    v = torch.randn(B, T, H, V, generator=g, dtype=dtype)
    gk = F.logsigmoid(torch.randn(B, T, H, K, generator=g, dtype=dtype) * 3)
    h0 = torch.randn(B, H, K, V, generator=g, dtype=dtype)
    return [x.requires_grad_() for x in (q, k, v, gk, h0)]



@pytest.mark.parametrize("chunk_size", [16, 64])
def test_torch_path_matches_fla_naive(chunk_size):
    xs = inputs()
    ours = fwd_bwd(lambda q, k, v, g, h: gla(q, k, v, g, initial_state=h, output_final_state=True,
                                             chunk_size=chunk_size, backend="torch"), *xs)
    ref = fwd_bwd(lambda q, k, v, g, h: fla_naive(q, k, v, g, initial_state=h, output_final_state=True), *xs)
    for name, a, b in zip(["o", "state", "dq", "dk", "dv", "dg", "dh0"], ours, ref):
        assert rel(a, b) < 1e-5, name


def test_torch_path_fp64_matches_naive_and_is_exact():
    xs = inputs(T=45, dtype=torch.float64)
    ours = fwd_bwd(lambda q, k, v, g, h: gla(q, k, v, g, initial_state=h, output_final_state=True, chunk_size=32,
                                             backend="torch"), *xs)
    ref = fwd_bwd(lambda q, k, v, g, h: gla(q, k, v, g, initial_state=h, output_final_state=True, backend="naive"),
                  *xs)
    for a, b in zip(ours, ref):
        assert rel(a, b) < 1e-12


def test_strong_decay_stays_finite_and_exact():
    # per-token log decay uniform in [-4.5, 0] (GLA's logsigmoid / 16 gate reaches -4.5 only for logits below -72):
    # e^{-G} over a sub-chunk of 16 tokens reaches e^{72}, still finite in fp32
    xs = inputs(T=70)
    xs[3] = (-4.5 * torch.rand(xs[3].shape, generator=torch.Generator().manual_seed(3))).requires_grad_()
    o, s = gla(*xs[:4], initial_state=xs[4], output_final_state=True, backend="torch")
    r, rs = fla_naive(*xs[:4], initial_state=xs[4], output_final_state=True)
    assert torch.isfinite(o).all() and rel(o, r) < 1e-5 and rel(s, rs) < 1e-5


def test_packed_sequences_equal_separate_runs():
    lens = [5, 1, 30, 17]
    cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], dtype=torch.int32)
    q, k, v, gk, _ = inputs(B=1, T=sum(lens))
    h0 = torch.randn(len(lens), 2, 8, 6, requires_grad=True)
    ours = fwd_bwd(lambda q, k, v, g, h: gla(q, k, v, g, initial_state=h, output_final_state=True, cu_seqlens=cu,
                                             backend="torch"), q, k, v, gk, h0)

    def separate(q, k, v, g, h):
        outs, states = [], []
        for i in range(len(lens)):
            a, b = cu[i], cu[i + 1]
            o, s = fla_naive(q[:, a:b], k[:, a:b], v[:, a:b], g[:, a:b], initial_state=h[i:i + 1],
                             output_final_state=True)
            outs.append(o)
            states.append(s)
        return torch.cat(outs, 1), torch.cat(states)

    ref = fwd_bwd(separate, q, k, v, gk, h0)
    for name, a, b in zip(["o", "state", "dq", "dk", "dv", "dg", "dh0"], ours, ref):
        assert rel(a, b) < 1e-5, name


def test_checks_and_backend_choice():
    q, k, v, gk, h0 = inputs()
    with pytest.raises(ValueError, match="g shape"):
        gla(q, k, v, gk[..., :3])
    with pytest.raises(ValueError, match="initial_state shape"):
        gla(q, k, v, gk, initial_state=h0[:1])
    with pytest.raises(ValueError, match="unknown backend"):
        gla(q, k, v, gk, backend="cuda")
    with pytest.raises(ValueError, match="'fla'; choose one of naive, torch, triton, auto"):
        gla(q, k, v, gk, backend="fla")
    with pytest.raises(RuntimeError, match="CUDA"):
        gla(q, k, v, gk, backend="triton")  # no GPU and no interpreter in this process
    assert chunk_flops(128, 2, 8, 6, 64) == 2 * (2 * 128 * 64 * 14 + 4 * 128 * 48)
