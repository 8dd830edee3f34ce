"""fla's Triton chunk kernels, run on the CPU under Triton's interpreter with tools.fla_interpret's patches (in a
subprocess: TRITON_INTERPRET=1 and the patches must come before triton and fla are imported), through our ops'
backend="triton" and our mixers, against fla's naive references and our torch paths. fp32, tiny shapes (slow)."""
import os

import pytest

SCRIPT = r'''
import json
import tools.fla_interpret as fi
fi.patch_triton_interpreter()
import torch
import torch.nn.functional as F
from fla.ops.gla.naive import naive_recurrent_gla
from fla.ops.simple_gla.naive import naive_recurrent_simple_gla
from fla.ops.gated_delta_rule.naive import naive_recurrent_gated_delta_rule
from kernels.gla import gla
from kernels.simple_gla import simple_gla
from kernels.gated_delta_rule import gated_delta_rule
from mixers.registry import get_mixer

def rel(a, b):
    return ((a.double() - b.double()).pow(2).mean().sqrt() / b.double().pow(2).mean().sqrt()).item()

def fwd_bwd(fn, xs):
    o, s = fn(*xs)
    g = torch.Generator().manual_seed(1)
    loss = (o * torch.randn(o.shape, generator=g)).sum() + (s * torch.randn(s.shape, generator=g)).sum()
    return [o, s, *torch.autograd.grad(loss, xs)]

def worst(a, b):
    return max(rel(x, y) for x, y in zip(a, b))

out = {}
g = torch.Generator().manual_seed(0)
B, T, H, K, V = 1, 21, 2, 16, 16
q, k, v = (torch.randn(B, T, H, d, generator=g) for d in (K, K, V))
h0 = torch.randn(B, H, K, V, generator=g)
gk = F.logsigmoid(torch.randn(B, T, H, K, generator=g)) / 4
gs = F.logsigmoid(torch.randn(B, T, H, generator=g))
beta = torch.rand(B, T, H, generator=g)
kn = F.normalize(k, dim=-1)

xs = [x.clone().requires_grad_() for x in (q, k, v, gk, h0)]
out["chunk_gla"] = worst(
    fwd_bwd(lambda q, k, v, g, h: gla(q, k, v, g, initial_state=h, output_final_state=True, backend="triton"), xs),
    fwd_bwd(lambda q, k, v, g, h: naive_recurrent_gla(q, k, v, g, initial_state=h, output_final_state=True), xs))
xs = [x.clone().requires_grad_() for x in (q, k, v, gs, h0)]
out["chunk_simple_gla"] = worst(
    fwd_bwd(lambda q, k, v, g, h: simple_gla(q, k, v, g, initial_state=h, output_final_state=True, backend="triton"), xs),
    fwd_bwd(lambda q, k, v, g, h: naive_recurrent_simple_gla(q, k, v, g, initial_state=h, output_final_state=True),
            xs))
xs = [x.clone().requires_grad_() for x in (q, kn, v, gs, beta, h0)]
out["chunk_gated_delta_rule"] = worst(
    fwd_bwd(lambda q, k, v, g, b, h: gated_delta_rule(q, k, v, g, b, initial_state=h, output_final_state=True,
                                                     backend="triton"), xs),
    fwd_bwd(lambda q, k, v, g, b, h: naive_recurrent_gated_delta_rule(q, k, v, b, g, initial_state=h,
                                                                      output_final_state=True), xs))
# packed sequences with initial states: fla kernel vs our torch path
cu = torch.tensor([0, 7, 21], dtype=torch.int32)
h2 = torch.randn(2, H, K, V, generator=g)
xs = [x.clone().requires_grad_() for x in (q, k, v, gs, beta, h2)]
out["chunk_gated_delta_rule_packed_qk_l2norm"] = worst(
    fwd_bwd(lambda q, k, v, g, b, h: gated_delta_rule(q, k, v, g, b, initial_state=h, output_final_state=True,
                                                     cu_seqlens=cu, use_qk_l2norm=True, backend="triton"), xs),
    fwd_bwd(lambda q, k, v, g, b, h: gated_delta_rule(q, k, v, g, b, initial_state=h, output_final_state=True,
                                                     cu_seqlens=cu, use_qk_l2norm=True, backend="torch"), xs))

# the mixers' triton path (fla's kernels) equals their torch path (forward, and the gradients of every parameter)
configs = {"gdn": dict(num_heads=2, head_dim=16, init_std=0.2),
           "gla": dict(num_heads=2, use_short_conv=True, init_std=0.2),
           "mamba2": dict(head_dim=16, state_size=16, n_groups=2, init_std=0.2)}
x = torch.randn(2, 19, 32, generator=g)
for name, kw in configs.items():
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
'''

CASES = ["chunk_gla", "chunk_simple_gla", "chunk_gated_delta_rule", "chunk_gated_delta_rule_packed_qk_l2norm",
         "mixer_gdn", "mixer_gla", "mixer_mamba2"]


@pytest.fixture(scope="module")
def interpreted(interpret):
    return interpret(SCRIPT)


@pytest.mark.parametrize("case", CASES)
def test_fla_kernel_under_interpreter_matches_reference(interpreted, case):
    # worst relative RMS error over the output, the final state and every gradient
    assert interpreted[case] < 2e-5, interpreted


def test_patches_refuse_to_run_in_the_wrong_process():
    import tools.fla_interpret as fi
    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("this process runs under the interpreter")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        fi.patch_triton_interpreter()
