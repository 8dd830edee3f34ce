"""A run's folder over the run's life: claimed by one run only and held while it runs (a real second process),
never overwritten, saved at the current step when a signal stops the run, resumed with its own config.yaml to
the same weights as an uninterrupted run, and the W&B identity that goes with it (unique id, group, tags, sizes)."""
import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import lightning.pytorch  # noqa: F401 - imported before any capsys test: its log handler keeps the stderr it sees
import pytest
import torch

from lit_modules.run_dir import claim_new_run_dir
from tests.test_training import TINY_MQAR, final_weights, tiny
from train import main, run

REPO = Path(__file__).resolve().parents[1]
SHORT = ["trainer.val_check_interval=2", "logging.wandb=false"]


def test_a_reused_name_is_refused_and_the_run_left_untouched(tmp_path, capsys, recwarn):
    first = run(tiny(tmp_path, *SHORT, "trainer.max_steps=4", "logging.name=a"))
    assert not [w for w in recwarn if "exists and is not empty" in str(w.message)]  # no warning nobody reads
    run_dir = Path(first["run_dir"])
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and p.suffix in (".ckpt", ".csv")}
    code = main([*TINY_MQAR, f"logging.out_dir={tmp_path}", *SHORT, "trainer.max_steps=2", "logging.name=a"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: logging.name=a: the run folder {run_dir} already exists; resume that run with "
                   f"ckpt_path={run_dir}, or choose another logging.name")
    assert {p: p.read_bytes() for p in before} == before


def test_default_names_take_the_next_free_suffix(tmp_path):
    now = datetime.now()
    for seconds in range(3):  # whichever second the claims fall in, its plain name is taken
        (tmp_path / f"{now + timedelta(seconds=seconds):%Y%m%d-%H%M%S}").mkdir()
    first, second = claim_new_run_dir(tmp_path, None), claim_new_run_dir(tmp_path, None)
    assert first != second and first.name.endswith("-2") and second.name.endswith(("-2", "-3"))


# A long run in its own process, stopped by SIGTERM as SLURM or a preemptible cloud stops a job: while it runs, it
# holds its folder; stopped, it saves a checkpoint at the step it was in, from which the run resumes exactly.
# every step logs a row: a signal then always lands on a logging step, whose row must survive the stop
LONG = ["model.dropout=0.1", "optim.schedule=constant", "optim.warmup_steps=0", "trainer.val_check_interval=20",
        "trainer.max_steps=100", "trainer.log_every_n_steps=1", "logging.wandb=false"]


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    """(run folder, process) of a 100-step run, returned once its first checkpoint (step 20) is written."""
    out = tmp_path_factory.mktemp("long")
    proc = subprocess.Popen([sys.executable, str(REPO / "train.py"), *TINY_MQAR, f"logging.out_dir={out}", *LONG,
                             "logging.name=long"], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_dir = out / "mqar" / "long"
    deadline = time.time() + 300
    while not (run_dir / "checkpoints" / "last.ckpt").is_file():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.05)
    yield run_dir, proc
    if proc.poll() is None:
        proc.kill()


def test_a_running_run_holds_its_folder_against_other_runs(running, capsys):
    run_dir, proc = running
    root = run_dir.parent.parent
    assert main([*TINY_MQAR, f"logging.out_dir={root}", *SHORT, "trainer.max_steps=2", "logging.name=long"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main([f"ckpt_path={run_dir}", "trainer.max_steps=2"]) == 2  # resuming it while it runs
    assert capsys.readouterr().err.strip() == (f"error: {run_dir} is in use by another running process; wait for "
                                               f"it to stop, or use another logging.name")
    assert proc.poll() is None  # undisturbed


def test_sigterm_saves_a_checkpoint_at_the_current_step_that_resumes_exactly(running, tmp_path, capsys):
    run_dir, proc = running
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    step = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]
    assert 20 < step < 100 and not (run_dir / "summary.json").exists()  # saved between validations; unfinished
    assert "Traceback" not in err and [line for line in err.splitlines() if line.startswith("stopped:")] == [
        f"stopped: SIGTERM at step {step}; saved {run_dir / 'checkpoints' / 'last.ckpt'}; resume with: "
        f"python train.py ckpt_path={run_dir}"]
    assert main([f"ckpt_path={run_dir}"]) == 0
    whole = run(tiny(tmp_path, *LONG, "logging.name=whole"))
    a, b = final_weights(whole["run_dir"]), final_weights(run_dir)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    assert losses(run_dir) == losses(whole["run_dir"])  # the loss history too: each step's row once


def losses(run_dir) -> list[tuple]:
    with (Path(run_dir) / "metrics.csv").open() as f:
        return [(r["step"], r["train/loss"], r["val/loss"]) for r in csv.DictReader(f) if r["train/loss"] or r["val/loss"]]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGUSR1])
def test_ctrl_c_and_slurms_warning_signal_stop_the_same_way(tmp_path, capsys, signum):
    run_dir = tmp_path / "mqar" / "cut"

    def signal_once_training():  # a real signal to this process, once the run is training
        while not (run_dir / "checkpoints" / "last.ckpt").is_file():
            time.sleep(0.01)
        os.kill(os.getpid(), signum)

    threading.Thread(target=signal_once_training, daemon=True).start()
    code = main([*TINY_MQAR, f"logging.out_dir={tmp_path}", *LONG, "trainer.max_steps=100000", "logging.name=cut"])
    assert code == 128 + signum
    assert f"stopped: {signal.Signals(signum).name} at step" in capsys.readouterr().err
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] > 20


def test_a_run_resumes_with_its_own_config_and_refuses_shape_changes(tmp_path, capsys):
    # constant lr: stopping at step 3 (mid-epoch) and extending max_steps is the same schedule as one run of 8
    common = ["model.dropout=0.1", "optim.schedule=constant", "optim.warmup_steps=0", *SHORT,
              "data.train_examples=80"]
    whole = run(tiny(tmp_path, *common, "trainer.max_steps=8", "logging.name=whole"))
    assert main([*TINY_MQAR, f"logging.out_dir={tmp_path}", *common, "trainer.max_steps=3", "logging.name=parts"]) == 0
    run_dir = tmp_path / "mqar" / "parts"
    identity = (run_dir / "run.json").read_text()
    # a shape-changing override is refused, before anything in the folder changes
    assert main([f"ckpt_path={run_dir}", "model.d_model=48"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: model.d_model=48: changes the shape of the resumed model") and err.count("\n") == 1
    assert (run_dir / "run.json").read_text() == identity
    # no original override retyped: the run's config.yaml supplies them; trainer.max_steps applies on top
    assert main(["ckpt_path=last", "logging.name=parts", f"logging.out_dir={tmp_path}", "trainer.max_steps=8"]) == 0
    a, b = final_weights(whole["run_dir"]), final_weights(run_dir)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    # the validations after the resume are logged at their steps (rows count from 0: step 4 is row 3)
    def after_resume(rows):
        return [r for r in rows if r[2] and int(r[0]) >= 3]
    assert after_resume(losses(run_dir)) == after_resume(losses(whole["run_dir"])) != []
    assert "max_steps: 8" in (run_dir / "config.yaml").read_text()
    assert len(json.loads((run_dir / "run.json").read_text())["commands"]) == 2


def wandb_run_record(run_dir: Path) -> tuple[dict, dict]:
    """The run record and the merged summary of every offline W&B run in run_dir (read back with wandb)."""
    runs, summary = [], {}
    for log in sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb")):
        out = subprocess.run([str(Path(sys.executable).parent / "wandb"), "leet", "inspect", "--json", str(log)],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        for record in (json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")):
            if record.get("type") == "run":
                runs.append(record["run"])
            if record.get("type") == "summary":
                summary.update(record["summary"].get("update", {}))
    return runs, summary


def test_wandb_identity_is_the_run_folders_own(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    hybrid = ["model.layers=[gdn]", "model.repeat=4", "model.insert_every=2", "trainer.val_check_interval=2",
              "trainer.max_steps=2", "logging.name=x"]
    metrics = run(tiny(tmp_path, *hybrid, "logging.wandb=true"))
    run_dir = Path(metrics["run_dir"])
    # the same name in another experiment is another run, with another id
    other = run(tiny(tmp_path, *hybrid, "experiment=mqar_sweep_cpu", "logging.wandb=false"))
    ids = [json.loads((Path(m["run_dir"]) / "run.json").read_text())["id"] for m in (metrics, other)]
    assert ids[0] != ids[1]
    assert main([f"ckpt_path={run_dir}", "trainer.max_steps=4"]) == 0  # a resume goes on in the same W&B run
    runs, summary = wandb_run_record(run_dir)
    assert len(runs) == 2 and {r["run_id"] for r in runs} == {ids[0]}
    assert runs[0]["run_group"] == "mqar-(gdn,attention)*2"
    assert {"layers:(gdn,attention)*2", "mixer:gdn", "mixer:attention"} <= set(runs[0]["tags"])
    assert summary["params"] == metrics["params"] > 0 and summary["state_size"] == metrics["state_size"] > 0
