"""Sequential recommendation: per-user item sequences -> next-item training rows and ranking evaluation rows.

Protocols (``data.split``):
  loo   leave-one-out (default): per user the last item is the test target, the second-to-last the validation
        target, the rest is training data. Users need at least 3 interactions (``data.short_users``: ``error``
        stops with the offending user and line, ``drop`` removes them before ids are numbered).
  time  global time split: interactions are cut at the 70% and 85% quantiles of their timestamps (proportions
        from ``data.time_split``); interactions with t < cut1 are training data; every validation (test)
        interaction whose user has an earlier interaction is one evaluation row, with the user's whole earlier
        history (training + earlier validation/test interactions) as input. Needs a format with timestamps.

Training rows (``data.train_samples``): ``seq2seq`` (default) left-pads a window of up to ``maxlen`` items and
puts a target at every position (SASRec); a longer training sequence is tiled into consecutive windows so every
training prefix is a target exactly once. ``prefix`` makes every prefix its own row with only its last
position as target (RecBole/GRU4Rec style). Both give targets for every training prefix; ``maxlen`` truncates
the context to the last ``maxlen`` items.

Batches (tensors, item 0 = padding, left padding so the last column is the most recent item):
  train: input_ids long[B, T], targets long[B, T] (0 = no target), T <= maxlen trimmed to the batch.
  eval:  input_ids long[B, T], target long[B], history long[B, H] (every item the user had before the target,
         0-padded; used by filter_seen), and negatives_<protocol> long[B, M] for the sampled protocols (0 = none).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, List, Literal, Optional

import lightning as L
import numpy as np
from lightning.pytorch.utilities import rank_zero_info
import torch
from torch.utils.data import DataLoader, Dataset

from lit_modules.distributed import rank_and_world
from lit_modules.recommender import SAMPLED_SIZES, Loss, SampledProtocol
from mixers.base import check_choices

from .loader import ResumableLoader
from .paths import data_not_found, resolve_data_path
from .registry import register_datamodule
from .rec_formats import (Format, Sequences, build_sequences, drop_users, kcore_filter, read_interactions,
                          short_users)

log = logging.getLogger(__name__)

MIN_LOO_LEN = 3


@dataclass
class RecConfig:
    name: str = "rec"
    path: str = "data/Beauty.txt"  # relative: from the current directory, else the repository root
    format: Format = "auto"
    kcore: int = 0                   # iterative k-core filter of users and items (5 = S3-Rec's raw-Amazon recipe)
    split: Literal["loo", "time"] = "loo"
    time_split: list[float] = field(default_factory=lambda: [0.7, 0.15, 0.15])
    short_users: Literal["error", "drop"] = "error"  # users with < 3 interactions under loo
    maxlen: int = 50
    train_samples: Literal["seq2seq", "prefix"] = "seq2seq"
    batch_size: int = 256
    eval_batch_size: int = 256
    num_workers: int = 0
    # task: the recommender reads these
    loss: Loss = "ce"                # ce: full softmax
    num_negatives: Optional[int] = None  # sampled_softmax: shared per batch (default 256); bce: per target (1)
    pos_emb: bool = False            # learned positional embedding (for mixers without position information)
    ks: list[int] = field(default_factory=lambda: [10, 20])
    filter_seen: bool = False        # select the checkpoint on val/filtered/ndcg@10 (the user's earlier items out of
                                     # the ranking), not val/ndcg@10; both protocols are always reported
    sampled_eval: List[SampledProtocol] = field(default_factory=list)  # extra sampled evaluation protocols
    eval_seed: int = 0               # seed of the sampled-protocol negatives (fixed across runs and models)


def _check(cfg: RecConfig) -> None:
    check_choices(cfg, "data")
    for key in ("maxlen", "batch_size", "eval_batch_size"):
        if getattr(cfg, key) < 1:
            raise ValueError(f"data.{key}: must be >= 1, got {getattr(cfg, key)}")
    if cfg.num_negatives is not None and cfg.num_negatives < 1:
        raise ValueError(f"data.num_negatives: must be >= 1, got {cfg.num_negatives}")
    if any(int(k) < 1 for k in cfg.ks):
        raise ValueError(f"data.ks: every K must be >= 1, got {list(cfg.ks)}")
    if len(cfg.time_split) != 3 or any(x <= 0 for x in cfg.time_split) or abs(sum(cfg.time_split) - 1) > 1e-6:
        raise ValueError(f"data.time_split: three positive fractions summing to 1, got {list(cfg.time_split)}")


def _identity(batch):
    return batch


def _windows(items: np.ndarray, lo: np.ndarray, hi: np.ndarray, T: int) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded [B, T] indices into ``items`` of the window items[lo:hi] (right-aligned) and its validity."""
    pos = hi[:, None] - T + np.arange(T)[None, :]
    valid = pos >= lo[:, None]
    return np.where(valid, pos, 0), valid


class TrainRows(Dataset):
    """Rows (lo, hi): input items[lo:hi], targets items[lo+1:hi+1] (all, or only the last with last_only)."""

    def __init__(self, items: np.ndarray, lo: np.ndarray, hi: np.ndarray, last_only: bool):
        self.items, self.lo, self.hi, self.last_only = items, lo, hi, last_only

    def __len__(self) -> int:
        return len(self.lo)

    def __getitems__(self, idx) -> dict[str, torch.Tensor]:
        idx = np.asarray(idx, dtype=np.int64)
        lo, hi = self.lo[idx], self.hi[idx]
        T = int((hi - lo).max())
        pos, valid = _windows(self.items, lo, hi, T)
        inputs = np.where(valid, self.items[pos], 0)
        targets = np.where(valid, self.items[pos + 1], 0)
        if self.last_only:
            targets[:, :-1] = 0
        return {"input_ids": torch.from_numpy(inputs), "targets": torch.from_numpy(targets)}

    def __getitem__(self, i: int):
        return {k: v[0] for k, v in self.__getitems__([i]).items()}


class EvalRows(Dataset):
    """Rows (lo, hi, start): input items[lo:hi], target items[hi], history items[start:hi]."""

    def __init__(self, items: np.ndarray, lo: np.ndarray, hi: np.ndarray, start: np.ndarray,
                 negatives: dict[str, np.ndarray]):
        self.items, self.lo, self.hi, self.start, self.negatives = items, lo, hi, start, negatives

    def __len__(self) -> int:
        return len(self.lo)

    def shard(self, rank: int, world: int) -> "EvalRows":
        s = slice(rank, None, world)
        return EvalRows(self.items, self.lo[s], self.hi[s], self.start[s], {k: v[s] for k, v in self.negatives.items()})

    def __getitems__(self, idx) -> dict[str, torch.Tensor]:
        idx = np.asarray(idx, dtype=np.int64)
        lo, hi, start = self.lo[idx], self.hi[idx], self.start[idx]
        pos, valid = _windows(self.items, lo, hi, int((hi - lo).max()))
        hpos, hvalid = _windows(self.items, start, hi, int((hi - start).max()))
        batch = {"input_ids": torch.from_numpy(np.where(valid, self.items[pos], 0)),
                 "target": torch.from_numpy(self.items[hi]),
                 "history": torch.from_numpy(np.where(hvalid, self.items[hpos], 0))}
        for name, neg in self.negatives.items():
            batch[f"negatives_{name}"] = torch.from_numpy(neg[idx])
        return batch

    def __getitem__(self, i: int):
        return {k: v[0] for k, v in self.__getitems__([i]).items()}


def train_rows(lo_region: np.ndarray, hi_region: np.ndarray, maxlen: int, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Training rows over regions items[s:r] (one per user): every position after the first is a target."""
    n_targets = np.maximum(hi_region - lo_region - 1, 0)
    if mode == "prefix":
        region = np.repeat(np.arange(len(lo_region)), n_targets)
        offset = np.arange(len(region)) - np.repeat(np.cumsum(n_targets) - n_targets, n_targets)
        hi = lo_region[region] + 1 + offset
    else:
        n_windows = -(-n_targets // maxlen)
        region = np.repeat(np.arange(len(lo_region)), n_windows)
        j = np.arange(len(region)) - np.repeat(np.cumsum(n_windows) - n_windows, n_windows)
        hi = hi_region[region] - 1 - j * maxlen
    lo = np.maximum(lo_region[region], hi - maxlen)
    return lo.astype(np.int64), hi.astype(np.int64)


def sample_uniform(rng: np.random.Generator, num_items: int, target: np.ndarray, k: int) -> np.ndarray:
    """k negatives per row, uniform with replacement over items 1..N except the row's target (SASRec)."""
    if num_items < 2:
        return np.zeros((len(target), k), dtype=np.int64)
    neg = rng.integers(1, num_items, size=(len(target), k))
    return neg + (neg >= target[:, None])


def sample_outside_history(rng: np.random.Generator, num_items: int, items: np.ndarray, start: np.ndarray,
                           hi: np.ndarray, k: int) -> np.ndarray:
    """k negatives per row, uniform with replacement over the items outside the row's history items[start:hi] and
    its target items[hi] (SASRec's sampled evaluation). Rows without such items get 0s (ignored)."""
    S, base = len(hi), num_items + 1
    row_of = np.repeat(np.arange(S), hi - start + 1)                   # history and target of each row
    pos = np.arange(len(row_of)) - np.repeat(np.cumsum(hi - start + 1) - (hi - start + 1), hi - start + 1)
    keys = np.unique(row_of * base + items[np.repeat(start, hi - start + 1) + pos])
    free = num_items - np.bincount(keys // base, minlength=S)
    out = rng.integers(1, num_items + 1, size=(S, k))
    for _ in range(64):  # redraw the entries that hit the history or the target
        found = keys[np.searchsorted(keys, np.arange(S)[:, None] * base + out).clip(max=len(keys) - 1)]
        bad = (found == np.arange(S)[:, None] * base + out) & (free[:, None] > 0)
        if not bad.any():
            break
        out[bad] = rng.integers(1, num_items + 1, size=int(bad.sum()))
    else:  # rare: a history covering nearly the whole catalogue
        for r in np.flatnonzero(bad.any(1)):
            pool = np.setdiff1d(np.arange(1, base), items[start[r]:hi[r] + 1])
            out[r] = rng.choice(pool, size=k)
    out[free == 0] = 0
    return out


def sample_excluding(rng: np.random.Generator, num_items: int, users: np.ndarray, seq: Sequences,
                     k: int) -> np.ndarray:
    """k distinct negatives per row, uniform over items the row's user never interacted with (S3-Rec).
    Rows whose user has fewer than k such items get all of them, the rest padded with 0 (ignored)."""
    S = len(users)
    base = num_items + 1
    user_of = np.repeat(np.arange(seq.num_users), seq.lengths)
    keys = np.unique(user_of * base + seq.items)
    out = np.zeros((S, k), dtype=np.int64)
    C = 2 * k + 32
    cand = rng.integers(1, num_items + 1, size=(S, C))
    cand_keys = users[:, None] * base + cand
    pos = np.searchsorted(keys, cand_keys).clip(max=len(keys) - 1)
    ok = keys[pos] != cand_keys
    order = np.argsort(cand, axis=1, kind="stable")
    sc = np.take_along_axis(cand, order, 1)
    first_sorted = np.ones_like(sc, dtype=bool)
    first_sorted[:, 1:] = sc[:, 1:] != sc[:, :-1]
    first = np.empty_like(first_sorted)
    np.put_along_axis(first, order, first_sorted, 1)
    ok &= first
    take = ok & (np.cumsum(ok, axis=1) <= k)
    full = take.sum(1) == k
    out[full] = cand[full][take[full]].reshape(-1, k)
    for r in np.flatnonzero(~full):  # rare: the user owns most of a small catalogue
        owned = seq.items[seq.offsets[users[r]]:seq.offsets[users[r] + 1]]
        pool = np.setdiff1d(np.arange(1, num_items + 1), owned)
        chosen = rng.choice(pool, size=min(k, len(pool)), replace=False)
        out[r, :len(chosen)] = chosen
    return out


def describe(path, fmt: str, cfg: RecConfig, seq: Sequences, train_lengths: np.ndarray, val_users: np.ndarray,
             test_users: np.ndarray, train_rows: int) -> str:
    """The start-up line: the file, its format (detected or given), the protocol and the counts of every split."""
    split = "leave-one-out" if cfg.split == "loo" else "time split " + "/".join(f"{x:g}" for x in cfg.time_split)
    detected = f"{fmt}, detected" if cfg.format == "auto" else fmt
    targets = np.maximum(train_lengths - 1, 0)
    return (f"rec: {path.name} (format {detected}; {split}): {seq.num_users:,} users, {seq.num_items:,} items, "
            f"{len(seq.items):,} interactions; train: {int(train_lengths.sum()):,} interactions of "
            f"{int((train_lengths > 0).sum()):,} users, {int(targets.sum()):,} targets in {train_rows:,} rows; "
            f"validation: {len(val_users):,} targets of {len(np.unique(val_users)):,} users; test: "
            f"{len(test_users):,} targets of {len(np.unique(test_users)):,} users")


@register_datamodule("rec")
class RecDataModule(L.LightningDataModule):
    Config = RecConfig
    task = "rec"

    def __init__(self, config: Any = None, seed: int = 0):
        super().__init__()
        if config is None:
            config = RecConfig()
        elif isinstance(config, dict):
            config = RecConfig(**config)
        _check(config)
        self.config, self.seed = config, seed
        self.seq: Sequences | None = None
        self.train_data: TrainRows | None = None
        self.val_data: EvalRows | None = None
        self.test_data: EvalRows | None = None

    # -- public sizes ------------------------------------------------------------------------------------
    @property
    def num_items(self) -> int:
        self.setup()
        return self.seq.num_items

    @property
    def vocab_size(self) -> int:
        return self.num_items + 1  # item ids 1..N plus the padding id 0

    @property
    def maxlen(self) -> int:
        return self.config.maxlen

    # -- data ----------------------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        if not resolve_data_path(self.config.path).is_file():
            raise data_not_found(self.config.path, "no such interaction file")

    def setup(self, stage: str | None = None) -> None:
        if self.seq is not None:
            return
        cfg = self.config
        path = resolve_data_path(cfg.path)
        inter, fmt = read_interactions(path, cfg.format)
        inter = kcore_filter(inter, cfg.kcore)
        if cfg.split == "time" and inter.times is None:
            raise ValueError(f"data.split=time needs timestamps, but {path} (format {fmt}) has none; "
                             f"use data.split=loo or a file with timestamps")
        if cfg.split == "loo":
            short, counts, lines = short_users(inter, MIN_LOO_LEN)
            if len(short):
                where = f"line {lines[0]}" if fmt == "user_lines" else f"first at line {lines[0]}"
                if cfg.short_users == "error":
                    raise ValueError(
                        f"{path}: user {short.tolist()[0]!r} ({where}) has {counts[0]} interaction(s); leave-one-out "
                        f"needs at least {MIN_LOO_LEN} (training input, validation and test target); {len(short)} "
                        f"user(s) are that short. Set data.short_users=drop to drop them, or data.kcore=3 to filter.")
                log.warning("rec: dropping %d user(s) with fewer than %d interactions (data.short_users=drop)",
                            len(short), MIN_LOO_LEN)
                inter = drop_users(inter, short)
                if len(inter.items) == 0:
                    raise ValueError(f"{path}: no user has {MIN_LOO_LEN} or more interactions")
        seq = build_sequences(inter)
        items, off = seq.items, seq.offsets
        starts, ends = off[:-1], off[1:]
        if cfg.split == "loo":
            train_lo, train_hi = starts, ends - 2
            val_hi, test_hi = ends - 2, ends - 1
            val_start = test_start = starts
            val_users = test_users = np.arange(seq.num_users)
        else:
            times = seq.times
            sorted_t = np.sort(times)
            n = len(sorted_t)
            cut1 = sorted_t[min(n - 1, int(round(cfg.time_split[0] * n)))]
            cut2 = sorted_t[min(n - 1, int(round((cfg.time_split[0] + cfg.time_split[1]) * n)))]
            user_of = np.repeat(np.arange(seq.num_users), seq.lengths)
            idx = np.arange(n)
            train_lo, train_hi = starts, starts + np.bincount(user_of[times < cut1], minlength=seq.num_users)
            is_val = (times >= cut1) & (times < cut2) & (idx > starts[user_of])
            is_test = (times >= cut2) & (idx > starts[user_of])
            val_hi, test_hi = idx[is_val], idx[is_test]
            val_users, test_users = user_of[is_val], user_of[is_test]
            val_start, test_start = starts[val_users], starts[test_users]
            rank_zero_info(f"rec: time split at t={cut1:g} and t={cut2:g}: {100 * np.mean(times < cut1):.1f}% / "
                           f"{100 * np.mean((times >= cut1) & (times < cut2)):.1f}% / "
                           f"{100 * np.mean(times >= cut2):.1f}% of interactions")
            if len(val_hi) == 0 or len(test_hi) == 0:
                raise ValueError(f"{path}: the time split leaves no {'validation' if len(val_hi) == 0 else 'test'} "
                                 f"interaction with a history (timestamps too coarse or too few users)")
        lo, hi = train_rows(train_lo, train_hi, cfg.maxlen, cfg.train_samples)
        if len(lo) == 0:
            raise ValueError(f"{path}: no training targets (every user's training part has a single item)")
        self.train_data = TrainRows(items, lo, hi, last_only=cfg.train_samples == "prefix")
        self.val_data = self._eval_rows(seq, val_users, val_start, val_hi, 1)
        self.test_data = self._eval_rows(seq, test_users, test_start, test_hi, 2)
        self.seq = seq
        rank_zero_info(describe(path, fmt, cfg, seq, train_hi - train_lo, val_users, test_users, len(lo)))

    def _eval_rows(self, seq: Sequences, users, start, hi, salt: int) -> EvalRows:
        cfg = self.config
        lo = np.maximum(start, hi - cfg.maxlen)
        negatives = {}
        for name in cfg.sampled_eval:
            rng = np.random.default_rng([cfg.eval_seed, salt, list(SAMPLED_SIZES).index(name)])
            k = SAMPLED_SIZES[name]
            if name == "uniform100":
                negatives[name] = sample_uniform(rng, seq.num_items, seq.items[hi], k)
            elif name == "excl_history100":
                negatives[name] = sample_outside_history(rng, seq.num_items, seq.items, start, hi, k)
            else:
                negatives[name] = sample_excluding(rng, seq.num_items, users, seq, k)
        return EvalRows(seq.items, lo.astype(np.int64), hi.astype(np.int64), start.astype(np.int64), negatives)

    # -- loaders -------------------------------------------------------------------------------------------
    def train_dataloader(self):
        self.setup()
        return ResumableLoader(self.train_data, self.config.batch_size, shuffle=True, seed=self.seed,
                               collate_fn=_identity, num_workers=self.config.num_workers)

    def _eval_loader(self, data: EvalRows) -> DataLoader:
        rank, world = rank_and_world()  # train.py turns Lightning's sampler off: shard here, reduce sums later
        return DataLoader(data.shard(rank, world), batch_size=self.config.eval_batch_size, shuffle=False,
                          collate_fn=_identity, num_workers=self.config.num_workers)

    def val_dataloader(self):
        self.setup()
        return self._eval_loader(self.val_data)

    def test_dataloader(self):
        self.setup()
        return self._eval_loader(self.test_data)
