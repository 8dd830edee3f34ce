"""Our Triton kernels compile for Hopper (sm_90) on this CPU-only machine (tools/compile_check.py): the PRISM
Triton op forward and backward (bf16, head dim 128, initial and final state, every autotune config of our
kernels), the fused solver in every variant and the q/key normalisation, each within the card's shared memory. The interpreter tests
check the numbers; this catches what only the compiler sees (the fused solver once failed on an H100 with
"constexpr cannot be reassigned", which the interpreter ran happily). In a subprocess: the check swaps
triton's active driver. fp32 is left out: its ptxas time is minutes (see tools/compile_check.py)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r'''
import json
import torch
import torch.nn.functional as F
from tools.compile_check import HOPPER_SMEM_BYTES, compile_only
from kernels.prism import prism_delta_rule
from kernels.prism.triton.qk_norm import prism_qk_l2norm
from kernels.prism.triton.solver import prism_solver

torch.manual_seed(0)
B, T, H, L, K, V, d = 1, 100, 2, 2, 128, 128, 128
bf = lambda *s: torch.randn(*s).to(torch.bfloat16).requires_grad_()  # noqa: E731
with compile_only() as report:
    q, k, v, beta = bf(B, T, H, K), bf(B, T, H, L, K), bf(B, T, H, L, V), bf(B, T, H, L)
    g, h0 = torch.randn(B, T, H).requires_grad_(), torch.randn(B, H, K, V).requires_grad_()
    o, h = prism_delta_rule(q, k, v, beta, g, initial_state=h0, output_final_state=True, backend="triton")
    (o.float().sum() + h.sum()).backward()
    for solver, nonlinearity, gain in [("paper", "gelu", True), ("paper", "identity", False),
                                       ("closed_form", "gelu", True)]:
        vv, res = bf(B, T, H * d), bf(B, T, H * d)
        p = bf(B, T, L * H * d) if gain else None
        prism_solver(vv, res, p, L, d, solver, nonlinearity).float().sum().backward()
    qn, kn = prism_qk_l2norm(bf(B, T, (1 + L) * H * d + 64)[..., 64:], H, d, L)
    (qn.float().sum() + kn.float().sum()).backward()
print(json.dumps({"kernels": report.kernels, "over": report.over_smem(), "limit": HOPPER_SMEM_BYTES}))
'''


def test_triton_kernels_compile_for_sm90():
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "TRITON_F32_DEFAULT")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    names = [k["name"] for k in result["kernels"]]
    assert {"prism_extra_fwd_kernel", "prism_extra_bwd_kernel", "prism_solver_fwd_kernel", "prism_solver_bwd_kernel",
            "prism_state_fwd_kernel", "prism_qk_l2norm_fwd_kernel", "prism_qk_l2norm_bwd_kernel"} <= set(names), names
    assert names.count("prism_extra_bwd_kernel") == 4  # every autotune config of ours is compiled
    assert names.count("prism_solver_bwd_kernel") == 3  # one per solver variant
    assert not result["over"], f"shared memory above {result['limit']} bytes: {result['over']}"


PRETEND = r'''
import json
from tools.compile_check import pretend_hopper
pretend_hopper()
import fla.utils
from fla.ops.common import chunk_o
print(json.dumps([fla.utils.is_nvidia_hopper, fla.utils.check_shared_mem("hopper", None),
                  chunk_o.check_shared_mem("hopper", None)]))
'''


def test_pretend_hopper_makes_fla_size_tiles_for_an_h200():
    """tools/warm_triton_cache.py compiles on the CPU what an H200 would: fla must take its Hopper branches,
    also where it asks about a tensor's device index, which CPU tensors lack (it then picked 32-wide tiles where
    the GPU picks 128, and the warmed cache missed on the GPU)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-c", PRETEND], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [True, True, True]


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
    assert counts["test_auto_picks_triton_on_cuda"] == 1 and sum(counts.values()) == 33
