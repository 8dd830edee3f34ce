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


def kernel_ms(fn, steps: int) -> float:
    """GPU time per call: the sum of every kernel's duration under torch.profiler. Unlike the wall clock it leaves
    out the host time between launches, which decides the wall clock when a step is host-bound."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            fn()
        torch.cuda.synchronize()
    # only the kernels' own events: the CPU op that launched a kernel carries its time too (counted twice otherwise)
    return sum(e.self_device_time_total for e in prof.key_averages() if e.device_type == DeviceType.CUDA) / 1e3 / steps
