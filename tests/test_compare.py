"""compare.py on the CPU with two tiny mixer patterns: the run grid, best-lr selection, the markdown/CSV tables,
the PNG plots, --from-runs, resuming a sweep, W&B runs in one group, and command-line errors."""
import csv
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import compare
from benchmarks.compare.run import threads_per_job

TINY = ["experiment=mqar_sweep_cpu", "data.vocab_size=32", "data.train_settings=[[16,2]]",
        "data.val_settings=[[16,2],[32,4]]", "data.val_examples=16", "data.batch_size=8", "data.train_examples=256",
        "model.d_model=16", "trainer.max_steps=4", "trainer.val_check_interval=2", "trainer.log_every_n_steps=1",
        "optim.warmup_steps=0"]
PATTERNS = ["[attention,attention]", "lin:[gla,gla] model.mixers.gla.num_heads=2"]


def read_csv(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "sweep"
    code = compare.main([*TINY, "--patterns", *PATTERNS, "--seeds", "0", "1", "--lrs", "1e-3", "3e-2",
                         "--out", str(out), "--", "logging.wandb=false"])
    assert code == 0
    return out


def test_grid_table_and_plots(sweep):
    runs = read_csv(sweep / "runs.csv")
    assert len(runs) == 8 and {r["status"] for r in runs} == {"done"}
    assert {r["label"] for r in runs} == {"attention", "lin"}
    summary = read_csv(sweep / "summary.csv")
    assert [r["pattern"] for r in summary] == ["attention", "lin"]
    for row in summary:
        mine = [r for r in runs if r["label"] == row["pattern"]]
        by_lr = {lr: statistics.fmean(float(r["val/acc"]) for r in mine if float(r["lr"]) == lr) for lr in (1e-3, 3e-2)}
        assert float(row["best_lr"]) == max(by_lr, key=by_lr.get)  # the best lr by the mean over seeds
        chosen = [float(r["val/acc"]) for r in mine if float(r["lr"]) == float(row["best_lr"])]
        assert float(row["mean"]) == pytest.approx(statistics.fmean(chosen))
        assert float(row["std"]) == pytest.approx(statistics.stdev(chosen))
        assert row["seeds"] == "2" and row["eval_seq_len"] == "32"
        assert "val/acc@2" in row and "val/acc@4" in row
        assert int(row["params"]) > 0 and int(row["state_size"]) > 0
    attention, lin = summary
    assert attention["layers"] == "attention,attention" and lin["layers"] == "gla,gla"
    assert int(attention["state_size"]) == 2 * 2 * 32 * 16  # 2 layers x K and V x T=32 x d_model 16
    md = (sweep / "summary.md").read_text()
    assert "| pattern |" in md and "| attention |" in md and "| lin |" in md and "±" in md
    for name in ("acc_vs_state.png", "acc_by_slice.png", "loss_curves.png"):
        assert (sweep / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads(next((sweep / "runs").rglob("compare.json")).read_text())
    assert record["status"] == "done" and record["group"] == "sweep"


def test_from_runs_remakes_the_same_table(sweep, tmp_path):
    code = compare.main(["--from-runs", str(sweep), "--out", str(tmp_path)])
    assert code == 0
    assert read_csv(tmp_path / "summary.csv") == read_csv(sweep / "summary.csv")
    assert (tmp_path / "loss_curves.png").is_file()


def test_extra_columns_are_mean_and_std_over_seeds(sweep, tmp_path):
    code = compare.main(["--from-runs", str(sweep), "--out", str(tmp_path), "--columns", "val/loss", "val/acc@4"])
    assert code == 0
    runs = read_csv(tmp_path / "runs.csv")
    for row in read_csv(tmp_path / "summary.csv"):
        chosen = [r for r in runs if r["label"] == row["pattern"] and float(r["lr"]) == float(row["best_lr"])]
        for column in ("val/loss", "val/acc@4"):
            values = [float(r[column]) for r in chosen]
            assert float(row[column]) == pytest.approx(statistics.fmean(values))
            assert float(row[column + " std"]) == pytest.approx(statistics.stdev(values))
    header = (tmp_path / "summary.md").read_text().splitlines()[0]
    assert "| val/loss | val/acc@4 |" in header


def test_rerun_keeps_finished_runs(sweep, capsys):
    code = compare.main([*TINY, "--patterns", PATTERNS[0], "--seeds", "0", "--lrs", "1e-3", "--out", str(sweep),
                         "--", "logging.wandb=false"])
    assert code == 0
    assert "done before, kept" in capsys.readouterr().out


def wandb_records(log: Path) -> list[dict]:
    """The records of an offline W&B run file, read back with the wandb CLI."""
    out = subprocess.run([str(Path(sys.executable).parent / "wandb"), "leet", "inspect", "--json", str(log)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def run_and_summary(records: list[dict]) -> tuple[dict, dict]:
    summary = {}
    for record in records:
        summary.update(record.get("summary", {}).get("update", {}))
    return next(r["run"] for r in records if r.get("type") == "run"), summary


def test_each_run_is_its_own_wandb_run_in_one_group_and_a_summary_run_holds_the_table(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "wb"
    code = compare.main([*TINY, "--patterns", "[attention]", "--seeds", "0", "1", "--out", str(out), "--group",
                         "grp-test", "--", "trainer.max_steps=2", "logging.wandb=true"])
    assert code == 0
    table_runs = {r["name"]: r for r in read_csv(out / "runs.csv")}
    run_dirs = sorted(p.parent for p in (out / "runs").rglob("summary.json"))
    assert len(run_dirs) == 2
    for seed, run_dir in enumerate(run_dirs):  # without wandb.finish() between runs the second would log into the first
        logs = list(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
        assert len(logs) == 1 and run_dir.name in logs[0].name
        run, summary = run_and_summary(wandb_records(logs[0]))
        assert run["run_group"] == "grp-test" and run["job_type"] == "attention"
        assert run["config"]["update"]["compare"] == {"label": "attention", "pattern": "[attention]", "setting": None,
                                                       "vary_key": None, "seed": seed, "lr": 3e-3}
        # the table's columns, as compare.py computes them from the run folder
        assert summary["params"] == int(table_runs[run_dir.name]["params"])
        assert summary["state_size"] == int(table_runs[run_dir.name]["state_size"]) == 2 * 32 * 16
    log, = out.glob("wandb/offline-run-*/run-*.wandb")
    run, summary = run_and_summary(wandb_records(log))
    assert run["run_group"] == "grp-test" and run["job_type"] == "summary" and summary["summary._type"] == "table-file"
    table = json.loads(next(log.parent.glob("files/media/table/summary_*.table.json")).read_text())
    expected = read_csv(out / "summary.csv")
    assert table["columns"] == list(expected[0])
    row = dict(zip(table["columns"], table["data"][0]))
    assert len(table["data"]) == len(expected) == 1 and row["setting"] is None
    assert (row["pattern"], row["layers"], row["state_size"], row["params"], row["seeds"]) == (
        expected[0]["pattern"], expected[0]["layers"], int(expected[0]["state_size"]), int(expected[0]["params"]), 2)
    assert row["mean"] == pytest.approx(float(expected[0]["mean"]))
    images = sorted(p.name.rsplit("_", 2)[0] for p in log.parent.glob("files/media/images/plots/*.png"))
    assert images == sorted(p.stem for p in out.glob("*.png")) == ["acc_by_slice", "acc_vs_state", "loss_curves"]


@pytest.mark.parametrize("argv,message", [
    (["--patterns", "[attention]", "a:[attention]x"], "layer list"),
    (["--patterns", "x:[attention]", "x:[gla]"], "labelled x"),
    (["--patterns", "model.layers=[a]"], "override"),
    (["--patterns", "[nosuch]"], "nosuch"),
    ([], "--patterns"),
])
def test_command_line_errors(argv, message, capsys, tmp_path):
    assert compare.main([*TINY, *argv, "--out", str(tmp_path / "x")]) == 2
    assert message in capsys.readouterr().err


def test_vary_axis_keeps_command_line_order_and_pivots(tmp_path):
    out = tmp_path / "vary"
    code = compare.main([*TINY, "--patterns", "[attention]", "--vary", "optim.weight_decay=0.2,0.0", "--out", str(out),
                         "--", "trainer.max_steps=2", "logging.wandb=false"])
    assert code == 0
    summary = read_csv(out / "summary.csv")
    assert [r["setting"] for r in summary] == ["0.2", "0.0"]
    md = (out / "summary.md").read_text()
    assert "| optim.weight_decay | attention |" in md
    assert (out / "metric_by_setting.png").read_bytes()[:4] == b"\x89PNG"


def test_jobs_run_each_in_its_own_process_with_the_same_results(sweep, tmp_path):
    out = tmp_path / "jobs"
    code = compare.main([*TINY, "--patterns", *PATTERNS, "--seeds", "0", "--lrs", "1e-3", "--jobs", "2",
                         "--out", str(out), "--", "logging.wandb=false"])
    assert code == 0
    parallel = {r["label"]: r for r in read_csv(out / "runs.csv")}
    serial = {r["label"]: r for r in read_csv(sweep / "runs.csv") if r["seed"] == "0" and float(r["lr"]) == 1e-3}
    assert set(parallel) == set(serial) == {"attention", "lin"}
    for label, r in parallel.items():
        assert r["status"] == "done"
        for key in ("val/loss", "train/loss"):
            assert float(r[key]) == pytest.approx(float(serial[label][key]), rel=1e-4), (label, key)
    assert (out / "summary.md").is_file()


def test_parallel_runs_share_the_cores_unless_threads_are_given():
    cores = len(os.sched_getaffinity(0))
    assert threads_per_job(1, None) is None  # one run at a time: torch's own default
    assert threads_per_job(2, None) == max(1, cores // 2)
    assert threads_per_job(10 * cores, None) == 1
    assert threads_per_job(4, 3) == 3


def test_interrupted_run_resumes_from_its_last_checkpoint(tmp_path):
    # a run killed after its step-2 checkpoint (so no summary.json) goes on from there when the command is re-run,
    # and ends with the weights and the loss history of a run that was never interrupted (constant lr: the
    # schedule does not depend on max_steps)
    def sweep(out, *extra):
        code = compare.main([*TINY, "--patterns", PATTERNS[0], "--seeds", "0", "--lrs", "1e-3", "--out", str(out),
                             "--group", "resume", "--", "logging.wandb=false", "optim.schedule=constant", *extra])
        assert code == 0
        return next((out / "runs").glob("*/*"))

    whole = sweep(tmp_path / "whole")
    broken = sweep(tmp_path / "broken", "trainer.max_steps=2")
    (broken / "summary.json").unlink()
    assert sweep(tmp_path / "broken") == broken
    assert json.loads((broken / "summary.json").read_text())["step"] == 4
    a = torch.load(whole / "checkpoints" / "last.ckpt", weights_only=False)
    b = torch.load(broken / "checkpoints" / "last.ckpt", weights_only=False)
    assert b["global_step"] == a["global_step"] == 4
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=0, atol=0, msg=key)
    # the loss history survives the resume: the first part's rows once, then the resumed ones
    def losses(run):
        return [(r["step"], r["train/loss"]) for r in read_csv(run / "metrics.csv") if r["train/loss"]]
    assert losses(broken) == losses(whole) and len(losses(whole)) == 4


def test_an_unreadable_summary_is_reported_and_its_run_run_again(tmp_path, capsys):
    # a summary.json left empty (a full disk, under the old non-atomic writer) is no finished run: --from-runs
    # says so and leaves it out, and re-running the sweep resumes it from its checkpoint and completes it
    out = tmp_path / "sweep"
    argv = [*TINY, "--patterns", PATTERNS[0], "--seeds", "0", "--lrs", "1e-3", "--out", str(out),
            "--", "logging.wandb=false", "trainer.max_steps=2"]
    assert compare.main(argv) == 0
    summary = next((out / "runs").rglob("summary.json"))
    finished = json.loads(summary.read_text())
    summary.write_bytes(b"")
    capsys.readouterr()
    assert compare.main(["--from-runs", str(out), "--out", str(tmp_path / "report")]) == 0
    captured = capsys.readouterr()
    assert f"warning: {summary} is unreadable" in captured.err and "Traceback" not in captured.err
    assert "Runs without results" in (tmp_path / "report" / "summary.md").read_text()
    assert compare.main(argv) == 0
    assert "done before, kept" not in capsys.readouterr().out
    again = json.loads(summary.read_text())
    assert again["step"] == 2 and again["val/acc"] == pytest.approx(finished["val/acc"])
