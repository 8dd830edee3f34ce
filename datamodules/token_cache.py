"""A memory-mapped token cache: a corpus tokenised once, read by every later run without re-tokenising.

One cache entry is one folder ``<cache_dir>/<source>-<tokenizer>-<hash>/``, keyed by the source's fingerprint
(files: path + size + mtime; hub: name + config + split) together with the tokenizer's settings and the caps:

    tokens.bin        all documents' tokens, each document followed by EOS, as raw uint16 (vocab <= 65536)
                      or uint32, read with numpy.memmap
    doc_offsets.npy   int64 [n_documents + 1]: document d is tokens[offsets[d]:offsets[d+1]] (its EOS included)
    tokenizer files   char_vocab.json | tokenizer.json | hf_tokenizer/ and tokenizer_meta.json
    meta.json         counts, dtype, eos id, vocab size, source description, key (written last)

An entry is built in a temporary folder beside it (so on the same file system), fsynced and renamed into place,
under a file lock, so concurrent DDP ranks build it once and a failure (bad input, Ctrl-C, a full disk) never
leaves a partial entry behind.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from filelock import FileLock

from lit_modules.atomic import fsync_dir, fsync_tree

FORMAT_VERSION = 1
# Counters for this process: how many entries were built and documents tokenised (tests read them).
STATS = {"builds": 0, "documents_tokenized": 0, "tokens_written": 0}


def _say(msg: str) -> None:
    print(f"[data] {msg}", file=sys.stderr, flush=True)


def entry_name(slug: str, key: dict) -> str:
    digest = hashlib.sha256(json.dumps({"format": FORMAT_VERSION, **key}, sort_keys=True,
                                       default=str).encode()).hexdigest()[:16]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in slug)[:80]
    return f"{safe}-{digest}"


def token_dtype(vocab_size: int):
    return np.uint16 if vocab_size <= 1 << 16 else np.uint32


class TokenCache:
    """A finished cache entry: ``tokens`` (memmap, opened lazily so it pickles cheaply), ``doc_offsets``."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.meta = json.loads((self.path / "meta.json").read_text())
        self.doc_offsets = np.load(self.path / "doc_offsets.npy")
        self.dtype = np.dtype(self.meta["dtype"])
        self._tokens = None

    @property
    def tokens(self) -> np.ndarray:
        if self._tokens is None:
            if self.n_tokens == 0:
                self._tokens = np.zeros(0, dtype=self.dtype)
            else:
                self._tokens = np.memmap(self.path / "tokens.bin", dtype=self.dtype, mode="r",
                                         shape=(self.n_tokens,))
        return self._tokens

    @property
    def n_tokens(self) -> int:
        return int(self.meta["n_tokens"])

    @property
    def n_documents(self) -> int:
        return int(self.meta["n_documents"])

    def tokenizer(self):
        from .tokenizers import load_tokenizer
        return load_tokenizer(self.path)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_tokens"] = None  # re-opened in each worker, never copied
        return state


def is_complete(path: Path) -> bool:
    return (Path(path) / "meta.json").is_file()


def build_or_open(root: Path, name: str, build: Callable[[Path], dict]) -> tuple[TokenCache, bool]:
    """Open ``root/name`` or build it with ``build(tmp_dir) -> meta`` (atomically, once across processes).

    Returns the entry and whether this call built it."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / name
    if is_complete(final):
        return TokenCache(final), False
    with FileLock(str(root / f"{name}.lock")):
        if is_complete(final):  # another rank built it while we waited
            return TokenCache(final), False
        for stale in root.glob(f"{name}.tmp-*"):  # left by a killed process (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        if final.exists():  # an incomplete folder without meta.json (not ours to trust)
            shutil.rmtree(final, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{name}.tmp-", dir=root))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the cache is shared like any folder
        try:
            meta = build(tmp)
            meta = {"format": FORMAT_VERSION, **meta}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
            fsync_tree(tmp)  # every byte on disk before the rename makes the entry visible
            os.replace(tmp, final)
            fsync_dir(root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        STATS["builds"] += 1
    return TokenCache(final), True


def write_tokens(directory: Path, tokenizer, documents: Iterable[str], *, max_tokens: int | None = None,
                 batch_docs: int = 1024, batch_chars: int = 8_000_000, progress_every_s: float = 30.0) -> dict:
    """Tokenise ``documents`` into ``directory/tokens.bin`` + ``doc_offsets.npy`` (EOS after each document).

    ``max_tokens`` caps the total: the last document is cut so that exactly that many tokens are kept."""
    directory = Path(directory)
    dtype = token_dtype(tokenizer.vocab_size)
    eos = np.array([tokenizer.eos_id], dtype=np.int64)
    offsets = [0]
    total, start, last_report = 0, time.time(), time.time()
    done = False
    with open(directory / "tokens.bin", "wb") as out:
        def flush(batch: list[str]) -> bool:
            nonlocal total, last_report
            # The character tokenizer encodes lazily: past max_tokens may be characters its vocabulary lacks.
            encoded = (tokenizer.encode_array(t) for t in batch) if getattr(tokenizer, "kind", "") == "char" \
                else tokenizer.encode_batch(batch)
            for ids in encoded:
                ids = np.concatenate([ids, eos])
                if max_tokens is not None and total + len(ids) >= max_tokens:
                    ids = ids[:max_tokens - total]
                if len(ids):
                    out.write(ids.astype(dtype).tobytes())
                    total += len(ids)
                    offsets.append(total)
                    STATS["documents_tokenized"] += 1
                if max_tokens is not None and total >= max_tokens:
                    return True
            if time.time() - last_report > progress_every_s:
                last_report = time.time()
                _say(f"  ... {len(offsets) - 1:,} documents, {total:,} tokens "
                     f"({total / max(time.time() - start, 1e-9):,.0f} tokens/s)")
            return False

        batch, chars = [], 0
        for text in documents:
            batch.append(text)
            chars += len(text)
            if len(batch) >= batch_docs or chars >= batch_chars:
                done = flush(batch)
                batch, chars = [], 0
                if done:
                    break
        if batch and not done:
            flush(batch)
    np.save(directory / "doc_offsets.npy", np.asarray(offsets, dtype=np.int64))
    STATS["tokens_written"] += total
    return {"n_tokens": total, "n_documents": len(offsets) - 1, "dtype": np.dtype(dtype).name,
            "vocab_size": int(tokenizer.vocab_size), "eos_id": int(tokenizer.eos_id),
            "tokenize_seconds": round(time.time() - start, 3)}
