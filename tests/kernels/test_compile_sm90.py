"""Our Triton kernels compile for Hopper (sm_90) on this CPU-only machine (tools/compile_check.py): the PRISM
Triton op forward and backward (bf16, head dim 128, initial and final state, every autotune config of our
kernels), the fused solver in every variant and the q/key normalisation, each within the card's shared memory.
The interpreter tests check the numbers; this catches what only the compiler sees (the fused solver once failed on
an H100 with "constexpr cannot be reassigned", which the interpreter ran happily). In subprocesses
(tests/kernels/compiled/): the check swaps triton's active driver. fp32 is left out: its ptxas time is minutes (see
tools/compile_check.py)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_compiled(module: str, timeout: int):
    """Run ``python -m module`` in a fresh process with compiled Triton (the check swaps triton's active driver)
    and return the JSON of its last line of output."""
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "TRITON_F32_DEFAULT")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-m", module], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_triton_kernels_compile_for_sm90():
    result = run_compiled("tests.kernels.compiled.sm90_kernels", timeout=900)
    names = [k["name"] for k in result["kernels"]]
    assert {"prism_extra_fwd_kernel", "prism_extra_bwd_kernel", "prism_solver_fwd_kernel", "prism_solver_bwd_kernel",
            "prism_state_fwd_kernel", "prism_qk_l2norm_fwd_kernel", "prism_qk_l2norm_bwd_kernel"} <= set(names), names
    assert names.count("prism_extra_bwd_kernel") == 4  # every autotune config of ours is compiled
    assert names.count("prism_solver_bwd_kernel") == 3  # one per solver variant
    assert not result["over"], f"shared memory above {result['limit']} bytes: {result['over']}"


def test_pretend_hopper_makes_fla_size_tiles_for_an_h200():
    """tools/warm_triton_cache.py compiles on the CPU what an H200 would: fla must take its Hopper branches,
    also where it asks about a tensor's device index, which CPU tensors lack (it then picked 32-wide tiles where
    the GPU picks 128, and the warmed cache missed on the GPU)."""
    assert run_compiled("tests.kernels.compiled.pretend_hopper", timeout=300) == [True, True, True]


def test_kernels_take_cpu_tensors_only_where_triton_runs_them():
    """The Triton backends refuse CPU tensors unless Triton can run kernels on them: under the interpreter, or
    with compile_only()'s driver, whose kernels take CPU tensors (compiled, never launched)."""
    import torch

    from kernels.triton_device import triton_runs_on
    from tools.compile_check import compile_only
    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("this process runs under the interpreter")
    x = torch.zeros(1)
    assert not triton_runs_on(x)
    with compile_only():
        assert triton_runs_on(x)
    assert not triton_runs_on(x)


def test_warm_cache_covers_every_gpu_test_case():
    sys.path.insert(0, str(ROOT))
    from tools.warm_triton_cache import parametrized_cases
    from tests.kernels import test_prism_triton_gpu as gpu_tests
    counts = {name: len(list(parametrized_cases(getattr(gpu_tests, name))))
              for name in dir(gpu_tests) if name.startswith("test_")}
    assert counts["test_triton_matches_chunk_op"] == 4 and counts["test_triton_other_implementations"] == 8
    assert counts["test_auto_picks_triton_on_cuda"] == 1 and sum(counts.values()) == 34
