"""Compile, without a GPU, every Triton kernel that an op launches, for a GPU target (default: Hopper, sm_90).

Triton compiles for a target it is told about (front end -> TTIR -> TTGIR -> LLVM -> PTX -> ptxas cubin) without
touching a device. Inside :func:`compile_only` Triton's active driver is one for that target whose kernels take
CPU tensors (``get_active_torch_device()`` is the CPU, which is what the ops ask before they refuse a CPU tensor:
kernels/triton_device.py), and a kernel launch compiles and returns without running, so an op's host code runs
end to end on CPU tensors (values are garbage, shapes are real) and every
kernel it reaches is compiled with the constexprs, dtypes and autotune configs it would get on the GPU. This
catches what the interpreter cannot: compile errors ("constexpr cannot be reassigned", type errors in
compiled-only paths) and shared memory beyond the card's limit.

    with compile_only() as report:
        out = op(*cpu_inputs); out.sum().backward()
    report.kernels  # one entry per compiled kernel: name, seconds, shared memory, config

Autotuned kernels of ``modules`` (default: this repository's ``kernels.``) are compiled with every config;
other libraries' kernels (fla) with the first config only. fla is imported before the target is switched, so its
hardware-dependent choices (block sizes for Hopper) are those of the machine running the check, not the target's.
"""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field

HOPPER_SMEM_BYTES = 232448  # max dynamic shared memory per block on H100/H200 (227 KiB)
HOPPER_SMS = 132


@dataclass
class CompileReport:
    kernels: list[dict] = field(default_factory=list)

    def over_smem(self, limit: int = HOPPER_SMEM_BYTES) -> list[dict]:
        return [k for k in self.kernels if k["shared"] > limit]


class _HopperProperties:
    def get_device_properties(self, device=0):
        return {"max_shared_mem": HOPPER_SMEM_BYTES, "multiprocessor_count": HOPPER_SMS, "warpSize": 32}


class _CompileOnlyDriver:
    """What triton's launch path (and fla's hardware probe) asks the active driver for, answered for a fixed
    target. Its kernels take CPU tensors: they are compiled, never launched."""
    utils = _HopperProperties()

    def __init__(self, target):
        self.target = target

    def get_current_target(self):
        return self.target

    def get_current_device(self):
        return 0

    def get_active_torch_device(self):
        import torch
        return torch.device("cpu")

    def get_current_stream(self, device=None):
        return 0

    def is_active(self):
        return True


def pretend_hopper() -> None:
    """Import fla as if on an H200: its block sizes, warp counts and autotune configs are then those it picks on
    the GPU, so what compile_only() compiles is what the GPU would (tools/warm_triton_cache.py). Irreversible
    for the process: call it first, in a process of its own."""
    import sys

    import torch
    from triton.backends.compiler import GPUTarget
    from triton.runtime.driver import driver

    if "fla" in sys.modules:
        raise RuntimeError("pretend_hopper() must run before fla is imported")
    driver.set_active(_CompileOnlyDriver(GPUTarget("cuda", 90, 32)))
    torch.cuda.get_device_name = lambda *args, **kwargs: "NVIDIA H200"
    torch.cuda.get_device_capability = lambda *args, **kwargs: (9, 0)
    torch.cuda.device_count = lambda: 1
    import fla  # noqa: F401  (its import-time choices now see the H200)

    # At run time fla sizes tiles with check_shared_mem(arch, tensor.device.index); a CPU tensor's index is None,
    # which fla's lookup turns into "small GPU" (e.g. 32-wide instead of 128-wide tiles): ask about GPU 0 instead.
    original = sys.modules["fla.utils.hardware"].check_shared_mem

    def check_shared_mem(arch: str = "none", tensor_idx: int | None = 0) -> bool:
        return original(arch, 0 if tensor_idx is None else tensor_idx)

    for name, module in list(sys.modules.items()):
        if name.startswith("fla") and getattr(module, "check_shared_mem", None) is original:
            module.check_shared_mem = check_shared_mem


def equal_timings(self, *args, config, **meta):
    """Autotuner._bench replacement: all configs time the same, so min() keeps the first pruned config."""
    return [1.0, 1.0, 1.0]


def no_disk_cache(self, tuning_key, configs, bench_fn):
    """Autotuner.check_disk_cache replacement: a tuned result cached by a benchmark run would pick a config
    other than the first."""
    bench_fn()
    return False


@contextlib.contextmanager
def compile_only(arch: int = 90, modules: tuple[str, ...] = ("kernels.",)):
    from triton.backends.compiler import GPUTarget
    from triton.runtime import autotuner, jit
    from triton.runtime.driver import driver

    if os.environ.get("TRITON_INTERPRET") == "1":
        raise RuntimeError("compile_only() needs compiled Triton: unset TRITON_INTERPRET")
    with contextlib.suppress(ImportError):  # fla reads the active driver at import: import it as on this machine
        import fla  # noqa: F401
    report = CompileReport()
    old_run, old_bench, old_cache = jit.JITFunction.run, autotuner.Autotuner._bench, autotuner.Autotuner.check_disk_cache
    old_driver = driver._active

    def run(self, *args, grid, warmup, **kwargs):
        cache = self.device_caches[0][0]
        n_before = len(cache)
        t0 = time.perf_counter()
        kernel = old_run(self, *args, grid=grid, warmup=True, **kwargs)  # compile, never launch
        if len(cache) > n_before:
            report.kernels.append({
                "name": self.fn.__name__, "module": self.fn.__module__, "seconds": time.perf_counter() - t0,
                "shared": kernel.metadata.shared, "num_warps": kernel.metadata.num_warps,
                "num_stages": kernel.metadata.num_stages,
                "constexprs": {k: v for k, v in kwargs.items() if isinstance(v, (int, bool, str))}})
        return kernel

    def bench(self, *args, config, **meta):
        if self.base_fn.__module__.startswith(modules):  # ours: compile every config
            self.fn.run(*args, **dict(meta, **config.all_kwargs()))
        return equal_timings(self, *args, config=config, **meta)

    jit.JITFunction.run = run
    autotuner.Autotuner._bench = bench
    autotuner.Autotuner.check_disk_cache = no_disk_cache
    driver.set_active(_CompileOnlyDriver(GPUTarget("cuda", arch, 32)))
    try:
        yield report
    finally:
        jit.JITFunction.run, autotuner.Autotuner._bench = old_run, old_bench
        autotuner.Autotuner.check_disk_cache = old_cache
        driver._active = old_driver
