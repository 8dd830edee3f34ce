"""Run by tests/kernels/test_compile_sm90.py without the interpreter: inside tools.compile_check.compile_only(), the
PRISM Triton op forward and backward (bf16, head dim 128, initial and final state), the fused solver in three
variants and the q/key normalisation compile for Hopper on CPU tensors. Prints the compiled kernels, those over the
shared-memory limit and the limit as JSON."""
import json

import torch

from kernels.prism import prism_delta_rule
from kernels.prism.triton.qk_norm import prism_qk_l2norm
from kernels.prism.triton.solver import prism_solver
from tools.compile_check import HOPPER_SMEM_BYTES, compile_only

B, T, H, L, K, V, d = 1, 100, 2, 2, 128, 128, 128


def bf(*shape):
    return torch.randn(*shape).to(torch.bfloat16).requires_grad_()


def main():
    torch.manual_seed(0)
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


if __name__ == "__main__":
    main()
