"""What a run tells W&B about itself beyond its metrics (docs/training.md): the mode it logs in, and its model's
sizes, the parameter count and the recurrent state size at the longest evaluation sequence, in the W&B run's
summary (the columns compare.py tabulates, so a W&B workspace can show the same table)."""
from __future__ import annotations

import os

from lightning.pytorch import Callback


def wandb_mode(logging_cfg) -> str:
    """logging.wandb_mode, else $WANDB_MODE, else online with a WANDB_API_KEY and offline without."""
    return logging_cfg.wandb_mode or os.environ.get("WANDB_MODE") or (
        "online" if os.environ.get("WANDB_API_KEY") else "offline")


def eval_seq_len(data: dict) -> int | None:
    """The longest sequence the model is evaluated on (state sizes of attention are taken there)."""
    if data.get("val_settings"):
        return max(int(s[0]) for s in data["val_settings"])
    for key in ("seq_len", "max_len", "maxlen", "block_size"):
        if data.get(key):
            return int(data[key])
    return None


def model_sizes(module) -> dict:
    """params (tied weights once) and state_size (None where it needs a sequence length the data does not give)."""
    sizes = {"params": sum(p.numel() for p in module.parameters()), "state_size": None}
    try:
        sizes["state_size"] = int(module.backbone.state_size(eval_seq_len(module.cfg.get("data") or {})))
    except (ValueError, NotImplementedError, AttributeError):
        pass
    return sizes


class ModelSizeSummary(Callback):
    """Puts ``params`` and ``state_size`` into the summary of every W&B logger of the run when fitting starts."""

    def on_fit_start(self, trainer, pl_module) -> None:
        loggers = [lg for lg in trainer.loggers if type(lg).__name__ == "WandbLogger"]
        if loggers and trainer.is_global_zero:
            sizes = model_sizes(pl_module)
            for logger in loggers:
                logger.experiment.summary.update(sizes)
