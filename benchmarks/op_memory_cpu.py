"""Peak memory of the PRISM Triton op's backward against fla's Gated DeltaNet op, measured on the CPU.

The host code of a Triton op allocates the same torch tensors under Triton's interpreter as on a GPU; only the
kernels run elsewhere. So the CPU allocator's events (torch.profiler, profile_memory) give each backward's
allocation peak, and which buffers make it, without device time. The values that bf16 kernels compute under
the interpreter are garbage (it computes in fp32 only), but the allocations are real.

    TRITON_INTERPRET=1 python benchmarks/op_memory_cpu.py                  # T 256, H 1, d 128, L 2
    TRITON_INTERPRET=1 python benchmarks/op_memory_cpu.py --seq 64 --head-dim 32

Prints one line per (op, dtype): peak bytes allocated during backward, above what existed before it.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def backward_peak(op: str, dtype, T: int, H: int, L: int, d: int) -> int:
    import torch
    import torch.nn.functional as F
    from torch.profiler import ProfilerActivity, profile

    from kernels.prism import prism_delta_rule

    gen = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    q, k, v = r(1, T, H, d), F.normalize(r(1, T, H, L, d), dim=-1), r(1, T, H, L, d)
    beta, g = torch.sigmoid(r(1, T, H, L)), F.logsigmoid(r(1, T, H) + 2.5)
    if op == "gdn":
        k, v, beta = k[:, :, :, 0].contiguous(), v[:, :, :, 0].contiguous(), beta[:, :, :, 0].contiguous()
    xs = [x.to(dtype).requires_grad_() for x in (q, k, v, beta)] + [g.requires_grad_()]
    if op == "gdn":
        from fla.ops.gated_delta_rule import chunk_gated_delta_rule
        o, _ = chunk_gated_delta_rule(xs[0], xs[1], xs[2], xs[4], xs[3], scale=d ** -0.5)
    else:
        o, _ = prism_delta_rule(*xs, scale=d ** -0.5, backend="triton")
    do = torch.randn(o.shape, generator=gen).to(o.dtype)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        torch.autograd.grad(o, xs, do)
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--heads", type=int, default=1)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--steps", type=int, default=2, help="PRISM's L")
    a = ap.parse_args()
    if os.environ.get("TRITON_INTERPRET") != "1":
        sys.exit("op_memory_cpu: run with TRITON_INTERPRET=1 (Triton's interpreter runs the kernels on the CPU)")
    import kernels.fla_interpret as fi
    fi.patch_triton_interpreter()
    import torch
    unit = a.seq * a.heads * a.head_dim * 2  # one bf16 [T, H, d] tensor
    print(f"T {a.seq}, H {a.heads}, d {a.head_dim}, L {a.steps}; peak of backward in bf16 [T, H, d] tensors")
    for dtype in (torch.bfloat16, torch.float32):
        peaks = {op: backward_peak(op, dtype, a.seq, a.heads, a.steps, a.head_dim) for op in ("gdn", "prism")}
        for op, peak in peaks.items():
            print(f"{op:>6} {str(dtype):>15} {peak:>10} B {peak / unit:6.1f} units")
        print(f"{'':>6} {str(dtype):>15} prism / gdn = {peaks['prism'] / peaks['gdn']:.2f}")


if __name__ == "__main__":
    main()
