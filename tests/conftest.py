import os
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

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} not found")
    return SHARED_DATA
