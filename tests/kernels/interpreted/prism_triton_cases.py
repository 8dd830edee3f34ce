"""Run by tests/kernels/test_prism_triton.py under Triton's interpreter: the Triton PRISM op (every implementation)
against the naive op in fp64, the corrected-value kernels against their torch reference, one op under
torch.compile(fullgraph=True) and torch.library.opcheck. Prints {case: {name: relative error}} as JSON."""
from tests.kernels.interpreted.prism_op import NAMES, fwd_bwd, make, rel  # first: patches the interpreter

import os  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
from fla.ops.utils import chunk_local_cumsum  # noqa: E402
from fla.ops.utils.constant import RCP_LN2  # noqa: E402
from fla.ops.utils.index import prepare_chunk_indices  # noqa: E402

import kernels.prism.triton.chunk as ch  # noqa: E402
from kernels.prism import prism_delta_rule  # noqa: E402
from kernels.prism.triton.chunk import _chunk_slots, _corrected_value  # noqa: E402
from kernels.prism.triton.correction import corrected_value_bwd, corrected_value_fwd  # noqa: E402
from tests.kernels.interpreted import report  # noqa: E402

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
CORR = {"corr_L2": (2, 37, 2, 16, None), "corr_L3_varlen": (1, 45, 3, 32, [0, 13, 13, 45])}


def op_cases(out):
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


def correction_cases(out):
    """The Triton correction kernels against the torch reference (autograd), a case with an empty sequence."""
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
        out[name] = {"fwd": rel(got, ref), "dk": rel(dk, gk), "dv": rel(dv, gv), "dbeta": rel(db, gb),
                     "dg": rel(dg, gg)}


def compile_and_opcheck(out):
    """One op for torch.compile (fullgraph: no graph break) and torch.library.opcheck."""
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


def main():
    report(op_cases, correction_cases, compile_and_opcheck)


if __name__ == "__main__":
    main()
