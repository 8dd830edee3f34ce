"""Download the public data files into the repository's git-ignored data/ folder, checked against their SHA-256
(docs/data.md). Without network it says which URL to download by hand and where to put the file.

    python -m datamodules.fetch tinyshakespeare|beauty|all [--dir FOLDER]
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import socket
import sys
import urllib.error
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from torch.hub import download_url_to_file

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT / "data"
RAW = "https://raw.githubusercontent.com"


@dataclass(frozen=True)
class PublicFile:
    name: str  # the fetch command's argument
    filename: str  # its name in the data folder
    url: str  # at a pinned commit, so the bytes never change
    sha256: str
    size: int


FILES = {f.name: f for f in (
    PublicFile("tinyshakespeare", "tinyshakespeare.txt",
               f"{RAW}/karpathy/char-rnn/6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e/data/tinyshakespeare/input.txt",
               "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed", 1_115_394),
    PublicFile("beauty", "Beauty.txt",
               f"{RAW}/RUCAIBox/CIKM2020-S3Rec/2a81540ae18615d88ef88227b0c066e5b74781e5/data/Beauty.txt",
               "226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8", 1_090_094),
)}


class FetchError(RuntimeError):
    """A file that cannot be downloaded, or whose bytes are not the published ones."""


def sha256_of(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def fetch(name: str, folder: Path = DATA_DIR, progress: bool = False) -> tuple[Path, bool]:
    """Put the public file ``name`` into ``folder`` unless a correct copy is there; (its path, downloaded now).
    The download goes to a temporary file in ``folder`` that replaces the target only once its hash matches."""
    spec = FILES[name]
    target = Path(folder) / spec.filename
    if target.exists():
        digest = sha256_of(target)
        if digest != spec.sha256:
            raise FetchError(f"{target}: present, but its sha256 is {digest}, not {spec.sha256} (the file of "
                             f"{spec.url}); move it away and fetch again")
        return target, False
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        download_url_to_file(spec.url, str(target), hash_prefix=spec.sha256, progress=progress)
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as err:
        reason = getattr(err, "reason", None) or err
        raise FetchError(f"cannot download {spec.url} ({reason}); download that file by hand and save it as "
                         f"{target} (sha256 {spec.sha256}, {spec.size:,} bytes), or set data.path=... to a copy "
                         f"anywhere") from None
    except RuntimeError as err:  # torch.hub's hash check; it has already removed the temporary file
        raise FetchError(f"{target}: the download from {spec.url} is not the published file ({err}); "
                         f"nothing was written") from None
    return target, True


def fetch_command(path: str | Path) -> Optional[str]:
    """The command that puts the public file that ``path`` names (by file name) where ``path`` points; None for
    any other file. A relative path is the repository's data folder when it names that, else the current one's."""
    path = Path(path)
    spec = next((f for f in FILES.values() if f.filename == path.name), None)
    if spec is None:
        return None
    if path.is_absolute():
        folder = path.parent
    else:
        in_repo = (REPO_ROOT / path.parent).resolve() == DATA_DIR.resolve()
        folder = DATA_DIR if in_repo else Path.cwd() / path.parent
    where = "" if folder.resolve() == DATA_DIR.resolve() else f" --dir {folder}"
    cd = "" if Path.cwd().resolve() == REPO_ROOT.resolve() else f"cd {REPO_ROOT} && "  # -m needs the repo root
    return f"{cd}python -m datamodules.fetch {spec.name}{where}"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datamodules.fetch", description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=[*FILES, "all"], help="which file (all: every one)")
    parser.add_argument("--dir", type=Path, default=DATA_DIR, help="the folder to put it in (default: %(default)s)")
    args = parser.parse_args(argv)
    for name in FILES if args.name == "all" else [args.name]:
        try:
            path, downloaded = fetch(name, args.dir, progress=sys.stderr.isatty())
        except FetchError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"{path}: {'downloaded' if downloaded else 'already present'}, sha256 {FILES[name].sha256} ok")
    return 0


if __name__ == "__main__":
    socket.setdefaulttimeout(60)  # a network that drops packets fails within a minute instead of hanging
    sys.exit(main())
