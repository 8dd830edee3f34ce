"""Atomic file writes: every file the framework writes (checkpoints, metrics.csv, summary.json, config.yaml, the
token cache, compare's tables) goes to a temporary file in the same folder, is flushed and fsynced, then renamed
over the old one. A crash or a full disk mid-write leaves the previous complete file (or none), never a truncated
one, and the temporary file is removed.

The same folder matters: a rename is atomic only within one file system, and Lightning's own checkpoint writer
stages through the system temp folder and copies, which leaves a truncated file when the copy fails. Lightning's
checkpoint and metrics writers that use this are in atomic_writers.py."""
from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a rename (or a new file) in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: str | os.PathLike) -> None:
    """fsync every file and folder under ``folder`` (before renaming the folder into place)."""
    for root, _, files in os.walk(folder):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(root)


class WriteFailed(OSError):
    """A file could not be written (a full disk, a quota); its previous version is kept."""


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **open_kwargs: Any) -> Iterator[Any]:
    """``with atomic_write(path) as f: f.write(...)``: ``path`` holds either its old content or all of the new."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    f = open(tmp, mode, **open_kwargs)
    try:
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise WriteFailed(f"cannot write {path}: {err.strerror or err}; its previous version is kept") from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(text)


def replace_folder(staging: str | os.PathLike, path: str | os.PathLike) -> None:
    """Put the complete folder ``staging`` (e.g. a sharded checkpoint, written beside ``path``) in place of ``path``
    (a folder, a file or nothing) by renames: ``path`` is at every moment the old one, the new one, or (between
    two renames) absent with the old one at ``.<name>.old``; never a mix of both."""
    import shutil

    staging, path = Path(staging), Path(path)
    fsync_tree(staging)
    old = path.with_name(f".{path.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if path.is_dir():
        os.replace(path, old)
    elif path.exists():
        path.unlink()
    os.replace(staging, path)
    fsync_dir(path.parent)
    shutil.rmtree(old, ignore_errors=True)
