"""One training step's forward and backward, eager against ``trainer.compile=true`` (the backbone compiled in
place), for the small models of the probing table: the case where a step is many small kernels.

    python benchmarks/compile_step.py [--device cpu|cuda] [--steps 5] [--mixers attention,prism,...]

Per mixer: the compilation time (the first compiled step), the mean eager and compiled step time over --steps, the
ratio, and the largest difference between the eager and compiled gradients. Model: the prism_probes experiment
(2 layers, width 16, batch 64 x 128 tokens) with the torch paths and one head per mixer, as in docs/probing.md's table.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PATTERNS = {
    "attention": ["mixer=attention", "model.mixers.attention.num_heads=1"],
    "prism": ["mixer=prism", "model.mixers.prism.num_heads=1", "model.mixers.prism.backend=torch"],
    "gdn": ["mixer=gdn", "model.mixers.gdn.num_heads=1", "model.mixers.gdn.backend=torch"],
    "gla": ["mixer=gla", "model.mixers.gla.num_heads=1", "model.mixers.gla.backend=torch"],
    "mamba2": ["mixer=mamba2", "model.mixers.mamba2.head_dim=32", "model.mixers.mamba2.backend=torch"],
    "ttt_mlp": ["mixer=ttt_mlp", "model.mixers.ttt_mlp.head_dim=16"],
}


def measure(name: str, device: str, steps: int) -> dict:
    from configs import compose_config, config_to_dict
    from datamodules.registry import get_datamodule
    from lit_modules import task_module

    cfg = compose_config(["experiment=prism_probes", "data.task=mqar", "data.train_examples=1024"] + PATTERNS[name])
    dm = get_datamodule(cfg.data.name)(cfg.data, seed=0)
    dm.setup("fit")
    torch.manual_seed(0)
    model = task_module(dm.task).from_datamodule(config_to_dict(cfg), dm).to(device)
    batch = next(iter(dm.train_dataloader()))
    ids, labels = batch["input_ids"].to(device), batch["labels"].to(device)

    def step() -> None:
        logits, _ = model(ids)
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100).backward()

    def timed(n: int) -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(n):
            model.zero_grad()
            step()
        if device == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - start) / n

    timed(1)  # warm-up
    eager = timed(steps)
    grads = [p.grad.clone() for p in model.parameters()]
    model.backbone.compile()
    compile_s = timed(1)
    compiled = timed(steps)
    diff = max((a - p.grad).abs().max().item() for a, p in zip(grads, model.parameters()))
    return {"mixer": name, "compile_s": compile_s, "eager_ms": 1e3 * eager, "compiled_ms": 1e3 * compiled,
            "speedup": eager / compiled, "max_grad_diff": diff}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--mixers", default=",".join(PATTERNS))
    args = parser.parse_args()
    torch.set_flush_denormal(True)  # as train.py: denormal decays made some CPU steps 10-20x slower
    print(f"device {args.device} ({torch.cuda.get_device_name() if args.device == 'cuda' else 'cpu'}), torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads")
    print("| mixer | compile s | eager ms | compiled ms | speed-up | max grad diff |\n|---|---|---|---|---|---|")
    for name in args.mixers.split(","):
        r = measure(name, args.device, args.steps)
        print(f"| {name} | {r['compile_s']:.0f} | {r['eager_ms']:.1f} | {r['compiled_ms']:.1f} | {r['speedup']:.2f}x | "
              f"{r['max_grad_diff']:.1e} |", flush=True)


if __name__ == "__main__":
    main()
