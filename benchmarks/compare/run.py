"""Training the planned runs: one after another in this process, or ``jobs`` at once in fresh processes; a run
whose summary.json is complete is kept, one with a last checkpoint resumes from it."""
from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path


def run_one(i: int, n: int, item: dict, threads: int | None = None) -> bool:
    """Train one planned run (resuming from its last checkpoint if it has one); True if it failed. A run that
    diverges is a result (its summary says so), not a failure."""
    from lit_modules.atomic import write_text_atomic
    from lit_modules.loggers import finish_wandb
    from lit_modules.run_dir import Diverged
    from lit_modules.run_dir import discard
    from train import run

    if threads:
        import torch

        torch.set_num_threads(threads)
    run_dir: Path = item["run_dir"]
    head = f"[{i}/{n}] {run_dir.name}"
    cfg = item["cfg"]
    if (run_dir / "checkpoints" / "last.ckpt").is_file():
        cfg.ckpt_path = "last"
    elif run_dir.exists():  # an earlier attempt that saved nothing to resume from: start it over
        discard(run_dir)
    record = {k: item[k] for k in ("label", "pattern", "seed", "lr", "vary_key", "setting", "group")}
    record["index"] = i  # tables list patterns and settings in the order of the command line
    print(f"{head}: training", flush=True)
    try:
        metrics = run(cfg)
    except Diverged as err:
        finish_wandb(failed=True)
        write_text_atomic(run_dir / "compare.json", json.dumps({**record, "status": "diverged"}, indent=2))
        print(f"{head}: {err}", file=sys.stderr, flush=True)
        return False
    except Exception:  # noqa: BLE001 - one failed run must not lose the rest of the sweep
        finish_wandb(failed=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run_dir / "compare.json", json.dumps({**record, "status": "failed",
                                                                "error": traceback.format_exc()[-4000:]}, indent=2))
        print(f"{head}: FAILED\n{traceback.format_exc()}", file=sys.stderr, flush=True)
        return True
    finish_wandb()
    write_text_atomic(run_dir / "compare.json", json.dumps({**record, "status": "done"}, indent=2))
    shown = " ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())
                     if k.startswith("val/") and "@" not in k and isinstance(v, float))
    print(f"{head}: {shown} steps={metrics.get('step')} {metrics.get('seconds')}s", flush=True)
    return False


def threads_per_job(jobs: int, threads: int | None) -> int | None:
    """torch CPU threads per run: as given, else the cores shared out when several runs go at once (as torchrun
    does: each process would otherwise start a thread per core, and N processes would oversubscribe the cores)."""
    if threads or jobs <= 1:
        return threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // jobs)


def execute(plan: list[dict], jobs: int = 1, threads: int | None = None) -> int:
    """Run the plan's unfinished runs, ``jobs`` at a time: jobs > 1 gives each run a fresh process (tiny models
    leave a GPU, or the cores, mostly idle one at a time). Returns the number of failed runs."""
    from lit_modules.run_dir import read_summary

    todo = []
    for i, item in enumerate(plan, 1):
        if read_summary(item["run_dir"])[0] is not None:  # finished: its summary is complete
            print(f"[{i}/{len(plan)}] {item['run_dir'].name}: done before, kept", flush=True)
        else:
            todo.append((i, item))
    if jobs <= 1:
        return sum(run_one(i, len(plan), item, threads) for i, item in todo)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn: no CUDA or W&B state inherited from this process; one task per process: each run starts clean
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), max_tasks_per_child=1) as pool:
        futures = [pool.submit(run_one, i, len(plan), item, threads) for i, item in todo]
        return sum(f.result() for f in futures)
