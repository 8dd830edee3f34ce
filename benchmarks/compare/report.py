"""Reading a comparison's run folders back (config.yaml, summary.json, compare.json) and summarising them: the best
learning rate per pattern (and --vary value), mean and standard deviation over seeds, runs.csv, summary.csv and
summary.md; the figures come from plots.py."""
from __future__ import annotations

import csv
import json
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from lit_modules.atomic import atomic_write, write_text_atomic
from lit_modules.loggers import eval_seq_len
from lit_modules.run_dir import read_summary

from . import CompareError
from .plots import plots


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


def run_status(summary: dict, record: dict) -> str:
    """done (a complete summary of a finished run), diverged, failed (compare's record) or incomplete."""
    if summary:
        return "done" if summary.get("status", "finished") == "finished" else str(summary["status"])
    return record["status"] if record.get("status") in ("failed", "diverged") else "incomplete"


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
        metrics, problem = read_summary(run_dir)
        if metrics is None and (run_dir / "summary.json").exists():
            print(f"warning: {problem}; the run counts as unfinished (compare re-runs it)", file=sys.stderr)
        metrics = metrics or {}
        state, T, layers = model_sizes(cfg, run_dir)
        label = record.get("label")
        if not label:
            names = layers.split(",") if layers else []
            label = names[0] if names and len(set(names)) == 1 else "-".join(names) or run_dir.name
        runs.append({
            "run_dir": str(run_dir), "name": run_dir.name, "experiment": cfg.get("experiment"),
            "label": label, "setting": record.get("setting"), "vary_key": record.get("vary_key"),
            "seed": int(cfg.get("seed", 0)), "lr": float(cfg["optim"]["lr"]),
            "status": run_status(metrics, record),
            "layers": layers, "params": metrics.get("params"), "state_size": state, "eval_seq_len": T,
            "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))},
            "index": record.get("index", 10 ** 9),
        })
    return sorted(runs, key=lambda r: (r["index"], r["run_dir"]))


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
    """4 decimals: recommendation metrics (HR@10 near 0.08) are compared with published ones to the 4th."""
    if mean is None or math.isnan(mean):
        return "-"
    return f"{mean:.4f}" if std is None else f"{mean:.4f} ± {std:.4f}"


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
    with atomic_write(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (";".join(v) if isinstance(v, list) else v) for k, v in r.items()})


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
    write_text_atomic(out / "summary.md", text)
    slices = slice_keys([r for r in runs if r["status"] == "done"], metric)
    written = plots(out, rows, slices, metric, vary_key) if rows else []
    print(text)
    print("wrote " + ", ".join(str(p) for p in [out / "summary.md", out / "summary.csv", out / "runs.csv", *written]))
    return rows, text
