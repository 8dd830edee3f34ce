"""The Triton PRISM op (kernels/prism/triton, every implementation: split, split_fused, expanded) under Triton's
interpreter on the CPU against the token-by-token reference in fp64: output, final state and the gradients of q, k,
v, beta, g and the initial state; the corrected-value kernels against their torch reference; one op under
torch.compile(fullgraph=True) and torch.library.opcheck. fp32, tiny shapes (the interpreter is slow). Runs in a
subprocess: TRITON_INTERPRET=1 and tools.fla_interpret's patches must precede the triton/fla imports."""
import os

import pytest

# The interpreter, the op, and inputs and gradients as both scripts below use them.
HELPERS = r'''
import json, sys, time
import tools.fla_interpret as fi
fi.patch_triton_interpreter()
import torch
import torch.nn.functional as F
from kernels.prism import prism_delta_rule
torch.set_num_threads(1)

def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-300)).item()

def make(B, T, H, L, K, V, N, seed):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen)
    q = r(B, T, H, K)
    k = F.normalize(r(B, T, H, L, K), dim=-1)
    v = r(B, T, H, L, V)
    beta = torch.sigmoid(r(B, T, H, L))
    g = F.logsigmoid(r(B, T, H) + 2.5)
    return [q, k, v, beta, g, r(N, H, K, V)]

def fwd_bwd(backend, xs, use_h0, **kw):
    xs = [x.clone().requires_grad_() for x in xs]
    q, k, v, beta, g, h0 = xs
    o, h = prism_delta_rule(q, k, v, beta, g, initial_state=h0 if use_h0 else None, output_final_state=True,
                            backend=backend, **kw)
    gen = torch.Generator().manual_seed(1)
    loss = (o * torch.randn(o.shape, generator=gen).to(o.dtype)).sum() \
        + (h * torch.randn(h.shape, generator=gen).to(h.dtype)).sum()
    return [o, h, *torch.autograd.grad(loss, xs if use_h0 else xs[:5])]

NAMES = ["o", "ht", "dq", "dk", "dv", "dbeta", "dg", "dh0"]
'''

SCRIPT = HELPERS + r'''
CASES = {  # name: (B, T, L, chunk_size, use_h0, cu_seqlens, implementation)
    "L1_T37_C16_h0": (1, 37, 1, 16, True, None, "split_fused"),  # split_fused: the default
    "L2_T37_C16_h0": (2, 37, 2, 16, True, None, "split_fused"),
    "L2_T77_C64": (1, 77, 2, 64, False, None, "split_fused"),
    "L3_varlen_C16_h0": (1, 45, 3, 16, True, [0, 13, 13, 45], "split_fused"),
    "split_L3_T37_C16_h0": (1, 37, 3, 16, True, None, "split"),
    "split_L2_varlen_C16_h0": (1, 45, 2, 16, True, [0, 13, 13, 45], "split"),
    "split_L2_T77_C64_h0": (1, 77, 2, 64, True, None, "split"),
    "expanded_L2_T77_C64_h0": (1, 77, 2, 64, True, None, "expanded"),
    "expanded_L3_varlen_C16_h0": (1, 45, 3, 16, True, [0, 13, 13, 45], "expanded"),
}
import os
out = {}
for seed, (name, (B, T, L, C, use_h0, cu, impl)) in enumerate(CASES.items()):
    os.environ["PRISM_TRITON_IMPL"] = impl
    t0 = time.time()
    N = B if cu is None else len(cu) - 1
    kw = {} if cu is None else dict(cu_seqlens=torch.tensor(cu))
    xs = make(B, T, 2, L, 16, 16, N, seed)
    got = fwd_bwd("triton", xs, use_h0, chunk_size=C, **kw)
    ref = fwd_bwd("naive", [x.double() for x in xs], use_h0, **kw)
    out[name] = {n: rel(a, b) for n, a, b in zip(NAMES, got, ref)}
    out[name]["seconds"] = time.time() - t0
os.environ.pop("PRISM_TRITON_IMPL")  # the default for what follows

# the Triton correction kernels against the torch reference (autograd), a case with an empty sequence
from fla.ops.utils import chunk_local_cumsum
from fla.ops.utils.constant import RCP_LN2
from fla.ops.utils.index import prepare_chunk_indices
from kernels.prism.triton.chunk import _chunk_slots, _corrected_value
from kernels.prism.triton.correction import corrected_value_bwd, corrected_value_fwd
CORR = {"corr_L2": (2, 37, 2, 16, None), "corr_L3_varlen": (1, 45, 3, 32, [0, 13, 13, 45])}
for name, (B, T, L, C, cu) in CORR.items():
    q, k, v, beta, g, _ = make(B, T, 2, L, 16, 24, 1, 7)
    cu_t = torch.tensor(cu) if cu else None
    ci = prepare_chunk_indices(cu_t, C) if cu else None
    gc = chunk_local_cumsum(g, chunk_size=C, scale=RCP_LN2, cu_seqlens=cu_t, chunk_indices=ci)
    xs = [x.double().requires_grad_() for x in (k, v, beta, g)]
    ref = _corrected_value(*xs, _chunk_slots(B, T, C, cu_t, "cpu"))
    dd = torch.randn(ref.shape, generator=torch.Generator().manual_seed(3))
    gk, gv, gb, gg = torch.autograd.grad(ref, xs, dd.double())
    got = corrected_value_fwd(k, v, beta, gc, C, cu_t, ci)
    dk, dv, db, dgc = corrected_value_bwd(k, v, beta, gc, dd, C, cu_t, ci)
    dv[:, :, :, 0] += dd
    dg = chunk_local_cumsum(dgc, chunk_size=C, reverse=True, cu_seqlens=cu_t, chunk_indices=ci)
    out[name] = {"fwd": rel(got, ref), "dk": rel(dk, gk), "dv": rel(dv, gv), "dbeta": rel(db, gb), "dg": rel(dg, gg)}

# one op for torch.compile (fullgraph: no graph break) and torch.library.opcheck
import kernels.prism.triton.chunk as ch
q, k, v, beta, g, h0 = make(1, 21, 2, 2, 16, 16, 1, 9)
def f(q, k, v, beta, g, h0):
    o, h = prism_delta_rule(q, k, v, beta, g, initial_state=h0, output_final_state=True, backend="triton",
                            chunk_size=16)
    return (o * o).sum() + (h * h).sum()
xs = [x.clone().requires_grad_() for x in (q, k, v, beta, g, h0)]
eager = torch.autograd.grad(f(*xs), xs)
compiled = torch.autograd.grad(torch.compile(f, fullgraph=True, backend="aot_eager")(*xs), xs)
out["compile_fullgraph"] = {"d" + str(i): rel(a, b) for i, (a, b) in enumerate(zip(compiled, eager))}
res = torch.library.opcheck(ch._chunk_fwd_op, (q, k, v, beta, g, h0, None, 0.25, True, 16, 2))
out["opcheck"] = {name: 0.0 if r == "SUCCESS" else 1.0 for name, r in res.items()}
print(json.dumps(out))
'''

CASES = ["L1_T37_C16_h0", "L2_T37_C16_h0", "L2_T77_C64", "L3_varlen_C16_h0", "split_L3_T37_C16_h0",
         "split_L2_varlen_C16_h0", "split_L2_T77_C64_h0", "expanded_L2_T77_C64_h0", "expanded_L3_varlen_C16_h0",
         "corr_L2",
         "corr_L3_varlen", "compile_fullgraph", "opcheck"]


@pytest.fixture(scope="module")
def interpreted(interpret):
    return interpret(SCRIPT)


@pytest.mark.parametrize("case", CASES)
def test_triton_prism_under_interpreter_matches_naive(interpreted, case):
    errs = {k: v for k, v in interpreted[case].items() if k != "seconds"}
    assert len(errs) >= 4, errs
    assert max(errs.values()) < 1e-4, errs


def test_triton_backend_refuses_cpu_tensors_without_interpreter():
    import torch
    from kernels.prism import prism_delta_rule
    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("this process runs under the interpreter")
    q = torch.randn(1, 4, 1, 8)
    k = torch.randn(1, 4, 1, 2, 8)
    v = torch.randn(1, 4, 1, 2, 8)
    with pytest.raises(NotImplementedError, match="Triton"):
        prism_delta_rule(q, k, v, torch.rand(1, 4, 1, 2), -torch.rand(1, 4, 1), backend="triton")


TUNING_SCRIPT = HELPERS + r'''
import os
fi.run_configs_when_tuning()  # our kernels' autotuners launch every config first, as on a GPU
xs = make(1, 37, 2, 2, 16, 16, 1, seed=0)
ref = fwd_bwd("naive", [x.double() for x in xs], True)
out = {}
for impl in ("split_fused", "split", "expanded"):  # between them, every autotuned kernel of ours
    os.environ["PRISM_TRITON_IMPL"] = impl
    got = fwd_bwd("triton", xs, True, chunk_size=16)
    out.update({f"{impl}_{n}": rel(a, b) for n, a, b in zip(NAMES, got, ref)})
print(json.dumps(out))
'''


def test_autotuning_leaves_results_unchanged(interpret):
    """On a GPU, each autotuned kernel's first call in a process launches every config before the chosen one. A
    kernel that accumulates into an argument must declare it (restore_value), or that call's results are wrong:
    the first training step of every fresh GPU process got wrong dq and dK0 this way (found 2026-12-02)."""
    errs = interpret(TUNING_SCRIPT)
    assert len(errs) == 24 and max(errs.values()) < 1e-4, errs
