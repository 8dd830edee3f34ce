"""Fill a Triton cache for an H100/H200 on this CPU-only machine, so GPU time goes to measuring, not compiling.

A cold GPU machine spends most of a short session compiling (the fp32 PRISM op alone: minutes of ptxas). Triton's
cache key is a hash of the kernel source, its specialisation, the target, the compile options and triton's own
files, never the machine, so kernels compiled here for sm_90 (tools/compile_check.py) are cache hits there when:
  - this runs on the same Python minor version and the same triton wheel as the GPU (e.g. Python 3.12 and
    triton 3.7.1 on both: triton's key hashes its compiled library, which differs per Python version);
  - TRITON_CACHE_DIR is the same absolute path on both (the cache's group files record absolute paths).
fla is made to see an H200 before it is imported (compile_check.pretend_hopper), so its block sizes and
autotune configs are the GPU's.

    TRITON_CACHE_DIR=/root/tcache python -m tools.warm_triton_cache tests --dtype bf16
    TRITON_CACHE_DIR=/root/tcache python -m tools.warm_triton_cache bench
    TRITON_CACHE_DIR=/root/tcache python -m tools.warm_triton_cache run experiment=lm_char mixer=prism
    bash scripts/gpu_run.sh pack .tc /root/tcache   # carry .tc's parts; `gpu_run.sh setup` there unpacks them

  tests  every case of tests/kernels/test_prism_triton_gpu.py with each autotuner's first config (run the GPU
         tests with `-p tools.noautotune` to match).
  bench  every autotune config of the kernels behind benchmarks/op_throughput.py's ops and the
         benchmarks/throughput.py layers of prism, gdn, gla and mamba2 (bf16 autocast, d_model 768).
  run    every autotune config of the kernels in one training step (forward and backward, bf16 autocast) of the
         run that these train.py overrides describe, on its own data (its widths and batch layout: what
         `python train.py OVERRIDES...` compiles on the GPU).
"""
from __future__ import annotations

import argparse
import importlib
import itertools
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools.compile_check import compile_only, pretend_hopper  # noqa: E402


def parametrized_cases(fn):
    """Every argument combination of a test function's @pytest.mark.parametrize marks."""
    axes = []
    for mark in getattr(fn, "pytestmark", []):
        if mark.name != "parametrize":
            continue
        names = [n.strip() for n in mark.args[0].split(",")] if isinstance(mark.args[0], str) else mark.args[0]
        axes.append([dict(zip(names, v if len(names) > 1 else (v,))) for v in mark.args[1]])
    for combo in itertools.product(*axes):
        yield {k: v for part in combo for k, v in part.items()}


def warm_tests(dtype: str | None, match: str = "") -> None:
    import pytest
    import torch

    tests = importlib.import_module("tests.kernels.test_prism_triton_gpu")  # sets TRITON_F32_DEFAULT=ieee
    tests.DEVICE = "cpu"
    want = {"bf16": torch.bfloat16, "fp32": torch.float32}.get(dtype)
    for name in sorted(n for n in dir(tests) if n.startswith("test_") and match in n):
        for case in parametrized_cases(getattr(tests, name)):
            if want is not None and case.get("dtype", want) != want:
                continue
            t0 = time.perf_counter()
            with pytest.MonkeyPatch.context() as mp, compile_only(modules=()):
                if "monkeypatch" in getattr(tests, name).__code__.co_varnames:
                    case = dict(case, monkeypatch=mp)
                try:
                    getattr(tests, name)(**case)
                except AssertionError:
                    pass  # values are garbage when kernels only compile
            shown = {k: v for k, v in case.items() if k != "monkeypatch"}
            print(f"{time.perf_counter() - t0:7.1f}s {name} {shown}", flush=True)


def warm_bench(only: set[str] = frozenset()) -> None:
    """``only``: entries like op:gdn or layer:prism (default: every op and layer)."""
    import torch

    from benchmarks import throughput
    from benchmarks import op_throughput as op_bench

    def timed(label, fn):
        t0 = time.perf_counter()
        with compile_only(modules=("",)):  # autotuning on the GPU compiles every config
            fn()
        print(f"{time.perf_counter() - t0:7.1f}s {label}", flush=True)

    wanted = lambda entry: not only or entry in only  # noqa: E731
    for name in op_bench.OPS:
        if name != "prism_chunk" and wanted(f"op:{name}"):  # prism_chunk is plain torch: nothing to compile
            timed(f"op {name}", lambda: op_bench.bench(name, 8, 2048, 6, 2, 128, torch.bfloat16, "cpu", 1, 0))
    os.environ.pop("PRISM_TRITON_IMPL", None)  # the op rows set these; the layers use the defaults
    os.environ.pop("PRISM_TRITON_EXPANDED_MAX", None)
    args = argparse.Namespace(warmup=0, repeat=1, rounds=1)
    for key in filter(lambda key: wanted(f"layer:{key}"), throughput.TRITON_MIXERS):
        # "auto" picks the GPU kernels only on CUDA tensors; on the GPU these are the benchmark's own choices
        throughput.MIXER_OVERRIDES[key] = [*throughput.MIXER_OVERRIDES[key], f"model.mixers.{key}.backend=triton"]
        timed(f"layer {key}", lambda: throughput.bench_layers([key], 2048, 8, 768, torch.device("cpu"),
                                                             torch.bfloat16, args))


def warm_run(overrides: list[str]) -> None:
    from dataclasses import fields

    import torch
    import torch.nn.functional as F

    from configs import compose_config, config_to_dict
    from lit_modules.backbone import expand_layers
    from mixers import get_mixer
    from train import build_inputs

    layers = set(expand_layers(compose_config(overrides).model))
    # backend "auto" picks the Triton kernels only for CUDA tensors: ask for them (the GPU's choice) explicitly
    triton = [f"model.mixers.{n}.backend=triton" for n in sorted(layers)
              if "backend" in {f.name for f in fields(get_mixer(n).Config)}]
    cfg = compose_config([*overrides, *triton])
    datamodule, module = build_inputs(cfg, config_to_dict(cfg))
    loader = datamodule.train_dataloader()
    loader.pin_memory = False  # pretend_hopper makes torch see a GPU
    batch = next(iter(loader))
    t0 = time.perf_counter()
    with compile_only(modules=("",)), torch.autocast("cpu", dtype=torch.bfloat16):
        logits, targets, _ = module._logits_and_labels(batch)
        F.cross_entropy(logits.float(), targets).backward()
    print(f"{time.perf_counter() - t0:7.1f}s run {' '.join(overrides)}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["tests", "bench", "run"])
    ap.add_argument("overrides", nargs="*", help="run: train.py's overrides, e.g. experiment=lm_char mixer=prism")
    ap.add_argument("--dtype", choices=["bf16", "fp32"], help="tests: only this dtype's cases")
    ap.add_argument("--match", default="", help="tests: only test functions whose name contains this (to split "
                                                   "the warm-up over processes)")
    ap.add_argument("--only", default="", help="bench: only these comma-separated entries, e.g. "
                                                "op:gdn,op:prism_split_fused_e256,layer:prism,layer:gdn")
    a = ap.parse_args()
    if not os.environ.get("TRITON_CACHE_DIR"):
        sys.exit("warm_triton_cache: set TRITON_CACHE_DIR to the absolute path the GPU machine will use")
    if os.environ.get("TRITON_INTERPRET") == "1":
        sys.exit("warm_triton_cache: unset TRITON_INTERPRET (this compiles for the GPU)")
    pretend_hopper()
    if a.what == "tests":
        warm_tests(a.dtype, a.match)
    elif a.what == "bench":
        warm_bench(set(filter(None, a.only.split(","))))
    else:
        warm_run(a.overrides)


if __name__ == "__main__":
    main()
