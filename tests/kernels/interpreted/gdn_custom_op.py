"""Run by tests/kernels/test_gdn_custom_op.py under Triton's interpreter: kernels/gated_delta_rule/fla_op.py's
custom op against fla's own chunk_gated_delta_rule (outputs, final state and every gradient, at an odd length, with
packed sequences and initial states), torch.library.opcheck, and the gdn mixer under torch.compile(fullgraph=True).
Prints {case: worst relative RMS error} (opcheck: 0 per passed check) as JSON."""
import tools.fla_interpret as fi

fi.patch_triton_interpreter()  # before anything imports triton or fla


import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from fla.ops.gated_delta_rule import chunk_gated_delta_rule  # noqa: E402

from kernels.gated_delta_rule import gated_delta_rule  # noqa: E402
from kernels.gated_delta_rule.fla_op import _gdn_bwd, _gdn_fwd  # noqa: E402
from mixers.registry import get_mixer  # noqa: E402
from tests.kernels.interpreted import report  # noqa: E402

CASES = {  # name: (B, T, cu_seqlens, use_qk_l2norm, chunk_size)
    "dense_T37_h0": (2, 37, None, False, 16),
    "packed_T45_h0_qk_l2norm": (1, 45, [0, 13, 13, 45], True, 32),
}


def rel(a, b):
    return ((a.double() - b.double()).pow(2).mean().sqrt() / b.double().pow(2).mean().sqrt().clamp(min=1e-30)).item()


def inputs(B, T, N, seed, H=2, K=16, V=24):
    g = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(B, T, H, K, generator=g) for _ in range(2))
    v = torch.randn(B, T, H, V, generator=g)
    gate = F.logsigmoid(torch.randn(B, T, H, generator=g) + 2)
    beta = torch.rand(B, T, H, generator=g)
    h0 = torch.randn(N, H, K, V, generator=g)
    return q, k, v, gate, beta, h0


def fwd_bwd(fn, xs):
    xs = [x.clone().requires_grad_() for x in xs]
    o, ht = fn(*xs)
    g = torch.Generator().manual_seed(1)
    loss = (o * torch.randn(o.shape, generator=g)).sum() + (ht * torch.randn(ht.shape, generator=g)).sum()
    return [o, ht, *torch.autograd.grad(loss, xs)]


def against_fla(out):
    for seed, (name, (B, T, cu, l2, C)) in enumerate(CASES.items()):
        kw = dict(output_final_state=True, chunk_size=C, scale=0.3,
                  cu_seqlens=None if cu is None else torch.tensor(cu, dtype=torch.long))
        xs = inputs(B, T, B if cu is None else len(cu) - 1, seed)
        ours = fwd_bwd(lambda q, k, v, g, b, h: gated_delta_rule(q, k, v, g, b, initial_state=h, use_qk_l2norm=l2,
                                                                 backend="triton", **kw), xs)
        fla = fwd_bwd(lambda q, k, v, g, b, h: chunk_gated_delta_rule(q, k, v, g, b, initial_state=h,
                                                                      use_qk_l2norm_in_kernel=l2, **kw), xs)
        out[name] = max(rel(a, b) for a, b in zip(ours, fla))


def opcheck(out):
    q, k, v, g, beta, h0 = inputs(1, 21, 1, 5)
    for l2 in (False, True):
        res = torch.library.opcheck(_gdn_fwd, (q, k, v, g, beta, h0, None, 0.25, True, l2, 16))
        out[f"opcheck_qk_l2norm_{l2}"] = {name: 0.0 if r == "SUCCESS" else 1.0 for name, r in res.items()}
    _, _, gc, A, q_n, q_rstd, k_n, k_rstd = _gdn_fwd(q, k, v, g, beta, h0, None, 0.25, True, True, 16)
    do, dht = torch.randn_like(v), torch.randn_like(h0)
    res = torch.library.opcheck(_gdn_bwd, (q_n, k_n, v, gc, beta, A, h0, None, q_rstd, k_rstd, do, dht, 0.25, 16,
                                           torch.float32))
    out["opcheck_bwd"] = {name: 0.0 if r == "SUCCESS" else 1.0 for name, r in res.items()}


def mixer_compiles_whole(out):
    """The gdn mixer on fla's kernels (short convolution and delta rule, both custom ops) is one graph."""
    torch.manual_seed(0)
    layer = get_mixer("gdn")(32, get_mixer("gdn").Config(num_heads=2, head_dim=16, backend="triton", init_std=0.2))
    x = torch.randn(2, 19, 32)

    def grads(fn):
        xg = x.clone().requires_grad_()
        y, _ = fn(xg)
        params = [xg, *layer.parameters()]
        return [y, *torch.autograd.grad(y.square().sum(), params)]

    eager = grads(layer)
    compiled = grads(torch.compile(layer, fullgraph=True, backend="aot_eager"))
    out["mixer_compile_fullgraph"] = max(rel(a, b) for a, b in zip(compiled, eager))


def main():
    report(against_fla, opcheck, mixer_compiles_whole)


if __name__ == "__main__":
    main()
