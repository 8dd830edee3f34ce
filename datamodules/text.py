"""Language-modelling data: local text/jsonl/parquet files or a Hugging Face hub dataset, tokenised once into a
memory-mapped token cache, split into train/val by document, packed into windows of ``seq_len + 1`` tokens.

    data: {name: text, path: ../shared/data/text/tinyshakespeare.txt, tokenizer: char, seq_len: 256}
    data: {name: text, hub: cerebras/SlimPajama-627B, streaming: true, tokenizer: gpt2, max_tokens: 2000000000}

Batches: ``input_ids`` and ``labels`` LongTensor [B, T] (labels are the next tokens; -100 = no loss) and, with
``boundaries: respect`` (the default), ``cu_seqlens`` int32 [n + 1]: the B*T tokens of the batch, flattened,
are one packed stream of documents with boundaries at these offsets (every window start is one), so a model run
on [1, B*T] with cu_seqlens never mixes two documents; a label that would predict the first token of the next
document from the previous one's EOS is -100. ``boundaries: concat`` is plain concatenation: no cu_seqlens,
every label kept.

Documents: a .txt file is one document (or several, split on ``doc_separator``; ``blank_line`` splits on blank
lines); .jsonl/.json/.parquet/.arrow rows give one document each from ``text_field``, read through ``datasets``;
a folder or glob takes every such file in sorted order; a folder written by ``Dataset.save_to_disk`` works too.
EOS follows each document.

Split (fixed by ``split_seed``, not by the run's seed, so every run validates on the same text): with enough
documents that ``round(n_documents * val_fraction) >= 1``, that many documents, chosen at random, are the
validation set; otherwise (a single file such as Tiny Shakespeare) the last ``val_fraction`` of the token
stream is. The run's seed orders the training windows (``ResumableLoader``, which also resumes mid-epoch).

Build the cache ahead of a multi-GPU run (rank 0 would otherwise build it while the others wait):
    python -m datamodules.text configs/data/slimpajama.yaml [key=value ...]
"""
from __future__ import annotations

import bz2
import glob as globlib
import gzip
import importlib.util
import lzma
import os
import re
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Iterator, Optional

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .loader import ResumableLoader
from .registry import register_datamodule
from .token_cache import TokenCache, build_or_open, entry_name, write_tokens
from .tokenizers import (BPE_TRAIN_MAX_CHARS, HubUnavailableError, TextDataError, TokenizerError, build_tokenizer,
                         ensure_hub_or_offline, hub_is_offline, is_trained, tokenizer_fingerprint, tokenizer_slug)

__all__ = ["TextConfig", "TextDataModule", "TextDataError", "DataFileNotFoundError", "HubUnavailableError",
           "TokenizerError", "PackedWindows", "collate_windows"]

REPO_ROOT = Path(__file__).resolve().parents[1]
TEXT_SUFFIXES = (".txt", ".text")
JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")
COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".zstd")
_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
IGNORE_INDEX = -100


class DataFileNotFoundError(FileNotFoundError):
    """data.path names nothing that exists, or a folder/glob without any supported file."""


@dataclass
class TextConfig:
    name: str = "text"
    # Where the text is: exactly one of a local path (file, folder or glob; relative to the current directory)
    # and a hub dataset name.
    path: Optional[str] = None
    hub: Optional[str] = None
    hub_config: Optional[str] = None
    split: str = "train"  # split of the hub dataset (or save_to_disk folder) to read
    streaming: bool = True  # hub: stream documents instead of downloading the whole dataset first
    text_field: str = "text"  # column holding the text (jsonl/json/parquet/arrow/hub); dotted for nested fields
    doc_separator: Optional[str] = None  # .txt: split a file into documents on this string; "blank_line"
    tokenizer: str = "char"  # char | bpe | a Hugging Face tokenizer name (gpt2) | a local tokenizer dir/json
    vocab_size: int = 4096  # bpe only
    seq_len: int = 256
    batch_size: int = 32
    val_fraction: float = 0.1
    split_seed: int = 0  # picks the validation documents; independent of the run's seed
    boundaries: str = field(default="respect", metadata={"choices": ("respect", "concat")})
    cache_dir: Optional[str] = None  # default: $PRISM_CACHE_DIR or <repo>/.cache/text
    num_workers: int = 0
    max_documents: Optional[int] = None  # read at most this many documents
    max_tokens: Optional[int] = None  # keep at most this many tokens (the last document is cut)
    val_max_batches: Optional[int] = None  # validate on at most this many batches (evenly spaced windows)


# ---------------------------------------------------------------------------------------------------------
# Reading documents
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


def _has_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def resolve_source(cfg: TextConfig) -> Source:
    """Check that the configured source exists and fingerprint it (no reading of contents yet)."""
    caps = {"text_field": cfg.text_field, "max_documents": cfg.max_documents, "max_tokens": cfg.max_tokens}
    if cfg.hub:
        slug = cfg.hub.replace("/", "_") + (f"_{cfg.hub_config}" if cfg.hub_config else "") + f"_{cfg.split}"
        return Source("hub", slug, f"hub dataset {cfg.hub}" + (f" ({cfg.hub_config})" if cfg.hub_config else "")
                      + f" split {cfg.split}", {"hub": cfg.hub, "config": cfg.hub_config, "split": cfg.split, **caps})

    given = cfg.path
    path = Path(os.path.expandvars(given)).expanduser()
    if _has_glob(given):
        matches = [Path(m) for m in sorted(globlib.glob(str(path), recursive=True))]
        files = [(m, _file_kind(m, explicit=False)) for m in matches if m.is_file()]
        files = [(m, k) for m, k in files if k is not None]
        if not files:
            raise DataFileNotFoundError(
                f"data.path={given!r}: the pattern matches no .txt/.jsonl/.json/.parquet/.arrow file "
                f"({len(matches)} path(s) matched; relative paths resolve against the current directory {os.getcwd()})")
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
        hint = ""
        if not path.is_absolute() and (REPO_ROOT / path).exists() and REPO_ROOT != Path.cwd():
            hint = f"; it exists relative to the repository root {REPO_ROOT}: run from there or give an absolute path"
        raise DataFileNotFoundError(f"data.path={given!r}: no such file or folder ({path.resolve()}; relative paths "
                                    f"resolve against the current directory {os.getcwd()}){hint}")

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


# ---------------------------------------------------------------------------------------------------------
# Packing
def _runs(offsets: np.ndarray, selected: np.ndarray) -> np.ndarray:
    """Token ranges [start, end) of the runs of consecutive selected documents."""
    idx = np.flatnonzero(selected)
    if len(idx) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    breaks = np.flatnonzero(np.diff(idx) != 1)
    starts = np.concatenate([idx[:1], idx[breaks + 1]])
    ends = np.concatenate([idx[breaks], idx[-1:]]) + 1
    return np.stack([offsets[starts], offsets[ends]], axis=1).astype(np.int64)


def split_segments(doc_offsets: np.ndarray, val_fraction: float, split_seed: int):
    """(train segments, val segments, how): token ranges of the cache for each split."""
    n_docs = len(doc_offsets) - 1
    n_tokens = int(doc_offsets[-1])
    n_val = int(round(n_docs * val_fraction))
    if n_val >= 1 and n_docs >= 2:
        n_val = min(n_val, n_docs - 1)
        is_val = np.zeros(n_docs, dtype=bool)
        is_val[np.random.default_rng(split_seed).permutation(n_docs)[:n_val]] = True
        return _runs(doc_offsets, ~is_val), _runs(doc_offsets, is_val), f"{n_val} of {n_docs} documents"
    cut = int(n_tokens * (1.0 - val_fraction))
    return (np.array([[0, cut]], dtype=np.int64), np.array([[cut, n_tokens]], dtype=np.int64),
            f"last {val_fraction:g} of the token stream ({n_docs} document{'s' if n_docs != 1 else ''})")


class PackedWindows(Dataset):
    """Window i = tokens [i*T, i*T + T + 1) of the concatenated segments: inputs w[:-1], labels w[1:]."""

    def __init__(self, cache: TokenCache, segments: np.ndarray, seq_len: int, respect_boundaries: bool,
                 window_ids: Optional[np.ndarray] = None):
        self.cache, self.segments, self.seq_len = cache, np.asarray(segments, dtype=np.int64), seq_len
        self.respect = respect_boundaries
        lengths = self.segments[:, 1] - self.segments[:, 0]
        self.cum = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.n_tokens = int(self.cum[-1])
        self.n_windows = max(0, (self.n_tokens - 1) // seq_len)
        self.window_ids = window_ids

    def __len__(self) -> int:
        return len(self.window_ids) if self.window_ids is not None else self.n_windows

    def __getitem__(self, index: int) -> dict:
        if self.window_ids is not None:
            index = int(self.window_ids[index])
        if not 0 <= index < self.n_windows:
            raise IndexError(index)
        T, tokens, offsets = self.seq_len, self.cache.tokens, self.cache.doc_offsets
        p0 = index * T
        p1 = p0 + T + 1
        k = int(np.searchsorted(self.cum, p0, side="right")) - 1
        pieces, starts, p = [], [], p0
        while p < p1:
            seg_start, seg_end = self.segments[k]
            a = int(seg_start + (p - self.cum[k]))
            b = int(min(seg_end, a + (p1 - p)))
            pieces.append(np.asarray(tokens[a:b]))
            if self.respect:
                o = p - p0
                starts.append(o)  # a segment is a run of whole documents (or the window start)
                inner = offsets[np.searchsorted(offsets, a, side="right"):np.searchsorted(offsets, b, side="left")]
                starts.extend((o + inner - a).tolist())
            p += b - a
            k += 1
        window = torch.from_numpy(np.concatenate(pieces).astype(np.int64))
        item = {"input_ids": window[:-1], "labels": window[1:].clone()}
        if self.respect:
            s = np.unique(np.asarray(starts, dtype=np.int64))
            s = s[s > 0]  # positions 1..T where a document starts
            item["labels"][torch.from_numpy(s - 1)] = IGNORE_INDEX  # EOS -> next document's first token
            item["doc_starts"] = s[s < T]
        return item


def collate_windows(items: list[dict]) -> dict:
    batch = {"input_ids": torch.stack([it["input_ids"] for it in items]),
             "labels": torch.stack([it["labels"] for it in items])}
    if "doc_starts" in items[0]:
        T = batch["input_ids"].shape[1]
        parts = [np.concatenate([[0], it["doc_starts"]]) + b * T for b, it in enumerate(items)]
        parts.append(np.array([len(items) * T]))
        batch["cu_seqlens"] = torch.from_numpy(np.concatenate(parts).astype(np.int32))
    return batch


# ---------------------------------------------------------------------------------------------------------
def _to_config(config) -> TextConfig:
    if isinstance(config, TextConfig):
        return config
    if config is None:
        config = {}
    try:
        from omegaconf import DictConfig, OmegaConf
        if isinstance(config, DictConfig):
            config = OmegaConf.to_container(config, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    allowed = [f.name for f in fields(TextConfig)]
    unknown = sorted(set(config) - set(allowed))
    if unknown:
        raise TextDataError(f"data.{unknown[0]}: unknown key for the text datamodule; allowed keys: "
                            f"{', '.join(allowed)}")
    return TextConfig(**dict(config))


def _check_config(cfg: TextConfig) -> None:
    problems = []
    if bool(cfg.path) == bool(cfg.hub):
        problems.append("data: set exactly one of data.path (local file, folder or glob) and data.hub (a Hugging "
                        f"Face dataset name); got path={cfg.path!r}, hub={cfg.hub!r}")
    if cfg.seq_len < 1:
        problems.append(f"data.seq_len={cfg.seq_len} must be >= 1")
    if cfg.batch_size < 1:
        problems.append(f"data.batch_size={cfg.batch_size} must be >= 1")
    if not 0.0 < cfg.val_fraction < 1.0:
        problems.append(f"data.val_fraction={cfg.val_fraction} must be between 0 and 1 (exclusive)")
    if cfg.boundaries not in ("respect", "concat"):
        problems.append(f"data.boundaries={cfg.boundaries!r}: choose one of respect, concat")
    if cfg.tokenizer == "bpe" and cfg.vocab_size < 257:
        problems.append(f"data.vocab_size={cfg.vocab_size}: a byte-level BPE needs at least 257 (256 bytes + EOS)")
    for key in ("max_documents", "max_tokens", "val_max_batches"):
        value = getattr(cfg, key)
        if value is not None and value < 1:
            problems.append(f"data.{key}={value} must be >= 1 (or null for no cap)")
    if cfg.num_workers < 0:
        problems.append(f"data.num_workers={cfg.num_workers} must be >= 0")
    if problems:
        raise TextDataError("; ".join(problems))


def default_cache_dir() -> Path:
    return Path(os.environ.get("PRISM_CACHE_DIR") or REPO_ROOT / ".cache" / "text")


@register_datamodule("text")
class TextDataModule(L.LightningDataModule):
    Config = TextConfig
    task = "lm"

    def __init__(self, config=None, seed: int = 0):
        super().__init__()
        self.cfg = _to_config(config)
        _check_config(self.cfg)
        self.seed = int(seed)
        self.cache: Optional[TokenCache] = None
        self.cache_built = False  # True when this object tokenised the corpus (False: read from the cache)
        self.train_dataset: Optional[PackedWindows] = None
        self.val_dataset: Optional[PackedWindows] = None
        self._tokenizer = None
        self.split_description = ""

    # --- cache ----------------------------------------------------------------------------------------------
    @property
    def cache_root(self) -> Path:
        return Path(self.cfg.cache_dir).expanduser() if self.cfg.cache_dir else default_cache_dir()

    def _open_cache(self) -> TokenCache:
        if self.cache is not None:
            return self.cache
        cfg = self.cfg
        source = resolve_source(cfg)
        tok_key = tokenizer_fingerprint(cfg.tokenizer, cfg.vocab_size)
        name = entry_name(f"{source.slug}-{tokenizer_slug(cfg.tokenizer, cfg.vocab_size)}",
                          {"source": source.fingerprint, "tokenizer": tok_key})

        def build(directory: Path) -> dict:
            pretrained = None if is_trained(cfg.tokenizer) else build_tokenizer(cfg.tokenizer, cfg.vocab_size)
            if source.kind == "hub" and cfg.streaming and cfg.max_tokens is None and cfg.max_documents is None:
                print(f"[data] warning: no data.max_tokens or data.max_documents: the whole of {source.description}"
                      f" will be streamed into the token cache", file=sys.stderr, flush=True)
            print(f"[data] tokenising {source.description} with tokenizer {cfg.tokenizer!r} into "
                  f"{self.cache_root / name}", file=sys.stderr, flush=True)
            if pretrained is None:
                # Pass 1 learns the tokenizer; under max_tokens only text that can end up in the cache counts
                # (a character is one token, so max_tokens characters cover every kept document).
                limit = cfg.max_tokens if cfg.tokenizer == "char" else \
                    (min(BPE_TRAIN_MAX_CHARS, 8 * cfg.max_tokens) if cfg.max_tokens else None)
                tokenizer = build_tokenizer(cfg.tokenizer, cfg.vocab_size,
                                            lambda: source.documents(cfg, max_chars=limit))
            else:
                tokenizer = pretrained
            tokenizer.save(directory)
            meta = write_tokens(directory, tokenizer, source.documents(cfg), max_tokens=cfg.max_tokens)
            if meta["n_documents"] == 0:
                raise TextDataError(f"{source.description}: no documents with text found"
                                    + (f" (field {cfg.text_field!r} is empty or null everywhere)"
                                       if source.kind != "files" or any(k != "text" for _, k in source.files)
                                       else ""))
            meta.update(source=source.description, tokenizer=tokenizer.name, key={"source": source.fingerprint,
                                                                                  "tokenizer": tok_key})
            print(f"[data] cached {meta['n_documents']:,} documents, {meta['n_tokens']:,} tokens "
                  f"(vocab {meta['vocab_size']:,}) in {meta['tokenize_seconds']:.1f} s", file=sys.stderr, flush=True)
            return meta

        self.cache, self.cache_built = build_or_open(self.cache_root, name, build)
        return self.cache

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = self._open_cache().tokenizer()
        return self._tokenizer

    @property
    def vocab_size(self) -> int:
        return int(self._open_cache().meta["vocab_size"])

    @property
    def eos_id(self) -> int:
        return int(self._open_cache().meta["eos_id"])

    # --- Lightning hooks --------------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        self._build_datasets()

    def setup(self, stage: Optional[str] = None) -> None:
        self._build_datasets()

    def _build_datasets(self) -> None:
        if self.train_dataset is not None:
            return
        cfg, cache = self.cfg, self._open_cache()
        T = cfg.seq_len
        train_seg, val_seg, how = split_segments(cache.doc_offsets, cfg.val_fraction, cfg.split_seed)
        respect = cfg.boundaries == "respect"
        train = PackedWindows(cache, train_seg, T, respect)
        val = PackedWindows(cache, val_seg, T, respect)
        where = f"{cache.meta['source']} ({cache.n_tokens:,} tokens in {cache.n_documents:,} documents with " \
                f"tokenizer {cache.meta['tokenizer']!r})"
        fits = max(1, min(train.n_tokens, val.n_tokens) - 1)  # the longest seq_len both splits can hold
        if train.n_windows == 0:
            raise TextDataError(
                f"data.seq_len={T} is larger than the data: the training split has {train.n_tokens:,} tokens of "
                f"{where}, and one window needs seq_len + 1 = {T + 1}. Lower data.seq_len to at most {fits} "
                f"(validation: {val.n_tokens:,} tokens, {how}) or use more text.")
        if val.n_windows == 0:
            raise TextDataError(
                f"data.seq_len={T} is larger than the validation split: it has {val.n_tokens:,} tokens "
                f"(data.val_fraction={cfg.val_fraction}, {how}) of {where}, and one window needs seq_len + 1 = "
                f"{T + 1}. Lower data.seq_len to at most {fits}, raise data.val_fraction or "
                f"use more text.")
        if cfg.val_max_batches is not None and cfg.val_max_batches * cfg.batch_size < val.n_windows:
            keep = np.unique(np.linspace(0, val.n_windows - 1, cfg.val_max_batches * cfg.batch_size).round())
            val = PackedWindows(cache, val_seg, T, respect, window_ids=keep.astype(np.int64))
        if len(train) < cfg.batch_size:
            raise TextDataError(f"data.batch_size={cfg.batch_size} is larger than the number of training windows "
                                f"({len(train)} windows of seq_len {T} from {train.n_tokens:,} tokens of {where}); "
                                f"lower data.batch_size or data.seq_len")
        self.train_dataset, self.val_dataset, self.split_description = train, val, how

    def _loader_kwargs(self) -> dict:
        workers = self.cfg.num_workers
        return {"num_workers": workers, "collate_fn": collate_windows, "persistent_workers": workers > 0,
                "pin_memory": torch.cuda.is_available()}

    def train_dataloader(self):
        self._build_datasets()
        return ResumableLoader(self.train_dataset, self.cfg.batch_size, shuffle=True, seed=self.seed,
                               **self._loader_kwargs())

    def val_dataloader(self):
        self._build_datasets()
        return DataLoader(self.val_dataset, batch_size=self.cfg.batch_size, shuffle=False, drop_last=False,
                          **self._loader_kwargs())

    def summary(self) -> str:
        self._build_datasets()
        c = self.cache
        return (f"{c.meta['source']}: {c.n_documents:,} documents, {c.n_tokens:,} tokens, tokenizer "
                f"{c.meta['tokenizer']} (vocab {self.vocab_size:,}); train {len(self.train_dataset):,} windows, "
                f"val {len(self.val_dataset):,} windows of {self.cfg.seq_len} ({self.split_description}); "
                f"cache {c.path} ({'built now' if self.cache_built else 'reused'})")


def _main(argv: list[str]) -> int:
    """python -m datamodules.text [data.yaml] [key=value ...]: build (or find) the token cache and summarise."""
    from omegaconf import OmegaConf
    merged = OmegaConf.structured(TextConfig)
    for arg in argv:
        if "=" not in arg:
            loaded = OmegaConf.load(arg)
            merged = OmegaConf.merge(merged, loaded.get("data", loaded))
        else:
            key, value = arg.split("=", 1)
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist([f"{key.removeprefix('data.')}={value}"]))
    try:
        dm = TextDataModule(merged)
        dm.prepare_data()
        print(dm.summary())
    except (TextDataError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
