"""Packing a token cache into training windows: the train/validation split by document, windows of
``seq_len + 1`` tokens over the concatenated documents, and their collation into batches (docs/data.md).

Batches: ``input_ids`` and ``labels`` LongTensor [B, T] (labels are the next tokens; IGNORE_INDEX = no loss) and, when
boundaries are respected, ``cu_seqlens`` int32 [n + 1]: the B*T tokens of the batch, flattened, are one packed
stream of documents with boundaries at these offsets (every window start is one), so a model run on [1, B*T]
with cu_seqlens never mixes two documents; a label that would predict the first token of the next document from
the previous one's EOS is -100. Without boundaries the windows are plain concatenation: no cu_seqlens, every
label kept.

Split (fixed by ``split_seed``, not by the run's seed, so every run validates on the same text): with enough
documents that ``round(n_documents * val_fraction) >= 1``, that many documents, chosen at random, are the
validation set; otherwise (a single file such as Tiny Shakespeare) the last ``val_fraction`` of the token
stream is.

Training windows move every epoch (``ShiftedWindows``): epoch e cuts the stream at ``offset_e + i*T`` with
``offset_e`` in [0, T) drawn from the run's seed and e, so a small corpus is not cut at the same places every epoch
(nanoGPT draws every window at a random offset; with fixed cuts, Tiny Shakespeare's 3,900 windows seen ~80 times
are memorised). Validation windows stay fixed, so every run validates on the same batches.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from lit_modules.distributed import IGNORE_INDEX

from .token_cache import TokenCache


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
        return self.window_at(index * self.seq_len)

    def window_at(self, p0: int) -> dict:
        """The window of tokens [p0, p0 + T + 1) of the concatenated segments."""
        T, tokens, offsets = self.seq_len, self.cache.tokens, self.cache.doc_offsets
        if not 0 <= p0 <= self.n_tokens - T - 1:
            raise IndexError(p0)
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


class ShiftedWindows(Dataset):
    """Training windows whose cuts move by a per-epoch offset (module docstring). Items are keyed by
    ``(epoch, index)`` (``EpochSampler`` yields such keys for a dataset with ``keyed_by_epoch``), so the offset is a
    function of the key alone: the same in every DataLoader worker, and the same again in a resumed run."""

    keyed_by_epoch = True

    def __init__(self, windows: PackedWindows, seed: int):
        self.windows, self.seed = windows, seed
        self.segments, self.seq_len, self.n_tokens = windows.segments, windows.seq_len, windows.n_tokens
        T, n = windows.seq_len, windows.n_windows
        # One window fewer than fit at offset 0, so that every offset in [0, T) leaves room for all of them.
        self.n_windows = n - 1 if n >= 2 else n
        self.max_offset = min(T - 1, windows.n_tokens - 1 - self.n_windows * T)

    def __len__(self) -> int:
        return self.n_windows

    def offset(self, epoch: int) -> int:
        rng = np.random.default_rng([self.seed, epoch])
        return int(rng.integers(0, self.max_offset + 1))

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, index = key
        if not 0 <= index < self.n_windows:
            raise IndexError(index)
        return self.windows.window_at(self.offset(epoch) + index * self.windows.seq_len)


def collate_windows(items: list[dict]) -> dict:
    batch = {"input_ids": torch.stack([it["input_ids"] for it in items]),
             "labels": torch.stack([it["labels"] for it in items])}
    if "doc_starts" in items[0]:
        T = batch["input_ids"].shape[1]
        parts = [np.concatenate([[0], it["doc_starts"]]) + b * T for b, it in enumerate(items)]
        parts.append(np.array([len(items) * T]))
        batch["cu_seqlens"] = torch.from_numpy(np.concatenate(parts).astype(np.int32))
    return batch
