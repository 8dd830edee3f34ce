"""The figures of a comparison summary: accuracy against state size, accuracy by difficulty slice, loss curves of
the chosen runs and, with --vary, the metric by setting."""
from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path

from lit_modules.atomic import atomic_write


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


def _finish_grid(axes, panels: int) -> None:
    """Blank the grid's unused panels and put the legend on the first."""
    for ax in list(axes.flat)[panels:]:
        ax.axis("off")
    if axes.flat[0].get_legend_handles_labels()[0]:
        axes.flat[0].legend(fontsize=7)


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)
    return path


def plots(out: Path, rows: list[dict], slices: list[str], metric: str, vary_key: str | None) -> list[Path]:
    """Write the figures of the summary ``rows`` (``slices``: the per-slice metric keys they hold) into out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    patterns = list(dict.fromkeys(r["pattern"] for r in rows))
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    colors = {p: plt.get_cmap("tab10")(i % 10) for i, p in enumerate(patterns)}

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
    written.append(_save(fig, out / "acc_vs_state.png"))

    panels = settings if len(settings) > 1 else [settings[0] if settings else None]
    ncol = min(3, len(panels))
    nrow = -(-len(panels) // ncol)

    # accuracy by difficulty slice
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
        _finish_grid(axes, len(panels))
        written.append(_save(fig, out / "acc_by_slice.png"))

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
    _finish_grid(axes, len(panels))
    written.append(_save(fig, out / "loss_curves.png"))

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
        written.append(_save(fig, out / "metric_by_setting.png"))
    return written
