"""Throughput and memory of every registered mixer, in one process on one GPU.

  layers: one mixer layer, forward+backward, d_model 768, 16,384 tokens per step at seq x batch in
          {2048x8, 4096x4, 8192x2, 16384x1}: time, tokens/s, peak memory.
  model:  the 12-layer d_model 768 language model per mixer, bf16 autocast, AdamW, seq 2048 x batch 8, N steps on
          byte-level text: loss at every step (finite, decreasing), tokens/s, peak memory, MFU from the mixers'
          own flops(). --model-compile MODE compiles the backbone first (as trainer.compile=true), in that
          torch.compile mode (reduce-overhead: CUDA graphs).

    python benchmarks/throughput.py --out runs/bench --text data/tinyshakespeare.txt
    python benchmarks/throughput.py --tiny --out /tmp/bench      # a CPU smoke run of the same code
    python benchmarks/throughput.py --plugins my_mixers.py --mixers my_mixer,gdn --out /tmp/mine  # your own mixer
Writes results.json and a table (results.md) under --out, and a plot (layers.png) when matplotlib is there.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from configs import compose_config, config_to_dict  # noqa: E402
from lit_modules.compile import MODES, compile_in_place  # noqa: E402
from lit_modules.language_model import LanguageModel  # noqa: E402
from lit_modules.optim import configure_optimizers_from  # noqa: E402
from mixers.registry import get_mixer, import_plugins, mixer_names  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

# Paper-scale widths at d_model 768 (PRISM.md §3: GDN and PRISM with H = 6, d = 128).
MIXER_OVERRIDES = {
    "attention": ["model.mixers.attention.num_heads=12"],
    "prism": ["model.mixers.prism.num_heads=6", "model.mixers.prism.head_dim=128", "model.mixers.prism.steps=2"],
    "prism_chunk": ["model.mixers.prism.num_heads=6", "model.mixers.prism.head_dim=128",
                    "model.mixers.prism.backend=torch"],
    "gdn": ["model.mixers.gdn.num_heads=6", "model.mixers.gdn.head_dim=128", "model.mixers.gdn.expand_v=1.0"],
    "gla": [],
    "mamba2": [],
    "ttt_mlp": ["model.mixers.ttt_mlp.head_dim=64"],
    "ttt_mlp_ckpt": ["model.mixers.ttt_mlp.head_dim=64", "model.mixers.ttt_mlp.checkpoint_group=16"],
    # the serial mini-batch loop is launch-bound eagerly (0.78 s per layer step on an H200); checkpointing makes
    # the 12-layer model fit at batch 8 (inductor + checkpoint checked on the CPU)
    "ttt_mlp_compile": ["model.mixers.ttt_mlp.head_dim=64", "model.mixers.ttt_mlp.compile=true",
                        "model.mixers.ttt_mlp.checkpoint_group=16"],
}
LAYER_SETTINGS = [(2048, 8), (4096, 4), (8192, 2), (16384, 1)]
# The mixers whose "auto" backend picks Triton kernels on CUDA tensors: the scripts that run these layers on the CPU
# (under Triton's interpreter, or compiling only) set backend=triton, where "auto" would pick the torch paths.
TRITON_MIXERS = ("prism", "gdn", "gla", "mamba2")


def mixer_name(key: str) -> str:
    """The registered mixer a row key names: the longest registered name it starts with (prism_chunk -> prism)."""
    return max((n for n in mixer_names() if key.startswith(n)), key=len, default=key)


def compose(key: str, d_model: int, extra: list[str]) -> dict:
    name = mixer_name(key)
    # a built-in mixer's config group, or a plugin's mixer (registered once by main) with its Config's defaults
    stack = f"mixer={name}" if (CONFIGS / "mixer" / f"{name}.yaml").is_file() else f"model.layers=[{name}]"
    overrides = [stack, f"model.d_model={d_model}", *MIXER_OVERRIDES.get(key, []), *extra]
    return config_to_dict(compose_config(["experiment=slimpajama_130m", *overrides]))


def build_layer(key: str, d_model: int, extra: list[str] = ()):
    """One layer of the row key's mixer, at this benchmark's widths (MIXER_OVERRIDES) plus extra overrides."""
    name = mixer_name(key)
    cfg = compose(key, d_model, list(extra))
    return get_mixer(name)(d_model, get_mixer(name).Config(**cfg["model"]["mixers"][name]))


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


class LayerStep:
    """One mixer layer's forward+backward on a fixed input, with its peak memory measured per round."""

    def __init__(self, key: str, seq: int, batch: int, d_model: int, device, dtype):
        self.device, self.dtype = device, dtype
        self.layer = build_layer(key, d_model).to(device)
        self.x = torch.randn(batch, seq, d_model, device=device, requires_grad=True)
        self.peak = 0

    def __call__(self):
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            y, _ = self.layer(self.x)
        y.float().square().mean().backward()

    def round(self, steps: int) -> float:
        """Seconds per step over one round; the peak above what was allocated before it (the gradients count, as
        the steps allocate them again)."""
        self.layer.zero_grad(set_to_none=True)
        self.x.grad = None
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        seconds = timed(self, steps, self.device)
        if self.device.type == "cuda":
            self.peak = max(self.peak, torch.cuda.max_memory_allocated() - base)
        return seconds


def bench_layers(keys: list[str], seq: int, batch: int, d_model: int, device, dtype, args) -> list[dict]:
    """One layer of each mixer at one length. The mixers are timed in alternating rounds (args.rounds rounds of
    args.repeat steps each, median) so that the host's speed, which drifts during a run and decides the wall clock
    of a host-bound step, is the same for all of them and their ratios."""
    steps, rows = {}, {}
    for key in keys:
        try:
            steps[key] = LayerStep(key, seq, batch, d_model, device, dtype)
            for _ in range(args.warmup):  # before any memory reset: autotuning's trial runs are not the layer's
                steps[key]()
        except Exception as err:  # noqa: BLE001 - one mixer's failure must not hide the others
            traceback.print_exc()
            steps.pop(key, None)
            rows[key] = {"mixer": key, "seq": seq, "batch": batch, "error": f"{type(err).__name__}: {err}"[:200]}
            if device.type == "cuda":
                torch.cuda.empty_cache()
    rounds = {key: [] for key in steps}
    for _ in range(args.rounds):
        for key, step in steps.items():
            rounds[key].append(step.round(args.repeat))
    for key, step in steps.items():
        seconds = statistics.median(rounds[key])
        row = {"mixer": key, "seq": seq, "batch": batch, "ms": seconds * 1e3, "tokens_per_s": seq * batch / seconds,
               "flops_fwd": step.layer.flops(seq) * batch}
        row["tflops"] = 3 * row["flops_fwd"] / seconds / 1e12
        if device.type == "cuda":
            row["peak_mem_gib"] = step.peak / 2 ** 30
            row["gpu_ms"] = kernel_ms(step, args.repeat)
        rows[key] = row
    return [rows[key] for key in keys]


def byte_batches(text: bytes, seq: int, batch: int, steps: int, device):
    data = torch.frombuffer(bytearray(text), dtype=torch.uint8).long()
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        starts = torch.randint(0, data.numel() - seq - 1, (batch,), generator=gen)
        window = torch.stack([data[s:s + seq + 1] for s in starts.tolist()]).to(device)
        yield window[:, :-1], window[:, 1:]


def bench_model(key: str, args, device, dtype) -> dict:
    extra = [f"model.repeat={args.model_layers}", f"trainer.max_steps={args.model_steps}", "optim.warmup_steps=10"]
    cfg = compose(key, args.d_model, extra)
    torch.manual_seed(0)
    model = LanguageModel(cfg, vocab_size=args.vocab).to(device)
    # as trainer.compile does: the backbone in place; graphs: the mode replays CUDA graphs
    graphs = compile_in_place(model.backbone, None if args.model_compile == "none" else args.model_compile)
    opt = configure_optimizers_from(model, cfg["optim"], args.model_steps)
    optimizer, schedule = opt["optimizer"], opt["lr_scheduler"]["scheduler"]
    losses, times = [], []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for ids, labels in byte_batches(args.text_bytes, args.model_seq, args.model_batch, args.model_steps, device):
        t0 = time.perf_counter()
        if graphs:  # a new step: the graphs may overwrite the last step's outputs
            torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            logits, _ = model(ids)
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), labels.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        schedule.step()
        losses.append(loss.item())  # .item() synchronises, so the host clock is valid
        times.append(time.perf_counter() - t0)
        if len(losses) == 1 or len(losses) % 10 == 0:  # a run cut off by a time limit still leaves its progress
            print(f"  {key} step {len(losses)}: loss {losses[-1]:.3f}, {times[-1]:.2f} s", flush=True)
    steady = statistics.median(times[min(5, len(times) - 1):])
    tokens = args.model_seq * args.model_batch
    row = {"mixer": key, "compile": args.model_compile, "layers": args.model_layers, "seq": args.model_seq,
           "batch": args.model_batch,
           "params_m": sum(p.numel() for p in model.parameters()) / 1e6, "tokens_per_s": tokens / steady,
           "first_loss": losses[0], "last_loss": losses[-1], "losses": losses,
           "finite": all(math.isfinite(v) for v in losses),
           "decreasing": statistics.mean(losses[-5:]) < statistics.mean(losses[:5])}
    row["tflops"] = model.flops_per_token(args.model_seq) * row["tokens_per_s"] / 1e12
    if device.type == "cuda":
        row["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2 ** 30
        row["mfu"] = row["tflops"] / args.peak_tflops
    return row


def environment(device) -> dict:
    import lightning
    import triton

    env = {"python": platform.python_version(), "torch": torch.__version__, "triton": triton.__version__,
           "lightning": lightning.__version__, "command": " ".join(sys.argv),
           "autotune": "--no-autotune" not in sys.argv}
    try:
        import fla
        env["fla"] = fla.__version__
    except ImportError:
        env["fla"] = None
    if device.type == "cuda":
        env["device"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
    else:
        env["device"] = platform.processor() or "cpu"
    return env


def one_line(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "/")[:120]


def gdn_ratios(layers: list[dict]) -> list[str]:
    """Issue 5's targets side by side: each prism row's throughput and peak memory over GDN's at every length."""
    ok = lambda r: "error" not in r  # noqa: E731
    gdn = {r["seq"]: r for r in layers if r["mixer"] == "gdn" and ok(r)}
    lines = []
    for key in dict.fromkeys(r["mixer"] for r in layers if r["mixer"].startswith("prism") and ok(r)):
        cells = []
        for seq, _ in LAYER_SETTINGS:
            r = next((r for r in layers if r["mixer"] == key and r["seq"] == seq and ok(r)), None)
            g = gdn.get(seq)
            cells.append("-" if r is None or g is None else
                         f"{r['tokens_per_s'] / g['tokens_per_s']:.2f}x / "
                         f"{r.get('peak_mem_gib', 0) / max(g.get('peak_mem_gib', 0), 1e-9):.2f}x" +
                         (f" / {g['gpu_ms'] / r['gpu_ms']:.2f}x" if "gpu_ms" in r and "gpu_ms" in g else ""))
        lines.append(f"| {key} / gdn | " + " | ".join(cells) + " |")
    if not lines:
        return []
    return ["Against GDN (throughput / peak memory / throughput on GPU time, the kernels' summed durations; "
            "targets >= 0.9x / <= 1.3x)", "",
            "| ratio | " + " | ".join(f"{s}x{b}" for s, b in LAYER_SETTINGS) + " |",
            "|---|" + "---|" * len(LAYER_SETTINGS), *lines, ""]


def write_tables(out: Path, result: dict) -> str:
    lines = [f"Device: {result['env']['device']}; torch {result['env']['torch']}, triton {result['env']['triton']}, "
             f"fla {result['env']['fla']}", f"Command: `{result['env']['command']}`", ""]
    if result["layers"]:
        lines += ["One layer, d_model 768, fwd+bwd, bf16 autocast (K tokens/s / peak MiB / TFLOP/s)", "",
                  "| mixer | " + " | ".join(f"{s}x{b}" for s, b in LAYER_SETTINGS) + " |",
                  "|---|" + "---|" * len(LAYER_SETTINGS)]
        for key in dict.fromkeys(r["mixer"] for r in result["layers"]):
            cells = []
            for seq, batch in LAYER_SETTINGS:
                r = next((r for r in result["layers"] if r["mixer"] == key and r["seq"] == seq), None)
                cells.append("-" if r is None else one_line(r["error"]) if "error" in r else (f"{r['tokens_per_s'] / 1e3:.0f} / "
                             f"{r.get('peak_mem_gib', 0) * 1024:.0f} / {r['tflops']:.1f}"))
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
        lines += ["", *gdn_ratios(result["layers"])]
    if result["model"]:
        lines += ["Model, fwd+bwd+AdamW step, bf16 autocast", "",
                  "| mixer | params (M) | K tokens/s | peak GiB | MFU | loss first -> last | finite, decreasing |",
                  "|---|---|---|---|---|---|---|"]
        for r in result["model"]:
            if "error" in r:
                lines.append(f"| {r['mixer']} | error: {one_line(r['error'])} |||||")
                continue
            compiled = "" if r.get("compile", "none") == "none" else f" (compiled: {r['compile']})"
            lines.append(f"| {r['mixer']}{compiled} | {r['params_m']:.1f} | {r['tokens_per_s'] / 1e3:.1f} | "
                         f"{r.get('peak_mem_gib', 0):.1f} | {r.get('mfu', 0):.3f} | {r['first_loss']:.3f} -> "
                         f"{r['last_loss']:.3f} | {r['finite']}, {r['decreasing']} |")
    table = "\n".join(lines) + "\n"
    (out / "results.md").write_text(table)
    return table


def plot(out: Path, result: dict) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in dict.fromkeys(r["mixer"] for r in result["layers"]):
        rows = [r for r in result["layers"] if r["mixer"] == key and "error" not in r]
        ax.plot([r["seq"] for r in rows], [r["tokens_per_s"] / 1e6 for r in rows], marker="o", label=key)
    ax.set(xscale="log", xlabel="sequence length (16,384 tokens per step)", ylabel="M tokens/s (fwd+bwd)",
           title=f"One layer, d 768 — {result['env']['device']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "layers.png", dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--mixers", default="attention,prism,prism_chunk,gdn,gla,mamba2,ttt_mlp")
    p.add_argument("--plugins", nargs="+", default=[], metavar="MODULE",
                   help="modules or .py files that register mixers of your own (as model.plugins), for --mixers")
    p.add_argument("--model-mixers", default="attention,prism,gdn,gla,mamba2,ttt_mlp_ckpt")
    p.add_argument("--skip-layers", action="store_true")
    p.add_argument("--skip-model", action="store_true")
    p.add_argument("--text", help="a text file for the model benchmark (bytes are the tokens)")
    p.add_argument("--d-model", type=int, default=768)
    p.add_argument("--model-layers", type=int, default=12)
    p.add_argument("--model-seq", type=int, default=2048)
    p.add_argument("--model-batch", type=int, default=8)
    p.add_argument("--model-steps", type=int, default=50)
    p.add_argument("--model-compile", default="none",
                   choices=["none", *MODES],
                   help="compile the model's backbone (as trainer.compile=true) in this torch.compile mode; "
                        "reduce-overhead and max-autotune also replay each step as CUDA graphs")
    p.add_argument("--vocab", type=int, default=50304)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeat", type=int, default=10, help="layer steps per timed round")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds per layer, alternating between the mixers")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the card (H100 SXM: 989)")
    p.add_argument("--tiny", action="store_true", help="CPU smoke run: tiny sizes, fp32")
    p.add_argument("--merge", nargs="+", help="results.json files of earlier runs to merge into --out")
    p.add_argument("--no-autotune", action="store_true",
                   help="keep each Triton kernel's first config instead of autotuning (fla tunes for minutes cold)")
    args = p.parse_args()
    import_plugins(args.plugins)  # registered for every row of this process
    if args.no_autotune:
        from triton.runtime import autotuner

        autotuner.Autotuner._bench = lambda self, *a, config, **kw: [1.0, 1.0, 1.0]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.merge:
        merged = {"env": None, "layers": [], "model": []}
        for path in args.merge:
            part = json.loads(Path(path).read_text())
            merged["env"] = merged["env"] or dict(part["env"], command="")
            merged["env"]["command"] += ("; " if merged["env"]["command"] else "") + part["env"]["command"]
            merged["layers"] += part["layers"]
            merged["model"] += part["model"]
        (out / "results.json").write_text(json.dumps(merged, indent=1))
        print(write_tables(out, merged))
        if merged["layers"]:
            plot(out, merged)
        return
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    global LAYER_SETTINGS
    if args.tiny:
        LAYER_SETTINGS = [(32, 2), (64, 1)]
        args.d_model, args.model_layers, args.model_seq, args.model_batch = 64, 2, 32, 2
        args.model_steps, args.vocab, args.warmup, args.repeat = min(args.model_steps, 6), 256, 1, 2
        args.rounds = 2
        for key in MIXER_OVERRIDES:  # small heads at d_model 64
            MIXER_OVERRIDES[key] = [o.replace("=128", "=16").replace("=12", "=4").replace("head_dim=64", "head_dim=16")
                                    for o in MIXER_OVERRIDES[key]]
    text = None if args.skip_model else args.text  # only the model rows read it
    if text and not Path(text).is_file():
        sys.exit(f"throughput.py: --text {text}: no such file")  # before the layer rows, not after them
    args.text_bytes = Path(text).read_bytes() if text else bytes(range(256)) * 4096
    result = {"env": environment(device), "layers": [], "model": []}

    def save():
        (out / "results.json").write_text(json.dumps(result, indent=1))

    if not args.skip_layers:
        for seq, batch in LAYER_SETTINGS:
            for row in bench_layers(args.mixers.split(","), seq, batch, args.d_model, device, dtype, args):
                print(time.strftime("%H:%M:%S"), json.dumps(row), flush=True)
                result["layers"].append(row)
            save()
            if device.type == "cuda":
                torch.cuda.empty_cache()
    if not args.skip_model:
        for key in args.model_mixers.split(","):
            try:
                row = bench_model(key, args, device, dtype)
            except Exception as err:  # noqa: BLE001
                traceback.print_exc()
                row = {"mixer": key, "error": f"{type(err).__name__}: {err}"[:200]}
            if device.type == "cuda":
                torch.cuda.empty_cache()
            print(time.strftime("%H:%M:%S"), json.dumps({k: v for k, v in row.items() if k != "losses"}), flush=True)
            result["model"].append(row)
            save()
    print(write_tables(out, result))
    if result["layers"]:
        plot(out, result)


if __name__ == "__main__":
    main()
