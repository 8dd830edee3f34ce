"""Scaling across GPUs: the 12-layer d_model 768 language model per mixer on one GPU, then on N GPUs of the same
machine with DDP and with FSDP (docs/training.md#multi-device). Every run goes through train.py (its
own process; Lightning starts the other ranks) with the same global batch, and so the same examples in every
step (datamodules/loader.py): one GPU takes it as gradient accumulation of the per-GPU batch.

Per run: tokens/s (the median of train.py's perf/tokens_per_s over the logging windows after --warmup steps),
scaling efficiency = tokens/s on N GPUs / (N x tokens/s on one GPU), peak memory per GPU (rank 0's
perf/peak_mem_gib), and the validation loss every --val-every steps against the one-GPU run's (the validation
sums over ranks: the same windows and the same exact mean on any number of GPUs).

    python benchmarks/scaling.py --out OUT --text data/tinyshakespeare.txt        # prism, gdn, attention on 2 GPUs
    python benchmarks/scaling.py --out OUT --text FILE --mixers prism --devices 4 --strategies fsdp
    python benchmarks/scaling.py --tiny --out /tmp/scaling --text FILE            # CPU smoke run: 2 processes, gloo

Text: --text tokenised with a byte-level BPE of --vocab (trained on it, cached under OUT/cache), windows of --seq.
Writes OUT/results.json (rows, every run's curves, environment), OUT/results.md and OUT/loss_curves.png; each
run's folder (config, metrics.csv, summary.json; checkpoints removed) under OUT/runs/.
"""
from __future__ import annotations

import argparse
import csv
import json
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Paper-scale heads at d_model 768 (as benchmarks/throughput.py's model rows), and small ones for --tiny.
MIXER_OVERRIDES = {
    "attention": ["model.mixers.attention.num_heads=12"],
    "prism": ["model.mixers.prism.num_heads=6", "model.mixers.prism.head_dim=128"],
    "gdn": ["model.mixers.gdn.num_heads=6", "model.mixers.gdn.head_dim=128", "model.mixers.gdn.expand_v=1.0"],
}
TINY_OVERRIDES = {
    "attention": ["model.mixers.attention.num_heads=2"],
    "prism": ["model.mixers.prism.num_heads=2", "model.mixers.prism.head_dim=16"],
    "gdn": ["model.mixers.gdn.num_heads=2", "model.mixers.gdn.head_dim=16"],
}


def run_name(mixer: str, strategy: str, devices: int) -> str:
    return f"{mixer}-{strategy}-{devices}"


def train_command(args, mixer: str, strategy: str, devices: int) -> list[str]:
    """train.py's command line for one run: ``devices`` GPUs (processes with --tiny) of ``args.batch`` sequences
    each, with gradient accumulation up to the global batch on fewer (train.py counts validation intervals in
    batches, so those are ``accumulate`` times as many)."""
    accumulate = args.global_batch // (args.batch * devices)
    tiny = ["model.d_model=32", "model.repeat=2", "trainer.accelerator=cpu", "trainer.precision=32-true",
            "data.tokenizer=char"] if args.tiny else ["data.tokenizer=bpe", f"data.vocab_size={args.vocab}"]
    overrides = (TINY_OVERRIDES if args.tiny else MIXER_OVERRIDES).get(mixer, [])
    return [sys.executable, str(ROOT / "train.py"), "experiment=slimpajama_130m", f"mixer={mixer}", *overrides,
            "data.hub=null", f"data.path={Path(args.text).resolve()}", f"data.cache_dir={args.out / 'cache'}",
            f"data.seq_len={args.seq}", f"data.batch_size={args.batch}", "data.max_tokens=null",
            "data.val_fraction=0.1", f"data.val_max_batches={args.val_batches}", f"data.num_workers={args.workers}",
            f"trainer.devices={devices}", f"trainer.strategy={strategy}",
            f"trainer.accumulate_grad_batches={accumulate}",
            f"trainer.max_steps={args.steps}", f"trainer.val_check_interval={args.val_every * accumulate}",
            "trainer.limit_val_batches=1.0", f"trainer.log_every_n_steps={args.log_every}",
            "trainer.ckpt_every_n_steps=null", f"optim.warmup_steps={min(args.warmup, args.steps)}",
            f"logging.out_dir={args.out / 'runs'}", f"logging.name={run_name(mixer, strategy, devices)}",
            "logging.wandb=false", "trainer.enable_progress_bar=false", *tiny, *args.overrides]


def read_run(run_dir: Path, warmup: int) -> dict:
    """tokens/s (median after the warm-up), peak GiB and the validation loss by step, from metrics.csv."""
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    speeds = [float(r["perf/tokens_per_s"]) for r in rows if r.get("perf/tokens_per_s") and int(r["step"]) > warmup]
    peaks = [float(r["perf/peak_mem_gib"]) for r in rows if r.get("perf/peak_mem_gib")]
    val = {int(r["step"]) + 1: float(r["val/loss"]) for r in rows if r.get("val/loss")}  # after that many steps
    return {"tokens_per_s": statistics.median(speeds) if speeds else None, "peak_gib": max(peaks, default=None),
            "val_loss": val}


def measure(args, mixer: str, strategy: str, devices: int) -> dict:
    row = {"mixer": mixer, "strategy": strategy, "devices": devices, "global_batch": args.global_batch}
    command = train_command(args, mixer, strategy, devices)
    run_dir = args.out / "runs" / "slimpajama_130m" / run_name(mixer, strategy, devices)
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run: train.py refuses an existing run name
    started = time.time()
    try:
        proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=args.limit)
    except subprocess.TimeoutExpired:
        return row | {"error": f"not finished in {args.limit} s"}
    row["seconds"] = round(time.time() - started, 1)
    (args.out / "logs").mkdir(exist_ok=True)
    (args.out / "logs" / f"{run_name(mixer, strategy, devices)}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        return row | {"error": lines[-1] if lines else f"exit code {proc.returncode}"}
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # gigabytes per run at full size; not needed here
    return row | read_run(run_dir, args.warmup)


def compare(rows: list[dict]) -> None:
    """Each multi-GPU row against its mixer's one-GPU row: efficiency and the largest validation-loss gap."""
    single = {r["mixer"]: r for r in rows if r["devices"] == 1 and "error" not in r}
    for row in rows:
        base = single.get(row["mixer"])
        if row["devices"] == 1 or base is None or "error" in row:
            continue
        if row["tokens_per_s"] and base["tokens_per_s"]:
            row["efficiency"] = row["tokens_per_s"] / (row["devices"] * base["tokens_per_s"])
        steps = sorted(set(row["val_loss"]) & set(base["val_loss"]))
        if steps:
            row["val_loss_gap"] = max(abs(row["val_loss"][s] - base["val_loss"][s]) for s in steps)


def environment(device: str) -> dict:
    import lightning
    import torch

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip() or None
    except OSError:
        commit = None
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if device == "cuda" else []
    return {"python": platform.python_version(), "torch": torch.__version__, "lightning": lightning.__version__,
            "cuda": torch.version.cuda, "gpus": gpus or [platform.processor() or "cpu"], "commit": commit,
            "command": " ".join(sys.argv)}


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def write_markdown(out: Path, result: dict) -> str:
    env, a = result["env"], result["settings"]
    lines = [
        "# Scaling across GPUs: the 12-layer model, one GPU against DDP and FSDP", "",
        f"- **Device**: {', '.join(env['gpus'])}",
        f"- **Versions**: Python {env['python']}, torch {env['torch']}, lightning {env['lightning']}, "
        f"CUDA {env['cuda']}",
        f"- **Code**: commit {env['commit']}", f"- **Command**: `{env['command']}`", "",
        f"{a['layers']} layers, d_model {a['d_model']}, seq {a['seq']}, global batch {a['global_batch']} sequences "
        f"({a['batch']} per GPU; one GPU accumulates), {a['steps']} steps; tokens/s is the median after step "
        f"{a['warmup']}; efficiency = tokens/s / (GPUs x one GPU's); peak memory is rank 0's; the validation-loss "
        f"gap is the largest difference to the one-GPU run over the validations every {a['val_every']} steps.", "",
        "| mixer | strategy | GPUs | K tokens/s | efficiency | peak GiB per GPU | last val loss | val loss gap |",
        "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"| {r['mixer']} | {r['strategy']} | {r['devices']} | failed: {r['error']} |||||")
            continue
        last = r["val_loss"][max(r["val_loss"])] if r["val_loss"] else None
        speed = r["tokens_per_s"] / 1e3 if r["tokens_per_s"] else None
        lines.append(f"| {r['mixer']} | {r['strategy']} | {r['devices']} | {fmt(speed, '.1f')} | "
                     f"{fmt(r.get('efficiency'), '.2f')} | {fmt(r['peak_gib'], '.1f')} | {fmt(last, '.4f')} | "
                     f"{fmt(r.get('val_loss_gap'), '.4f')} |")
    text = "\n".join(lines) + "\n\n![validation loss](loss_curves.png)\n"
    (out / "results.md").write_text(text)
    return text


def plot(out: Path, rows: list[dict]) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        if r.get("val_loss"):
            steps = sorted(r["val_loss"])
            ax.plot(steps, [r["val_loss"][s] for s in steps], marker="o" if r["devices"] == 1 else "x",
                    linestyle="-" if r["devices"] == 1 else "--", label=f"{r['mixer']} {r['strategy']} x{r['devices']}")
    ax.set(xlabel="optimiser step", ylabel="validation loss", title="Same global batch on 1 and N GPUs")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "loss_curves.png", dpi=120)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--text", required=True, help="the text to train on (data/tinyshakespeare.txt)")
    p.add_argument("--mixers", default="prism,gdn,attention")
    p.add_argument("--strategies", default="ddp,fsdp")
    p.add_argument("--devices", type=int, default=2)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=10, help="steps left out of tokens/s (and the LR warm-up)")
    p.add_argument("--val-every", type=int, default=10)
    p.add_argument("--val-batches", type=int, default=4, help="validation batches (data.val_max_batches)")
    p.add_argument("--log-every", type=int, default=5, help="steps per tokens/s window")
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--batch", type=int, default=8, help="sequences per GPU")
    p.add_argument("--vocab", type=int, default=32768, help="BPE vocabulary (byte-level, trained on --text)")
    p.add_argument("--workers", type=int, default=2, help="data loader workers per rank")
    p.add_argument("--limit", type=int, default=1200, help="seconds per run")
    p.add_argument("--tiny", action="store_true", help="CPU smoke run: width 32, 2 layers, seq 32, char tokens")
    p.add_argument("overrides", nargs="*", help="more train.py overrides, for every run")
    args = p.parse_args(argv)
    if args.tiny:
        args.seq, args.batch, args.steps, args.warmup = 32, 4, min(args.steps, 4), 1
        args.val_every, args.log_every, args.workers = 2, 1, 0
    args.global_batch = args.batch * args.devices
    args.out.mkdir(parents=True, exist_ok=True)
    strategies = [s for s in args.strategies.split(",") if s]
    rows = []
    for mixer in [m for m in args.mixers.split(",") if m]:
        for strategy, devices in [("auto", 1)] + [(s, args.devices) for s in strategies]:
            rows.append(measure(args, mixer, strategy, devices))
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "val_loss"}), flush=True)
    compare(rows)
    settings = {"layers": 2 if args.tiny else 12, "d_model": 32 if args.tiny else 768, "seq": args.seq,
                "batch": args.batch, "global_batch": args.global_batch, "steps": args.steps, "warmup": args.warmup,
                "val_every": args.val_every, "devices": args.devices}
    result = {"env": environment("cpu" if args.tiny else "cuda"), "settings": settings, "rows": rows}
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    print(write_markdown(args.out, result))
    plot(args.out, rows)
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
