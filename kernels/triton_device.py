"""Whether Triton can run its kernels on a tensor's device: the one question the Triton backends ask before they
refuse a tensor (docs/gpu.md).

- CUDA tensors: yes.
- Under Triton's interpreter (``TRITON_INTERPRET=1``, set before triton is imported): any device (the CPU).
- Otherwise: the device whose tensors Triton's active driver takes (``get_active_torch_device()``). On a GPU
  machine that is CUDA; tools/compile_check.py installs a driver that compiles for a GPU target and takes CPU
  tensors. A CPU-only machine has no driver (asking raises), so Triton runs nothing there.
"""
from __future__ import annotations

import os

import torch


def triton_runs_on(x: torch.Tensor) -> bool:
    if x.is_cuda or os.environ.get("TRITON_INTERPRET") == "1":
        return True
    try:
        from triton.runtime.driver import driver
        return driver.active.get_active_torch_device().type == x.device.type
    except (ImportError, RuntimeError):  # no triton, or "0 active drivers" on a machine without a GPU
        return False
