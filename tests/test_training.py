"""End-to-end runs through train.py on tiny settings: learning, resume, DDP, W&B, bad input."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from configs import compose_config
from train import main, run

REPO = Path(__file__).resolve().parents[1]
TINY_MQAR = ["data.vocab_size=64", "data.train_settings=[[32,4]]", "data.val_settings=[[32,4]]",
             "data.val_examples=128", "data.batch_size=32", "model.d_model=32", "trainer.enable_progress_bar=false"]


def tiny(tmp_path, *overrides):
    return compose_config([*TINY_MQAR, f"logging.out_dir={tmp_path}", "logging.wandb=false", *overrides])


@pytest.mark.parametrize("mixer, overrides", [
    ("attention", ["trainer.max_steps=300", "trainer.val_check_interval=300"]),
    # recurrent: slower to find recall at this size
    ("prism", ["trainer.max_steps=800", "trainer.val_check_interval=800", "model.mixers.prism.num_heads=1"]),
])
def test_mqar_learns_well_above_chance(tmp_path, mixer, overrides):
    metrics = run(tiny(tmp_path, f"mixer={mixer}", *overrides))
    chance = 2 / 64
    assert metrics["val/acc"] > 5 * chance, metrics
    assert (Path(metrics["run_dir"]) / "config.yaml").is_file()
    assert (Path(metrics["run_dir"]) / "checkpoints" / "last.ckpt").is_file()
    assert (Path(metrics["run_dir"]) / "metrics.csv").read_text().count("\n") > 5


def test_the_last_step_is_always_validated_and_checkpointed(tmp_path):
    metrics = run(tiny(tmp_path, "trainer.max_steps=5", "trainer.val_check_interval=4"))
    assert torch.load(Path(metrics["run_dir"]) / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 5
    assert metrics["step"] == 5 and "val/loss" in metrics


def test_throughput_is_logged_at_every_logging_step(tmp_path):
    # measured over each logging interval (one device sync per interval): every row with a training loss has it
    metrics = run(tiny(tmp_path, "trainer.max_steps=8", "trainer.val_check_interval=4", "trainer.log_every_n_steps=2",
                       "trainer.peak_tflops=1.0"))  # a peak on the CPU too, so that MFU is logged
    with open(Path(metrics["run_dir"]) / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["train/loss"]]
    assert [int(r["step"]) for r in rows] == [1, 3, 5, 7]
    assert all(float(r["perf/tokens_per_s"]) > 0 and float(r["perf/peak_mem_gib"]) > 0 for r in rows)
    assert all(float(r["perf/mfu"]) > 0 for r in rows)


def final_weights(run_dir: str) -> dict:
    return torch.load(Path(run_dir) / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]


def test_interrupted_and_resumed_run_ends_with_the_same_weights(tmp_path):
    # constant LR so that stopping at step 8 and extending max_steps is the same schedule as one run of 16
    common = ["model.dropout=0.1", "optim.schedule=constant", "optim.warmup_steps=0", "trainer.val_check_interval=4",
              "data.train_examples=80"]  # 2.5 epochs in 16 steps: the data position crosses epoch boundaries
    whole = run(tiny(tmp_path, *common, "trainer.max_steps=16", "logging.name=whole"))
    run(tiny(tmp_path, *common, "trainer.max_steps=8", "logging.name=parts"))
    resumed = run(tiny(tmp_path, *common, "trainer.max_steps=16", "logging.name=parts", "ckpt_path=last"))
    assert resumed["step"] == whole["step"] == 16
    a, b = final_weights(whole["run_dir"]), final_weights(resumed["run_dir"])
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    opt_a = torch.load(Path(whole["run_dir"]) / "checkpoints" / "last.ckpt", weights_only=False)["optimizer_states"]
    opt_b = torch.load(Path(resumed["run_dir"]) / "checkpoints" / "last.ckpt", weights_only=False)["optimizer_states"]
    torch.testing.assert_close(opt_a[0]["state"][0]["exp_avg"], opt_b[0]["state"][0]["exp_avg"], rtol=0, atol=0)


@pytest.mark.parametrize("compile_value, extra", [
    ("true", []),  # the bool: torch.compile's default mode
    # a CUDA-graph mode with gradient accumulation: on the CPU Inductor compiles without the graphs, but the run
    # goes through the same step marks and gradient allocation as on a GPU (tests/lit_modules/test_compile_gpu.py)
    ("reduce-overhead", ["trainer.accumulate_grad_batches=2", "trainer.val_check_interval=6"]),  # 6 batches
])
def test_compiled_run_trains_like_the_eager_run(tmp_path, compile_value, extra):
    from torch._dynamo.utils import counters
    from torch._inductor.cudagraph_trees import MarkStepBox

    common = ["trainer.max_steps=3", "trainer.val_check_interval=3", "mixer=attention", "data.val_examples=32",
              *extra]
    eager = run(tiny(tmp_path, *common, "logging.name=eager"))
    counters.clear()
    marks = MarkStepBox.mark_step_counter  # torch.compiler.cudagraph_mark_step_begin() counts down
    compiled = run(tiny(tmp_path, *common, "logging.name=compiled", f"trainer.compile={compile_value}"))
    assert counters["stats"]["unique_graphs"] > 0  # dynamo did compile the backbone
    graphs = compile_value == "reduce-overhead"
    # in the mode asked for: Inductor skips the CUDA graphs it was asked for on a CPU, and says so
    assert (counters["inductor"]["cudagraph_skips"] > 0) == graphs
    # a new step at every training micro-batch and validation batch (one), only for the CUDA-graph modes
    accumulate = 2 if extra else 1
    assert marks - MarkStepBox.mark_step_counter == (3 * accumulate + 1 if graphs else 0)
    assert compiled["val/loss"] == pytest.approx(eager["val/loss"], rel=1e-4)
    a, b = final_weights(eager["run_dir"]), final_weights(compiled["run_dir"])
    assert a.keys() == b.keys()  # compiled in place: a compiled run's checkpoint loads into an eager model
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)


@pytest.mark.parametrize("launcher", [
    [],  # Lightning's own DDP launcher: rank 0 starts the other rank as a copy of its command
    ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"],  # torchrun: every rank runs train.py
], ids=["lightning", "torchrun"])
def test_two_process_ddp_on_cpu(tmp_path, launcher):
    argv = [*TINY_MQAR, f"logging.out_dir={tmp_path}", "logging.wandb=false", "trainer.max_steps=4",
            "trainer.val_check_interval=4", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, *launcher, str(REPO / "train.py"), *argv], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("done:") == 1 and "steps=4" in result.stdout  # one summary, from rank 0
    # rank 0 alone names and claims the run folder; the other rank writes into it (its run_dir is rank 0's)
    assert len(list(tmp_path.glob("mqar/*"))) == 1
    summary = json.loads(next(tmp_path.glob("mqar/*/summary.json")).read_text())
    assert summary["step"] == 4


def test_wandb_offline_run_is_written_and_its_metrics_read_back(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    metrics = run(tiny(tmp_path, "logging.wandb=true", "trainer.max_steps=6", "trainer.val_check_interval=3",
                       "trainer.log_every_n_steps=1", "logging.project=tests", "logging.tags=[smoke]"))
    log = next(Path(metrics["run_dir"]).glob("wandb/offline-run-*/run-*.wandb"))
    out = subprocess.run([str(Path(sys.executable).parent / "wandb"), "leet", "inspect", "--json", str(log)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    records = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    history = {}
    for record in records:
        for key, value in record.get("history", {}).get("item", {}).items():
            history.setdefault(key, []).append(value)
    assert len(history["train/loss"]) == 6 and all(v > 0 for v in history["train/loss"])
    assert history["val/acc"][-1] == pytest.approx(metrics["val/acc"], rel=1e-5)
    run_record = next(r["run"] for r in records if r.get("type") == "run")
    assert run_record["project"] == "tests" and "smoke" in run_record["tags"]
    assert run_record["config"]["update"]["trainer"]["max_steps"] == 6  # the resolved config is attached


def test_checkpoint_from_a_different_model_is_refused(tmp_path, capsys):
    first = run(tiny(tmp_path, "trainer.max_steps=2", "trainer.val_check_interval=2", "logging.name=small"))
    ckpt = Path(first["run_dir"]) / "checkpoints" / "last.ckpt"
    code = main([*TINY_MQAR, f"logging.out_dir={tmp_path}", "logging.wandb=false", "model.d_model=48",
                 f"ckpt_path={ckpt}", "logging.name=other"])
    assert code == 2
    err = capsys.readouterr().err
    assert "different model" in err and "shapes" in err
    assert not (tmp_path / "mqar" / "other").exists()


@pytest.mark.parametrize("argv, message", [
    (["model.layers=[attention,nosuch]"], "nosuch"),
    (["ckpt_path=last"], "ckpt_path=last: no run under"),
    (["ckpt_path=/nonexistent.ckpt"], "does not exist"),
    (["trainer.max_time=90s"], "'trainer.max_time': '90s' is not allowed; it must be DD:HH:MM:SS"),
])
def test_bad_run_input_exits_cleanly(tmp_path, capsys, argv, message):
    assert main([*TINY_MQAR, f"logging.out_dir={tmp_path}", *argv]) == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("mixer", ["attention", "prism"])
def test_char_lm_loss_drops_on_tiny_shakespeare(tmp_path, data_file, mixer):
    cfg = compose_config(["experiment=lm_char", f"mixer={mixer}", f"data.path={data_file('tinyshakespeare')}",
                          f"data.cache_dir={tmp_path / 'cache'}", "data.seq_len=64", "data.batch_size=16",
                          "data.val_max_batches=8", "model.d_model=32", "model.repeat=2", "model.dropout=0",
                          "model.mixers.prism.num_heads=4",  # lm_char's 6 heads of 64 do not divide width 32
                          "trainer.max_steps=300", "trainer.val_check_interval=300", "optim.lr=3e-3",
                          f"logging.out_dir={tmp_path}", "logging.wandb=false", "trainer.enable_progress_bar=false"])
    metrics = run(cfg)
    # a uniform guess over 66 symbols costs ln 66 = 4.19 nats; character bigram statistics alone reach ~2.5
    assert metrics["val/loss"] < 2.7, metrics
    module_ckpt = torch.load(Path(metrics["run_dir"]) / "checkpoints" / "last.ckpt", weights_only=False)
    assert module_ckpt["hyper_parameters"]["vocab_size"] == 66


@pytest.mark.parametrize("content, overrides, message", [
    (None, [], "no such file"),
    (b"", [], "empty"),
    (b"caf\xe9 au lait\nline two\n", [], "UTF-8"),
    (b"to be or not to be\n", ["data.seq_len=4096"], "tokens"),
])
def test_bad_text_data_stops_before_any_output(tmp_path, capsys, content, overrides, message):
    path = tmp_path / "corpus.txt"
    if content is not None:
        path.write_bytes(content)
    out = tmp_path / "runs"
    code = main(["experiment=lm_char", f"data.path={path}", f"data.cache_dir={tmp_path / 'cache'}",
                 f"logging.out_dir={out}", "logging.wandb=false", *overrides])
    err = capsys.readouterr().err
    assert code == 2 and message in err and str(path) in err, err
    assert not out.exists()


def test_summary_holds_the_selected_checkpoints_validation_and_epoch_validation(tmp_path):
    # lr 1.0 makes the validation loss move up and down: the selected (best) validation is not the last one
    metrics = run(tiny(tmp_path, "trainer.max_steps=8", "trainer.val_check_interval=epoch", "data.train_examples=64",
                       "optim.lr=1.0", "optim.warmup_steps=0", "optim.schedule=constant"))
    with open(Path(metrics["run_dir"]) / "metrics.csv") as f:
        vals = [r for r in csv.DictReader(f) if r["val/loss"]]
    assert [int(r["step"]) for r in vals] == [1, 3, 5, 7]  # every epoch: 64 examples at batch 32, 2 batches
    best = min(vals, key=lambda r: float(r["val/loss"]))  # the first of equals, as ModelCheckpoint
    assert best is not vals[-1] and best["val/acc"] != vals[-1]["val/acc"]
    summary = json.loads((Path(metrics["run_dir"]) / "summary.json").read_text())
    assert summary["best_step"] == int(best["step"]) + 1
    assert summary["val/loss"] == pytest.approx(float(best["val/loss"]))
    assert summary["val/acc"] == pytest.approx(float(best["val/acc"]))
    assert summary["last/val/loss"] == pytest.approx(float(vals[-1]["val/loss"]))
    ckpt = torch.load(Path(metrics["run_dir"]) / "checkpoints" / "best.ckpt", weights_only=False)
    assert ckpt["global_step"] == summary["best_step"]


def test_validation_interval_must_be_batches_or_epoch(tmp_path):
    code = main([*TINY_MQAR, f"logging.out_dir={tmp_path}", "logging.wandb=false", "trainer.val_check_interval=often"])
    assert code == 2
