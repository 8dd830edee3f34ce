"""What every task module shares: the run config kept as hyperparameters (a checkpoint rebuilds its module), and the
optimiser and schedule of its ``optim`` section (lit_modules/optim.py)."""
from __future__ import annotations

import lightning as L
from omegaconf import OmegaConf

from .optim import configure_optimizers_from, decayed_names


class TaskModule(L.LightningModule):
    monitor: tuple[str, str]  # (metric, "min" | "max") that picks the best checkpoint and early stopping

    def __init__(self, cfg: dict):
        super().__init__()
        self.save_hyperparameters()  # with the subclass's own arguments (vocab_size, num_items)
        self.cfg = OmegaConf.create(cfg)
        self._decayed: set[str] | None = None  # names of the parameters with weight decay (lit_modules/optim.py)

    def setup(self, stage: str) -> None:
        if self._decayed is None:  # before a strategy first wraps the model (FSDP flattens the parameters)
            self._decayed = decayed_names(self)

    def configure_optimizers(self):
        return configure_optimizers_from(self, self.cfg.optim, self.cfg.trainer.max_steps, self._decayed)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        from torch.distributed.fsdp import FullyShardedDataParallel

        model = self.trainer.model
        if isinstance(model, FullyShardedDataParallel) and gradient_clip_val and gradient_clip_algorithm != "value":
            # each rank holds a shard of the gradients: FSDP's own clip takes the norm over all ranks' shards
            # (Lightning's FSDP precision plugin refuses norm clipping; lit_modules/strategy.py)
            model.clip_grad_norm_(gradient_clip_val)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
