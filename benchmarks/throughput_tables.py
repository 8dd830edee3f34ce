"""The tables (results.md) and the plot of benchmarks/throughput.py's rows (docs/benchmarks.md): the layer rows with
wall-clock and GPU time, the model rows by compile mode, and the ratios that compare mixers measured in one call.
They read only the rows, so the merged rows of several processes (``--merge``) get the same tables."""
from __future__ import annotations

from pathlib import Path

from lit_modules.compile import uses_cuda_graphs

# The PRISM paper's TTT baseline: 0.34 K tokens/s for a 0.13B model on an NVIDIA H20
# (docs/benchmarks.md#ttt-mlp-against-prism)
PAPER_TTT_TOKENS_PER_S = 340.0


def one_line(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "/")[:120]


def mode_label(mode: str | None) -> str:
    """A model row's compile mode in words: eager, compiled, or compiled + CUDA graphs (and the mode's name when
    it is not the plain one of its kind)."""
    if mode in (None, "none"):
        return "eager"
    label = "compiled + CUDA graphs" if uses_cuda_graphs(mode) else "compiled"
    return label if mode in ("default", "reduce-overhead") else f"{label} ({mode})"


def ok(row: dict) -> bool:
    return "error" not in row


def settings(layers: list[dict]) -> list[tuple[int, int]]:
    """The (seq, batch) settings of the layer rows, in the order they were measured."""
    return list(dict.fromkeys((r["seq"], r["batch"]) for r in layers))


def layer_table(layers: list[dict]) -> list[str]:
    lines = ["One layer, forward + backward, bf16 autocast on a GPU. GPU ms: the kernels' summed durations "
             "(torch.profiler), which leave out the host's time between launches. TFLOP/s: 3x the mixer's flops() "
             "(its forward count; forward + backward taken as 3x the forward) per second of wall clock, and per "
             "second of GPU time.", "",
             "| mixer | seq x batch | ms | GPU ms | K tokens/s | peak MiB | TFLOP/s | TFLOP/s on GPU time |",
             "|---|---|---|---|---|---|---|---|"]
    for r in layers:
        where = f"| {r['mixer']} | {r['seq']}x{r['batch']} |"
        if not ok(r):
            lines.append(f"{where} error: {one_line(r['error'])} ||||||")
            continue
        gpu = lambda key, fmt: format(r[key], fmt) if key in r else "-"  # noqa: E731 - a CPU run has no GPU time
        lines.append(f"{where} {r['ms']:.2f} | {gpu('gpu_ms', '.2f')} | {r['tokens_per_s'] / 1e3:.0f} | "
                     f"{r.get('peak_mem_gib', 0) * 1024:.0f} | {r['tflops']:.1f} | {gpu('gpu_tflops', '.1f')} |")
    return lines + [""]


def gdn_ratios(layers: list[dict]) -> list[str]:
    """Each prism row's throughput, peak memory and GPU time against GDN's at every setting."""
    gdn = {(r["seq"], r["batch"]): r for r in layers if r["mixer"] == "gdn" and ok(r)}
    if not gdn:
        return []
    lines = []
    for key in dict.fromkeys(r["mixer"] for r in layers if r["mixer"].startswith("prism") and ok(r)):
        cells = []
        for setting in settings(layers):
            r = next((r for r in layers if r["mixer"] == key and (r["seq"], r["batch"]) == setting and ok(r)), None)
            g = gdn.get(setting)
            cells.append("-" if r is None or g is None else
                         f"{r['tokens_per_s'] / g['tokens_per_s']:.2f}x / "
                         f"{r.get('peak_mem_gib', 0) / max(g.get('peak_mem_gib', 0), 1e-9):.2f}x" +
                         (f" / {g['gpu_ms'] / r['gpu_ms']:.2f}x" if "gpu_ms" in r and "gpu_ms" in g else ""))
        lines.append(f"| {key} / gdn | " + " | ".join(cells) + " |")
    if not lines:
        return []
    return ["Against GDN (throughput / peak memory / throughput on GPU time, the kernels' summed durations)", "",
            "| ratio | " + " | ".join(f"{s}x{b}" for s, b in settings(layers)) + " |",
            "|---|" + "---|" * len(settings(layers)), *lines, ""]


def model_table(model: list[dict]) -> list[str]:
    lines = ["Model, forward + backward + AdamW step, bf16 autocast on a GPU", "",
             "| mixer | mode | params (M) | K tokens/s | peak GiB | MFU | loss first -> last | finite, decreasing |",
             "|---|---|---|---|---|---|---|---|"]
    for r in model:
        mode = mode_label(r.get("compile"))
        if not ok(r):
            lines.append(f"| {r['mixer']} | {mode} | error: {one_line(r['error'])} |||||")
            continue
        lines.append(f"| {r['mixer']} | {mode} | {r['params_m']:.1f} | {r['tokens_per_s'] / 1e3:.1f} | "
                     f"{r.get('peak_mem_gib', 0):.1f} | {r.get('mfu', 0):.3f} | {r['first_loss']:.3f} -> "
                     f"{r['last_loss']:.3f} | {r['finite']}, {r['decreasing']} |")
    return lines + [""]


def model_ratios(model: list[dict]) -> list[str]:
    """Each prism row's tokens/s by compile mode against: GDN in the same mode (and its peak memory), every TTT-MLP
    row of the call, and the PRISM paper's TTT figure. Ratios only, without targets."""
    rows = [r for r in model if ok(r)]
    modes = list(dict.fromkeys(r.get("compile", "none") for r in rows if r["mixer"].startswith("prism")))
    if not modes:
        return []

    def find(mixer, mode):
        return next((r for r in rows if r["mixer"] == mixer and r.get("compile", "none") == mode), None)

    def line(label, value):
        return f"| {label} | " + " | ".join(value(mode) for mode in modes) + " |"

    def ratio(num, den, key="tokens_per_s"):
        return "-" if num is None or den is None else f"{num[key] / den[key]:.2f}x"

    lines = []
    for key in dict.fromkeys(r["mixer"] for r in rows if r["mixer"].startswith("prism")):
        if any(r["mixer"] == "gdn" for r in rows):
            lines.append(line(f"{key} / gdn", lambda m: ratio(find(key, m), find("gdn", m))))
            if any("peak_mem_gib" in r for r in rows):
                lines.append(line(f"{key} / gdn, peak memory", lambda m: ratio(find(key, m), find("gdn", m),
                                                                                "peak_mem_gib")))
        for ttt in (r for r in rows if r["mixer"].startswith("ttt_mlp")):
            label = f"{key} / {ttt['mixer']} ({mode_label(ttt.get('compile'))}, {ttt['tokens_per_s'] / 1e3:.2f} K)"
            lines.append(line(label, lambda m: ratio(find(key, m), ttt)))
        lines.append(line(f"{key} / the paper's TTT ({PAPER_TTT_TOKENS_PER_S / 1e3:.2f} K tokens/s, NVIDIA H20)",
                          lambda m: ratio(find(key, m), {"tokens_per_s": PAPER_TTT_TOKENS_PER_S})))
    return ["Model ratios, tokens/s (measured in this call; the paper's TTT figure is its own, on other hardware)",
            "", "| ratio | " + " | ".join(mode_label(m) for m in modes) + " |", "|---|" + "---|" * len(modes),
            *lines, ""]


def write_tables(out: Path, result: dict) -> str:
    env = result["env"]
    lines = [f"Device: {env['device']}; torch {env['torch']}, triton {env['triton']}, fla {env['fla']}",
             f"Command: `{env['command']}`", ""]
    if result["layers"]:
        lines += [*layer_table(result["layers"]), *gdn_ratios(result["layers"])]
    if result["model"]:
        lines += [*model_table(result["model"]), *model_ratios(result["model"])]
    table = "\n".join(lines)
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
        rows = [r for r in result["layers"] if r["mixer"] == key and ok(r)]
        ax.plot([r["seq"] for r in rows], [r["tokens_per_s"] / 1e6 for r in rows], marker="o", label=key)
    ax.set(xscale="log", xlabel="sequence length (same tokens per step)", ylabel="M tokens/s (fwd+bwd)",
           title=f"One layer — {result['env']['device']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "layers.png", dpi=120)
