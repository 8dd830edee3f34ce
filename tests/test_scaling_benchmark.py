"""benchmarks/scaling.py end to end on the CPU at tiny sizes (2 processes, gloo), so that a GPU session never
spends its time on a broken script: one process against FSDP on two with the same global batch."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_scaling_tiny_run_one_process_against_fsdp_on_two(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text("".join(f"line {i}: the quick brown fox jumps over the lazy dog {i * 7 % 13}.\n"
                            for i in range(300)))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "benchmarks/scaling.py", "--tiny", "--out", str(out), "--text", str(text),
                           "--mixers", "attention", "--strategies", "fsdp"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    one, fsdp = json.loads((out / "results.json").read_text())["rows"]
    assert (one["devices"], fsdp["strategy"], fsdp["devices"]) == (1, "fsdp", 2)
    assert one["global_batch"] == fsdp["global_batch"] == 8 and one["tokens_per_s"] > 0 and fsdp["peak_gib"] > 0
    assert fsdp["efficiency"] == fsdp["tokens_per_s"] / (2 * one["tokens_per_s"])
    # the same examples in every step, one process accumulating them: the same validation losses, in fp32
    assert list(fsdp["val_loss"]) == list(one["val_loss"]) == ["2", "4"]
    assert fsdp["val_loss_gap"] < 1e-5
    table = (out / "results.md").read_text()
    assert "| attention | fsdp | 2 |" in table and "| mixer | strategy | GPUs | K tokens/s | efficiency |" in table
    assert (out / "loss_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert not (out / "runs" / "slimpajama_130m" / "attention-fsdp-2" / "checkpoints").exists()
