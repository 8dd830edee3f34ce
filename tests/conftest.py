import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Hub look-ups must fail fast in tests, and W&B must never try to reach a server.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# One thread per test process: the suite runs on 2 cores with 2 pytest workers, and oversubscribed OpenMP
# threads spin-wait each other into 100x slowdowns. Subprocesses (DDP, plugin runs) inherit the variable.
os.environ["OMP_NUM_THREADS"] = "1"

import torch  # noqa: E402

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def run_interpreted(script: str, timeout: int = 900):
    """Run ``script`` in a fresh process under Triton's interpreter (TRITON_INTERPRET=1 and our interpreter
    patches must come before any triton or fla import) and return the JSON of its last line of output."""
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def interpret():
    """``run_interpreted``, for the interpreter tests' module fixtures."""
    return run_interpreted


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} not found")
    return SHARED_DATA
