"""The Triton PRISM op (kernels/prism/triton, every implementation: split, split_fused, expanded) under Triton's
interpreter on the CPU against the token-by-token reference in fp64: output, final state and the gradients of q, k,
v, beta, g and the initial state; the corrected-value kernels against their torch reference; one op under
torch.compile(fullgraph=True) and torch.library.opcheck. fp32, tiny shapes (the interpreter is slow). Runs in a
subprocess (tests/kernels/interpreted/prism_triton_cases.py, prism_autotuning.py): TRITON_INTERPRET=1 and
tools.fla_interpret's patches must precede the triton/fla imports."""
import os

import pytest

CASES = ["L1_T37_C16_h0", "L2_T37_C16_h0", "L2_T77_C64", "L3_varlen_C16_h0", "split_L3_T37_C16_h0",
         "split_L2_varlen_C16_h0", "split_L2_T77_C64_h0", "expanded_L2_T77_C64_h0", "expanded_L3_varlen_C16_h0",
         "corr_L2",
         "corr_L3_varlen", "compile_fullgraph", "opcheck"]


@pytest.fixture(scope="module")
def interpreted(interpret):
    return interpret("tests.kernels.interpreted.prism_triton_cases")


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


def test_autotuning_leaves_results_unchanged(interpret):
    """On a GPU, each autotuned kernel's first call in a process launches every config before the chosen one. A
    kernel that accumulates into an argument must declare it (restore_value), or that call's results are wrong:
    the first training step of every fresh GPU process got wrong dq and dK0 this way."""
    errs = interpret("tests.kernels.interpreted.prism_autotuning")
    assert len(errs) == 24 and max(errs.values()) < 1e-4, errs
