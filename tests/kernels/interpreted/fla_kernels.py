"""Run by tests/kernels/test_fla_interpret.py under Triton's interpreter: fla's Triton chunk kernels through our
ops' backend="triton" against fla's naive references and our torch paths, and the mixers' triton path against their
torch path. Prints {case: worst relative RMS error} as JSON."""
import tools.fla_interpret as fi

fi.patch_triton_interpreter()  # before anything imports triton or fla

import json  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from fla.ops.gated_delta_rule.naive import naive_recurrent_gated_delta_rule  # noqa: E402
from fla.ops.gla.naive import naive_recurrent_gla  # noqa: E402
from fla.ops.simple_gla.naive import naive_recurrent_simple_gla  # noqa: E402

from kernels.gated_delta_rule import gated_delta_rule  # noqa: E402
from kernels.gla import gla  # noqa: E402
from kernels.simple_gla import simple_gla  # noqa: E402
from mixers.registry import get_mixer  # noqa: E402

MIXERS = {"gdn": dict(num_heads=2, head_dim=16, init_std=0.2),
          "gla": dict(num_heads=2, use_short_conv=True, init_std=0.2),
          "mamba2": dict(head_dim=16, state_size=16, n_groups=2, init_std=0.2),
          "linear_attention": dict(num_heads=2, decay="learned", init_std=0.2)}


def rel(a, b):
    return ((a.double() - b.double()).pow(2).mean().sqrt() / b.double().pow(2).mean().sqrt()).item()


def fwd_bwd(fn, xs):
    o, s = fn(*xs)
    g = torch.Generator().manual_seed(1)
    loss = (o * torch.randn(o.shape, generator=g)).sum() + (s * torch.randn(s.shape, generator=g)).sum()
    return [o, s, *torch.autograd.grad(loss, xs)]


def worst(a, b):
    return max(rel(x, y) for x, y in zip(a, b))


def grad_inputs(*xs):
    return [x.clone().requires_grad_() for x in xs]


def main():
    out = {}
    g = torch.Generator().manual_seed(0)
    B, T, H, K, V = 1, 21, 2, 16, 16
    q, k, v = (torch.randn(B, T, H, d, generator=g) for d in (K, K, V))
    h0 = torch.randn(B, H, K, V, generator=g)
    gk = F.logsigmoid(torch.randn(B, T, H, K, generator=g)) / 4
    gs = F.logsigmoid(torch.randn(B, T, H, generator=g))
    beta = torch.rand(B, T, H, generator=g)
    kn = F.normalize(k, dim=-1)

    xs = grad_inputs(q, k, v, gk, h0)
    out["chunk_gla"] = worst(
        fwd_bwd(lambda q, k, v, g, h: gla(q, k, v, g, initial_state=h, output_final_state=True, backend="triton"),
                xs),
        fwd_bwd(lambda q, k, v, g, h: naive_recurrent_gla(q, k, v, g, initial_state=h, output_final_state=True),
                xs))
    xs = grad_inputs(q, k, v, gs, h0)
    out["chunk_simple_gla"] = worst(
        fwd_bwd(lambda q, k, v, g, h: simple_gla(q, k, v, g, initial_state=h, output_final_state=True,
                                                 backend="triton"), xs),
        fwd_bwd(lambda q, k, v, g, h: naive_recurrent_simple_gla(q, k, v, g, initial_state=h,
                                                                 output_final_state=True), xs))
    xs = grad_inputs(q, kn, v, gs, beta, h0)
    out["chunk_gated_delta_rule"] = worst(
        fwd_bwd(lambda q, k, v, g, b, h: gated_delta_rule(q, k, v, g, b, initial_state=h, output_final_state=True,
                                                         backend="triton"), xs),
        fwd_bwd(lambda q, k, v, g, b, h: naive_recurrent_gated_delta_rule(q, k, v, b, g, initial_state=h,
                                                                          output_final_state=True), xs))
    # packed sequences with initial states: fla kernel vs our torch path
    cu = torch.tensor([0, 7, 21], dtype=torch.int32)
    h2 = torch.randn(2, H, K, V, generator=g)
    xs = grad_inputs(q, k, v, gs, beta, h2)
    out["chunk_gated_delta_rule_packed_qk_l2norm"] = worst(
        fwd_bwd(lambda q, k, v, g, b, h: gated_delta_rule(q, k, v, g, b, initial_state=h, output_final_state=True,
                                                         cu_seqlens=cu, use_qk_l2norm=True, backend="triton"), xs),
        fwd_bwd(lambda q, k, v, g, b, h: gated_delta_rule(q, k, v, g, b, initial_state=h, output_final_state=True,
                                                         cu_seqlens=cu, use_qk_l2norm=True, backend="torch"), xs))

    # the mixers' triton path (fla's kernels) equals their torch path (forward, and the gradients of every parameter)
    x = torch.randn(2, 19, 32, generator=g)
    for name, kw in MIXERS.items():
        cls = get_mixer(name)
        res = {}
        for backend in ("triton", "torch"):
            torch.manual_seed(0)
            m = cls(32, cls.Config(backend=backend, **kw))
            y, _ = m(x)
            y.pow(2).mean().backward()
            res[backend] = [y] + [p.grad for p in m.parameters()]
        out["mixer_" + name] = worst(res["triton"], res["torch"])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
