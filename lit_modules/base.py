"""What every task module shares: the run config kept as hyperparameters (a checkpoint rebuilds its module), and the
optimiser and schedule of its ``optim`` section (lit_modules/optim.py)."""
from __future__ import annotations

import lightning as L
from omegaconf import OmegaConf

from .optim import configure_optimizers_from


class TaskModule(L.LightningModule):
    monitor: tuple[str, str]  # (metric, "min" | "max") that picks the best checkpoint and early stopping

    def __init__(self, cfg: dict):
        super().__init__()
        self.save_hyperparameters()  # with the subclass's own arguments (vocab_size, num_items)
        self.cfg = OmegaConf.create(cfg)

    def configure_optimizers(self):
        return configure_optimizers_from(self, self.cfg.optim, self.cfg.trainer.max_steps)
