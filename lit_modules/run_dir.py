"""The run folder ``<logging.out_dir>/<experiment>/<name>/``: which one a run writes to, claimed so that no two runs
ever share one, the files that say who the run is (run.json) and whether it finished (summary.json), and the
errors that end a run early (RunError, Diverged, Interrupted).

- A new run creates its folder with an exclusive mkdir: an existing name is refused (resume it or pick another),
  and a default name (a timestamp) takes the next free suffix instead of colliding.
- Every run holds ``run.lock`` in its folder while it runs, so a resume cannot write into a running run.
- Only the process of rank 0 claims, locks and writes; the other ranks learn the folder from it (train.py).
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import signal
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from .atomic import write_text_atomic

CHECKPOINTS = "checkpoints"
SUMMARY = "summary.json"
IDENTITY = "run.json"


class RunError(RuntimeError):
    """A problem with the run's inputs (data, checkpoint, run folder), reported in one line without a traceback."""


class Diverged(RuntimeError):
    """Training produced a non-finite loss or gradient norm; the message names the step and the value."""


class Interrupted(Exception):
    """The run was stopped by a signal after saving a checkpoint at ``step``."""

    def __init__(self, signum: int, step: int, checkpoint: Path):
        self.signum, self.step, self.checkpoint = int(signum), step, checkpoint
        super().__init__(f"{signal.Signals(self.signum).name} at step {step}; saved {checkpoint}")


def checkpoint_file(run_dir: Path, which: str = "last") -> Path:
    return Path(run_dir) / CHECKPOINTS / f"{which}.ckpt"


def claim_new_run_dir(root: Path, name: str | None) -> Path:
    """Create the folder of a new run (exclusively: never an existing one). ``name`` None: a timestamp, with a
    suffix -2, -3, ... when another run took it in the same second."""
    root.mkdir(parents=True, exist_ok=True)
    if name:
        run_dir = root / name
        try:
            run_dir.mkdir()
        except FileExistsError:
            raise RunError(f"logging.name={name}: the run folder {run_dir} already exists; resume that run with "
                           f"ckpt_path={run_dir}, or choose another logging.name") from None
        return run_dir
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(1, 10_000):
        run_dir = root / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue
    raise RunError(f"logging.out_dir: no free run name {stamp}-N under {root}")


@contextmanager
def held_run_dir(root: Path, resumed: Path | None, name: str | None, leader: bool) -> Iterator[Path]:
    """The run's folder while the run runs: the resumed one, or a new one claimed under ``root``. Rank 0
    (``leader``) holds ``run.lock`` in it (released however the run ends), and removes a new folder again when
    the run fails before anything was trained (no checkpoint, no metrics). The other ranks get a placeholder
    until rank 0 tells them the folder (callbacks.SharedRunDir)."""
    if not leader:
        yield resumed or root / "(rank 0's)"
        return
    run_dir = resumed or claim_new_run_dir(root, name)
    lock = FileLock(str(run_dir / "run.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise RunError(f"{run_dir} is in use by another running process; wait for it to stop, or use another "
                       f"logging.name") from None
    try:
        yield run_dir
    except BaseException:
        if resumed is None and not any(run_dir.rglob("*.ckpt")) and not (run_dir / "metrics.csv").exists():
            discard(run_dir)
        raise
    finally:
        lock.release()


def discard(run_dir: Path) -> None:
    """Remove a run folder that holds nothing to resume."""
    shutil.rmtree(run_dir, ignore_errors=True)


def run_identity(run_dir: Path, argv: list[str]) -> dict:
    """run.json: the run's W&B id (unique per run folder: a hash of its path and creation time), its creation time
    and the command lines that started and resumed it. Written at the first start, extended at each resume."""
    path = run_dir / IDENTITY
    try:
        identity = json.loads(path.read_text())
    except (OSError, ValueError):
        created = datetime.now().isoformat(timespec="seconds")
        digest = hashlib.sha1(f"{run_dir.resolve()}|{created}".encode()).hexdigest()[:10]
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_dir.name)[:50]
        identity = {"id": f"{slug}-{digest}", "created": created, "commands": []}
    identity["commands"].append(" ".join(["train.py", *argv]))
    write_text_atomic(path, json.dumps(identity, indent=2) + "\n")
    return identity


def write_summary(run_dir: Path, summary: dict) -> None:
    """summary.json: the final metrics; its presence (complete, with a status) marks the run as finished."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in summary.items()}
    write_text_atomic(Path(run_dir) / SUMMARY, json.dumps(clean, indent=2) + "\n")


def read_summary(run_dir: Path) -> tuple[dict | None, str | None]:
    """(the summary of a finished run, None) or (None, why the run does not count as finished)."""
    path = Path(run_dir) / SUMMARY
    if not path.is_file():
        return None, "no summary.json"
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        return None, f"{path} is unreadable ({type(err).__name__}: {err})"
    if not isinstance(summary, dict) or "step" not in summary:
        return None, f"{path} is incomplete (no 'step')"
    return summary, None
