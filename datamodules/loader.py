"""The loaders' split of the data across ranks (train.py sets ``use_distributed_sampler=False``;
docs/training.md#multi-device).

Training: a DataLoader that remembers its position, so that a resumed run sees exactly the batches an uninterrupted
run would have seen (Lightning saves and restores any loader with state_dict/load_state_dict). Order: a seeded
permutation per epoch (or the natural order), cut into global batches of ``batch_size * world`` examples, of which
rank r takes the r-th ``batch_size``: every optimiser step sees the same examples on any number of ranks with the
same global batch, so a run on two GPUs follows the loss curve of one GPU, and resumes on another number of ranks
where it stopped. The position counts the batches the training loop has finished (and their examples on all ranks),
not the batches fetched: Lightning fetches one batch ahead, so ``ConsumedBatches`` advances it after each batch.

Evaluation: ``evaluation_loader`` gives each rank every world-th batch, and pads the ranks with fewer to the same
number of batches with a copy whose labels are all IGNORE_INDEX (no loss, no count): every rank runs the same
number of forward passes (FSDP gathers the weights in each), and sums over ranks are the sums over the data.
"""
from __future__ import annotations

import torch
from lightning.pytorch import Callback
from torch.utils.data import DataLoader, Dataset, Sampler

from lit_modules.distributed import IGNORE_INDEX, rank_and_world


class EpochSampler(Sampler):
    """This rank's examples of an epoch, its share of each global batch one after the other (see above). With
    ``keyed_by_epoch`` it yields ``(epoch, index)``, for a dataset whose items depend on the epoch."""

    def __init__(self, length: int, batch_size: int, shuffle: bool, seed: int, keyed_by_epoch: bool = False):
        self.length, self.batch_size, self.shuffle, self.seed = length, batch_size, shuffle, seed
        self.keyed_by_epoch = keyed_by_epoch
        self.epoch, self.skip = 0, 0

    def steps(self) -> int:
        """Optimiser steps per epoch (the remainder that fills no global batch is dropped)."""
        return self.length // (self.batch_size * rank_and_world()[1])

    def _indices(self) -> torch.Tensor:
        if self.shuffle:
            order = torch.randperm(self.length, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = torch.arange(self.length)
        rank, world = rank_and_world()
        steps = self.steps()
        return order[:steps * world * self.batch_size].view(steps, world, self.batch_size)[:, rank].reshape(-1)

    def __iter__(self):
        indices = self._indices()[self.skip:].tolist()
        return iter([(self.epoch, i) for i in indices] if self.keyed_by_epoch else indices)

    def __len__(self) -> int:
        return self.steps() * self.batch_size


class ResumableLoader(DataLoader):
    def __init__(self, dataset: Dataset, batch_size: int, *, shuffle: bool, seed: int, **kwargs):
        self.epoch_sampler = EpochSampler(len(dataset), batch_size, shuffle, seed,
                                          keyed_by_epoch=getattr(dataset, "keyed_by_epoch", False))
        # A private generator: creating the iterator must not draw from the global RNG (dropout's), or a resumed
        # run would see other random numbers than an uninterrupted one.
        kwargs.setdefault("generator", torch.Generator().manual_seed(seed))
        super().__init__(dataset, batch_size=batch_size, sampler=self.epoch_sampler, drop_last=True, **kwargs)
        self.epoch, self.consumed = 0, 0
        self._started, self._resume = False, None

    def __iter__(self):
        if self._resume is not None:
            epoch, skip, examples = self._resume
            self._resume = None
            if examples is not None:  # in steps of this run's global batch: the same step when it is unchanged (a
                # resume on other ranks with batch_size * world kept), else the step holding the first unseen one
                skip = int(examples) // self.global_batch()
        elif self._started:
            epoch, skip = self.epoch + 1, 0
        else:
            epoch, skip = self.epoch, 0
        self._started = True
        self.epoch, self.consumed = epoch, skip
        self.epoch_sampler.epoch, self.epoch_sampler.skip = epoch, skip * self.batch_size
        return super().__iter__()

    def __len__(self) -> int:
        return self.epoch_sampler.steps()

    def global_batch(self) -> int:
        return self.batch_size * rank_and_world()[1]

    def state_dict(self) -> dict:
        """The epoch and the examples of it consumed on all ranks together (which any number of ranks resumes)."""
        return {"epoch": self.epoch, "consumed": self.consumed, "examples": self.consumed * self.global_batch()}

    def load_state_dict(self, state: dict) -> None:
        self._resume = (int(state["epoch"]), int(state["consumed"]), state.get("examples"))


class ConsumedBatches(Callback):
    """Advances the training loader's position once a batch's step has finished."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loader = trainer.train_dataloader
        if isinstance(loader, ResumableLoader):
            loader.consumed += 1


def fixed_batches(length: int, batch_size: int) -> list[list[int]]:
    """Batches of consecutive indices, the last one shorter (what a plain evaluation DataLoader makes)."""
    return [list(range(start, min(start + batch_size, length))) for start in range(0, length, batch_size)]


class _Unlabelled(Dataset):
    """Items by ``(index, labelled)``: with labelled False, the item with every label IGNORE_INDEX."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, bool]) -> dict:
        index, labelled = key
        item = self.dataset[index]
        return item if labelled else {**item, "labels": torch.full_like(item["labels"], IGNORE_INDEX)}


class RankBatches(Sampler[list]):
    """This rank's evaluation batches: every world-th of ``batches``, then unlabelled copies of the first batch
    until every rank has the same number."""

    def __init__(self, batches: list[list[int]]):
        rank, world = rank_and_world()
        mine = [[(i, True) for i in batch] for batch in batches[rank::world]]
        filler = [(i, False) for i in batches[0]] if batches else []
        self.batches = mine + [filler] * (-(-len(batches) // world) - len(mine))

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def evaluation_loader(dataset: Dataset, batches: list[list[int]], **kwargs) -> DataLoader:
    """A DataLoader over this rank's share of ``batches`` (lists of dataset indices); call it after
    torch.distributed started (Lightning asks for loaders after it did)."""
    return DataLoader(_Unlabelled(dataset), batch_sampler=RankBatches(batches), **kwargs)
