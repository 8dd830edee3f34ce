"""The fused PRISM solver kernel (kernels/prism/triton/solver.py) under Triton's interpreter against the mixer's
torch solver: every variant (paper with/without gain, GELU/identity, closed_form), L = 1..4, forward and the
gradients of v, the residual source and the gains; the fused q/key normalisation (qk_norm.py) against torch on a
column slice, output and gradient; and the PRISM mixer wired to it (backend="triton": fused solver
and Triton op) against backend="torch": output and every parameter's gradient; that mixer as one graph under
torch.compile(fullgraph=True); torch.library.opcheck of the custom ops. fp32, tiny shapes, in a subprocess
(tests/kernels/interpreted/prism_solver.py, TRITON_INTERPRET=1)."""
import pytest


@pytest.fixture(scope="module")
def interpreted(interpret):
    return interpret("tests.kernels.interpreted.prism_solver", timeout=600)


def test_fused_solver_and_qk_norm_match_torch(interpreted):
    assert len(interpreted) == 19
    for case, errs in interpreted.items():
        assert max(errs) < 1e-5, (case, errs)


def test_qk_l2norm_names_a_width_mismatch():
    import torch

    from kernels.prism.triton.qk_norm import prism_qk_l2norm
    with pytest.raises(ValueError, match=r"x has 40 columns, expected \(1 \+ 2\) \* 2 \* 8"):
        prism_qk_l2norm(torch.randn(1, 3, 40), 2, 8, 2)
