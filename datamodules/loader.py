"""A training DataLoader that remembers its position, so that a resumed run sees exactly the batches an
uninterrupted run would have seen (Lightning saves and restores any loader with state_dict/load_state_dict).

Order: a seeded permutation per epoch (or the natural order), split across DDP ranks by this sampler itself
(train.py sets ``use_distributed_sampler=False``). The position counts batches the training loop has finished,
not batches fetched: Lightning fetches one batch ahead, so ``ConsumedBatches`` advances it after each step.
"""
from __future__ import annotations

import torch
from lightning.pytorch import Callback
from torch.utils.data import DataLoader, Dataset, Sampler

from lit_modules.distributed import rank_and_world


class EpochSampler(Sampler[int]):
    def __init__(self, length: int, shuffle: bool, seed: int):
        self.length, self.shuffle, self.seed = length, shuffle, seed
        self.epoch, self.skip = 0, 0

    def _indices(self) -> torch.Tensor:
        if self.shuffle:
            order = torch.randperm(self.length, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = torch.arange(self.length)
        rank, world = rank_and_world()
        per_rank = self.length // world  # drop the remainder so every rank takes the same number of steps
        return order[rank * per_rank:(rank + 1) * per_rank]

    def __iter__(self):
        return iter(self._indices()[self.skip:].tolist())

    def __len__(self) -> int:
        return self.length // rank_and_world()[1]


class ResumableLoader(DataLoader):
    def __init__(self, dataset: Dataset, batch_size: int, *, shuffle: bool, seed: int, **kwargs):
        self.epoch_sampler = EpochSampler(len(dataset), shuffle, seed)
        # A private generator: creating the iterator must not draw from the global RNG (dropout's), or a resumed
        # run would see other random numbers than an uninterrupted one.
        kwargs.setdefault("generator", torch.Generator().manual_seed(seed))
        super().__init__(dataset, batch_size=batch_size, sampler=self.epoch_sampler, drop_last=True, **kwargs)
        self.epoch, self.consumed = 0, 0
        self._started, self._resume = False, None

    def __iter__(self):
        if self._resume is not None:
            epoch, skip = self._resume
            self._resume = None
        elif self._started:
            epoch, skip = self.epoch + 1, 0
        else:
            epoch, skip = self.epoch, 0
        self._started = True
        self.epoch, self.consumed = epoch, skip
        self.epoch_sampler.epoch, self.epoch_sampler.skip = epoch, skip * self.batch_size
        return super().__iter__()

    def __len__(self) -> int:
        return len(self.epoch_sampler) // self.batch_size

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "consumed": self.consumed}

    def load_state_dict(self, state: dict) -> None:
        self._resume = (int(state["epoch"]), int(state["consumed"]))


class ConsumedBatches(Callback):
    """Advances the training loader's position once a batch's step has finished."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loader = trainer.train_dataloader
        if isinstance(loader, ResumableLoader):
            loader.consumed += 1
