"""Development tools, not part of the product: compiling our Triton kernels for a GPU on the CPU
(compile_check.py), running fla's kernels under Triton's interpreter (fla_interpret.py), a pytest plugin that
switches autotuning off (noautotune.py) and a Triton cache warmer for GPU machines (warm_triton_cache.py).
docs/gpu.md says how they fit together."""
