"""kernels.ttt: the hand-written inner gradients equal autograd, and the mini-batch dual form equals the token-by-
token primal form of the same update (outputs, carried weights and outer gradients), incl. a trailing partial
mini-batch, per-row valid lengths, gradient checkpointing and torch.compile."""
import pytest
import torch
import torch.nn.functional as F

from kernels.ttt import gelu_tanh, gelu_tanh_grad, layer_norm, ln_fused_l2_bwd, ttt_mlp

D64 = torch.float64


def rel(a, b):
    return ((a.double() - b.double()).pow(2).mean().sqrt() / b.double().pow(2).mean().sqrt().clamp_min(1e-30)).item()


def test_hand_written_gradients_equal_autograd():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2, 5, 8, generator=g, dtype=D64, requires_grad=True)
    target = torch.randn(3, 2, 5, 8, generator=g, dtype=D64)
    w, b = 1 + 0.3 * torch.randn(2, 1, 8, generator=g, dtype=D64), 0.3 * torch.randn(2, 1, 8, generator=g, dtype=D64)
    loss = 0.5 * (layer_norm(x, w, b, 1e-6) - target).pow(2).sum()
    (auto,) = torch.autograd.grad(loss, x)
    assert rel(ln_fused_l2_bwd(x, target, w, b, 1e-6), auto) < 1e-12
    z = torch.randn(50, dtype=D64, generator=g, requires_grad=True) * 3
    (dz,) = torch.autograd.grad(gelu_tanh(z).sum(), z)
    assert rel(gelu_tanh_grad(torch.ones_like(z), z), dz) < 1e-7  # the Megatron constants are rounded to ~1e-9
    torch.testing.assert_close(gelu_tanh(z), F.gelu(z, approximate="tanh"))


def make(B=2, T=37, H=2, d=4, mult=4, dtype=D64, seed=0):
    g = torch.Generator().manual_seed(seed)
    f = mult * d
    xq, xk, xv = (torch.randn(B, T, H, d, generator=g, dtype=dtype).requires_grad_() for _ in range(3))
    lr = (0.5 * torch.rand(B, T, H, generator=g, dtype=dtype)).requires_grad_()
    params = [(0.3 * torch.randn(1, H, d, f, generator=g, dtype=dtype)).requires_grad_(),
              (0.1 * torch.randn(1, H, 1, f, generator=g, dtype=dtype)).requires_grad_(),
              (0.3 * torch.randn(1, H, f, d, generator=g, dtype=dtype)).requires_grad_(),
              (0.1 * torch.randn(1, H, 1, d, generator=g, dtype=dtype)).requires_grad_()]
    ln_w = (1 + 0.1 * torch.randn(H, d, generator=g, dtype=dtype)).requires_grad_()
    ln_b = (0.1 * torch.randn(H, d, generator=g, dtype=dtype)).requires_grad_()
    return xq, xk, xv, lr, params, ln_w, ln_b


def run(args, token_eta, **kw):
    xq, xk, xv, lr, params, ln_w, ln_b = args
    z, P = ttt_mlp(xq, xk, xv, lr, params, ln_w, ln_b, token_eta, **kw)
    g = torch.Generator().manual_seed(1)
    loss = (z * torch.randn(z.shape, generator=g, dtype=z.dtype)).sum() \
        + sum((p * torch.randn(p.shape, generator=g, dtype=p.dtype)).sum() for p in P)
    grads = torch.autograd.grad(loss, [xq, xk, xv, lr, *params, ln_w, ln_b, token_eta])
    return [z, *P, *grads]


@pytest.mark.parametrize("T,b,n_valid", [(37, 16, None), (37, 16, [37, 20]), (24, 4, [24, 11])])
def test_dual_form_equals_primal_form(T, b, n_valid):
    args = make(T=T)
    token_eta = (1.0 / torch.arange(1, b + 1, dtype=D64) + 0.05).requires_grad_()
    nv = torch.tensor(n_valid) if n_valid is not None else None
    dual = run(args, token_eta, mini_batch_size=b, n_valid=nv, backend="torch")
    primal = run(args, token_eta, mini_batch_size=b, n_valid=nv, backend="naive")
    for i, (a, p) in enumerate(zip(dual, primal)):
        assert rel(a, p) < 1e-10, i


def test_trailing_partial_mini_batch_is_not_carried():
    args = [x.detach() if torch.is_tensor(x) else [p.detach() for p in x] for x in make(T=20)]
    token_eta = 1.0 / torch.arange(1, 17, dtype=D64)
    _, P20 = ttt_mlp(*args, token_eta)
    short = [x[:, :16] for x in args[:4]] + args[4:]
    z16, P16 = ttt_mlp(*short, token_eta)
    z20, _ = ttt_mlp(*args, token_eta)
    for a, b in zip(P20, P16):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(z20[:, :16], z16)


def test_checkpointing_gives_the_same_values_and_gradients():
    args = make(T=40, dtype=torch.float32)
    token_eta = (1.0 / torch.arange(1, 5)).requires_grad_()
    plain = run(args, token_eta, mini_batch_size=4)
    ckpt = run(args, token_eta, mini_batch_size=4, checkpoint_group=3)
    for a, b in zip(plain, ckpt):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("checkpoint_group", [0, 3])  # 3: the benchmark's compiled row also checkpoints
def test_compiled_step_captures_one_graph_and_matches(checkpoint_group):
    # aot_eager checks graph capture (fullgraph=True) and autograd without a C++ toolchain; the GPU uses inductor
    args = make(T=28, dtype=torch.float32)
    token_eta = (1.0 / torch.arange(1, 5)).requires_grad_()
    eager = run(args, token_eta, mini_batch_size=4)
    compiled = run(args, token_eta, mini_batch_size=4, compile=True, compile_backend="aot_eager",
                   checkpoint_group=checkpoint_group)
    for a, b in zip(eager, compiled):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
