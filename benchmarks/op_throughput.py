"""Op-level timing of the PRISM Triton op against fla's Gated DeltaNet op and the chunked torch op (one process,
one GPU): forward+backward milliseconds, GPU time (the kernels' summed durations), tokens/s, TFLOP/s and peak
memory at 16,384 tokens per step, each op against GDN's at the same shape, and each op's time kernel by kernel.
Prints the markdown tables at the end.

    python benchmarks/op_throughput.py                 # bf16, H=6, d=128, L=2, 2K x 8 .. 16K x 1
    python benchmarks/op_throughput.py --dtype fp32 --steps 3 --json out.json   # and the table in out.md

Rows: gdn (fla chunk_gated_delta_rule), prism_<impl>_e<N> (the Triton op with PRISM_TRITON_IMPL = impl and
PRISM_TRITON_EXPANDED_MAX = N; split_fused_e256 is the default, C = 64 for L = 2), prism_chunk (exact chunked torch,
fp32 compute; 8K x 2 only by default).
Under TRITON_INTERPRET=1 on the CPU use --smoke (tiny shapes, fp32, one repetition) to exercise the code path.
How to measure and the current numbers: docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repository's packages

from benchmarks.timing import kernel_times  # noqa: E402
from kernels.prism.op import prism_delta_rule_flops  # noqa: E402

OPS = ["gdn", "prism_split_e128", "prism_split_fused_e256", "prism_split_e64", "prism_expanded_e64", "prism_chunk"]


def _inputs(B, T, H, L, d, dtype, device, gen):
    r = lambda *s: torch.randn(*s, generator=gen, device=device)  # noqa: E731
    q = F.normalize(r(B, T, H, d), dim=-1).to(dtype)
    k = F.normalize(r(B, T, H, L, d), dim=-1).to(dtype)
    v = r(B, T, H, L, d).to(dtype)
    beta = torch.sigmoid(r(B, T, H, L)).to(dtype)
    g = F.logsigmoid(r(B, T, H) + 3.0)
    return [x.requires_grad_() for x in (q, k, v, beta, g)]


def _runner(name, B, T, H, L, d, dtype, device, gen):
    from kernels.prism import prism_delta_rule
    xs = _inputs(B, T, H, L, d, dtype, device, gen)
    q, k, v, beta, g = xs
    if name == "gdn":
        from fla.ops.gated_delta_rule import chunk_gated_delta_rule
        k1, v1, b1 = (x.detach()[:, :, :, 0].contiguous().requires_grad_() for x in (k, v, beta))
        args = [q, k1, v1, g, b1]

        def fn():
            o, _ = chunk_gated_delta_rule(q, k1, v1, g, b1, scale=d ** -0.5)
            return o
        return fn, args
    if name == "prism_chunk":
        backend, impl, emax = "torch", None, None
    else:
        backend = "triton"
        impl, emax = name[len("prism_"):].rsplit("_e", 1)

    def fn():
        if emax is not None:
            os.environ["PRISM_TRITON_IMPL"] = impl
            os.environ["PRISM_TRITON_EXPANDED_MAX"] = emax
        o, _ = prism_delta_rule(q, k, v, beta, g, scale=d ** -0.5, backend=backend)
        return o
    return fn, xs


def bench(name, B, T, H, L, d, dtype, device, reps, warmup):
    gen = torch.Generator(device=device).manual_seed(0)
    fn, args = _runner(name, B, T, H, L, d, dtype, device, gen)
    cuda = device == "cuda"

    def step():
        o = fn()
        grads = torch.autograd.grad(o.float().pow(2).sum(), args)
        return grads

    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    t0 = time.perf_counter()
    for _ in range(reps):
        step()
    if cuda:
        torch.cuda.synchronize()
    ms = (time.perf_counter() - t0) / reps * 1e3
    peak = (torch.cuda.max_memory_allocated() - base) / 2 ** 20 if cuda else float("nan")
    # the chunked recurrence's forward FLOPs (GDN: the same count at L = 1), x3 for forward + backward as in
    # benchmarks/throughput.py; the achieved rate is against the card's dense bf16 peak (--peak-tflops)
    flops = 3 * B * prism_delta_rule_flops(T, H, d, d, 1 if name == "gdn" else L)
    row = {"op": name, "seq": T, "batch": B, "ms": ms, "tokens_per_s": B * T / ms * 1e3, "peak_mib": peak,
           "tflops": flops / ms / 1e9}
    # where the time goes, kernel by kernel (on the CPU: the ops' self time, a smoke run of the same code)
    row["kernels"] = kernel_times(step, reps, device)
    if cuda:  # GPU time: the kernels' summed durations, without the host's time between launches
        row["gpu_ms"] = sum(k["us"] for k in row["kernels"]) / 1e3
        row["gpu_tflops"] = flops / row["gpu_ms"] / 1e9
    return row


def against_gdn(rows: list[dict]) -> list[dict]:
    """Each row's ratios to fla's GDN op at the same shape: throughput (gdn ms / ms: above 1 is faster than GDN),
    the same on GPU time, and peak memory (ms / gdn's: below 1 is less)."""
    gdn = {(r["seq"], r["batch"]): r for r in rows if r["op"] == "gdn"}
    for r in rows:
        g = gdn.get((r["seq"], r["batch"]))
        if g is None or r is g:
            continue
        r["vs_gdn"] = g["ms"] / r["ms"]
        if "gpu_ms" in r and "gpu_ms" in g:
            r["vs_gdn_gpu_time"] = g["gpu_ms"] / r["gpu_ms"]
        if g["peak_mib"] > 0:  # nan on the CPU: no ratio
            r["vs_gdn_peak_mem"] = r["peak_mib"] / g["peak_mib"]
    return rows


def table(rows: list[dict], meta: dict) -> str:
    """Markdown: every op and shape, and its ratios to GDN's op."""
    def cell(r, key, fmt):
        return format(r[key], fmt) if key in r else "-"

    lines = [f"Device: {meta['device']}; torch {meta['torch']}; {meta['dtype']}, H = {meta['H']}, d = {meta['d']}, "
             f"L = {meta['L']}. Forward + backward; TFLOP/s: 3x the chunked recurrence's forward FLOPs, per second of "
             f"wall clock and of GPU time (the kernels' summed durations). x GDN: GDN's time over the op's (above 1: "
             f"faster), and the op's peak memory over GDN's.", "",
             "| op | seq x batch | ms | GPU ms | M tokens/s | peak MiB | TFLOP/s | TFLOP/s on GPU time | x GDN | "
             "x GDN, GPU time | x GDN, peak memory |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['op']} | {r['seq']}x{r['batch']} | {r['ms']:.2f} | {cell(r, 'gpu_ms', '.2f')} | "
                     f"{r['tokens_per_s'] / 1e6:.3f} | {r['peak_mib']:.1f} | {r['tflops']:.1f} | "
                     f"{cell(r, 'gpu_tflops', '.1f')} | {cell(r, 'vs_gdn', '.2f')} | "
                     f"{cell(r, 'vs_gdn_gpu_time', '.2f')} | {cell(r, 'vs_gdn_peak_mem', '.2f')} |")
    return "\n".join(lines) + "\n"


def kernel_tables(rows: list[dict]) -> str:
    """Markdown, one table per op: each kernel's calls and microseconds per step at every shape, longest first
    (the profile to compare before and after a kernel change)."""
    out = []
    for op in dict.fromkeys(r["op"] for r in rows):
        mine = [r for r in rows if r["op"] == op and r.get("kernels")]
        if not mine:
            continue
        shapes = [f"{r['seq']}x{r['batch']}" for r in mine]
        per_shape = [{k["name"]: k for k in r["kernels"]} for r in mine]
        longest = {}
        for p in per_shape:
            for n, k in p.items():
                longest[n] = max(longest.get(n, 0.0), k["us"])
        names = sorted(longest, key=lambda n: -longest[n])
        out += [f"{op}, microseconds per step (calls per step):", "",
                "| kernel | " + " | ".join(shapes) + " |", "|---|" + "---|" * len(shapes)]
        for n in names:
            cells = [f"{p[n]['us']:.0f} ({p[n]['calls']:g})" if n in p else "-" for p in per_shape]
            out.append(f"| {n[:90]} | " + " | ".join(cells) + " |")
        out.append("| total | " + " | ".join(f"{sum(k['us'] for k in r['kernels']):.0f}" for r in mine) + " |")
        out.append("")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--ops", default=",".join(OPS))
    ap.add_argument("--json", default=None)
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the card (H100/H200 SXM)")
    ap.add_argument("--smoke", action="store_true", help="tiny CPU run under TRITON_INTERPRET=1")
    a = ap.parse_args()
    if a.smoke:
        import tools.fla_interpret as fi
        fi.patch_triton_interpreter()
        device, dtype, shapes, reps, warmup = "cpu", torch.float32, [(40, 2)], 1, 0
        H, d = 2, 16
    else:
        device, dtype = "cuda", {"bf16": torch.bfloat16, "fp32": torch.float32}[a.dtype]
        shapes, reps, warmup = [(2048, 8), (4096, 4), (8192, 2), (16384, 1)], a.reps, 3
        H, d = a.heads, a.head_dim
    rows = []
    for T, B in shapes:
        for name in a.ops.split(","):
            if name == "prism_chunk" and not a.smoke and T != 8192:
                continue
            r = bench(name, B, T, H, a.steps, d, dtype, device, reps, warmup)
            rows.append(r)
            print(f"{name:>18} {T:>6}x{B:<2} {r['ms']:9.2f} ms {r['tokens_per_s'] / 1e6:7.3f} Mtok/s "
                  f"peak {r['peak_mib']:8.1f} MiB {r['tflops']:6.1f} TFLOP/s ({r['tflops'] / a.peak_tflops:.1%})",
                  flush=True)
    meta = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu (interpreter)",
            "torch": torch.__version__, "dtype": str(dtype), "H": H, "d": d, "L": a.steps,
            "peak_tflops": a.peak_tflops, "command": " ".join(sys.argv)}
    rows = against_gdn(rows)
    markdown = table(rows, meta) + "\n" + kernel_tables(rows)
    print("\n" + markdown)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)
        Path(a.json).with_suffix(".md").write_text(markdown)


if __name__ == "__main__":
    main()
