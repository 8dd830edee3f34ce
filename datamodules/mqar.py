"""Multi-query associative recall (Zoology, Arora et al. 2023), generated lazily and deterministically.

Example with num_kv_pairs key-value pairs: keys from [1, V/2) and values from [V/2, V), distinct within the
example; then each key is queried once at a power-law distance (p(i) ~ a * i^(a-1)) in the even slots of the
rest of the sequence; only the value tokens after queried keys carry labels. Other slots hold random tokens.
This is Zoology's ``multiquery_ar`` (zoology/data/associative_recall.py) with torch's generator in place of numpy's.

Training mixes several (seq_len, num_kv_pairs) settings, round-robin or with Zoology's per-setting example counts
(``train_counts``, e.g. 100k of (64, 4) and 20k of each longer setting); validation batches hold one setting each,
so a short setting is not padded to the longest one, and the LM module reports ``val/acc@<num_kv_pairs>``.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import List

import torch
from torch.utils.data import Dataset

from lit_modules.distributed import IGNORE_INDEX

from .loader import evaluation_loader
from .registry import register_datamodule
from .synthetic import SyntheticLMConfig, SyntheticLMDataModule


def mqar_examples(num: int, *, vocab_size: int, seq_len: int, num_kv_pairs: int, power_a: float = 0.01,
                  random_non_queries: bool = True, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs [num, seq_len], labels [num, seq_len]); labels[t] is the target for the prediction at t."""
    if seq_len % 2:
        raise ValueError(f"MQAR seq_len must be even, got {seq_len}")
    if 4 * num_kv_pairs > seq_len:
        raise ValueError(f"MQAR needs seq_len >= 4 * num_kv_pairs, got seq_len {seq_len}, kv pairs {num_kv_pairs}")
    if vocab_size // 2 - 1 < num_kv_pairs:
        raise ValueError(f"MQAR vocab_size {vocab_size} is too small for {num_kv_pairs} distinct keys")
    gen = torch.Generator().manual_seed(seed)
    half = vocab_size // 2
    keys = torch.rand(num, half - 1, generator=gen).argsort(1)[:, :num_kv_pairs] + 1
    values = torch.rand(num, vocab_size - half, generator=gen).argsort(1)[:, :num_kv_pairs] + half
    context = 2 * num_kv_pairs
    kvs = torch.stack([keys, values], dim=2).reshape(num, context)

    space = (seq_len - context) // 2
    i = torch.arange(1, space + 1, dtype=torch.float64)
    p = power_a * i ** (power_a - 1)
    gaps = torch.multinomial((p / p.sum()).expand(num, space), num_kv_pairs, replacement=False, generator=gen)
    queries = torch.zeros(num, seq_len - context + 1, dtype=torch.long)
    queries.scatter_(1, 2 * gaps, keys)
    examples = torch.cat([kvs, queries], dim=1)
    labels = torch.full((num, seq_len + 1), IGNORE_INDEX, dtype=torch.long)
    labels.scatter_(1, 2 * gaps + context + 1, values)
    inputs, labels = examples[:, :-1], labels[:, 1:]
    if random_non_queries:
        noise = torch.randint(vocab_size, inputs.shape, generator=gen)
        inputs = torch.where(inputs == 0, noise, inputs)
    return inputs, labels


class MQARDataset(Dataset):
    """``size`` examples drawn round-robin from the (seq_len, num_kv_pairs) settings (or ``counts[i]`` examples of
    setting i, one after the other), generated in blocks on first access and kept (compactly) for the run, so a
    shuffled loader does not regenerate a block per example; right-padded to the longest setting when ``pad``
    (padding has no labels). ``slice`` = num_kv_pairs."""

    BLOCK = 512

    def __init__(self, settings: list[tuple[int, int]], size: int, *, vocab_size: int, power_a: float,
                 random_non_queries: bool, seed: int, counts: list[int] | None = None, pad: bool = True):
        self.settings, self.seed, self.pad = [tuple(s) for s in settings], seed, pad
        self.kw = dict(vocab_size=vocab_size, power_a=power_a, random_non_queries=random_non_queries)
        self.width = max(s[0] for s in self.settings)
        for seq_len, kv in self.settings:  # fail at construction, not in the middle of training
            mqar_examples(1, seq_len=seq_len, num_kv_pairs=kv, **self.kw)
        self.counts = [int(c) for c in counts] if counts else None
        if self.counts is not None:
            if len(self.counts) != len(self.settings) or min(self.counts) < 1:
                raise ValueError(f"MQAR counts {self.counts} must give a positive number of examples for each of the "
                                 f"{len(self.settings)} settings")
            self.offsets = [0]
            for c in self.counts:
                self.offsets.append(self.offsets[-1] + c)
        self.size = self.offsets[-1] if self.counts is not None else size
        self.dtype = torch.int16 if vocab_size <= 2 ** 15 else torch.int32
        self._blocks: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def _block(self, setting: int, block: int):
        key = (setting, block)
        if key not in self._blocks:
            seq_len, kv = self.settings[setting]
            seed = hash((self.seed, setting, block)) % (2 ** 62)
            inputs, labels = mqar_examples(self.BLOCK, seq_len=seq_len, num_kv_pairs=kv, seed=seed, **self.kw)
            self._blocks[key] = (inputs.to(self.dtype), labels.to(self.dtype))
        return self._blocks[key]

    def locate(self, index: int) -> tuple[int, int]:
        """(setting, position of the example within that setting's stream)."""
        if not 0 <= index < self.size:
            raise IndexError(index)
        if self.counts is None:
            return index % len(self.settings), index // len(self.settings)
        setting = bisect.bisect_right(self.offsets, index) - 1
        return setting, index - self.offsets[setting]

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        setting, j = self.locate(index)
        inputs, labels = self._block(setting, j // self.BLOCK)
        x, y = inputs[j % self.BLOCK].long(), labels[j % self.BLOCK].long()
        pad = self.width - x.numel() if self.pad else 0
        return {"input_ids": torch.nn.functional.pad(x, (0, pad)),
                "labels": torch.nn.functional.pad(y, (0, pad), value=IGNORE_INDEX),
                "slice": torch.tensor(self.settings[setting][1])}


def setting_batches(dataset: MQARDataset, batch_size: int) -> list[list[int]]:
    """Batches of indices of one setting each (in index order), for evaluation without cross-setting padding."""
    by_setting: dict[int, list[int]] = {}
    for i in range(len(dataset)):
        by_setting.setdefault(dataset.locate(i)[0], []).append(i)
    return [idx[b:b + batch_size] for s in sorted(by_setting) for idx in [by_setting[s]]
            for b in range(0, len(idx), batch_size)]


@dataclass
class MQARConfig(SyntheticLMConfig):
    name: str = "mqar"
    vocab_size: int = 8192
    # (seq_len, num_kv_pairs) settings; training mixes them, validation reports accuracy per num_kv_pairs.
    train_settings: List[List[int]] = field(default_factory=lambda: [[64, 4], [128, 8], [256, 16], [256, 32],
                                                                     [256, 64]])
    val_settings: List[List[int]] = field(default_factory=lambda: [[64, 4], [128, 8], [256, 16], [256, 32],
                                                                   [256, 64]])
    train_examples: int = 100_000
    # Examples per training setting (Zoology: [100000, 20000, 20000, 20000, 20000]); replaces train_examples.
    train_counts: List[int] = field(default_factory=list)
    val_examples: int = 1000  # per setting
    power_a: float = 0.01
    random_non_queries: bool = True


@register_datamodule("mqar")
class MQARDataModule(SyntheticLMDataModule):
    Config = MQARConfig

    def make_datasets(self, train_seed: int, val_seed: int) -> tuple[Dataset, Dataset]:
        c = self.config
        kw = dict(vocab_size=c.vocab_size, power_a=c.power_a, random_non_queries=c.random_non_queries)
        return (MQARDataset(c.train_settings, c.train_examples, seed=train_seed, counts=list(c.train_counts) or None,
                            **kw),
                MQARDataset(c.val_settings, c.val_examples * len(c.val_settings), seed=val_seed, pad=False, **kw))

    def val_dataloader(self):  # split by rank (datamodules/loader.py)
        batches = setting_batches(self.val_set, self.config.val_batch_size or self.config.batch_size)
        return evaluation_loader(self.val_set, batches, num_workers=self.config.num_workers)
