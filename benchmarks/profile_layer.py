"""Where one mixer layer's forward+backward time goes on the GPU: torch.profiler's CUDA kernel table.

    python benchmarks/profile_layer.py --mixer prism --seq 2048 --batch 8 [--rows 30]
Same layer and sizes as throughput.py's layer benchmark (d_model 768, bf16 autocast).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import build_layer  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mixer", default="prism")
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--d-model", type=int, default=768)
    p.add_argument("--rows", type=int, default=30)
    p.add_argument("--override", nargs="*", default=[], help="extra config overrides, e.g. model.mixers.prism.steps=3")
    args = p.parse_args()
    cuda = torch.cuda.is_available()  # on a CPU: the same layer in fp32, CPU time (a smoke run of this script)
    device = torch.device("cuda" if cuda else "cpu")
    layer = build_layer(args.mixer, args.d_model, args.override).to(device)
    x = torch.randn(args.batch, args.seq, args.d_model, device=device, requires_grad=True)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            y, _ = layer(x)
        y.float().square().mean().backward()
        if cuda:
            torch.cuda.synchronize()

    for _ in range(3):
        step()
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        for _ in range(5):
            step()
    print(f"{args.mixer} seq {args.seq} x batch {args.batch}, 5 steps, {device.type}")
    # by total time (each op with what it launches), then by self time (each kernel on its own: the GPU's time)
    kind = "cuda" if cuda else "cpu"
    for sort_by in (f"{kind}_time_total", f"self_{kind}_time_total"):
        print(prof.key_averages().table(sort_by=sort_by, row_limit=args.rows, max_name_column_width=70))


if __name__ == "__main__":
    main()
