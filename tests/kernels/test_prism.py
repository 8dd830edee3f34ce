"""The chunked PRISM delta rule against the token-by-token reference (and against fla's Gated DeltaNet for L = 1)."""
import pytest
import torch
import torch.nn.functional as F

from kernels.prism import prism_delta_rule, prism_delta_rule_flops




def make_inputs(B=2, T=37, H=2, L=2, K=8, V=6, dtype=torch.float64, seed=0, n_states=None):
    """Realistic random inputs: unit keys, beta in (0, 1), g = logsigmoid(.) (alpha mostly 0.7-0.99)."""
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)  # noqa: E731
    q = r(B, T, H, K)
    k = F.normalize(r(B, T, H, L, K), dim=-1)
    v = r(B, T, H, L, V)
    beta = torch.sigmoid(r(B, T, H, L))
    g = F.logsigmoid(r(B, T, H) + 2.5)
    h0 = r(n_states or B, H, K, V)
    return [x.to(dtype) for x in (q, k, v, beta, g, h0)]


def rel(a, b):
    """Relative RMS error of a against the reference b."""
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-300)).item()


def run(backend, q, k, v, beta, g, h0=None, **kw):
    return prism_delta_rule(q, k, v, beta, g, initial_state=h0, output_final_state=True, backend=backend, **kw)


def grads(backend, inputs, use_h0, **kw):
    inputs = [x.detach().clone().requires_grad_() for x in inputs]
    q, k, v, beta, g, h0 = inputs
    o, h = run(backend, q, k, v, beta, g, h0 if use_h0 else None, **kw)
    gen = torch.Generator().manual_seed(123)
    wo = torch.randn(o.shape, generator=gen, dtype=o.dtype)
    wh = torch.randn(h.shape, generator=gen, dtype=h.dtype)
    loss = (o * wo).sum() + (h * wh).sum()
    wrt = inputs if use_h0 else inputs[:5]
    return o, h, torch.autograd.grad(loss, wrt)


CASES = [  # (T, chunk size, L, with initial state)
    (1, 16, 2, True), (63, 16, 3, False), (63, 32, 1, True), (100, 32, 2, True),
    (100, 64, 4, False), (257, 64, 2, True), (257, 16, 1, False),
]


@pytest.mark.parametrize("T,C,L,use_h0", CASES)
def test_chunk_equals_naive_fp64_outputs_states_and_grads(T, C, L, use_h0):
    inputs = make_inputs(T=T, L=L, seed=T + L)
    o_ref, h_ref, g_ref = grads("naive", inputs, use_h0)
    o, h, g = grads("torch", inputs, use_h0, chunk_size=C)
    assert rel(o, o_ref) <= 1e-10
    assert rel(h, h_ref) <= 1e-10
    for name, a, b in zip(("q", "k", "v", "beta", "g", "initial_state"), g, g_ref):
        assert rel(a, b) <= 1e-10, f"gradient of {name}: relative error {rel(a, b):.2e}"


@pytest.mark.parametrize("T,C,L", [(63, 32, 2), (257, 64, 3), (100, 64, 1)])
def test_chunk_fp32_against_fp64_reference(T, C, L):
    inputs = make_inputs(T=T, L=L, seed=7)
    o_ref, h_ref = run("naive", *inputs)
    o, h = run("torch", *[x.float() for x in inputs], chunk_size=C)
    assert o.dtype == torch.float32 and h.dtype == torch.float32
    assert rel(o, o_ref) <= 1e-5
    assert rel(h, h_ref) <= 1e-5


def test_chunk_bf16_inputs_computed_in_fp32():
    inputs = [x.bfloat16() for x in make_inputs(T=100, L=2, seed=3)]
    o_ref, h_ref = run("naive", *[x.double() for x in inputs])  # same (bf16-rounded) inputs, fp64
    o, h = run("torch", *inputs, chunk_size=32)
    assert o.dtype == torch.bfloat16 and h.dtype == torch.float32
    assert rel(o, o_ref) <= 5e-3
    assert rel(h, h_ref) <= 1e-5


def test_output_does_not_depend_on_chunk_size():
    inputs = make_inputs(T=100, L=3, seed=11)
    o_ref, h_ref = run("torch", *inputs, chunk_size=64)
    for C in (1, 7, 16, 32, 100, 128):
        o, h = run("torch", *inputs, chunk_size=C)
        assert rel(o, o_ref) <= 1e-12 and rel(h, h_ref) <= 1e-12, f"chunk size {C}"


@pytest.mark.parametrize("use_h0", [False, True])
def test_varlen_equals_separate_sequences(use_h0):
    lens = [1, 63, 0, 100, 30]
    cu = torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), dtype=torch.int32)
    q, k, v, beta, g, h0 = make_inputs(B=1, T=sum(lens), L=2, seed=5, n_states=len(lens))
    h0 = h0 if use_h0 else None
    packed, _, packed_grads = grads("torch", (q, k, v, beta, g, h0 if use_h0 else q.new_zeros(1)), use_h0,
                                    chunk_size=16, cu_seqlens=cu)
    o, h = run("torch", q, k, v, beta, g, h0, chunk_size=16, cu_seqlens=cu)
    o_naive, h_naive = run("naive", q, k, v, beta, g, h0, cu_seqlens=cu)
    assert rel(o, o_naive) <= 1e-10 and rel(h, h_naive) <= 1e-10
    for i in range(len(lens)):
        s, e = int(cu[i]), int(cu[i + 1])
        o_i, h_i = run("torch", q[:, s:e], k[:, s:e], v[:, s:e], beta[:, s:e], g[:, s:e],
                       None if h0 is None else h0[i:i + 1], chunk_size=16)
        if e > s:
            assert rel(o[:, s:e], o_i) <= 1e-12
        assert rel(h[i:i + 1], h_i) <= 1e-12 if (e > s or use_h0) else h[i].abs().max() == 0
    # gradients of the packed call agree with the token-by-token reference
    _, _, naive_grads = grads("naive", (q, k, v, beta, g, h0 if use_h0 else q.new_zeros(1)), use_h0, cu_seqlens=cu)
    for a, b in zip(packed_grads, naive_grads):
        assert rel(a, b) <= 1e-10


def test_l1_equals_fla_gated_delta_rule_reference():
    fla_naive = pytest.importorskip("fla.ops.gated_delta_rule.naive")
    q, k, v, beta, g, h0 = make_inputs(T=70, L=1, seed=2)
    k1, v1, b1 = k[:, :, :, 0], v[:, :, :, 0], beta[..., 0]
    # fla's reference computes in fp32: compare at fp32 precision, against our fp64 result
    o_fla, h_fla = fla_naive.naive_recurrent_gated_delta_rule(q.float(), k1.float(), v1.float(), b1.float(),
                                                              g.float(), initial_state=h0.float(),
                                                              output_final_state=True)
    o, h = prism_delta_rule(q, k1[:, :, :, None], v1[:, :, :, None], b1[..., None], g, initial_state=h0,
                            output_final_state=True, chunk_size=16)
    assert rel(o_fla, o) <= 1e-5 and rel(h_fla, h) <= 1e-5
    # the same check with the gates of Gated DeltaNet's parametrisation and no initial state
    a = torch.randn(g.shape, dtype=g.dtype, generator=torch.Generator().manual_seed(0))
    A = torch.tensor([1.0, 6.0], dtype=g.dtype)                     # exp(A_log) per head
    g_gdn = -A * F.softplus(a - 4.0)                                # -exp(A_log) softplus(a + dt_bias)
    o_fla, _ = fla_naive.naive_recurrent_gated_delta_rule(q.float(), k1.float(), v1.float(), b1.float(),
                                                          g_gdn.float())
    o, _ = prism_delta_rule(q, k1[:, :, :, None], v1[:, :, :, None], b1[..., None], g_gdn, chunk_size=32)
    assert rel(o_fla, o) <= 1e-5


def test_scale_and_expanded_keys():
    q, k, v, beta, g, _ = make_inputs(T=40, L=3, seed=9)
    shared = k[:, :, :, :1].expand_as(k)  # one key for all steps, as a stride-0 view
    o, _ = prism_delta_rule(q, shared, v, beta, g, scale=0.3, chunk_size=16)
    o_ref, _ = prism_delta_rule(q, shared.contiguous(), v, beta, g, scale=0.3, backend="naive")
    assert rel(o, o_ref) <= 1e-10


def test_padding_steps_leave_the_state_unchanged():
    q, k, v, beta, g, h0 = make_inputs(B=1, T=20, L=2, seed=4)
    beta0, g0 = beta.clone(), g.clone()
    beta0[:, 10:], g0[:, 10:] = 0, 0
    _, h = run("torch", q, k, v, beta0, g0, h0, chunk_size=8)
    _, h_ref = run("torch", q[:, :10], k[:, :10], v[:, :10], beta[:, :10], g[:, :10], h0, chunk_size=8)
    assert rel(h, h_ref) <= 1e-12


def test_argument_errors_name_the_argument():
    q, k, v, beta, g, h0 = make_inputs(T=5, L=2)
    with pytest.raises(ValueError, match="k"):
        prism_delta_rule(q, k[:, :, :, 0], v, beta, g)
    with pytest.raises(ValueError, match="v shape"):
        prism_delta_rule(q, k, v[:, :, :, :1], beta, g)
    with pytest.raises(ValueError, match="beta"):
        prism_delta_rule(q, k, v, beta[..., 0], g)
    with pytest.raises(ValueError, match="g shape"):
        prism_delta_rule(q, k, v, beta, g[:, :4])
    with pytest.raises(ValueError, match="initial_state"):
        prism_delta_rule(q, k, v, beta, g, initial_state=h0[:1])
    with pytest.raises(ValueError, match="cu_seqlens"):
        prism_delta_rule(q, k, v, beta, g, cu_seqlens=torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="cu_seqlens"):
        prism_delta_rule(q[:1], k[:1], v[:1], beta[:1], g[:1], cu_seqlens=torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="backend"):
        prism_delta_rule(q, k, v, beta, g, backend="cuda")
    with pytest.raises(ValueError, match="'chunk'; choose one of naive, torch, triton, auto"):
        prism_delta_rule(q, k, v, beta, g, backend="chunk")
    with pytest.raises(NotImplementedError, match="Triton"):
        prism_delta_rule(q, k, v, beta, g, backend="triton")


def test_flops_count():
    f = lambda T, **kw: prism_delta_rule_flops(T, 4, 64, 64, kw.get("L", 2), 64)  # noqa: E731
    assert f(0) == 0 and f(1) > 0
    assert f(128) == 2 * f(64)                      # linear in whole chunks
    assert f(128, L=1) < f(128, L=2) < f(128, L=3)
    # L = 1, one chunk: at least the matmuls of Gated DeltaNet's WY form (2 C^2 K for K K^T, Q K^T, P V ...)
    assert f(64, L=1) >= 4 * 2 * 64 * 64 * 64 * 4
