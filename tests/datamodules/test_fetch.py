"""datamodules.fetch and data paths: download from a local HTTP server with checksum and atomic write, a file
already in place, a wrong checksum, the offline message, and the one-line error of a run whose data is missing."""
from __future__ import annotations

import functools
import hashlib
import http.server
import socket
import threading
from pathlib import Path

import pytest

from datamodules import fetch
from datamodules.fetch import FetchError, PublicFile
from datamodules.paths import data_not_found, resolve_data_path

REPO = Path(__file__).resolve().parents[2]
CONTENT = b"First Citizen:\nBefore we proceed any further, hear me speak.\n" * 50


class Server:
    """An HTTP server on 127.0.0.1 serving a folder from a thread, counting the requests it answers."""

    def __init__(self, folder: Path):
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                server.requests.append(self.path)

        self.requests: list[str] = []
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=folder))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path):
    folder = tmp_path / "served"
    folder.mkdir()
    (folder / "input.txt").write_bytes(CONTENT)
    (folder / "other.txt").write_bytes(CONTENT[::-1])
    srv = Server(folder)
    yield srv
    srv.close()


def public(name: str, url: str, content: bytes = CONTENT) -> PublicFile:
    return PublicFile(name, f"{name}.txt", url, hashlib.sha256(content).hexdigest(), len(content))


def use_files(monkeypatch, *files: PublicFile):
    monkeypatch.setattr(fetch, "FILES", {f.name: f for f in files})


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/input.txt"  # nothing listens there any more: connection refused


def test_download_checks_the_hash_and_keeps_a_present_copy(tmp_path, server, monkeypatch):
    use_files(monkeypatch, public("tiny", f"{server.url}/input.txt"))
    folder = tmp_path / "data"
    path, downloaded = fetch.fetch("tiny", folder)
    assert downloaded and path == folder / "tiny.txt" and path.read_bytes() == CONTENT
    assert [p.name for p in folder.iterdir()] == ["tiny.txt"]  # no temporary file left
    assert fetch.fetch("tiny", folder) == (path, False) and len(server.requests) == 1  # present: no download


def test_wrong_hash_writes_nothing(tmp_path, server, monkeypatch):
    use_files(monkeypatch, public("tiny", f"{server.url}/other.txt"))  # the table's hash is of CONTENT
    folder = tmp_path / "data"
    with pytest.raises(FetchError, match=r"tiny\.txt: the download from .*other\.txt is not the published file"):
        fetch.fetch("tiny", folder)
    assert list(folder.iterdir()) == []


def test_a_present_file_with_other_bytes_is_an_error_naming_it(tmp_path, server, monkeypatch):
    use_files(monkeypatch, public("tiny", f"{server.url}/input.txt"))
    (tmp_path / "tiny.txt").write_bytes(b"something else")
    with pytest.raises(FetchError, match=rf"{tmp_path / 'tiny.txt'}: present, but its sha256 is"):
        fetch.fetch("tiny", tmp_path)
    assert (tmp_path / "tiny.txt").read_bytes() == b"something else" and server.requests == []


@pytest.mark.parametrize("where", ["offline", "not found"])
def test_unreachable_url_says_what_to_download_and_where(tmp_path, server, monkeypatch, capsys, where):
    url = closed_port_url() if where == "offline" else f"{server.url}/missing.txt"
    spec = public("tiny", url)
    use_files(monkeypatch, spec)
    assert fetch.main(["tiny", "--dir", str(tmp_path / "data")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1, err
    assert err.startswith(f"error: cannot download {url} (")
    assert f"save it as {tmp_path / 'data' / 'tiny.txt'} (sha256 {spec.sha256}, {len(CONTENT):,} bytes)" in err
    assert "or set data.path=... to a copy anywhere" in err
    assert not any((tmp_path / "data").iterdir())


def test_all_fetches_every_file(tmp_path, server, monkeypatch, capsys):
    use_files(monkeypatch, public("tiny", f"{server.url}/input.txt"),
              public("rev", f"{server.url}/other.txt", CONTENT[::-1]))
    assert fetch.main(["all", "--dir", str(tmp_path)]) == 0
    assert (tmp_path / "tiny.txt").read_bytes() == CONTENT and (tmp_path / "rev.txt").read_bytes() == CONTENT[::-1]
    assert capsys.readouterr().out.count("downloaded, sha256") == 2
    assert fetch.main(["all", "--dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.count("already present") == 2 and len(server.requests) == 2


def test_the_published_files():
    assert {f.filename: f.size for f in fetch.FILES.values()} == {"tinyshakespeare.txt": 1_115_394,
                                                                   "Beauty.txt": 1_090_094}
    for spec in fetch.FILES.values():  # pinned commits, so the checksums hold
        assert spec.url.startswith("https://raw.githubusercontent.com/") and len(spec.url.split("/")[5]) == 40


def test_relative_paths_resolve_from_the_current_directory_then_the_repository(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_data_path("configs/data/beauty.yaml") == REPO / "configs/data/beauty.yaml"
    assert resolve_data_path("configs/data/*.yaml") == REPO / "configs/data/*.yaml"
    (tmp_path / "configs" / "data").mkdir(parents=True)
    (tmp_path / "configs" / "data" / "beauty.yaml").write_text("data: {}\n")
    assert resolve_data_path("configs/data/beauty.yaml") == Path("configs/data/beauty.yaml")
    assert resolve_data_path("nowhere.txt") == Path("nowhere.txt")


def test_a_missing_public_file_names_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    assert str(data_not_found("data/tinyshakespeare.txt")) == (
        "data file data/tinyshakespeare.txt not found; run: python -m datamodules.fetch tinyshakespeare "
        "(or set data.path=...)")
    elsewhere = str(data_not_found(f"{tmp_path}/Beauty.txt"))
    assert f"run: python -m datamodules.fetch beauty --dir {tmp_path} (" in elsewhere
    assert "no such file" in str(data_not_found("data/other.txt"))
    monkeypatch.chdir(tmp_path)  # -m needs the repository root
    assert f"run: cd {REPO} && python -m datamodules.fetch beauty (" in str(data_not_found("data/Beauty.txt"))


@pytest.mark.parametrize("experiment, name", [("lm_char", "tinyshakespeare"), ("rec_beauty", "beauty")])
def test_a_run_without_its_data_file_stops_with_one_line(tmp_path, capsys, experiment, name):
    from train import main

    path = tmp_path / fetch.FILES[name].filename
    out = tmp_path / "runs"
    assert main([f"experiment={experiment}", f"data.path={path}", f"logging.out_dir={out}", "logging.wandb=false"]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: data: data file {path} not found; run: python -m datamodules.fetch {name} --dir {tmp_path}"
                   f" (or set data.path=...)\n")
    assert not out.exists()


@pytest.mark.parametrize("name", ["tinyshakespeare", "beauty"])
def test_the_real_files_match_the_table(tmp_path, data_file, name, capsys):
    """A correct copy already in the folder is accepted without a download: the table's hashes are the files'."""
    (tmp_path / fetch.FILES[name].filename).write_bytes(data_file(name).read_bytes())
    assert fetch.main([name, "--dir", str(tmp_path)]) == 0
    assert "already present" in capsys.readouterr().out
