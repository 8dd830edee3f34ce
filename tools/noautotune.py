"""pytest plugin for correctness runs on a GPU: every Triton autotuner keeps its first config and nothing is
benchmarked, so a test compiles one config per kernel instead of all of them (minutes on a cold machine).
tools/warm_triton_cache.py `tests` compiles exactly these configs ahead of time (tools/compile_check.py makes
the same choice; docs/gpu.md).

    python -m pytest -p tools.noautotune tests/kernels/test_prism_triton_gpu.py
"""
from triton.runtime import autotuner

from tools.compile_check import equal_timings, no_disk_cache


def pytest_configure(config):
    autotuner.Autotuner._bench = equal_timings
    autotuner.Autotuner.check_disk_cache = no_disk_cache
