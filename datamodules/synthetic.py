"""Base of the language-modelling datamodules whose data is generated from a seed (MQAR, the probing tasks):
no files, no tokenizer; training batches through the resumable loader."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import lightning as L
from torch.utils.data import Dataset

from mixers.base import check_choices

from .loader import ResumableLoader, evaluation_loader, fixed_batches


@dataclass
class SyntheticLMConfig:
    """The fields of every generated-data config that this module's loaders read; subclasses set ``name`` and add
    their own."""
    name: str = ""
    batch_size: int = 64
    val_batch_size: Optional[int] = None  # default batch_size; smaller for long evaluation settings
    num_workers: int = 0


class SyntheticLMDataModule(L.LightningDataModule):
    task = "lm"

    def __init__(self, config, *, seed: int = 0):
        super().__init__()
        check_choices(config, "data")
        self.config, self.seed = config, seed
        self.vocab_size = config.vocab_size
        self.tokenizer = None
        self.train_set = self.val_set = None

    def make_datasets(self, train_seed: int, val_seed: int) -> tuple[Dataset, Dataset]:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:  # validation examples come from another seed stream than any training block
            self.train_set, self.val_set = self.make_datasets(self.seed, self.seed + 10 ** 6)

    def train_dataloader(self):
        return ResumableLoader(self.train_set, self.config.batch_size, shuffle=True, seed=self.seed,
                               num_workers=self.config.num_workers)

    def val_dataloader(self):  # split by rank (datamodules/loader.py)
        batches = fixed_batches(len(self.val_set), self.config.val_batch_size or self.config.batch_size)
        return evaluation_loader(self.val_set, batches, num_workers=self.config.num_workers)
