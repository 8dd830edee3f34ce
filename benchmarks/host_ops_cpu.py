"""Host work of one layer's forward and backward, PRISM against Gated DeltaNet, counted on the CPU.

At 16K tokens per step both layers are host-bound on an H200 (docs/benchmarks.md): the GPU idles
while Python dispatches torch ops and launches Triton kernels. The number of those calls is the same on the CPU
as on the GPU, because the host code is the same and under Triton's interpreter (``TRITON_INTERPRET=1``) every
launch still goes through the launcher. So counting them here shows where a layer's host time goes, without
device time. Same layers as ``throughput.py`` (d_model 768, H 6, d 128, L 2, their Triton paths), bf16 autocast.

    TRITON_INTERPRET=1 python benchmarks/host_ops_cpu.py [--seq 64] [--top 12]

Prints, per layer and pass: the aten ops dispatched (every call the profiler records, nested ones too, as in
its CUDA tables, but none made by the interpreter inside a launch) and the Triton launches; then the ops and
kernels whose counts differ most between the two.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

LAUNCH = "triton_launch"


def inside_launch(event) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if parent.name == LAUNCH:
            return True
        parent = parent.cpu_parent
    return False


def count_host_calls(mixer: str, seq: int) -> dict[str, Counter]:
    """{'forward': Counter, 'backward': Counter} of 'aten::<op>' and 'triton:<kernel>' calls of one layer step."""
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function
    from triton.runtime.interpreter import InterpretedFunction

    from throughput import build_layer

    launches = Counter()
    run = InterpretedFunction.run

    def counted_run(self, *args, **kwargs):
        launches["triton:" + self.fn.__name__] += 1
        with record_function(LAUNCH):  # the interpreter's own torch calls (argument copies) are not host work
            return run(self, *args, **kwargs)

    torch.manual_seed(0)
    layer = build_layer(mixer, 768, [f"model.mixers.{mixer}.backend=triton"])
    x = torch.randn(1, seq, 768, requires_grad=True)
    counts = {}
    InterpretedFunction.run = counted_run
    try:
        for part in ("forward", "backward"):
            launches.clear()
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                if part == "forward":
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        y, _ = layer(x)
                    loss = y.float().square().mean()
                else:
                    loss.backward()
            ops = Counter(e.name for e in prof.events() if e.name.startswith("aten::") and not inside_launch(e))
            counts[part] = ops + launches
    finally:
        InterpretedFunction.run = run
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--top", type=int, default=12, help="how many of the most different calls to list")
    args = ap.parse_args()
    if os.environ.get("TRITON_INTERPRET") != "1":
        sys.exit("host_ops_cpu: set TRITON_INTERPRET=1 (the Triton paths run under the interpreter on the CPU)")
    from tools.fla_interpret import patch_triton_interpreter
    patch_triton_interpreter()

    counts = {m: count_host_calls(m, args.seq) for m in ("prism", "gdn")}
    print(f"one layer, d_model 768, seq {args.seq}, bf16 autocast: host calls per step")
    print(f"{'layer':6s} {'pass':9s} {'aten ops':>9s} {'launches':>9s}")
    for m, parts in counts.items():
        for part, c in parts.items():
            aten = sum(v for k, v in c.items() if k.startswith("aten::"))
            print(f"{m:6s} {part:9s} {aten:9d} {sum(c.values()) - aten:9d}")
    print("\nmost different calls (prism - gdn, forward + backward):")
    total = {m: parts["forward"] + parts["backward"] for m, parts in counts.items()}
    diff = {k: total["prism"][k] - total["gdn"][k] for k in total["prism"].keys() | total["gdn"].keys()}
    for k, d in sorted(diff.items(), key=lambda kv: (-abs(kv[1]), kv[0]))[:args.top]:
        print(f"  {d:+4d}  {k}  (prism {total['prism'][k]}, gdn {total['gdn'][k]})")


if __name__ == "__main__":
    main()
