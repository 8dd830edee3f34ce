"""Where the text of the text datamodule comes from: local .txt files (one document each, or several split on
``data.doc_separator``; ``blank_line`` splits on blank lines), .jsonl/.json/.parquet/.arrow rows (one document
each from ``data.text_field``, read through ``datasets``), a folder or glob of such files in sorted order, a
folder written by ``Dataset.save_to_disk``, or a Hugging Face hub dataset (docs/data.md).

``resolve_source`` checks that the configured source exists and fingerprints it for the token cache;
``Source.documents`` then yields the documents in a fixed order. Bad bytes and malformed rows stop with the
file, line and column (``TextDataError``).
"""
from __future__ import annotations

import bz2
import glob as globlib
import gzip
import importlib.util
import lzma
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional

from .paths import DataFileNotFoundError, data_not_found, has_glob, resolve_data_path
from .tokenizers import HubUnavailableError, TextDataError, ensure_hub_or_offline, hub_is_offline

if TYPE_CHECKING:
    from .text import TextConfig

TEXT_SUFFIXES = (".txt", ".text")
JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")
COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".zstd")
_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


def _compression(path: Path) -> str:
    name = path.name.lower()
    return next((c for c in COMPRESSED if name.endswith(c)), "")


def _file_kind(path: Path, explicit: bool) -> Optional[str]:
    name = path.name.lower()
    comp = _compression(path)
    if comp:
        name = name[:-len(comp)]
    if name.endswith(JSON_SUFFIXES):
        return "json"
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(".arrow"):
        return "arrow"
    if name.endswith(TEXT_SUFFIXES):
        return "text"
    return "text" if explicit else None  # a file named explicitly is read as text whatever its suffix


def _utf8_error(path: Path, data: bytes, err: UnicodeDecodeError, base: int = 0, base_line: int = 1) -> TextDataError:
    start = err.start
    line = base_line + data.count(b"\n", 0, start)
    col = start - (data.rfind(b"\n", 0, start) + 1) + 1
    bad = data[start:min(err.end + 3, len(data))]
    return TextDataError(f"{path}: not valid UTF-8 text at byte offset {base + start} (line {line}, column {col}): "
                         f"bytes {bad!r}. Convert the file to UTF-8 (e.g. `iconv -f latin1 -t utf-8`).")


def _read_text_file(path: Path) -> str:
    opener = _OPENERS.get(_compression(path))
    if _compression(path) and opener is None:
        raise TextDataError(f"{path}: compressed text files must be .gz, .bz2 or .xz (or use .jsonl.zst)")
    try:
        with (opener or open)(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise TextDataError(f"{path}: cannot read: {err}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _utf8_error(path, data, err) from None
    nul = data.find(b"\0")
    if nul >= 0:  # valid UTF-8, but no text holds NUL: a binary file (or a disk image's zeroed blocks)
        line = data.count(b"\n", 0, nul) + 1
        raise TextDataError(f"{path}: NUL byte at byte offset {nul} (line {line}): a binary file, not text")
    return text[1:] if text.startswith("\ufeff") else text


def _check_utf8(path: Path, chunk: int = 1 << 22) -> None:
    """Stream a (JSON) file through a strict UTF-8 check, to name the byte offset and line of a bad byte."""
    offset, line, carry = 0, 1, b""  # offset and line of the start of `carry`
    with open(path, "rb") as f:
        while True:
            data = f.read(chunk)
            final = not data
            block = carry + data
            try:
                block.decode("utf-8")
                good = len(block)
            except UnicodeDecodeError as err:
                truncated = err.reason == "unexpected end of data" and err.end == len(block)
                if final or not truncated:
                    raise _utf8_error(path, block, err, base=offset, base_line=line) from None
                good = err.start  # a character split across chunks: keep its bytes for the next block
            if final:
                return
            line += block.count(b"\n", 0, good)
            offset += good
            carry = block[good:]


def _split_documents(text: str, separator: Optional[str]) -> list[str]:
    if separator is None:
        return [text]
    parts = re.split(r"\n[ \t\r\f\v]*\n", text) if separator == "blank_line" else text.split(separator)
    return [p for p in parts if p.strip()]


def _field(record: dict, name: str):
    if name in record:
        return record[name], True
    value = record
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None, False
        value = value[part]
    return value, True


def _json_error_location(path: Path) -> str:
    """Find the first malformed line of a JSON-lines file (only called once loading failed)."""
    import json
    if _compression(path):
        return ""
    try:
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                if line.strip():
                    try:
                        json.loads(line)
                    except json.JSONDecodeError as err:
                        return f" (line {i}, column {err.colno}: {err.msg})"
    except (OSError, UnicodeDecodeError):
        pass
    return ""


def _iter_records(records, where: str, text_field: str, line_numbers: bool) -> Iterator[str]:
    for i, record in enumerate(records):
        value, found = _field(record, text_field)
        if not found:
            present = ", ".join(map(str, record.keys()))
            raise TextDataError(f"{where}: no field {text_field!r} (data.text_field); fields present: {present}. "
                                f"Set data.text_field to the one that holds the text.")
        if value is None:
            continue
        if not isinstance(value, str):
            unit = "line" if line_numbers else "row"
            raise TextDataError(f"{where}, {unit} {i + 1}: field {text_field!r} is a {type(value).__name__}, "
                                f"not text")
        if value:
            yield value


def _iter_table_file(path: Path, kind: str, text_field: str) -> Iterator[str]:
    import datasets
    if kind == "json" and not _compression(path):
        _check_utf8(path)
    try:
        ds = datasets.load_dataset(kind, data_files=[str(path)], split="train", streaming=True)
        records = iter(ds)
        first = next(records, None)
    except Exception as err:  # noqa: BLE001 - pyarrow/datasets raise many kinds for a malformed file
        raise TextDataError(f"{path}: cannot read as {kind}: {type(err).__name__}: {err}"
                            f"{_json_error_location(path) if kind == 'json' else ''}") from None
    if first is None:
        return

    def chained():
        yield first
        try:
            yield from records
        except Exception as err:  # noqa: BLE001
            raise TextDataError(f"{path}: cannot read as {kind}: {type(err).__name__}: {err}"
                                f"{_json_error_location(path) if kind == 'json' else ''}") from None

    yield from _iter_records(chained(), str(path), text_field, line_numbers=path.name.endswith((".jsonl", ".ndjson")))


def _hub_error(cfg: TextConfig, err: Exception) -> TextDataError:
    what = f"data.hub={cfg.hub!r}" + (f" (hub_config={cfg.hub_config!r})" if cfg.hub_config else "")
    local_help = ("To train without the hub, download the data where the hub is reachable (e.g. a few .jsonl or "
                  ".parquet shards) and point at the files: data.hub=null data.path='/data/slimpajama/*.jsonl' "
                  "(data.text_field names the text column); or set HF_HOME to a Hugging Face cache that already "
                  "holds the dataset.")
    text = f"{type(err).__name__}: {err}".splitlines()[0][:300]
    if "zstandard" in str(err):
        return TextDataError(f"{what}: its files are zstd-compressed; install the zstandard package "
                             f"(pip install zstandard) [{text}]")
    if hub_is_offline() or isinstance(err, ConnectionError):
        return HubUnavailableError(f"{what}: the Hugging Face hub is offline or unreachable (HF_HUB_OFFLINE/"
                                   f"HF_DATASETS_OFFLINE, or no network) and the dataset is not in the local cache "
                                   f"[{text}]. {local_help}")
    if type(err).__name__ in ("DatasetNotFoundError", "FileNotFoundError", "RepositoryNotFoundError"):
        return TextDataError(f"{what}: no such dataset on the hub, or it is gated/private (log in with `hf auth "
                             f"login`) [{text}]. {local_help}")
    return TextDataError(f"{what}, split={cfg.split!r}: cannot load [{text}]")


def _iter_hub(cfg: TextConfig) -> Iterator[str]:
    ensure_hub_or_offline()
    import datasets
    try:
        ds = datasets.load_dataset(cfg.hub, cfg.hub_config, split=cfg.split, streaming=cfg.streaming)
        records = iter(ds)
        first = next(records, None)
    except Exception as err:  # noqa: BLE001
        raise _hub_error(cfg, err) from None
    if first is None:
        return

    def chained():
        yield first
        yield from records

    yield from _iter_records(chained(), f"hub dataset {cfg.hub}", cfg.text_field, line_numbers=False)


def _iter_disk(path: Path, cfg: TextConfig) -> Iterator[str]:
    import datasets
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as err:  # noqa: BLE001
        raise TextDataError(f"{path}: cannot load the saved dataset: {err}") from None
    if isinstance(ds, datasets.DatasetDict):
        if cfg.split not in ds:
            raise TextDataError(f"{path}: no split {cfg.split!r} (data.split); splits: {', '.join(ds)}")
        ds = ds[cfg.split]
    if cfg.text_field not in ds.column_names and "." not in cfg.text_field:
        raise TextDataError(f"{path}: no field {cfg.text_field!r} (data.text_field); fields present: "
                            f"{', '.join(ds.column_names)}. Set data.text_field to the one that holds the text.")
    yield from _iter_records(iter(ds), str(path), cfg.text_field, line_numbers=False)


@dataclass
class Source:
    kind: str  # files | hub | disk
    slug: str
    description: str
    fingerprint: dict
    files: list = field(default_factory=list)

    def documents(self, cfg: TextConfig, max_chars: Optional[int] = None) -> Iterator[str]:
        """Every document, in a fixed order, with data.max_documents applied (and a character cap)."""
        count, chars = 0, 0
        for doc in self._all_documents(cfg):
            yield doc
            count += 1
            chars += len(doc)
            if (cfg.max_documents is not None and count >= cfg.max_documents) or \
                    (max_chars is not None and chars >= max_chars):
                return

    def _all_documents(self, cfg: TextConfig) -> Iterator[str]:
        if self.kind == "hub":
            yield from _iter_hub(cfg)
        elif self.kind == "disk":
            yield from _iter_disk(self.files[0], cfg)
        else:
            for path, kind in self.files:
                if kind == "text":
                    text = _read_text_file(path)
                    if not text.strip():
                        if len(self.files) == 1:
                            raise TextDataError(f"{path}: the file holds only whitespace; no text to train on")
                        continue
                    yield from _split_documents(text, cfg.doc_separator)
                else:
                    yield from _iter_table_file(path, kind, cfg.text_field)


def resolve_source(cfg: TextConfig) -> Source:
    """Check that the configured source exists and fingerprint it (no reading of contents yet)."""
    caps = {"text_field": cfg.text_field, "max_documents": cfg.max_documents, "max_tokens": cfg.max_tokens}
    if cfg.hub:
        slug = cfg.hub.replace("/", "_") + (f"_{cfg.hub_config}" if cfg.hub_config else "") + f"_{cfg.split}"
        return Source("hub", slug, f"hub dataset {cfg.hub}" + (f" ({cfg.hub_config})" if cfg.hub_config else "")
                      + f" split {cfg.split}", {"hub": cfg.hub, "config": cfg.hub_config, "split": cfg.split, **caps})

    given = cfg.path
    path = resolve_data_path(given)
    if has_glob(given):
        matches = [Path(m) for m in sorted(globlib.glob(str(path), recursive=True))]
        files = [(m, _file_kind(m, explicit=False)) for m in matches if m.is_file()]
        files = [(m, k) for m, k in files if k is not None]
        if not files:
            raise data_not_found(given, f"the pattern matches no .txt/.jsonl/.json/.parquet/.arrow file "
                                        f"({len(matches)} path(s) matched)")
        slug = path.parent.name or "files"
    elif path.is_file():
        files = [(path, _file_kind(path, explicit=True))]
        slug = path.name
    elif path.is_dir():
        if (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():
            stat = [(str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns)
                    for p in sorted(path.rglob("*")) if p.is_file()]
            return Source("disk", path.resolve().name, f"saved dataset {path}",
                          {"disk": str(path.resolve()), "split": cfg.split, "files": stat, **caps}, files=[path])
        found = sorted(p for p in path.rglob("*") if p.is_file() and not any(
            part.startswith(".") for part in p.relative_to(path).parts))
        files = [(p, _file_kind(p, explicit=False)) for p in found]
        files = [(p, k) for p, k in files if k is not None]
        if not files:
            raise DataFileNotFoundError(
                f"data.path={given!r}: the folder {path.resolve()} holds no .txt/.text, .jsonl/.json/.ndjson, "
                f".parquet or .arrow file ({len(found)} other file(s))")
        slug = path.resolve().name
    else:
        raise data_not_found(given)

    zst = [p for p, _ in files if _compression(p) in (".zst", ".zstd")]
    if zst and importlib.util.find_spec("zstandard") is None:
        raise TextDataError(f"{zst[0]}: zstd-compressed; install the zstandard package (pip install zstandard) "
                            f"or decompress the file(s)")
    empty = [p for p, _ in files if p.stat().st_size == 0]
    if len(empty) == len(files):
        raise TextDataError(f"data.path={given!r}: {empty[0] if len(empty) == 1 else f'all {len(empty)} files'} "
                            f"{'is' if len(empty) == 1 else 'are'} empty (0 bytes); no text to train on")
    if empty:
        print(f"[data] skipping {len(empty)} empty file(s): {', '.join(map(str, empty[:5]))}", file=sys.stderr)
        files = [(p, k) for p, k in files if p.stat().st_size > 0]
    stats = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p, _ in files]
    description = str(files[0][0]) if len(files) == 1 else f"{len(files)} files under {given}"
    return Source("files", slug, description,
                  {"files": stats, "doc_separator": cfg.doc_separator, **caps}, files=files)

