"""The PRISM authors' language model (github.com/gpr-prism/prism, folder llm/) beside ours at the same shape: training
tokens/s and peak memory, measured as benchmarks/throughput.py's model rows are (its train_and_time), in one process
on one GPU (docs/benchmarks.md).

Their code is imported from the checkout you name, never copied into this repository. Their models need only torch
(their llm/train.py also imports transformers, datasets and pyarrow; this script does not run it). Their model is
their CausalLM of PRISMBlock layers with their "large_130m" settings (short convolution 7, L = 2 solver steps,
dropout 0.1, learned positions) at this script's width, depth and length; their block computes in fp32 (it turns
autocast off inside), while the embedding and output head run under the same bf16 autocast as ours.

    python benchmarks/authors_prism.py --repo /path/to/prism --out /tmp/authors           # 12 x 768, 2048 x 8
    python benchmarks/authors_prism.py --repo /path/to/prism --ours prism:reduce-overhead --out /tmp/authors
    python benchmarks/authors_prism.py --repo /path/to/prism --tiny --out /tmp/authors    # a CPU smoke run
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import throughput  # noqa: E402
from configs import compose_config, config_to_dict  # noqa: E402


def load_authors_models(repo: str | Path) -> ModuleType:
    """The authors' ``models`` package from a checkout of their repository (or its llm/ folder), imported under a
    name of its own so that it cannot clash with any other ``models``."""
    repo = Path(repo)
    package = next((p for p in (repo / "llm" / "models", repo / "models") if (p / "__init__.py").is_file()), None)
    if package is None:
        raise FileNotFoundError(f"--repo {repo}: neither {repo / 'llm/models'} nor {repo / 'models'} is a package "
                                f"(expected a checkout of github.com/gpr-prism/prism)")
    spec = importlib.util.spec_from_file_location("authors_prism_models", package / "__init__.py",
                                                  submodule_search_locations=[str(package)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # their modules import each other relatively (from .common import ...)
    spec.loader.exec_module(module)
    return module


def authors_model_factory(models: ModuleType, *, layers: int, d_model: int, heads: int, seq: int, vocab: int,
                          solver_steps: int = 2) -> Callable[[], torch.nn.Module]:
    """Their PRISM language model at this shape, from their large_130m config (their block needs T == seq)."""
    cfg = dataclasses.replace(models.CONFIGS["large_130m"], vocab_size=vocab, embed_dim=d_model, num_layers=layers,
                              num_heads=heads, seq_len=seq, solver_steps=solver_steps)
    return lambda: models.CausalLM(cfg, models.MODEL_REGISTRY["prism"])


def measure(label: str, make_model: Callable[[], torch.nn.Module], args, device, dtype) -> dict:
    """Train a model from make_model() as throughput.py's model rows train theirs (same steps, batches, optimiser,
    timing): any model whose call model(ids) returns (logits, ...)."""
    torch.manual_seed(0)
    model = make_model().to(device)
    optim = config_to_dict(compose_config(["experiment=slimpajama_130m", "optim.warmup_steps=10",
                                           f"trainer.max_steps={args.model_steps}"]))["optim"]
    return {"model": label, **throughput.train_and_time(label, model, optim, args, device, dtype)}


def ratios(rows: list[dict]) -> list[str]:
    """Ours against theirs: tokens/s (ours over theirs) and peak memory (theirs over ours)."""
    theirs = next((r for r in rows if r["model"] == "authors" and "error" not in r), None)
    lines = []
    for r in rows:
        if r is theirs or theirs is None or "error" in r:
            continue
        line = f"{r['model']} / authors: {r['tokens_per_s'] / theirs['tokens_per_s']:.2f}x the tokens/s"
        if "peak_mem_gib" in r:
            line += f", {theirs['peak_mem_gib'] / r['peak_mem_gib']:.2f}x less peak memory"
        lines.append(line)
    return lines


def table(result: dict) -> str:
    a = result["args"]
    lines = [f"Device: {result['env']['device']}; torch {result['env']['torch']}",
             f"Command: `{result['env']['command']}`", "",
             f"{a['model_layers']} layers, d_model {a['d_model']}, seq {a['model_seq']} x batch {a['model_batch']}, "
             f"{a['model_steps']} steps (forward + backward + AdamW step), bf16 autocast on a GPU", "",
             "| model | params (M) | K tokens/s | peak GiB | loss first -> last |", "|---|---|---|---|---|"]
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"| {r['model']} | error: {' '.join(r['error'].split())[:120]} |||")
            continue
        lines.append(f"| {r['model']} | {r['params_m']:.1f} | {r['tokens_per_s'] / 1e3:.1f} | "
                     f"{r.get('peak_mem_gib', 0):.1f} | {r['first_loss']:.3f} -> {r['last_loss']:.3f} |")
    return "\n".join(lines + [""] + ratios(result["rows"])) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", required=True, help="a checkout of github.com/gpr-prism/prism (or its llm/ folder)")
    p.add_argument("--out", required=True)
    p.add_argument("--ours", default="prism:none", help="our row beside theirs, KEY:MODE as throughput.py's "
                                                        "--model-mixers (none: theirs alone)")
    p.add_argument("--heads", type=int, default=6, help="their num_heads (head dim d_model / heads; ours: 6 x 128)")
    throughput.add_model_shape_args(p, steps=20)
    p.add_argument("--vocab", type=int, default=50304)
    p.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the card, for our MFU")
    p.add_argument("--tiny", action="store_true", help="CPU smoke run: tiny sizes, fp32")
    args = p.parse_args()
    ours = [] if args.ours == "none" else throughput.model_rows(args.ours, "none")  # checked before any work
    try:
        models = load_authors_models(args.repo)
    except (FileNotFoundError, ImportError) as err:
        sys.exit(f"authors_prism.py: {err}")
    if args.tiny:
        throughput.make_tiny(args)
        args.heads = 2
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    args.text_bytes = Path(args.text).read_bytes() if args.text else bytes(range(256)) * 4096
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    make = authors_model_factory(models, layers=args.model_layers, d_model=args.d_model, heads=args.heads,
                                 seq=args.model_seq, vocab=args.vocab)
    result = {"env": throughput.environment(device), "rows": [],
              "args": {k: v for k, v in vars(args).items() if k != "text_bytes"}}
    jobs = [("authors", lambda: measure("authors", make, args, device, dtype))]
    jobs += [(f"{key}:{mode}", lambda key=key, mode=mode: throughput.bench_model(key, mode, args, device, dtype))
             for key, mode in ours]
    for label, job in jobs:
        try:
            row = job()
        except Exception as err:  # noqa: BLE001 - theirs failing (out of memory) must still leave our row
            traceback.print_exc()
            row = {"error": f"{type(err).__name__}: {err}"[:200]}
        row["model"] = label
        result["rows"].append(row)
        print(time.strftime("%H:%M:%S"), json.dumps({k: v for k, v in row.items() if k != "losses"}), flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        (out / "results.json").write_text(json.dumps(result, indent=1))
    markdown = table(result)
    (out / "results.md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
