import json
import os
import subprocess
import sys
import textwrap
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


def run_interpreted(module: str, timeout: int = 900):
    """Run ``python -m module`` (e.g. tests.kernels.interpreted.prism_triton_cases) in a fresh process under
    Triton's interpreter (TRITON_INTERPRET=1 and our interpreter patches must come before any triton or fla
    import: the module applies them first) and return the JSON of its last line of output."""
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", module], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def interpret():
    """``run_interpreted``, for the interpreter tests' module fixtures (modules in tests/kernels/interpreted/)."""
    return run_interpreted


USER_MIXER = textwrap.dedent('''
    from dataclasses import dataclass
    import torch
    from torch import nn
    from mixers import Mixer, MixerConfig, register_mixer

    @dataclass
    class CumMeanConfig(MixerConfig):
        scale: float = 1.0

    @register_mixer("cummean")
    class CumMean(Mixer):
        """Causal running mean of a projection: a user's own mixer living outside the repository."""
        Config = CumMeanConfig

        def __init__(self, d_model, config, layer_idx=0):
            super().__init__(d_model, config, layer_idx)
            self.proj = nn.Linear(d_model, d_model)

        def forward(self, x, *, mask=None, cu_seqlens=None, state=None, use_cache=False):
            total, count = state if state is not None else (x.new_zeros(x.shape[0], x.shape[2]), 0)
            sums = total[:, None] + self.proj(x).cumsum(1)
            counts = count + torch.arange(1, x.shape[1] + 1, device=x.device)[None, :, None]
            return self.config.scale * sums / counts, ((sums[:, -1], count + x.shape[1]) if use_cache else None)

        def state_size(self, seq_len=None):
            return self.d_model + 1

        def flops(self, seq_len):
            return 2 * seq_len * self.d_model ** 2
''')


@pytest.fixture
def user_mixer_source() -> str:
    """The source of a mixer of a user's own (a causal running mean), registered as "cummean" on import."""
    return USER_MIXER


SHARED_FOLDERS = {"tinyshakespeare": "text", "beauty": "rec"}  # ../shared/data keeps each file in a subfolder


@pytest.fixture(scope="session")
def data_file():
    """``data_file(name)``: the path of a public data file (a name of ``python -m datamodules.fetch``), from
    ../shared/data when present, else the fetched copy in data/. Without either the test skips naming the fetch
    command, or fails when PRISM_REQUIRE_DATA=1 (as .ci/run sets)."""
    from datamodules.fetch import DATA_DIR, FILES

    def find(name: str) -> Path:
        filename = FILES[name].filename
        for path in (SHARED_DATA / SHARED_FOLDERS[name] / filename, DATA_DIR / filename):
            if path.is_file():
                return path
        message = (f"data file {filename} is in neither {SHARED_DATA} nor {DATA_DIR}; "
                   f"run: python -m datamodules.fetch {name}")
        if os.environ.get("PRISM_REQUIRE_DATA") == "1":
            pytest.fail(message)
        pytest.skip(message)

    return find


HYBRID_OF_EVERY_MIXER = ["model.layers=[attention,prism,gdn,gla,mamba2,ttt_mlp]", "model.repeat=1",
                         "model.d_model=32", "model.mixers.attention.num_heads=2", "model.mixers.prism.num_heads=2",
                         "model.mixers.gdn.num_heads=2", "model.mixers.gla.num_heads=2",
                         "model.mixers.mamba2.head_dim=16", "model.mixers.ttt_mlp.head_dim=16"]
LOCAL_TASKS = Path(__file__).parent / "lm_eval_tasks"  # lm-evaluation-harness tasks on local data


@pytest.fixture(scope="session")
def text_run(tmp_path_factory):
    """A finished run folder of a character-level LM whose layers are every built-in mixer once, trained a few
    steps through train.py on a small corpus holding every character of the local harness tasks, with W&B offline
    and ``trainer.eval_tasks`` set to those tasks."""
    import random

    from configs import compose_config
    from train import run

    root = tmp_path_factory.mktemp("text_run")
    words = ("the cat sat on mat sky dog ran to door be or not that is question sun in and moon a tea hat sea all "
             "day").split()
    rng = random.Random(0)
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(4, 12))) + rng.choice([".", ",", "", "?"])
             for _ in range(400)]
    (root / "corpus.txt").write_text("\n".join(lines) + "\n")
    tasks = ",".join(str(LOCAL_TASKS / f"tiny_{kind}.yaml") for kind in ("choice", "ppl", "gen"))
    cfg = compose_config(["experiment=lm_char", f"data.path={root / 'corpus.txt'}", f"data.cache_dir={root / 'cache'}",
                          "data.seq_len=32", "data.batch_size=8", *HYBRID_OF_EVERY_MIXER, "trainer.max_steps=4",
                          "trainer.val_check_interval=4", f"trainer.eval_tasks=[{tasks}]", "logging.wandb=true",
                          f"logging.out_dir={root / 'runs'}", "logging.name=hybrid", "logging.project=tests",
                          "trainer.enable_progress_bar=false"])
    metrics = run(cfg)
    return Path(metrics["run_dir"])
