"""Readers for sequential-recommendation interaction files, and the shared post-processing (k-core filter,
id remapping with 0 reserved for padding, chronological grouping into per-user sequences).

Formats (``data.format``):
  user_lines   one line per user: ``user item item ...`` in chronological order (S3-Rec ``Beauty.txt``).
  pairs        one interaction per line: ``user item [timestamp]`` (space, tab or comma separated). With
               timestamps, each user's items are sorted by time (stable: file order breaks ties); without,
               file order is the chronological order.
  amazon_json  raw Amazon reviews, one JSON object per line (``.json`` or ``.json.gz``; the 2014 "loose" files
               written as Python literals are read too): ``reviewerID``, ``asin``, ``unixReviewTime``.
  movielens    ``ratings.dat``: ``user::item::rating::timestamp``.
  auto         picked from the file: ``.json[.gz]``/``.jsonl`` -> amazon_json; ``::`` -> movielens; otherwise
               pairs when a user id occurs on more than one line, else user_lines.

User and item ids of the text formats must be integers (an error names the file and line otherwise); they
are remapped to 1..N in numeric order, so a file already numbered 1..N keeps its ids. String ids (Amazon) are
numbered in order of first appearance. Item id 0 is the padding id in everything downstream.
"""
from __future__ import annotations

import ast
import gzip
import json
import logging
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

import numpy as np

log = logging.getLogger(__name__)

Format = Literal["auto", "user_lines", "pairs", "amazon_json", "movielens"]
FORMATS = typing.get_args(Format)
_SPLIT = re.compile(r"[\s,]+")


@dataclass
class Interactions:
    """Raw interactions in file order (one entry per interaction)."""
    users: np.ndarray            # raw user ids (int64, or object for string ids)
    items: np.ndarray            # raw item ids
    times: np.ndarray | None     # float64 timestamps, or None when the format has none
    lines: np.ndarray            # 1-based line number of each interaction (for error messages)


@dataclass
class Sequences:
    """Per-user chronological sequences in CSR form, items remapped to 1..num_items (0 = padding)."""
    items: np.ndarray            # int64 [nnz]
    offsets: np.ndarray          # int64 [num_users + 1]; user u owns items[offsets[u]:offsets[u+1]]
    times: np.ndarray | None     # float64 [nnz] or None
    num_items: int
    user_ids: np.ndarray         # raw id of each user (index = internal user index)
    item_ids: np.ndarray         # raw id of each item; item_ids[0] is None-like padding slot
    first_line: np.ndarray       # first line of each user in the file

    @property
    def num_users(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="strict")
    return open(path, "r", encoding="utf-8", errors="strict")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, stripped text) of every non-blank line."""
    with _open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            stripped = line.strip()
            if stripped:
                yield lineno, stripped


def _int(token: str, what: str, path: Path, lineno: int) -> int:
    try:
        if "_" in token:
            raise ValueError
        return int(token)
    except ValueError:
        raise ValueError(f"{path}:{lineno}: {what} {token!r} is not an integer") from None


def _item_id(token: str, path: Path, lineno: int) -> int:
    item = _int(token, "item id", path, lineno)
    if item < 0:  # remapping would hide it; a negative id is a corrupt or mis-parsed file
        raise ValueError(f"{path}:{lineno}: item id {item} is negative; item ids must be >= 0")
    return item


def _float(token: str, what: str, path: Path, lineno: int) -> float:
    try:
        value = float(token)
    except ValueError:
        raise ValueError(f"{path}:{lineno}: {what} {token!r} is not a number") from None
    if not np.isfinite(value):
        raise ValueError(f"{path}:{lineno}: {what} {token!r} is not a finite number")
    return value


def _finish(path: Path, users, items, times, lines) -> Interactions:
    if not items:
        raise ValueError(f"{path}: no interactions found (empty file?)")
    as_array = (lambda xs: np.asarray(xs, dtype=np.int64)) if isinstance(items[0], int) else \
        (lambda xs: np.asarray(xs, dtype=object))
    return Interactions(users=as_array(users), items=as_array(items),
                        times=None if times is None else np.asarray(times, dtype=np.float64),
                        lines=np.asarray(lines, dtype=np.int64))


def read_user_lines(path: Path) -> Interactions:
    users, items, lines = [], [], []
    seen: dict[int, int] = {}
    for lineno, stripped in _lines(path):
        tokens = stripped.split()
        if len(tokens) < 2:
            raise ValueError(f"{path}:{lineno}: expected 'user item item ...', got {stripped!r}")
        user = _int(tokens[0], "user id", path, lineno)
        if user in seen:
            raise ValueError(f"{path}:{lineno}: user {user} already has a line ({seen[user]}); the user_lines "
                             f"format has one line per user (use data.format=pairs for one interaction a line)")
        seen[user] = lineno
        for tok in tokens[1:]:
            items.append(_item_id(tok, path, lineno))
        users.extend([user] * (len(tokens) - 1))
        lines.extend([lineno] * (len(tokens) - 1))
    return _finish(path, users, items, None, lines)


def read_pairs(path: Path) -> Interactions:
    users, items, times, lines = [], [], [], []
    has_time = None
    for lineno, stripped in _lines(path):
        tokens = _SPLIT.split(stripped)
        if len(tokens) not in (2, 3):
            raise ValueError(f"{path}:{lineno}: expected 'user item [timestamp]', got {stripped!r}")
        if has_time is None:
            has_time = len(tokens) == 3
        elif has_time != (len(tokens) == 3):
            raise ValueError(f"{path}:{lineno}: {'missing' if has_time else 'unexpected'} timestamp "
                             f"(every line must have one, or none may)")
        users.append(_int(tokens[0], "user id", path, lineno))
        items.append(_item_id(tokens[1], path, lineno))
        if has_time:
            times.append(_float(tokens[2], "timestamp", path, lineno))
        lines.append(lineno)
    return _finish(path, users, items, times if has_time else None, lines)


def read_movielens(path: Path) -> Interactions:
    users, items, times, lines = [], [], [], []
    for lineno, stripped in _lines(path):
        tokens = stripped.split("::")
        if len(tokens) != 4:
            raise ValueError(f"{path}:{lineno}: expected 'user::item::rating::timestamp', got {stripped!r}")
        users.append(_int(tokens[0], "user id", path, lineno))
        items.append(_item_id(tokens[1], path, lineno))
        _float(tokens[2], "rating", path, lineno)
        times.append(_float(tokens[3], "timestamp", path, lineno))
        lines.append(lineno)
    return _finish(path, users, items, times, lines)


def read_amazon_json(path: Path) -> Interactions:
    users, items, times, lines = [], [], [], []
    for lineno, stripped in _lines(path):
        try:
            record = json.loads(stripped)
        except json.JSONDecodeError:
            try:  # the 2014 "loose" review dumps are Python literals, not JSON
                record = ast.literal_eval(stripped)
            except (ValueError, SyntaxError):
                raise ValueError(f"{path}:{lineno}: not a JSON object: {stripped[:80]!r}") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
        missing = [k for k in ("reviewerID", "asin", "unixReviewTime") if k not in record]
        if missing:
            raise ValueError(f"{path}:{lineno}: review lacks field(s) {', '.join(missing)}")
        users.append(str(record["reviewerID"]))
        items.append(str(record["asin"]))
        times.append(_float(str(record["unixReviewTime"]), "unixReviewTime", path, lineno))
        lines.append(lineno)
    return _finish(path, users, items, times, lines)


def detect_format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".json", ".json.gz", ".jsonl", ".jsonl.gz")):
        return "amazon_json"
    users_seen: set[str] = set()
    for _, stripped in _lines(path):
        if "::" in stripped:
            return "movielens"
        tokens = _SPLIT.split(stripped)
        if len(tokens) > 3:
            return "user_lines"
        if tokens[0] in users_seen:
            return "pairs"
        users_seen.add(tokens[0])
    return "user_lines"


READERS = {"user_lines": read_user_lines, "pairs": read_pairs, "amazon_json": read_amazon_json,
           "movielens": read_movielens}


def read_interactions(path: str | Path, fmt: str = "auto") -> tuple[Interactions, str]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data.path: interaction file {str(path)!r} does not exist")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file")
    if fmt not in FORMATS:
        raise ValueError(f"data.format: unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "auto":
        fmt = detect_format(path)
        log.info("rec: %s read as format %r (set data.format to override)", path, fmt)
    try:
        return READERS[fmt](path), fmt
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err})") from None


def kcore_filter(inter: Interactions, k: int) -> Interactions:
    """Drop users and items with fewer than ``k`` interactions, repeatedly, until none is left (k-core)."""
    if k <= 1:
        return inter
    _, u = np.unique(inter.users, return_inverse=True)
    _, i = np.unique(inter.items, return_inverse=True)
    keep = np.ones(len(u), dtype=bool)
    while True:
        uc = np.bincount(u[keep], minlength=u.max() + 1)
        ic = np.bincount(i[keep], minlength=i.max() + 1)
        new_keep = keep & (uc[u] >= k) & (ic[i] >= k)
        if new_keep.sum() == keep.sum():
            break
        keep = new_keep
    if not keep.any():
        raise ValueError(f"data.kcore={k}: the {k}-core of the data is empty")
    return Interactions(inter.users[keep], inter.items[keep],
                        None if inter.times is None else inter.times[keep], inter.lines[keep])


def _remap(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense 0-based codes: numeric order for integer ids, order of first appearance for strings."""
    if raw.dtype != object:
        uniques, codes = np.unique(raw, return_inverse=True)
        return codes.astype(np.int64), uniques
    uniques, first, codes = np.unique(raw, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")          # unique ids by first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[codes].astype(np.int64), uniques[order]


def build_sequences(inter: Interactions) -> Sequences:
    """Group by user (users in order of their id / first appearance), each user's items by time (stable)."""
    ucode, user_ids = _remap(inter.users)
    icode, item_ids = _remap(inter.items)
    n = len(ucode)
    file_order = np.arange(n)
    if inter.times is None:
        order = np.lexsort((file_order, ucode))
    else:
        order = np.lexsort((file_order, inter.times, ucode))
    counts = np.bincount(ucode, minlength=len(user_ids))
    offsets = np.zeros(len(user_ids) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    first_line = np.full(len(user_ids), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_line, ucode, inter.lines)
    return Sequences(items=icode[order] + 1, offsets=offsets,
                     times=None if inter.times is None else inter.times[order],
                     num_items=len(item_ids), user_ids=user_ids,
                     item_ids=np.concatenate([np.array([None], dtype=object), item_ids.astype(object)]),
                     first_line=first_line)


def short_users(inter: Interactions, min_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Users with fewer than ``min_len`` interactions: (raw ids, counts, first line), in order of first line."""
    uniques, inverse, counts = np.unique(inter.users, return_inverse=True, return_counts=True)
    first = np.full(len(uniques), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, inverse, inter.lines)
    short = np.flatnonzero(counts < min_len)
    short = short[np.argsort(first[short], kind="stable")]
    return uniques[short], counts[short], first[short]


def drop_users(inter: Interactions, users: np.ndarray) -> Interactions:
    keep = ~np.isin(inter.users, users)
    return Interactions(inter.users[keep], inter.items[keep],
                        None if inter.times is None else inter.times[keep], inter.lines[keep])
