"""Where a configured data file is: ``data.path`` as given when it exists from the current directory, else
relative to the repository root, so the configs' defaults (data/tinyshakespeare.txt, data/Beauty.txt) work from
any directory. A missing public file is reported with the command that fetches it (docs/data.md)."""
from __future__ import annotations

import glob
import os
from pathlib import Path

from .fetch import REPO_ROOT, fetch_command


class DataFileNotFoundError(FileNotFoundError):
    """data.path names nothing that exists, or a folder/glob without any supported file."""


def has_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def _exists(path: Path) -> bool:
    return bool(glob.glob(str(path), recursive=True)) if has_glob(str(path)) else path.exists()


def resolve_data_path(given: str) -> Path:
    """``given`` (a file, folder or glob; ~ and $VARS expanded) from the current directory, or failing that from
    the repository root; as given when neither exists."""
    path = Path(os.path.expandvars(given)).expanduser()
    if path.is_absolute() or _exists(path):
        return path
    in_repo = REPO_ROOT / path
    return in_repo if _exists(in_repo) else path


def data_not_found(given: str, what: str = "no such file or folder") -> DataFileNotFoundError:
    """The one-line error for a data.path that exists nowhere: for a public data file, the fetch command."""
    command = fetch_command(given)
    if command is not None:
        return DataFileNotFoundError(f"data file {given} not found; run: {command} (or set data.path=...)")
    return DataFileNotFoundError(f"data.path={given!r}: {what} (relative paths resolve against the current "
                                 f"directory {os.getcwd()}, then the repository root {REPO_ROOT})")
