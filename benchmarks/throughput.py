"""Throughput and memory of every registered mixer, in one process on one GPU (docs/benchmarks.md).

  layers: one mixer layer, forward+backward, d_model 768, 16,384 tokens per step at seq x batch in
          {2048x8, 4096x4, 8192x2, 16384x1}: wall-clock and GPU time (the kernels' summed durations), tokens/s,
          peak memory, TFLOP/s from the mixer's flops() (forward + backward = 3x its forward count) per second of
          each; and PRISM against GDN.
  model:  the 12-layer d_model 768 language model per mixer, bf16 autocast, AdamW, seq 2048 x batch 8, N steps on
          byte-level text: loss at every step (finite, decreasing), tokens/s, peak memory, MFU from the mixers'
          own flops(). --model-compile MODE[,MODE...] (or an entry KEY:MODE) compiles the backbone as
          trainer.compile does, one row per mixer and mode: eager, compiled, compiled + CUDA graphs. PRISM's rows
          are set against GDN's in the same mode, every TTT-MLP row and the PRISM paper's TTT figure.

    python benchmarks/throughput.py --out runs/bench --text data/tinyshakespeare.txt
    python benchmarks/throughput.py --skip-layers --model-mixers prism,gdn --model-compile none,reduce-overhead \
        --out /tmp/model                                          # eager and CUDA graphs, side by side
    python benchmarks/throughput.py --tiny --out /tmp/bench      # a CPU smoke run of the same code
    python benchmarks/throughput.py --plugins my_mixers.py --mixers my_mixer,gdn --out /tmp/mine  # your own mixer
Writes results.json and the tables (results.md, benchmarks/throughput_tables.py) under --out, and a plot
(layers.png) when matplotlib is there.
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

from benchmarks.throughput_tables import plot, write_tables  # noqa: E402
from benchmarks.timing import kernel_ms, timed  # noqa: E402
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
        row["tflops"] = 3 * row["flops_fwd"] / seconds / 1e12  # forward + backward: 3x the forward's FLOPs
        if device.type == "cuda":
            row["peak_mem_gib"] = step.peak / 2 ** 30
            row["gpu_ms"] = kernel_ms(step, args.repeat)
            row["gpu_tflops"] = 3 * row["flops_fwd"] / row["gpu_ms"] / 1e9
        rows[key] = row
    return [rows[key] for key in keys]


def byte_batches(text: bytes, seq: int, batch: int, steps: int, device):
    data = torch.frombuffer(bytearray(text), dtype=torch.uint8).long()
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        starts = torch.randint(0, data.numel() - seq - 1, (batch,), generator=gen)
        window = torch.stack([data[s:s + seq + 1] for s in starts.tolist()]).to(device)
        yield window[:, :-1], window[:, 1:]


def model_rows(model_mixers: str, model_compile: str) -> list[tuple[str, str]]:
    """The (row key, compile mode) of every model row: each --model-mixers entry in each --model-compile mode, or
    in its own mode when written KEY:MODE (prism:reduce-overhead)."""
    rows = []
    for entry in model_mixers.split(","):
        key, _, mode = entry.partition(":")
        for m in [mode] if mode else model_compile.split(","):
            if m not in ("none", *MODES):
                raise SystemExit(f"throughput.py: compile mode {m!r} (in {entry!r}): choose none or one of "
                                 f"{', '.join(MODES)}")
            rows.append((key, m))
    return rows


def train_and_time(label: str, model: torch.nn.Module, optim_cfg: dict, args, device, dtype,
                   graphs: bool = False) -> dict:
    """The model rows' measurement, for any model whose call model(ids) returns (logits, ...): args.model_steps
    steps of forward, next-byte cross-entropy, backward, clipping and an optimiser step (optim_cfg, as
    lit_modules/optim.py), under bf16 autocast on a GPU. Each step is timed on the host up to its loss's .item(),
    which synchronises; tokens/s is from the median step after the first 5 (compilation, autotuning). graphs: the
    model replays CUDA graphs, so each step is marked as new (lit_modules/compile.py)."""
    opt = configure_optimizers_from(model, optim_cfg, args.model_steps)
    optimizer, schedule = opt["optimizer"], opt["lr_scheduler"]["scheduler"]
    losses, times = [], []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for ids, labels in byte_batches(args.text_bytes, args.model_seq, args.model_batch, args.model_steps, device):
        t0 = time.perf_counter()
        if graphs:  # a new step: the graphs may overwrite the last step's outputs
            torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            logits = model(ids)[0]
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), labels.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        schedule.step()
        losses.append(loss.item())  # .item() synchronises, so the host clock is valid
        times.append(time.perf_counter() - t0)
        if len(losses) == 1 or len(losses) % 10 == 0:  # a run cut off by a time limit still leaves its progress
            print(f"  {label} step {len(losses)}: loss {losses[-1]:.3f}, {times[-1]:.2f} s", flush=True)
    steady = statistics.median(times[min(5, len(times) - 1):])
    row = {"seq": args.model_seq, "batch": args.model_batch,
           "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
           "tokens_per_s": args.model_seq * args.model_batch / steady,
           "first_loss": losses[0], "last_loss": losses[-1], "losses": losses,
           "finite": all(math.isfinite(v) for v in losses),
           "decreasing": statistics.mean(losses[-5:]) < statistics.mean(losses[:5])}
    if device.type == "cuda":
        row["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2 ** 30
    return row


def bench_model(key: str, mode: str, args, device, dtype) -> dict:
    """One model row: the 12-layer language model of a row key, compiled in a mode (none: eager)."""
    extra = [f"model.repeat={args.model_layers}", f"trainer.max_steps={args.model_steps}", "optim.warmup_steps=10"]
    cfg = compose(key, args.d_model, extra)
    torch.manual_seed(0)
    model = LanguageModel(cfg, vocab_size=args.vocab).to(device)
    torch._dynamo.reset()  # each row compiles afresh: no recompilation limit or CUDA graphs left by the last row
    # as trainer.compile does (lit_modules/compile.py): the backbone in place; graphs: the mode replays CUDA graphs
    graphs = compile_in_place(model.backbone, None if mode == "none" else mode)
    row = {"mixer": key, "compile": mode, "layers": args.model_layers,
           **train_and_time(key, model, cfg["optim"], args, device, dtype, graphs)}
    row["tflops"] = model.flops_per_token(args.model_seq) * row["tokens_per_s"] / 1e12
    if device.type == "cuda":
        row["mfu"] = row["tflops"] / args.peak_tflops
    return row


def make_tiny(args) -> None:
    """--tiny: the sizes of a CPU smoke run of the same code (d_model 64, 2 layers, small heads)."""
    global LAYER_SETTINGS
    LAYER_SETTINGS = [(32, 2), (64, 1)]
    args.d_model, args.model_layers, args.model_seq, args.model_batch = 64, 2, 32, 2
    args.model_steps, args.vocab, args.warmup, args.repeat = min(args.model_steps, 6), 256, 1, 2
    args.rounds = 2
    for key in MIXER_OVERRIDES:  # small heads at d_model 64
        MIXER_OVERRIDES[key] = [o.replace("=128", "=16").replace("=12", "=4").replace("head_dim=64", "head_dim=16")
                                for o in MIXER_OVERRIDES[key]]


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


def add_model_shape_args(p: argparse.ArgumentParser, steps: int) -> None:
    """The model rows' shape and data (shared with authors_prism.py, which measures at the same shape)."""
    p.add_argument("--text", help="a text file for the model benchmark (bytes are the tokens); default: synthetic")
    p.add_argument("--d-model", type=int, default=768)
    p.add_argument("--model-layers", type=int, default=12)
    p.add_argument("--model-seq", type=int, default=2048)
    p.add_argument("--model-batch", type=int, default=8)
    p.add_argument("--model-steps", type=int, default=steps)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--mixers", default="attention,prism,prism_chunk,gdn,gla,mamba2,ttt_mlp")
    p.add_argument("--plugins", nargs="+", default=[], metavar="MODULE",
                   help="modules or .py files that register mixers of your own (as model.plugins), for --mixers")
    p.add_argument("--model-mixers", default="attention,prism,gdn,gla,mamba2,ttt_mlp_compile",
                   help="row keys (mixers or MIXER_OVERRIDES' variants), each KEY or KEY:MODE")
    p.add_argument("--skip-layers", action="store_true")
    p.add_argument("--skip-model", action="store_true")
    add_model_shape_args(p, steps=50)
    p.add_argument("--model-compile", default="none", metavar="MODE[,MODE...]",
                   help=f"compile the model's backbone as trainer.compile does, in these modes (none: eager; "
                        f"{', '.join(MODES)}): one row per mixer and mode. reduce-overhead and max-autotune also "
                        f"replay each step as CUDA graphs. A --model-mixers entry KEY:MODE has its own mode")
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
    rows = [] if args.skip_model or args.merge else model_rows(args.model_mixers, args.model_compile)  # checked first
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
    if args.tiny:
        make_tiny(args)
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
        for key, mode in rows:
            try:
                row = bench_model(key, mode, args, device, dtype)
            except Exception as err:  # noqa: BLE001
                traceback.print_exc()
                row = {"mixer": key, "compile": mode, "error": f"{type(err).__name__}: {err}"[:200]}
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
