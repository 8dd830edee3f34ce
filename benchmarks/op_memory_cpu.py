"""Memory of PRISM against Gated DeltaNet, measured on the CPU: the Triton op's backward peak against fla's GDN
op, and the activations one whole layer (d_model 768, H 6, d 128, their Triton paths) keeps for its backward.

The host code of a Triton op allocates the same torch tensors under Triton's interpreter as on a GPU; only the
kernels run elsewhere. So the CPU allocator's events (torch.profiler, profile_memory) give each backward's
allocation peak, and which buffers make it, without device time. The values that bf16 kernels compute under
the interpreter are garbage (it computes in fp32 only), but the allocations are real.

    TRITON_INTERPRET=1 python benchmarks/op_memory_cpu.py                  # T 256, H 1, d 128, L 2
    TRITON_INTERPRET=1 python benchmarks/op_memory_cpu.py --seq 64 --head-dim 32

Prints one line per (op, dtype): peak bytes allocated during backward, above what existed before it; then per
layer the bytes per token of the distinct tensors autograd saves (their growth from T to 2T tokens), fp32 and under CPU
bf16 autocast. CPU autocast keeps F.normalize in bf16 where CUDA autocast runs it in fp32, so neither dtype
is exactly the GPU's layer; the op's transient backward buffers are in the first part, not this one.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


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


def layer_saved_bytes(mixer: str, T: int, autocast: bool) -> int:
    import torch

    from throughput import build_layer

    torch.manual_seed(0)
    layer = build_layer(mixer, 768, [f"model.mixers.{mixer}.backend=triton"])
    params = {p.untyped_storage().data_ptr() for p in layer.parameters()}
    x = torch.randn(1, T, 768, requires_grad=True)
    storages = {}

    def pack(t):
        key = t.untyped_storage().data_ptr()
        if key not in params:
            storages[key] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        layer(x)
    return sum(storages.values())


def layer_saved_per_token(mixer: str, T: int, autocast: bool) -> float:
    """The growth from T to 2T tokens: leaves out what does not scale with T (autocast's bf16 weight copies)."""
    return (layer_saved_bytes(mixer, 2 * T, autocast) - layer_saved_bytes(mixer, T, autocast)) / T


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--heads", type=int, default=1)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--steps", type=int, default=2, help="PRISM's L")
    ap.add_argument("--repeat", type=int, default=3, help="runs per op and dtype (the peak varies between runs)")
    a = ap.parse_args()
    if os.environ.get("TRITON_INTERPRET") != "1":
        sys.exit("op_memory_cpu: run with TRITON_INTERPRET=1 (Triton's interpreter runs the kernels on the CPU)")
    import tools.fla_interpret as fi
    fi.patch_triton_interpreter()
    import torch
    unit = a.seq * a.heads * a.head_dim * 2  # one bf16 [T, H, d] tensor
    print(f"T {a.seq}, H {a.heads}, d {a.head_dim}, L {a.steps}; peak of backward in bf16 [T, H, d] tensors")
    print(f"min - max over {a.repeat} runs: Python's garbage collector frees the interpreter's reference cycles at "
          "varying points, which moves a peak by about one unit")
    for dtype in (torch.bfloat16, torch.float32):
        peaks = {op: [backward_peak(op, dtype, a.seq, a.heads, a.steps, a.head_dim) for _ in range(a.repeat)]
                 for op in ("gdn", "prism")}
        for op, runs in peaks.items():
            print(f"{op:>6} {str(dtype):>15} {min(runs):>10} - {max(runs):>10} B "
                  f"{min(runs) / unit:6.1f} - {max(runs) / unit:4.1f} units")
        print(f"{'':>6} {str(dtype):>15} prism / gdn (max peaks) = {max(peaks['prism']) / max(peaks['gdn']):.2f}")
    print(f"one layer (d_model 768, H 6, d 128, L 2, T {a.seq} -> {2 * a.seq}): bytes per token saved for backward")
    for autocast in (False, True):
        label = "bf16 autocast" if autocast else "fp32"
        saved = {m: layer_saved_per_token(m, a.seq, autocast) for m in ("gdn", "prism")}
        for m, b in saved.items():
            print(f"{m:>6} {label:>15} {b:10.0f} B/token")
        print(f"{'':>6} {label:>15} layer prism / gdn = {saved['prism'] / saved['gdn']:.2f}")


if __name__ == "__main__":
    main()
