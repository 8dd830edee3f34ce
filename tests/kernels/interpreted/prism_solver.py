"""Run by tests/kernels/test_prism_solver_triton.py under Triton's interpreter: the fused solver and q/key
normalisation kernels against torch, the PRISM mixer on its Triton kernels against its torch path (also as one
graph under torch.compile) and torch.library.opcheck of the custom ops. Prints {case: [relative errors]} as JSON."""
import tools.fla_interpret as fi

fi.patch_triton_interpreter()  # before anything imports triton or fla

import copy  # noqa: E402
import json  # noqa: E402

import torch  # noqa: E402

from kernels.causal_conv import causal_conv1d  # noqa: E402,F401  (registers torch.ops.prism_fla)
from kernels.prism.triton.qk_norm import prism_qk_l2norm, prism_qk_l2norm_reference  # noqa: E402
from kernels.prism.triton.solver import prism_solver, prism_solver_reference  # noqa: E402
from mixers.prism import PRISM  # noqa: E402

VARIANTS = [("paper", "gelu", True, 2), ("paper", "gelu", False, 3), ("paper", "identity", True, 4),
            ("paper", "gelu", True, 1), ("closed_form", "gelu", True, 3), ("closed_form", "gelu", True, 1)]
MIXERS = [("mixer_paper", {}), ("mixer_closed_form", {"solver": "closed_form", "steps": 3}),
          ("mixer_no_gain_identity", {"gain": "none", "nonlinearity": "identity", "head_dim": 4}),
          ("mixer_shared_key", {"shared_key": True})]


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def solver_cases(out, gen):
    B, T, H, d = 2, 5, 3, 8
    for solver, nl, gain, L in VARIANTS:
        v = torch.randn(B, T, H * d, generator=gen).requires_grad_()
        res = torch.randn(B, T, H * d, generator=gen).requires_grad_()
        p = (torch.randn(B, T, L * H * d, generator=gen) + 1).requires_grad_() if gain else None
        xs = [v, p] if solver == "closed_form" else [x for x in (v, res, p) if x is not None]
        got = prism_solver(v, res, p, L, d, solver, nl)
        ref = prism_solver_reference(v, res, p, L, d, solver, nl)
        w = torch.randn(ref.shape, generator=gen)
        ga = torch.autograd.grad((got * w).sum(), xs)
        gb = torch.autograd.grad((ref * w).sum(), xs)
        name = f"{solver}_{nl}_{'gain' if gain else 'nogain'}_L{L}"
        out[name] = [rel(got, ref)] + [rel(a, b) for a, b in zip(ga, gb)]


def qk_norm_cases(out, gen):
    """The fused q/key normalisation against torch, reading a column slice of a wider tensor (as the mixer's
    in_proj)."""
    for H, d, Lk in [(3, 8, 2), (2, 24, 1), (1, 16, 3)]:
        wide = torch.randn(2, 7, (1 + Lk) * H * d + 5, generator=gen).requires_grad_()
        x = wide[..., 2:2 + (1 + Lk) * H * d]
        got, ref = prism_qk_l2norm(x, H, d, Lk), prism_qk_l2norm_reference(x, H, d, Lk)
        ws = [torch.randn(t.shape, generator=gen) for t in ref]
        ga, = torch.autograd.grad(sum((t * w).sum() for t, w in zip(got, ws)), [wide])
        gb, = torch.autograd.grad(sum((t * w).sum() for t, w in zip(ref, ws)), [wide])
        out[f"qk_l2norm_H{H}_d{d}_L{Lk}"] = [rel(a, b) for a, b in zip(got, ref)] + [rel(ga, gb)]


def mixer_cases(out, gen):
    """The mixer with backend="triton" (fused solver + Triton op) against backend="torch" (torch solver + chunked
    op)."""
    for name, kw in MIXERS:
        torch.manual_seed(1)
        chunk = PRISM(16, PRISM.Config(num_heads=2, backend="torch", **kw))
        for prm in chunk.parameters():  # move every parameter off its initial value
            prm.data.add_(0.1 * torch.randn_like(prm))
        fused = copy.deepcopy(chunk)
        fused.config.backend = "triton"
        x = torch.randn(2, 9, 16, generator=gen)
        ys = [m(x)[0] for m in (chunk, fused)]
        w = torch.randn(ys[0].shape, generator=gen)
        grads = [torch.autograd.grad((y * w).sum(), list(m.parameters())) for y, m in zip(ys, (chunk, fused))]
        out[name] = [rel(ys[1], ys[0])] + [rel(b, a) for a, b in zip(*grads)]


def mixer_compile_case(out, gen):
    """The whole mixer on its kernels (conv, q/key norm, solver, op: each a custom op) is one graph for
    torch.compile: fullgraph=True fails on any graph break. Output and every parameter's gradient against the
    eager mixer."""
    torch.manual_seed(2)
    mixer = PRISM(16, PRISM.Config(num_heads=2, backend="triton"))
    x = torch.randn(2, 9, 16, generator=gen)
    compiled = torch.compile(lambda x: mixer(x)[0], fullgraph=True, backend="aot_eager")
    ys = [mixer(x)[0], compiled(x)]
    w = torch.randn(ys[0].shape, generator=gen)
    grads = [torch.autograd.grad((y * w).sum(), list(mixer.parameters())) for y in ys]
    out["mixer_compile_fullgraph"] = [rel(ys[1], ys[0])] + [rel(b, a) for a, b in zip(*grads)]


def opcheck_cases(out, gen):
    """The custom ops' registrations (schema, fake tensors, autograd) by torch.library.opcheck; it raises on a
    failure."""
    v, res, p = (torch.randn(2, 5, 24, generator=gen, requires_grad=True) for _ in range(3))
    ops = {"qk_l2norm": (torch.ops.prism_triton.qk_l2norm_fwd, (torch.randn(2, 5, 48, requires_grad=True), 2, 8, 2,
                                                                1e-6)),
           "solver": (torch.ops.prism_triton.solver_fwd, (v, res, torch.randn(2, 5, 48, requires_grad=True), 2, 8,
                                                          False, True)),
           "solver_closed_form": (torch.ops.prism_triton.solver_fwd, (v, None, p, 1, 8, True, True)),
           "causal_conv1d": (torch.ops.prism_fla.causal_conv1d_fwd, (torch.randn(2, 9, 6, requires_grad=True),
                                                                     torch.randn(6, 4, requires_grad=True), None,
                                                                     "silu", None)),
           "causal_conv1d_bias": (torch.ops.prism_fla.causal_conv1d_fwd, (torch.randn(2, 9, 6, requires_grad=True),
                                                                          torch.randn(6, 4, requires_grad=True),
                                                                          torch.randn(6, requires_grad=True),
                                                                          "silu", None))}
    for name, (op, args) in ops.items():
        torch.library.opcheck(op, args)
        out[f"opcheck_{name}"] = [0.0]


def main():
    gen = torch.Generator().manual_seed(0)
    out = {}
    for cases in (solver_cases, qk_norm_cases, mixer_cases, mixer_compile_case, opcheck_cases):
        cases(out, gen)  # one generator through all, in this order
    print(json.dumps(out))


if __name__ == "__main__":
    main()
