"""fla's Triton chunk kernels, run on the CPU under Triton's interpreter with tools.fla_interpret's patches (in a
subprocess, tests/kernels/interpreted/fla_kernels.py: TRITON_INTERPRET=1 and the patches must come before triton
and fla are imported), through our ops' backend="triton" and our mixers, against fla's naive references and our
torch paths. fp32, tiny shapes (slow)."""
import os

import pytest

CASES = ["chunk_gla", "chunk_simple_gla", "chunk_gated_delta_rule", "chunk_gated_delta_rule_packed_qk_l2norm",
         "mixer_gdn", "mixer_gla", "mixer_mamba2", "mixer_linear_attention"]


@pytest.fixture(scope="module")
def interpreted(interpret):
    return interpret("tests.kernels.interpreted.fla_kernels")


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
