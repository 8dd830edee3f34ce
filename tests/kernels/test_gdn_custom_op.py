"""fla's chunk_gated_delta_rule as our custom op (kernels/gated_delta_rule/fla_op.py), under Triton's interpreter
(in a subprocess: tests/kernels/interpreted/gdn_custom_op.py): the same outputs and gradients as fla's own
function, torch.library.opcheck, and the gdn mixer compiled with fullgraph=True (fla's function is
torch.compiler.disable'd: a graph break, which fullgraph refuses). fp32, tiny shapes."""
import pytest


@pytest.fixture(scope="module")
def interpreted(interpret):
    return interpret("tests.kernels.interpreted.gdn_custom_op")


@pytest.mark.parametrize("case", ["dense_T37_h0", "packed_T45_h0_qk_l2norm"])
def test_custom_op_equals_flas_function(interpreted, case):
    # the same kernels with the same arguments: equal up to rounding (worst relative RMS error over the output,
    # the final state and the gradients of q, k, v, g, beta and the initial state)
    assert interpreted[case] < 1e-6, interpreted


@pytest.mark.parametrize("case", ["opcheck_qk_l2norm_False", "opcheck_qk_l2norm_True", "opcheck_bwd"])
def test_opcheck(interpreted, case):
    assert interpreted[case] and not any(interpreted[case].values()), interpreted[case]


def test_gdn_mixer_compiles_as_one_graph(interpreted):
    assert interpreted["mixer_compile_fullgraph"] < 1e-6, interpreted
