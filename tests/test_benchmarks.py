"""The GPU benchmark scripts run end to end on the CPU at tiny sizes, so a device session never spends its time
on a broken script: throughput.py --tiny (layer rows, the model run in several compile modes, tables and ratios,
JSON, plot, --merge), profile_layer.py, op_memory_cpu.py (under the interpreter: the op and the layer),
op_throughput.py --smoke (under the interpreter, with its ratios to GDN and each op's time table), host_ops_cpu.py
and compile_step.py."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def run(*argv):
    proc = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_throughput_tiny_run_and_merge(tmp_path):
    run("benchmarks/throughput.py", "--tiny", "--out", str(tmp_path / "a"), "--mixers", "attention,prism_chunk",
        "--model-mixers", "prism_chunk")
    run("benchmarks/throughput.py", "--tiny", "--out", str(tmp_path / "b"), "--mixers", "ttt_mlp_ckpt",
        "--model-mixers", "ttt_mlp")
    result = json.loads((tmp_path / "a" / "results.json").read_text())
    assert {r["mixer"] for r in result["layers"]} == {"attention", "prism_chunk"}
    assert all("error" not in r and r["tokens_per_s"] > 0 and r["tflops"] > 0 for r in result["layers"])
    (model,) = result["model"]
    assert model["mixer"] == "prism_chunk" and model["compile"] == "none" and model["finite"]
    assert len(model["losses"]) == 6
    run("benchmarks/throughput.py", "--out", str(tmp_path / "m"), "--merge", str(tmp_path / "a" / "results.json"),
        str(tmp_path / "b" / "results.json"))
    table = (tmp_path / "m" / "results.md").read_text()
    assert "| mixer | seq x batch | ms | GPU ms | K tokens/s | peak MiB | TFLOP/s | TFLOP/s on GPU time |" in table
    assert "| attention | 32x2 |" in table and "| prism_chunk | 64x1 |" in table and "| ttt_mlp_ckpt | 32x2 |" in table
    assert "| prism_chunk | eager |" in table and "| ttt_mlp | eager |" in table
    # PRISM and TTT-MLP measured in one call (merged from two processes), side by side, and against the paper's TTT
    ttt = json.loads((tmp_path / "b" / "results.json").read_text())["model"][0]
    ratio = model["tokens_per_s"] / ttt["tokens_per_s"]
    assert f"| prism_chunk / ttt_mlp (eager, {ttt['tokens_per_s'] / 1e3:.2f} K) | {ratio:.2f}x |" in table
    assert f"| prism_chunk / the paper's TTT (0.34 K tokens/s, NVIDIA H20) | {model['tokens_per_s'] / 340:.2f}x |" \
        in table
    assert (tmp_path / "m" / "layers.png").read_bytes()[:4] == b"\x89PNG"


def test_throughput_runs_the_model_in_several_modes(tmp_path):
    out = run("benchmarks/throughput.py", "--tiny", "--out", str(tmp_path), "--skip-layers", "--model-mixers",
              "attention", "--model-compile", "none,default")
    rows = json.loads((tmp_path / "results.json").read_text())["model"]
    assert [(r["mixer"], r["compile"]) for r in rows] == [("attention", "none"), ("attention", "default")]
    assert all(r["finite"] and len(r["losses"]) == 6 for r in rows), rows
    assert "| attention | eager |" in out and "| attention | compiled |" in out


def test_model_rows_each_mixer_in_each_mode_or_its_own():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from throughput import model_rows

    assert model_rows("prism,gdn:reduce-overhead,ttt_mlp_compile:none", "none,default") == [
        ("prism", "none"), ("prism", "default"), ("gdn", "reduce-overhead"), ("ttt_mlp_compile", "none")]
    with pytest.raises(SystemExit) as err:
        model_rows("prism:fastest", "none")
    assert str(err.value) == ("throughput.py: compile mode 'fastest' (in 'prism:fastest'): choose none or one of "
                              "default, reduce-overhead, max-autotune, max-autotune-no-cudagraphs")


def test_model_ratios_by_mode_against_gdn_ttt_and_the_papers_ttt():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from throughput_tables import model_ratios, mode_label

    assert [mode_label(m) for m in ("none", "default", "reduce-overhead", "max-autotune")] == [
        "eager", "compiled", "compiled + CUDA graphs", "compiled + CUDA graphs (max-autotune)"]
    rows = [{"mixer": "prism", "compile": "none", "tokens_per_s": 170e3, "peak_mem_gib": 20.0},
            {"mixer": "prism", "compile": "reduce-overhead", "tokens_per_s": 230e3, "peak_mem_gib": 22.0},
            {"mixer": "gdn", "compile": "none", "tokens_per_s": 200e3, "peak_mem_gib": 16.0},
            {"mixer": "gdn", "compile": "reduce-overhead", "tokens_per_s": 250e3, "peak_mem_gib": 20.0},
            {"mixer": "ttt_mlp_compile", "compile": "none", "tokens_per_s": 2.5e3},
            {"mixer": "attention", "compile": "none", "error": "OOM"}]
    lines = model_ratios(rows)
    assert "| ratio | eager | compiled + CUDA graphs |" in lines
    assert "| prism / gdn | 0.85x | 0.92x |" in lines
    assert "| prism / gdn, peak memory | 1.25x | 1.10x |" in lines
    assert "| prism / ttt_mlp_compile (eager, 2.50 K) | 68.00x | 92.00x |" in lines
    assert "| prism / the paper's TTT (0.34 K tokens/s, NVIDIA H20) | 500.00x | 676.47x |" in lines
    assert model_ratios([r for r in rows if r["mixer"] != "prism"]) == []  # nothing to set against


def test_profile_layer_prints_a_kernel_table():
    out = run("benchmarks/profile_layer.py", "--mixer", "prism_chunk", "--d-model", "64", "--seq", "33",
              "--batch", "2", "--rows", "5", "--override", "model.mixers.prism.num_heads=2",
              "model.mixers.prism.head_dim=32")
    assert "prism_chunk seq 33 x batch 2" in out and out.count("Self CPU time total") == 2  # by total, by self


def test_op_memory_cpu_reports_both_ops():
    import os
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, "benchmarks/op_memory_cpu.py", "--seq", "40", "--head-dim", "16"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ratios = [float(line.rsplit("=", 1)[1]) for line in proc.stdout.splitlines() if "prism / gdn" in line]
    # the op's backward peak (bf16, fp32), then one layer's saved activations (fp32, bf16 autocast): PRISM's L = 2
    # writes cost memory in all four
    assert len(ratios) == 4 and all(r > 1 for r in ratios), proc.stdout


def test_op_throughput_runs_each_kind_of_op_under_the_interpreter(tmp_path):
    import os
    env = dict(os.environ, TRITON_INTERPRET="1")
    ops = ["gdn", "prism_chunk", "prism_split_fused_e256"]  # fla's op, the torch op, the Triton op
    proc = subprocess.run([sys.executable, "benchmarks/op_throughput.py", "--smoke", "--ops", ",".join(ops),
                           "--json", str(tmp_path / "ops.json")], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads((tmp_path / "ops.json").read_text())["rows"]
    assert [r["op"] for r in rows] == ops and all(r["ms"] > 0 and r["tflops"] > 0 for r in rows), rows
    # every other op against fla's GDN op at the same shape (GDN's time over its own)
    assert "vs_gdn" not in rows[0] and all(r["vs_gdn"] == rows[0]["ms"] / r["ms"] for r in rows[1:]), rows
    table = (tmp_path / "ops.md").read_text()
    assert "| op | seq x batch | ms | GPU ms |" in table and "| prism_chunk | 40x2 |" in table
    assert table in proc.stdout
    # each op's time op by op (kernel by kernel on a GPU): its longest op heads its own table
    for r in rows:
        assert r["kernels"] and all(k["calls"] > 0 and k["us"] > 0 for k in r["kernels"]), r["op"]
        section = table.split(f"{r['op']}, microseconds per step (calls per step):")[1].split("| total |")[0]
        assert f"| {r['kernels'][0]['name'][:90]} |" in section, section


def test_kernel_times_counts_each_op_per_call():
    from benchmarks.timing import kernel_times
    a, b = torch.randn(64, 64), torch.randn(64, 64)

    def fn():
        return (a @ b @ b).add(1.0)

    rows = kernel_times(fn, 3, "cpu")
    by_name = {r["name"]: r for r in rows}
    assert by_name["aten::mm"]["calls"] == 2 and by_name["aten::add"]["calls"] == 1, rows
    assert all(r["us"] > 0 for r in rows)
    us = [r["us"] for r in rows]
    assert us == sorted(us, reverse=True)  # longest first


def test_host_ops_cpu_counts_both_layers():
    import os
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, "benchmarks/host_ops_cpu.py", "--seq", "16", "--top", "3"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {tuple(line.split()[:2]): [int(v) for v in line.split()[2:]] for line in proc.stdout.splitlines()
            if line.startswith(("prism ", "gdn "))}
    assert set(rows) == {(m, p) for m in ("prism", "gdn") for p in ("forward", "backward")}, proc.stdout
    # PRISM's op runs GDN's kernels plus its own (the extra writes' chunk-local terms and state kernel)
    assert rows["prism", "backward"][1] > rows["gdn", "backward"][1] > 0, proc.stdout
    assert all(aten > 100 for aten, _ in rows.values()), proc.stdout


def test_gdn_ratio_table_reads_throughput_memory_and_gpu_time():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from throughput_tables import gdn_ratios

    rows = [{"mixer": "gdn", "seq": 2048, "batch": 8, "tokens_per_s": 2000.0, "peak_mem_gib": 1.0, "gpu_ms": 4.5},
            {"mixer": "prism", "seq": 2048, "batch": 8, "tokens_per_s": 1500.0, "peak_mem_gib": 1.5, "gpu_ms": 5.0}]
    assert "| prism / gdn | 0.75x / 1.50x / 0.90x |" in gdn_ratios(rows)
    del rows[1]["gpu_ms"]  # a CPU run has no GPU time
    assert "| prism / gdn | 0.75x / 1.50x |" in gdn_ratios(rows)
    assert gdn_ratios(rows[1:]) == []  # no GDN row: no ratios


def test_throughput_measures_a_mixer_of_your_own(tmp_path, user_mixer_source):
    plugin = tmp_path / "my_mixers.py"
    plugin.write_text(user_mixer_source)
    run("benchmarks/throughput.py", "--tiny", "--out", str(tmp_path / "out"), "--plugins", str(plugin),
        "--mixers", "cummean", "--model-mixers", "cummean")
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {r["mixer"] for r in result["layers"]} == {"cummean"}
    assert all("error" not in r and r["tokens_per_s"] > 0 for r in result["layers"]), result["layers"]
    (model,) = result["model"]
    assert model["mixer"] == "cummean" and model["finite"] and model["layers"] == 2


def test_compile_step_compares_eager_and_compiled():
    out = run("benchmarks/compile_step.py", "--device", "cpu", "--steps", "1", "--mixers", "attention")
    row = next(line for line in out.splitlines() if line.startswith("| attention |"))
    _, eager_ms, compiled_ms, _, grad_diff = (c.strip() for c in row.split("|")[2:7])
    assert float(eager_ms) > 0 and float(compiled_ms) > 0 and float(grad_diff) < 1e-4, row


# The PRISM authors' repository: a checkout named by PRISM_AUTHORS_REPO, or the bare snapshot of this machine's mirror
AUTHORS_MIRROR = Path("/work/.mirror/gpr-prism+prism/repo")


def test_authors_benchmark_core_trains_a_model_from_a_factory():
    import argparse

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import torch
    from authors_prism import measure
    from throughput import compose

    from lit_modules.language_model import LanguageModel

    cfg = compose("prism_chunk", 32, ["model.repeat=1", "model.mixers.prism.num_heads=2",
                                      "model.mixers.prism.head_dim=16"])
    args = argparse.Namespace(model_steps=3, model_seq=24, model_batch=2, text_bytes=bytes(range(256)) * 8)
    row = measure("ours", lambda: LanguageModel(cfg, vocab_size=256), args, torch.device("cpu"), torch.float32)
    assert row["model"] == "ours" and row["seq"] == 24 and row["batch"] == 2 and len(row["losses"]) == 3
    assert row["finite"] and row["tokens_per_s"] > 0 and row["params_m"] > 0, row


def authors_checkout(tmp_path, folder: str = "llm") -> Path:
    import io
    import os
    import tarfile

    if os.environ.get("PRISM_AUTHORS_REPO"):
        return Path(os.environ["PRISM_AUTHORS_REPO"])
    if not AUTHORS_MIRROR.is_dir():
        pytest.skip(f"no snapshot of the PRISM authors' repository at {AUTHORS_MIRROR} (or set PRISM_AUTHORS_REPO)")
    archive = subprocess.run(["git", "-C", str(AUTHORS_MIRROR), "archive", "--format=tar", "HEAD", folder],
                             capture_output=True, timeout=120, check=True).stdout
    tarfile.open(fileobj=io.BytesIO(archive)).extractall(tmp_path, filter="data")
    return tmp_path


def test_authors_prism_imports_their_model_from_a_path_and_runs_beside_ours(tmp_path):
    repo = authors_checkout(tmp_path / "authors")
    out = run("benchmarks/authors_prism.py", "--repo", str(repo), "--tiny", "--out", str(tmp_path / "out"))
    rows = json.loads((tmp_path / "out" / "results.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["authors", "prism:none"], rows
    assert all(r["finite"] and len(r["losses"]) == 6 for r in rows), rows
    assert "prism:none / authors:" in out and (tmp_path / "out" / "results.md").read_text() in out


def test_authors_prism_names_a_wrong_path(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from authors_prism import load_authors_models

    with pytest.raises(FileNotFoundError) as err:
        load_authors_models(tmp_path)
    assert str(err.value).startswith(f"--repo {tmp_path}: neither") and "gpr-prism/prism" in str(err.value)


def test_authors_probes_runs_their_script_task_by_task(tmp_path):
    repo = authors_checkout(tmp_path / "authors", "rec/test_syntheticdata.py")
    out = run("benchmarks/authors_probes.py", "--repo", str(repo), "--tasks", "parity_check", "mux_logic",
              "--seeds", "0", "1", "--steps", "3", "--test-size", "64", "--threads", "1", "--out", str(tmp_path / "o"))
    rows = json.loads((tmp_path / "o" / "results.json").read_text())["rows"]
    assert [(r["task"], r["seed"]) for r in rows] == [("parity_check", 0), ("parity_check", 1), ("mux_logic", 0),
                                                      ("mux_logic", 1)]
    assert all(0 <= r["acc"] <= 1 and r["ppl"] > 1 and r["steps"] == 3 for r in rows), rows
    assert "| parity_check |" in out and "(2)" in out  # two seeds per cell
    again = run("benchmarks/authors_probes.py", "--repo", str(repo), "--tasks", "parity_check", "--steps", "3",
                "--test-size", "64", "--threads", "1")
    assert f"{rows[0]['acc']:.4f}" in again  # a seed fixes data and initialisation


def test_authors_probes_fast_la_gives_their_la_numbers(tmp_path):
    repo = authors_checkout(tmp_path / "authors", "rec/test_syntheticdata.py")
    common = ["--repo", str(repo), "--tasks", "mqar", "--models", "LA", "--steps", "2", "--test-size", "64",
              "--threads", "1"]
    run("benchmarks/authors_probes.py", *common, "--out", str(tmp_path / "theirs"))
    out = run("benchmarks/authors_probes.py", *common, "--fast-la", "--out", str(tmp_path / "fast"))
    assert "--fast-la: their LA forward as a masked product" in out
    theirs, fast = (json.loads((tmp_path / d / "results.json").read_text())["rows"][0] for d in ("theirs", "fast"))
    assert fast["acc"] == theirs["acc"], (fast, theirs)
    assert fast["ppl"] == pytest.approx(theirs["ppl"], rel=1e-5)
    assert fast["final_train_loss"] == pytest.approx(theirs["final_train_loss"], rel=1e-5)


def test_authors_probes_fast_la_refuses_a_changed_la(tmp_path):
    repo = authors_checkout(tmp_path / "authors", "rec/test_syntheticdata.py")
    script = repo / "rec" / "test_syntheticdata.py"
    text = script.read_text()
    assert text.count("k = (F.elu(k) + 1.0)") == 1
    script.write_text(text.replace("k = (F.elu(k) + 1.0)", "k = (F.elu(k) + 2.0)"))  # no longer the masked form
    proc = subprocess.run([sys.executable, "benchmarks/authors_probes.py", "--repo", str(repo), "--fast-la",
                           "--steps", "1"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error: --fast-la: the masked form differs"), proc.stderr


def test_authors_probes_names_a_wrong_path(tmp_path):
    proc = subprocess.run([sys.executable, "benchmarks/authors_probes.py", "--repo", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith(f"error: --repo {tmp_path}: neither")
    assert len(proc.stderr.strip().splitlines()) == 1
