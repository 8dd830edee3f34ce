"""scripts/probes_paper_table.sh, the command of the paper's probing table (docs/probing.md), on the CPU at tiny
steps for 2 tasks x 2 mixers: every run has the authors' protocol, the table pivots by task, and re-running the
command keeps finished runs and resumes an interrupted one from its last checkpoint."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TINY = ["trainer.val_check_interval=2", "trainer.ckpt_every_n_steps=2", "data.train_examples=128",
        "data.test_examples=64", "logging.wandb=false"]


def table(out, *overrides):
    env = dict(os.environ, TASKS="parity_check mqar", MIXERS="attention linear_attention", SEEDS="0", JOBS="1",
               PYTHON=sys.executable)
    proc = subprocess.run(["bash", "scripts/probes_paper_table.sh", str(out), *TINY, *overrides], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_table_command_runs_the_protocol_and_resumes(tmp_path):
    out = tmp_path / "table"
    table(out, "trainer.max_steps=2")
    with (out / "summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["setting"], r["pattern"]) for r in rows] == [
        ("probes_paper/parity_check", "attention"), ("probes_paper/parity_check", "linear_attention"),
        ("probes_paper/mqar", "attention"), ("probes_paper/mqar", "linear_attention")]
    assert all(r["mean"] not in ("", "nan") for r in rows)
    assert "| experiment | attention | linear_attention |" in (out / "summary.md").read_text()
    runs = {p.parent.name: yaml.safe_load(p.read_text()) for p in (out / "runs").rglob("config.yaml")}
    for name, cfg in runs.items():
        wide = "mqar" in name
        assert (cfg["model"]["d_model"], cfg["data"]["seq_len"]) == ((128, 64) if wide else (16, 128)), name
        assert cfg["data"]["vocab_size"] == 32 and cfg["data"]["batch_size"] == 32 and cfg["model"]["repeat"] == 2
        assert (cfg["optim"]["name"], cfg["optim"]["lr"], cfg["optim"]["weight_decay"]) == ("adamw", 1e-3, 1e-4)
        assert cfg["trainer"]["gradient_clip_val"] == 5.0 and cfg["optim"]["warmup_steps"] == 0
        assert cfg["model"]["init"] == "torch"  # the authors' models keep PyTorch's default init
        if "attention.lr" in name:
            attention = cfg["model"]["mixers"]["attention"]
            assert (attention["num_heads"], attention["conv_size"], attention["conv_bias"]) == (1, 3, True)
        else:
            la = cfg["model"]["mixers"]["linear_attention"]
            assert (la["num_heads"], la["conv_size"], la["decay"], la["conv_bias"]) == (1, 5, "none", True)

    # a lost machine: a run stopped after its step-2 checkpoint (no summary.json) goes on from there when the same
    # command runs again (for 4 steps now); the finished runs are kept
    run_dir = next(p.parent.parent for p in (out / "runs").rglob("last.ckpt") if "mqar.linear" in str(p))
    (run_dir / "summary.json").unlink()
    log = table(out, "trainer.max_steps=4")
    assert log.count("done before, kept") == 3 and "mqar.linear_attention" in log
    assert json.loads((run_dir / "summary.json").read_text())["step"] == 4
