"""How the benchmarks time a step on a GPU: the wall clock of steps run back to back, and the GPU time (the kernels'
summed durations), which leaves out the host (docs/benchmarks.md)."""
from __future__ import annotations

import time

import torch


def timed(fn, steps: int, device) -> float:
    """Seconds per call of fn over `steps` calls back to back, as in training: the host queues the next step's
    kernels while the GPU runs the last ones, so a step costs max(host time, GPU time), not their sum."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        for _ in range(steps):
            fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1e3 / steps
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t0) / steps


def kernel_times(fn, steps: int, device_type: str = "cuda") -> list[dict]:
    """Where a call's device time goes: one row per kernel name (name, calls and microseconds per call of fn),
    longest first, from torch.profiler. device_type "cpu" tabulates the CPU ops' self time instead (a CPU run of the
    same code)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile
    cuda = device_type == "cuda"
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        for _ in range(steps):
            fn()
        if cuda:
            torch.cuda.synchronize()
    # only the kernels' own events: the CPU op that launched a kernel carries its time too (counted twice otherwise)
    rows = [{"name": e.key, "calls": e.count / steps,
             "us": (e.self_device_time_total if cuda else e.self_cpu_time_total) / steps}
            for e in prof.key_averages() if e.device_type == (DeviceType.CUDA if cuda else DeviceType.CPU)]
    return sorted((r for r in rows if r["us"] > 0), key=lambda r: -r["us"])


def kernel_ms(fn, steps: int) -> float:
    """GPU time per call: the sum of every kernel's duration under torch.profiler. Unlike the wall clock it leaves
    out the host time between launches, which decides the wall clock when a step is host-bound."""
    return sum(r["us"] for r in kernel_times(fn, steps)) / 1e3
