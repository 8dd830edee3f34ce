"""Run one experiment across mixer patterns (x seeds x learning rates), then tabulate and plot the local run logs.

    python compare.py experiment=mqar_sweep_cpu --patterns attention prism prism_l1 gdn gla mamba2 ttt_mlp \\
        --seeds 0 1 --lrs 1e-3 3e-3 -- trainer.max_steps=300
    python compare.py experiment=prism_probes --vary data.task=parity,mux --patterns '[attention,attention]' \\
        'prism_l1:[prism,prism] model.mixers.prism.steps=1'
    python compare.py --from-runs runs/compare/mqar_sweep_cpu-20250101-120000   # only re-make table and plots

A pattern is one shell word: ``[LABEL:]SPEC [key=value ...]``. SPEC is a layer list ``[a,b,...]`` (the whole
stack: model.repeat is set to 1) or the name of a mixer config (configs/mixer/NAME.yaml, applied as mixer=NAME,
whose depth follows the experiment's model.repeat); the key=value overrides apply to that pattern only. The label
names the pattern in tables, plots, run names and W&B tags (default: the mixer name, or the layers joined by -).

Config overrides (``experiment=...``, ``key=value``) go before the options or after ``--``; they apply to every run.
Runs go through train.run, one after another (or --jobs N at once, each in its own process), into
<out>/runs/<experiment>/<label>.lr<lr>.s<seed>-<group hash>, each
logged to W&B (when logging.wandb) in one group (--group, default the output folder's name) with tags
``compare``, ``pattern:<label>``, ``seed:<s>``, ``lr:<lr>`` (and ``<vary key>:<value>``). A finished run (its
summary.json exists) is not run again, so re-running the same command with the same --out resumes a sweep; an
interrupted run resumes from its last checkpoint.

Outputs in <out>: runs.csv (every run), summary.csv and summary.md (per pattern, and per --vary value: the best
learning rate by the mean of --metric over seeds, the metric's mean and standard deviation over seeds at that
rate, per-slice accuracies, parameters and the recurrent state size from backbone.state_size at the evaluation
sequence length (the longest validation sequence)), acc_vs_state.png, acc_by_slice.png, loss_curves.png and,
with --vary, metric_by_setting.png. Everything is read back from the run folders (config.yaml, summary.json,
metrics.csv, checkpoints), so --from-runs gives the same outputs without a W&B server.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import re
import statistics
import sys
import traceback
from collections import defaultdict
from datetime import datetime
from pathlib import Path

from configs import ConfigError, compose_config

USAGE = __doc__


class CompareError(ValueError):
    """A problem with the command line, reported without a traceback."""


# ---- patterns and the run grid --------------------------------------------------------------------------------
class Pattern:
    def __init__(self, text: str):
        words = text.split()
        if not words:
            raise CompareError("--patterns: an empty pattern")
        head, self.overrides = words[0], words[1:]
        label = None
        if ":" in head and not head.startswith("["):
            label, head = head.split(":", 1)
        for word in self.overrides:
            if "=" not in word:
                raise CompareError(f"--patterns {text!r}: {word!r} is not a key=value override")
        if head.startswith("["):
            if not head.endswith("]"):
                raise CompareError(f"--patterns {text!r}: a layer list must look like [a,b,...] (one shell word)")
            self.layers = [n.strip() for n in head[1:-1].split(",") if n.strip()]
            if not self.layers:
                raise CompareError(f"--patterns {text!r}: the layer list is empty")
            self.argv = [f"model.layers=[{','.join(self.layers)}]", "model.repeat=1"]
            default = self.layers[0] if len(set(self.layers)) == 1 else "-".join(self.layers)
        elif "=" in head:
            raise CompareError(f"--patterns {text!r}: looks like a config override; put overrides before the "
                               f"options or after --, and patterns as [a,b] or a mixer config name")
        else:
            self.layers = None
            self.argv = [f"mixer={head}"]
            default = head
        if label is None and self.overrides:
            default += "(" + ",".join(o.rsplit(".", 1)[-1] for o in self.overrides) + ")"
        self.label = label or default
        self.text = text
        self.argv += self.overrides


def split_values(text: str) -> list[str]:
    """'a,b,[1,2]' -> ['a', 'b', '[1,2]'] (commas inside brackets do not split)."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "[{("
        depth -= ch in "]})"
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [v.strip() for v in out if v.strip()]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+=-]+", "_", text).strip("_") or "x"


def run_name(label: str, lr: float, seed: int, setting: str | None, group: str) -> str:
    tag = hashlib.sha1(group.encode()).hexdigest()[:6]  # W&B run ids must be unique in the project
    prefix = f"{slug(setting)}." if setting is not None else ""
    return f"{prefix}{slug(label)}.lr{lr:g}.s{seed}-{tag}"


def finish_wandb(failed: bool = False) -> None:
    """Lightning's WandbLogger reuses a W&B run still open in the process: close it between runs."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish(exit_code=1 if failed else 0)


def plan_runs(args, base_argv: list[str], out: Path, group: str) -> list[dict]:
    """Compose (and so validate) every run's config before the first one starts."""
    patterns = [Pattern(p) for p in args.patterns]
    labels = [p.label for p in patterns]
    if len(set(labels)) != len(labels):
        dup = sorted({l for l in labels if labels.count(l) > 1})
        raise CompareError(f"--patterns: several patterns are labelled {', '.join(dup)}; name them LABEL:SPEC")
    vary_key, vary_values = None, [None]
    if args.vary:
        if "=" not in args.vary:
            raise CompareError(f"--vary {args.vary!r}: expected KEY=V1,V2,...")
        vary_key, values = args.vary.split("=", 1)
        vary_values = split_values(values)
    plan = []
    for setting in vary_values:
        for pattern in patterns:
            argv = base_argv + ([f"{vary_key}={setting}"] if vary_key else []) + pattern.argv
            try:
                cfg0 = compose_config(argv)
            except ConfigError as err:
                raise CompareError(f"pattern {pattern.text!r}" + (f", {vary_key}={setting}" if vary_key else "")
                                   + f": {err}") from None
            for lr in (args.lrs or [float(cfg0.optim.lr)]):
                for seed in (args.seeds if args.seeds is not None else [int(cfg0.seed)]):
                    cfg = compose_config(argv)
                    cfg.seed, cfg.optim.lr = int(seed), float(lr)
                    name = run_name(pattern.label, lr, seed, setting, group)
                    cfg.logging.out_dir, cfg.logging.name, cfg.logging.group = str(out / "runs"), name, group
                    tags = ["compare", f"pattern:{pattern.label}", f"seed:{seed}", f"lr:{lr:g}"]
                    if vary_key:
                        tags.append(f"{vary_key}:{setting}")
                    cfg.logging.tags = list(dict.fromkeys(list(cfg.logging.tags) + [t[:64] for t in tags]))
                    plan.append({"cfg": cfg, "label": pattern.label, "pattern": pattern.text, "seed": int(seed),
                                 "lr": float(lr), "vary_key": vary_key, "setting": setting, "group": group,
                                 "run_dir": out / "runs" / cfg.experiment / name})
    return plan


def run_one(i: int, n: int, item: dict, threads: int | None = None) -> bool:
    """Train one planned run (resuming from its last checkpoint if it has one); True if it failed."""
    from train import run

    if threads:
        import torch

        torch.set_num_threads(threads)
    run_dir: Path = item["run_dir"]
    head = f"[{i}/{n}] {run_dir.name}"
    cfg = item["cfg"]
    if (run_dir / "checkpoints" / "last.ckpt").is_file():
        cfg.ckpt_path = "last"
    record = {k: item[k] for k in ("label", "pattern", "seed", "lr", "vary_key", "setting", "group")}
    record["index"] = i  # tables list patterns and settings in the order of the command line
    print(f"{head}: training", flush=True)
    try:
        metrics = run(cfg)
    except Exception:  # noqa: BLE001 - one failed run must not lose the rest of the sweep
        finish_wandb(failed=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "compare.json").write_text(json.dumps({**record, "status": "failed",
                                                           "error": traceback.format_exc()[-4000:]}, indent=2))
        print(f"{head}: FAILED\n{traceback.format_exc()}", file=sys.stderr, flush=True)
        return True
    finish_wandb()
    (run_dir / "compare.json").write_text(json.dumps({**record, "status": "done"}, indent=2))
    shown = " ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())
                     if k.startswith("val/") and "@" not in k and isinstance(v, float))
    print(f"{head}: {shown} steps={metrics.get('step')} {metrics.get('seconds')}s", flush=True)
    return False


def threads_per_job(jobs: int, threads: int | None) -> int | None:
    """torch CPU threads per run: as given, else the cores shared out when several runs go at once (as torchrun
    does: each process would otherwise start a thread per core, and N processes would oversubscribe the cores)."""
    if threads or jobs <= 1:
        return threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // jobs)


def execute(plan: list[dict], jobs: int = 1, threads: int | None = None) -> int:
    """Run the plan's unfinished runs, ``jobs`` at a time: jobs > 1 gives each run a fresh process (tiny models
    leave a GPU, or the cores, mostly idle one at a time). Returns the number of failed runs."""
    todo = []
    for i, item in enumerate(plan, 1):
        if (item["run_dir"] / "summary.json").is_file():
            print(f"[{i}/{len(plan)}] {item['run_dir'].name}: done before, kept", flush=True)
        else:
            todo.append((i, item))
    if jobs <= 1:
        return sum(run_one(i, len(plan), item, threads) for i, item in todo)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn: no CUDA or W&B state inherited from this process; one task per process: each run starts clean
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), max_tasks_per_child=1) as pool:
        futures = [pool.submit(run_one, i, len(plan), item, threads) for i, item in todo]
        return sum(f.result() for f in futures)


# ---- reading runs back ----------------------------------------------------------------------------------------
def eval_seq_len(data: dict) -> int | None:
    """The longest sequence the model is evaluated on (state sizes of attention are taken there)."""
    if data.get("val_settings"):
        return max(int(s[0]) for s in data["val_settings"])
    for key in ("seq_len", "max_len", "maxlen", "block_size"):
        if data.get(key):
            return int(data[key])
    return None


def model_sizes(cfg: dict, run_dir: Path) -> tuple[int | None, int | None, str]:
    """(state size, evaluation length, layer stack) of a run, from its config."""
    from omegaconf import OmegaConf

    T, state, layers = eval_seq_len(cfg.get("data", {})), None, ""
    try:
        from lit_modules.backbone import build_backbone, expand_layers
        from mixers.registry import import_plugins

        model_cfg = OmegaConf.create(cfg["model"])
        import_plugins(list(model_cfg.plugins))
        layers = ",".join(expand_layers(model_cfg))
        state = int(build_backbone(model_cfg).state_size(T))
    except Exception as err:  # noqa: BLE001 - a table with a gap beats no table
        print(f"warning: {run_dir}: no state size ({err})", file=sys.stderr)
    return state, T, layers


def read_curves(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    curves: dict[str, list[tuple[int, float]]] = defaultdict(list)
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return curves
    with path.open() as f:
        for row in csv.DictReader(f):
            step = row.get("step")
            if not step:
                continue
            for key in ("train/loss", "val/loss"):
                if row.get(key):
                    curves[key].append((int(float(step)), float(row[key])))
    return curves


def collect_runs(root: Path) -> list[dict]:
    """Every run folder under root (one with a config.yaml), with its record, metrics and model sizes."""
    import yaml

    runs = []
    for config_path in sorted(root.rglob("config.yaml")):
        run_dir = config_path.parent
        if "wandb" in run_dir.parts or not ((run_dir / "summary.json").is_file()
                                           or (run_dir / "compare.json").is_file()):
            continue
        cfg = yaml.safe_load(config_path.read_text())
        record = json.loads((run_dir / "compare.json").read_text()) if (run_dir / "compare.json").is_file() else {}
        metrics = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").is_file() else {}
        state, T, layers = model_sizes(cfg, run_dir)
        label = record.get("label")
        if not label:
            names = layers.split(",") if layers else []
            label = names[0] if names and len(set(names)) == 1 else "-".join(names) or run_dir.name
        runs.append({
            "run_dir": str(run_dir), "name": run_dir.name, "experiment": cfg.get("experiment"),
            "label": label, "setting": record.get("setting"), "vary_key": record.get("vary_key"),
            "seed": int(cfg.get("seed", 0)), "lr": float(cfg["optim"]["lr"]),
            "status": "done" if metrics else record.get("status", "incomplete"),
            "layers": layers, "params": metrics.get("params"), "state_size": state, "eval_seq_len": T,
            "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))},
            "index": record.get("index", 10 ** 9),
        })
    return sorted(runs, key=lambda r: (r["index"], r["run_dir"]))


# ---- tables ---------------------------------------------------------------------------------------------------
def slice_keys(runs: list[dict], metric: str) -> list[str]:
    keys = {k for r in runs for k in r["metrics"] if k.startswith(metric + "@")}

    def order(key):
        tail = key.split("@", 1)[1]
        try:
            return (0, float(tail), tail)
        except ValueError:
            return (1, 0.0, tail)
    return sorted(keys, key=order)


def mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(runs: list[dict], metric: str, mode: str, columns: list[str] = ()) -> list[dict]:
    """One row per (setting, pattern): the best learning rate by the mean metric over seeds, and its numbers
    (mean ± std over seeds of the metric and of every extra column, e.g. test metrics)."""
    done = [r for r in runs if r["status"] == "done"]
    slices = slice_keys(done, metric)
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in done:
        groups[(r["setting"], r["label"])].append(r)
    order = list(dict.fromkeys((r["setting"], r["label"]) for r in runs))
    rows = []
    for key in order:
        members = groups.get(key)
        if not members:
            continue
        by_lr: dict[float, list[dict]] = defaultdict(list)
        for r in members:
            by_lr[r["lr"]].append(r)
        lr_means = {lr: mean_std([r["metrics"].get(metric, math.nan) for r in rs])[0] for lr, rs in by_lr.items()}
        finite = {lr: m for lr, m in lr_means.items() if not math.isnan(m)}
        pick = max if mode == "max" else min
        best = pick(finite, key=finite.get) if finite else sorted(by_lr)[0]
        chosen = by_lr[best]
        mean, std = mean_std([r["metrics"].get(metric, math.nan) for r in chosen])
        first = chosen[0]
        row = {"setting": key[0], "pattern": key[1], "layers": first["layers"], "state_size": first["state_size"],
               "eval_seq_len": first["eval_seq_len"], "params": first["params"], "best_lr": best,
               "lr_sweep": " ".join(f"{lr:g}:{m:.3f}" for lr, m in sorted(lr_means.items())),
               "seeds": len(chosen), "metric": metric, "mean": mean, "std": std,
               "steps": max(int(r["metrics"].get("step", 0)) for r in chosen),
               "minutes": statistics.fmean(r["metrics"].get("seconds", 0.0) for r in chosen) / 60,
               "runs": [r["run_dir"] for r in chosen]}
        for s in slices:
            row[s] = mean_std([r["metrics"].get(s, math.nan) for r in chosen])[0]
        for c in columns:
            row[c], row[c + " std"] = mean_std([r["metrics"].get(c, math.nan) for r in chosen])
        rows.append(row)
    return rows


def fmt_count(n) -> str:
    if n is None:
        return "?"
    if n >= 1e6:
        return f"{n / 1e6:.2f}M"
    if n >= 1e4:
        return f"{n / 1e3:.1f}k"
    return str(int(n))


def fmt_acc(mean: float, std: float | None = None) -> str:
    if mean is None or math.isnan(mean):
        return "-"
    return f"{mean:.3f}" if std is None else f"{mean:.3f} ± {std:.3f}"


def markdown(rows: list[dict], runs: list[dict], metric: str, vary_key: str | None,
             columns: list[str] = ()) -> str:
    slices = [k for k in slice_keys([r for r in runs if r["status"] == "done"], metric)]
    head = (["setting"] if vary_key else []) + ["pattern", "layers", "state size", "params", "best lr",
                                                f"{metric} (mean ± std)", "seeds"] + slices + list(columns)
    head += ["steps", "min/run"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        state = f"{r['state_size']:,}" if r["state_size"] is not None else "?"
        if r["state_size"] is not None and r["eval_seq_len"]:
            state += f" (T={r['eval_seq_len']})" if "attention" in r["layers"] else ""
        cells = ([str(r["setting"])] if vary_key else []) + [
            r["pattern"], r["layers"], state, fmt_count(r["params"]), f"{r['best_lr']:g}",
            fmt_acc(r["mean"], r["std"] if r["seeds"] > 1 else None), str(r["seeds"])]
        cells += [fmt_acc(r.get(s, math.nan)) for s in slices]
        cells += [fmt_acc(r.get(c, math.nan), r[c + " std"] if r["seeds"] > 1 else None) for c in columns]
        cells += [str(r["steps"]), f"{r['minutes']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    if vary_key and rows:
        patterns = list(dict.fromkeys(r["pattern"] for r in rows))
        settings = list(dict.fromkeys(r["setting"] for r in rows))
        cell = {(r["setting"], r["pattern"]): fmt_acc(r["mean"], r["std"] if r["seeds"] > 1 else None) for r in rows}
        text += f"\n{metric} at the best lr, by {vary_key}:\n\n"
        text += "| " + " | ".join([vary_key] + patterns) + " |\n|" + "---|" * (len(patterns) + 1) + "\n"
        for s in settings:
            text += "| " + " | ".join([str(s)] + [cell.get((s, p), "-") for p in patterns]) + " |\n"
    lrs = {r["lr_sweep"] for r in rows}
    if any(" " in s for s in lrs):
        text += f"\nlr sweep ({metric} mean over seeds per lr):\n\n"
        for r in rows:
            text += f"- {(str(r['setting']) + ' / ') if vary_key else ''}{r['pattern']}: {r['lr_sweep']}\n"
    failed = [r for r in runs if r["status"] != "done"]
    if failed:
        text += "\nRuns without results: " + ", ".join(f"{r['name']} ({r['status']})" for r in failed) + "\n"
    return text


def write_csv(path: Path, rows: list[dict]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (";".join(v) if isinstance(v, list) else v) for k, v in r.items()})


# ---- plots ----------------------------------------------------------------------------------------------------
def _legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def plots(out: Path, rows: list[dict], runs: list[dict], metric: str, vary_key: str | None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    patterns = list(dict.fromkeys(r["pattern"] for r in rows))
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    colors = {p: plt.get_cmap("tab10")(i % 10) for i, p in enumerate(patterns)}
    markers = "osD^v<>pP*X"

    # accuracy against state size
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for p in patterns:
        pts = sorted((r["state_size"], r["mean"], r["std"], r["setting"]) for r in rows
                     if r["pattern"] == p and r["state_size"] is not None and not math.isnan(r["mean"]))
        if not pts:
            continue
        xs, ys, es = [t[0] for t in pts], [t[1] for t in pts], [t[2] for t in pts]
        varies = len(set(xs)) > 1
        ax.errorbar(xs, ys, yerr=es, color=colors[p], marker="o", linestyle="-" if varies else "none",
                    capsize=3, label=p)
        if vary_key and len(settings) > 1:
            for x, y, _, s in pts:
                ax.annotate(str(s), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("state size (numbers per sequence; attention: KV cache at the eval length)", fontsize=8)
    ax.set_ylabel(metric)
    ax.set_title("accuracy against state size (best lr, mean ± std over seeds)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    written.append(out / "acc_vs_state.png")
    fig.savefig(written[-1], dpi=120)
    plt.close(fig)

    panels = settings if len(settings) > 1 else [settings[0] if settings else None]
    ncol = min(3, len(panels))
    nrow = -(-len(panels) // ncol)

    # accuracy by difficulty slice
    slices = slice_keys([r for r in runs if r["status"] == "done"], metric)
    if slices:
        fig, axes = plt.subplots(nrow, ncol, figsize=(5 * ncol, 3.6 * nrow), squeeze=False)
        for ax, s in zip(axes.flat, panels):
            for p in patterns:
                row = next((r for r in rows if r["pattern"] == p and r["setting"] == s), None)
                if row is None:
                    continue
                keys = [k for k in slices if not math.isnan(row.get(k, math.nan))]
                ax.plot([k.split("@", 1)[1] for k in keys], [row[k] for k in keys], marker="o", color=colors[p],
                        label=p)
            ax.set_xlabel("slice (difficulty, e.g. number of key-value pairs)")
            ax.set_ylabel(metric)
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3)
            if s is not None:
                ax.set_title(f"{vary_key}={s}", fontsize=9)
        for ax in list(axes.flat)[len(panels):]:
            ax.axis("off")
        _legend(axes.flat[0])
        fig.tight_layout()
        written.append(out / "acc_by_slice.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)

    # loss curves of the best-lr runs
    fig, axes = plt.subplots(nrow, ncol, figsize=(5 * ncol, 3.6 * nrow), squeeze=False)
    for ax, s in zip(axes.flat, panels):
        lows, highs = [], []
        for p in patterns:
            row = next((r for r in rows if r["pattern"] == p and r["setting"] == s), None)
            if row is None:
                continue
            labelled = False
            for run_dir in row["runs"]:
                curves = read_curves(Path(run_dir))
                for key, style in (("train/loss", dict(alpha=0.8, linewidth=1)),
                                   ("val/loss", dict(marker="o", linestyle="--", markersize=3, linewidth=0.8))):
                    if curves.get(key):
                        steps, losses = zip(*curves[key])
                        ax.plot(steps, losses, color=colors[p], label=None if labelled else p, **style)
                        labelled = True
                        lows.append(min(losses))
                        highs.append(max(losses))
        ax.set_xlabel("step")
        ax.set_ylabel("loss (train: line, val: dashed)")
        if lows and min(lows) > 0 and max(highs) / min(lows) > 5:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        if s is not None:
            ax.set_title(f"{vary_key}={s}", fontsize=9)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    _legend(axes.flat[0])
    fig.tight_layout()
    written.append(out / "loss_curves.png")
    fig.savefig(written[-1], dpi=120)
    plt.close(fig)

    # metric by setting (grouped bars)
    if vary_key and len(settings) > 1:
        fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(settings) * max(1, len(patterns)) / 3), 4))
        width = 0.8 / max(1, len(patterns))
        for i, p in enumerate(patterns):
            vals = [next((r for r in rows if r["pattern"] == p and r["setting"] == s), None) for s in settings]
            xs = [j + i * width for j in range(len(settings))]
            # a cell not run (or failed) is left empty: a bar at 0 would read as a measured accuracy of 0
            ax.bar(xs, [v["mean"] if v else math.nan for v in vals], width,
                   yerr=[v["std"] if v else math.nan for v in vals], color=colors[p], label=p, capsize=2)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(settings))])
        ax.set_xticklabels([str(s) for s in settings], rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(metric)
        ax.set_ylim(0, 1.05)
        ax.set_xlim(-width / 2 - 0.1, len(settings) - 0.1 - width / 2)  # all groups, even with empty cells
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.grid(alpha=0.3, axis="y")
        fig.tight_layout()
        written.append(out / "metric_by_setting.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)
    return written


def report(root: Path, out: Path, metric: str, mode: str, columns: list[str] = ()) -> tuple[list[dict], str]:
    runs = collect_runs(root)
    if not runs:
        raise CompareError(f"no runs (folders with config.yaml and summary.json) under {root}")
    vary_keys = {r["vary_key"] for r in runs if r["vary_key"]}
    vary_key = next(iter(vary_keys)) if len(vary_keys) == 1 else ("setting" if vary_keys else None)
    rows = summarise(runs, metric, mode, columns)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "runs.csv", [{k: v for k, v in r.items() if k not in ("metrics", "index")} | r["metrics"]
                                 for r in runs])
    write_csv(out / "summary.csv", rows)
    text = markdown(rows, runs, metric, vary_key, columns)
    (out / "summary.md").write_text(text)
    written = plots(out, rows, runs, metric, vary_key) if rows else []
    print(text)
    print("wrote " + ", ".join(str(p) for p in [out / "summary.md", out / "summary.csv", out / "runs.csv", *written]))
    return rows, text


# ---- command line ---------------------------------------------------------------------------------------------
def parse_args(argv: list[str]):
    if "--" in argv:
        cut = argv.index("--")
        head, tail = argv[:cut], argv[cut + 1:]
    else:
        head, tail = argv, []
    parser = argparse.ArgumentParser(prog="compare.py", description=USAGE,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patterns", nargs="+", default=[], help="mixer patterns (see above)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="seeds (default: the config's seed)")
    parser.add_argument("--lrs", nargs="+", type=float, default=None, help="learning rates; the best per pattern "
                        "is chosen by the mean of --metric over seeds (default: the config's optim.lr)")
    parser.add_argument("--vary", default=None, help="KEY=V1,V2,...: one more axis, e.g. data.task=parity,mux")
    parser.add_argument("--metric", default="val/acc", help="validation metric that picks the lr (default val/acc)")
    parser.add_argument("--mode", choices=("max", "min"), default="max")
    parser.add_argument("--columns", nargs="+", default=[], metavar="METRIC", help="more metrics to report, mean "
                        "± std over seeds at the chosen lr (e.g. test/hr@10 test/ndcg@10 test/mrr)")
    parser.add_argument("--out", default=None, help="output folder (default runs/compare/<experiment>-<time>)")
    parser.add_argument("--group", default=None, help="W&B group (default: the output folder's name)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads per run (tiny models: 1; "
                        "default: torch's own with --jobs 1, else the cores divided by --jobs)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, each in its own process (default 1: "
                        "one after another in this process)")
    parser.add_argument("--from-runs", default=None, metavar="DIR", help="only re-read the runs under DIR and "
                        "re-make the table and plots (into --out, default DIR)")
    args, rest = parser.parse_known_args(head)
    unknown = [a for a in rest if a.startswith("-") or "=" not in a]
    if unknown:
        parser.error(f"unrecognised arguments: {' '.join(unknown)}")
    args.overrides = rest + tail
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        if args.from_runs:
            root = Path(args.from_runs)
            if not root.is_dir():
                raise CompareError(f"--from-runs: {root} is not a folder")
            report(root / "runs" if (root / "runs").is_dir() else root, Path(args.out or root), args.metric,
                   args.mode, args.columns)
            return 0
        if not args.patterns:
            raise CompareError("--patterns: give at least one mixer pattern (or --from-runs DIR)")
        base_argv = ["trainer.enable_progress_bar=false", *args.overrides]
        try:
            experiment = compose_config(base_argv).experiment
        except ConfigError as err:
            raise CompareError(str(err)) from None
        out = Path(args.out or Path("runs") / "compare" / f"{experiment}-{datetime.now():%Y%m%d-%H%M%S}")
        group = args.group or out.resolve().name
        if args.jobs < 1:
            raise CompareError(f"--jobs must be at least 1, got {args.jobs}")
        plan = plan_runs(args, base_argv, out, group)
        threads = threads_per_job(args.jobs, args.threads)
        print(f"compare: {len(plan)} runs of experiment {experiment} into {out} (W&B group {group})"
              + (f", {args.jobs} at once with {threads} CPU thread(s) each" if args.jobs > 1 else ""), flush=True)
        failed = execute(plan, args.jobs, threads)
        report(out / "runs", out, args.metric, args.mode, args.columns)
    except CompareError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if failed:
        print(f"{failed} run(s) failed; see the messages above and compare.json in their folders", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
