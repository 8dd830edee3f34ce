"""The PRISM authors' own probing script (github.com/gpr-prism/prism, rec/test_syntheticdata.py) run task by task and
seed by seed: their task generators and their models, with their protocol, so that a number in the paper's probing
table (§5.5, Table 4) can be checked against their code where ours differs from it (docs/probing.md).

Their file is imported from the checkout you name, never copied into this repository; it needs torch, numpy and
tqdm. Their ``train_and_eval`` loops over fixed task and model lists; this script runs the same protocol for the
tasks, models and seeds you choose: vocabulary 32, 2 layers, one head, width 16 (128 for mqar, poly_recall and
variable_tracking), sequence 128 (64 for those three), batch 32, AdamW lr 1e-3 with weight decay 1e-4, gradient
clipping 5.0, cross-entropy on the labelled positions, 10k steps, accuracy on 8,000 fresh examples. Seed s seeds
numpy's global generator with 42 + s before the training and the test set are made, as their script does with 42
(so seed 0 gives their first model the data their script gives it), and torch's with s (their script leaves the
initialisation unseeded).

    python benchmarks/authors_probes.py --repo /path/to/prism --tasks parity_check local_xor --seeds 0 1 --out OUT
    python benchmarks/authors_probes.py --repo /path/to/prism --models Transformer LA --steps 50 --test-size 256
    python benchmarks/authors_probes.py --repo /path/to/prism --tasks mqar --models LA --fast-la --seeds 0 1 2

Their LA materialises the running sum of key-value outer products as a [batch, T, D, D] tensor (over 3 s a step on
a 2-core CPU at width 128). ``--fast-la`` computes the same sum as the causally masked product ((q k^T) ⊙ tril) v,
about 20x faster there (20 steps with one thread: 3 s against 61 s): their module and parameters, the same numbers
up to rounding, checked against their forward in fp64 before training (the run stops if the two differ).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

TASKS = ["mqar", "poly_recall", "variable_tracking", "parity_check", "modulo_add", "palindrome", "mux_logic",
         "local_xor", "silent_gate"]
MEMORY_TASKS = {"mqar", "poly_recall", "variable_tracking"}  # their width 128 and sequence 64


def load_authors_probes(repo: str | Path) -> ModuleType:
    """The authors' probing module from a checkout of their repository (or its rec/ folder)."""
    repo = Path(repo)
    path = next((p for p in (repo / "rec" / "test_syntheticdata.py", repo / "test_syntheticdata.py") if p.is_file()),
                None)
    if path is None:
        raise FileNotFoundError(f"--repo {repo}: neither rec/test_syntheticdata.py nor test_syntheticdata.py is "
                                f"there; clone github.com/gpr-prism/prism and name its folder")
    spec = importlib.util.spec_from_file_location("authors_test_syntheticdata", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def use_masked_linear_attention(authors: ModuleType) -> float:
    """Replace their LinearAttnMixer's forward by the same unnormalised causal linear attention computed as
    ((q k^T) ⊙ tril) v, after checking the two in fp64 on a random input; returns the largest relative difference."""
    mixer_cls = authors.LinearAttnMixer
    theirs = mixer_cls.forward

    def masked(self, x):
        x = nn.functional.silu(self.conv(x))
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q, k = (nn.functional.elu(q) + 1.0) * self.scale, nn.functional.elu(k) + 1.0
        causal = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool, device=x.device).tril()
        return self.out((q @ k.transpose(-2, -1)).masked_fill(~causal, 0.0) @ v)

    generator = torch.Generator().manual_seed(0)
    probe = mixer_cls(32).double()
    x = torch.randn(2, 24, 32, dtype=torch.float64, generator=generator)
    with torch.no_grad():
        ref, ours = theirs(probe, x), masked(probe, x)
    rel = ((ref - ours).abs().max() / ref.abs().max()).item()
    if not rel < 1e-10:
        raise RuntimeError(f"--fast-la: the masked form differs from their LinearAttnMixer by {rel:.2e} (relative, "
                           f"fp64); their module has changed, run without --fast-la")
    mixer_cls.forward = masked
    return rel


def run_one(authors: ModuleType, task: str, model_name: str, seed: int, steps: int, test_size: int,
            device: torch.device) -> dict:
    vocab, batch = 32, 32
    seq_len, dim = (64, 128) if task in MEMORY_TASKS else (128, 16)
    np.random.seed(42 + seed)
    torch.manual_seed(seed)
    train = authors.ComprehensiveTaskGenerator(task, steps * batch, vocab_size=vocab, seq_len=seq_len)
    test = authors.ComprehensiveTaskGenerator(task, test_size, vocab_size=vocab, seq_len=seq_len)
    model = authors.UniversalModel(model_name, vocab, dim, 2, 1).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    criterion = nn.CrossEntropyLoss(ignore_index=-100)
    t0 = time.perf_counter()
    model.train()
    for bx, by in DataLoader(train, batch):  # steps * batch examples: one pass is the whole training
        bx, by = bx.to(device), by.to(device)
        optimizer.zero_grad()
        loss = criterion(model(bx).view(-1, vocab), by.view(-1))
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
    model.eval()
    correct = total = 0
    nll = 0.0
    with torch.no_grad():
        for bx, by in DataLoader(test, batch):
            bx, by = bx.to(device), by.to(device)
            logits = model(bx)
            keep = by != -100
            correct += (logits.argmax(-1)[keep] == by[keep]).sum().item()
            total += keep.sum().item()
            nll += nn.functional.cross_entropy(logits[keep], by[keep], reduction="sum").item()
    return {"task": task, "model": model_name, "seed": seed, "steps": steps, "test_size": test_size,
            "acc": correct / max(total, 1), "ppl": math.exp(nll / max(total, 1)), "final_train_loss": loss.item(),
            "seconds": time.perf_counter() - t0}


def table(rows: list[dict]) -> str:
    models = list(dict.fromkeys(r["model"] for r in rows))
    text = "| task | " + " | ".join(models) + " |\n|---|" + "---|" * len(models) + "\n"
    for task in dict.fromkeys(r["task"] for r in rows):
        cells = []
        for m in models:
            accs = [r["acc"] for r in rows if r["task"] == task and r["model"] == m]
            std = f" ± {statistics.stdev(accs):.3f}" if len(accs) > 1 else ""
            cells.append(f"{statistics.mean(accs):.3f}{std} ({len(accs)})" if accs else "")
        text += f"| {task} | " + " | ".join(cells) + " |\n"
    return text + "\nAccuracy on the test set, mean ± std over seeds (number of seeds).\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", required=True, help="a checkout of github.com/gpr-prism/prism")
    p.add_argument("--tasks", nargs="+", default=TASKS, choices=TASKS)
    p.add_argument("--models", nargs="+", default=["Transformer"],
                   help="their UniversalModel types: Transformer, LA, PRISM, GDN, Mamba2, MoM")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--test-size", type=int, default=8_000)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--fast-la", action="store_true",
                   help="their LA's causal sum as a masked product, checked equal to theirs first (see above)")
    p.add_argument("--out", default=None, help="folder for results.json and results.md")
    args = p.parse_args(argv)
    try:
        authors = load_authors_probes(args.repo)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.fast_la:
        try:
            rel = use_masked_linear_attention(authors)
        except RuntimeError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"--fast-la: their LA forward as a masked product; relative difference to theirs in fp64: {rel:.1e}",
              flush=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(args.out) if args.out else None
    rows = []
    for task in args.tasks:
        for model_name in args.models:
            for seed in args.seeds:
                row = run_one(authors, task, model_name, seed, args.steps, args.test_size, device)
                rows.append(row)
                print(f"{task:18s} {model_name:12s} seed {seed}: acc {row['acc']:.4f} ppl {row['ppl']:.3f} "
                      f"({row['seconds']:.0f}s)", flush=True)
                if out:  # after every run: an interrupted sweep keeps what it measured
                    out.mkdir(parents=True, exist_ok=True)
                    meta = {"command": "python " + " ".join(sys.argv), "device": str(device), "fast_la": args.fast_la,
                            "torch": torch.__version__, "rows": rows}
                    (out / "results.json").write_text(json.dumps(meta, indent=1))
                    (out / "results.md").write_text(table(rows))
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
