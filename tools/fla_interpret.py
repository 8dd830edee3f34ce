"""Run fla's Triton kernels on a CPU under Triton's interpreter (``TRITON_INTERPRET=1``), fp32 only.

Three patches to triton 3.7.1 internals, applied by :func:`patch_triton_interpreter` BEFORE fla is imported
(fla decorates its kernels with ``triton.autotune`` at import time):

1. The autotuner must not benchmark: it keeps the first config that survives pruning, its timing function
   returns a constant and the on-disk autotune cache is skipped (otherwise it asks for a GPU driver:
   "0 active drivers").
2. The interpreter's ``tl.dot`` upcasts bf16/fp16 operands to fp32 (numpy has no bf16 matmul).
3. The loop variable of ``for i in range(...)`` / ``tl.range(...)`` inside a kernel is a Triton tensor, as in
   compiled Triton (fla calls ``i.to(tl.int64)`` on it); the interpreter otherwise hands out Python ints.

Usage (tests run it in a subprocess, since the environment variable must be set before triton is imported)::

    import tools.fla_interpret as fi      # first, in a process started with TRITON_INTERPRET=1
    fi.patch_triton_interpreter()
    import fla                            # and everything that imports fla or triton, after

(tests/kernels/interpreted/ holds the modules the interpreter tests run this way; docs/gpu.md.)

The interpreter is slow (a tiny GDN layer fwd+bwd takes ~2 s) and its bf16 arithmetic is wrong: use tiny
fp32 shapes. Pinned to triton==3.7.1 (the version torch 2.13's CUDA build requires).
"""
from __future__ import annotations

import ast
import os
import sys

SUPPORTED_TRITON = "3.7.1"
_PATCHED = False
_TRITON_BENCH = None  # triton's own Autotuner._bench, before patch (1)


def patch_triton_interpreter(check_version: bool = True) -> None:
    """Apply the three patches (idempotent). Must run before ``import fla``; needs TRITON_INTERPRET=1."""
    global _PATCHED
    if _PATCHED:
        return
    if os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("patch_triton_interpreter() is for Triton's interpreter: set TRITON_INTERPRET=1 "
                           "before Python starts (before triton is imported)")
    if any(name == "fla" or name.startswith("fla.") for name in sys.modules):
        raise RuntimeError("patch_triton_interpreter() must run before fla is imported "
                           "(fla builds its autotuners at import time)")
    import numpy as np
    import triton
    import triton.language as tl
    from triton.runtime import autotuner, interpreter

    if check_version and triton.__version__ != SUPPORTED_TRITON:
        raise RuntimeError(f"tools.fla_interpret patches triton internals of version {SUPPORTED_TRITON}, "
                           f"found triton {triton.__version__}")

    # (1) Autotuner: no benchmark, no disk cache. min() over equal timings keeps the first pruned config.
    def _bench_constant(self, *args, config, **meta):
        return [1.0, 1.0, 1.0]

    global _TRITON_BENCH
    _TRITON_BENCH = autotuner.Autotuner._bench
    autotuner.Autotuner._bench = _bench_constant
    _orig_init = autotuner.Autotuner.__init__

    def _init_no_cache(self, *args, **kwargs):
        _orig_init(self, *args, **kwargs)
        self.cache_results = False

    autotuner.Autotuner.__init__ = _init_no_cache

    # (2) tl.dot on 16-bit float operands: compute in fp32.
    builder_cls = type(interpreter.interpreter_builder)
    _orig_dot = builder_cls.create_dot

    def _create_dot_fp32(self, a, b, d, input_precision, max_num_imprecise_acc):
        def up(x):
            if x.dtype.is_floating() and x.dtype.primitive_bitwidth == 16:
                data = x.data
                if x.dtype == tl.bfloat16:  # stored as uint16: the high half of an fp32
                    data = (data.astype(np.uint32) << 16).view(np.float32)
                else:
                    data = data.astype(np.float32)
                return interpreter.TensorHandle(data, tl.float32)
            return x

        return _orig_dot(self, up(a), up(b), d, input_precision, max_num_imprecise_acc)

    builder_cls.create_dot = _create_dot_fp32

    # (3) Loop variables of range()/tl.range() loops become Triton tensors (via the interpreter's to_tensor).
    class _ForTensorTransformer(interpreter.ASTTransformer):
        def visit_For(self, node):
            self.generic_visit(node)
            it = node.iter
            is_range = isinstance(it, ast.Call) and (
                (isinstance(it.func, ast.Name) and it.func.id == "range")
                or (isinstance(it.func, ast.Attribute) and it.func.attr == "range"))
            if is_range and isinstance(node.target, ast.Name):
                name = node.target.id
                wrap = ast.Assign(
                    targets=[ast.Name(id=name, ctx=ast.Store())],
                    value=ast.Call(func=ast.Attribute(value=ast.Name(id="interpreter_semantic", ctx=ast.Load()),
                                                      attr="to_tensor", ctx=ast.Load()),
                                   args=[ast.Name(id=name, ctx=ast.Load()), ast.Constant(value=False)],
                                   keywords=[]))
                node.body.insert(0, wrap)
            return node

    interpreter.FunctionRewriter.ast_transformer = _ForTensorTransformer()
    _PATCHED = True


def run_configs_when_tuning(module_prefix: str = "kernels.") -> None:
    """After :func:`patch_triton_interpreter`: the autotuners of kernels defined in modules starting with
    ``module_prefix`` launch every config twice through triton's own benchmark path (its pre/post hooks, which
    apply ``reset_to_zero`` and ``restore_value``), as tuning on a GPU does, and still keep the first config.
    A kernel that accumulates into an argument without declaring it then gives wrong results here too: on a GPU
    it does so in the first call of each process, the one that tunes."""
    from triton.runtime import autotuner

    if not _PATCHED:
        raise RuntimeError("run_configs_when_tuning() needs patch_triton_interpreter() first")

    def _run_twice(kernel_call, quantiles):
        kernel_call()
        kernel_call()
        return [1.0, 1.0, 1.0]

    def _bench_running(self, *args, config, **meta):
        if not self.base_fn.__module__.startswith(module_prefix):
            return [1.0, 1.0, 1.0]
        self._do_bench = _run_twice
        return _TRITON_BENCH(self, *args, config=config, **meta)

    autotuner.Autotuner._bench = _bench_running
