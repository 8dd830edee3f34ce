"""More than one process on the CPU (gloo), through train.py: scripts/slurm_example.sbatch as a 2-node job (srun
imitated on this machine), which Lightning detects from the SLURM_* variables, trains with FSDP as one process
does and writes a sharded checkpoint, which resumes on one process and exports (docs/training.md#multi-device).
The strategy's set-up is checked without processes."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from configs import compose_config, config_to_dict
from lit_modules import checkpoints
from lit_modules.backbone import Block
from lit_modules.language_model import LanguageModel
from lit_modules.recommender import SequentialRecommender
from lit_modules.run_dir import RunError
from lit_modules.strategy import BlockFSDP, build_strategy

REPO = Path(__file__).resolve().parents[1]
TINY = ["data.vocab_size=64", "data.train_settings=[[32,4]]", "data.val_settings=[[32,4]]", "data.val_examples=64",
        "model.d_model=32", "model.dropout=0", "optim.schedule=constant", "optim.warmup_steps=0",
        "trainer.val_check_interval=2", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
        "logging.wandb=false"]


def train(tmp_path, *argv, env=None, launcher=()) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    result = subprocess.run([sys.executable, *launcher, str(REPO / "train.py"), *TINY, f"logging.out_dir={tmp_path}",
                             *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def weights(run_dir: Path) -> dict:
    return checkpoints.load(run_dir / "checkpoints" / "last.ckpt")["state_dict"]


def test_fsdp_strategy_wraps_and_checkpoints_each_block_once():
    config = config_to_dict(compose_config(["model.checkpointing=true", "model.layers=[attention,prism]"]))
    module = LanguageModel(config, vocab_size=32)
    strategy = build_strategy("fsdp", module, "bf16-mixed")
    assert isinstance(strategy, BlockFSDP) and strategy._state_dict_type == "sharded"
    for policy in (strategy.kwargs["auto_wrap_policy"], strategy._activation_checkpointing_kwargs["auto_wrap_policy"]):
        assert policy._module_classes == {Block}  # one FSDP unit, and one recomputation, per block
    assert not module.backbone.checkpointing  # its own per-block checkpoint would recompute each block twice
    mixed = strategy.mixed_precision
    assert (mixed.param_dtype, mixed.reduce_dtype) == (torch.bfloat16, torch.float32)  # Lightning's own: bf16
    assert build_strategy("fsdp", LanguageModel(config, vocab_size=32), "32-true").mixed_precision is None
    plain = LanguageModel(config, vocab_size=32)
    assert build_strategy("ddp", plain, "bf16-mixed") == "ddp" and plain.backbone.checkpointing
    rec_config = compose_config(["experiment=rec_beauty", "trainer.val_check_interval=10"])
    recommender = SequentialRecommender(config_to_dict(rec_config), num_items=20)
    with pytest.raises(RunError, match="trainer.strategy=fsdp: only for language models"):
        build_strategy("fsdp", recommender, "bf16-mixed")


def test_a_staged_folder_replaces_a_checkpoint_folder_or_file_whole(tmp_path):
    from lit_modules.atomic import replace_folder

    for old in ("folder", "file", None):
        path, staging = tmp_path / str(old) / "last.ckpt", tmp_path / str(old) / ".last.ckpt.partial"
        staging.mkdir(parents=True)
        (staging / "__0_0.distcp").write_text("new")
        if old == "folder":
            path.mkdir()
            (path / "__0_0.distcp").write_text("old")
            (path / "__1_0.distcp").write_text("old")
        elif old == "file":
            path.write_text("old")
        replace_folder(staging, path)
        assert [(p.name, p.read_text()) for p in path.iterdir()] == [("__0_0.distcp", "new")]
        assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# srun as SLURM runs it on every node: one task per node and GPU, each with its rank in SLURM's variables (stdout and
# stderr of task N in $SRUN_LOGS/N.out and N.err); here all tasks on this machine.
FAKE_SRUN = """#!{python}
import os, subprocess, sys
per_node = int(os.environ["SLURM_NTASKS_PER_NODE"])
total = int(os.environ["SLURM_NNODES"]) * per_node
logs = os.environ["SRUN_LOGS"]
tasks = [subprocess.Popen(sys.argv[1:], stdout=open(f"{{logs}}/{{rank}}.out", "w"),
                          stderr=open(f"{{logs}}/{{rank}}.err", "w"),
                          env=dict(os.environ, SLURM_NTASKS=str(total), SLURM_PROCID=str(rank),
                                   SLURM_NODEID=str(rank // per_node), SLURM_LOCALID=str(rank % per_node)))
         for rank in range(total)]
sys.exit(max(task.wait() for task in tasks))
"""


def sbatch(tmp_path, *argv, nodes: int = 2, **env) -> list[tuple[str, str]]:
    """scripts/slurm_example.sbatch on ``nodes`` nodes of one task each, all on this machine: (stdout, stderr) of
    each task."""
    bin_dir, logs = tmp_path / "bin", tmp_path / "srun_logs"
    bin_dir.mkdir(exist_ok=True)
    logs.mkdir(exist_ok=True)
    (bin_dir / "srun").write_text(FAKE_SRUN.format(python=sys.executable))
    (bin_dir / "srun").chmod(0o755)
    job = {"SLURM_NNODES": str(nodes), "SLURM_NTASKS_PER_NODE": "1", "SLURM_JOB_ID": "4242",
           "SLURM_JOB_NAME": "train", "SLURM_NODELIST": "127.0.0.1", "SLURM_SUBMIT_DIR": str(REPO),
           "MASTER_PORT": str(_free_port()), "PYTHON": sys.executable, "SRUN_LOGS": str(logs),
           "OUT_DIR": str(tmp_path), "PATH": f"{bin_dir}:{os.environ['PATH']}", **env}
    clean = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK")}
    result = subprocess.run(["bash", str(REPO / "scripts" / "slurm_example.sbatch"), *TINY, *argv],
                            env={**clean, **job}, capture_output=True, text=True, timeout=600)
    outputs = [((logs / f"{r}.out").read_text(), (logs / f"{r}.err").read_text()) for r in range(nodes)]
    assert result.returncode == 0, result.stderr[-1000:] + "".join(err[-2000:] for _, err in outputs)
    return outputs


def test_fsdp_on_two_slurm_nodes_trains_as_one_process_and_resumes_on_one(tmp_path, capsys):
    from lit_modules.export import to_hf_model
    from train import main

    # two ranks of 16 from the same global batches as one process of 32: the same training, up to float sums
    outputs = sbatch(tmp_path, "model.checkpointing=true", "trainer.max_steps=2", EXPERIMENT="mqar", NAME="parts",
                     STRATEGY="fsdp", GLOBAL_BATCH="32")
    # each task is the rank SLURM gave it (Lightning starts no processes of its own under SLURM); rank 0 alone
    # names the run folder and prints the summary
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in outputs[0][1] and "GLOBAL_RANK: 1, MEMBER: 2/2" in outputs[1][1]
    assert outputs[0][0].count("done:") == 1 and "done:" not in outputs[1][0]
    assert [p.name for p in (tmp_path / "mqar").iterdir()] == ["parts"]
    last = tmp_path / "mqar" / "parts" / "checkpoints" / "last.ckpt"
    assert checkpoints.is_sharded(last) and len(list(last.glob("*.distcp"))) == 2  # one shard file per rank
    assert sorted(p.name for p in last.parent.iterdir()) == ["best.ckpt", "last.ckpt"]  # staging renamed away

    # the job again on one node: the script finds the run's checkpoint and resumes it (as a requeued job does)
    sbatch(tmp_path, "data.batch_size=32", "trainer.max_steps=4", nodes=1, EXPERIMENT="mqar", NAME="parts",
           STRATEGY="fsdp")
    train(tmp_path, "model.checkpointing=true", "data.batch_size=32", "trainer.max_steps=4", "logging.name=whole")
    resumed, whole = weights(tmp_path / "mqar" / "parts"), weights(tmp_path / "mqar" / "whole")
    assert resumed.keys() == whole.keys()
    for key in whole:
        torch.testing.assert_close(resumed[key], whole[key], rtol=0, atol=2e-5, msg=key)
    assert json.loads((tmp_path / "mqar" / "parts" / "summary.json").read_text())["step"] == 4

    # read in one process for export; refused in one line by a strategy that cannot load it, and the reverse
    exported = to_hf_model(last).state_dict()
    torch.testing.assert_close(exported["model.embed_tokens.weight"], resumed["embed.weight"])
    assert main([f"ckpt_path={last.parent.parent}", "trainer.strategy=ddp", "trainer.max_steps=6"]) == 2
    assert "is a sharded FSDP checkpoint; resume it with trainer.strategy=fsdp" in capsys.readouterr().err
    assert main([f"ckpt_path={tmp_path / 'mqar' / 'whole'}", "trainer.strategy=fsdp", "trainer.max_steps=6"]) == 2
    assert "is a one-file checkpoint (DDP or one device); resume it with the strategy" in capsys.readouterr().err
