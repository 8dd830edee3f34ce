"""Callbacks that make a resumed run continue exactly where the interrupted one stopped."""
from __future__ import annotations

import random

import torch
from lightning.pytorch import Callback


class RNGState(Callback):
    """Saves and restores the torch (CPU and CUDA) and Python RNG states with every checkpoint, so dropout and
    sampling after a resume draw the same numbers as an uninterrupted run."""

    def state_dict(self) -> dict:
        state = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict) -> None:
        torch.set_rng_state(state["torch"])
        random.setstate(state["python"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


class BestValidation(Callback):
    """The validation metrics of the selected checkpoint: those of the validation whose monitored metric was the
    best so far (strictly better, as ModelCheckpoint decides; NaN never is), kept in checkpoints so that a resumed
    run still knows them. ``metrics`` holds them with the validation's ``step``."""

    def __init__(self, monitor: str, mode: str):
        self.monitor, self.mode = monitor, mode
        self.metrics: dict[str, float] = {}

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        current = float(trainer.callback_metrics[self.monitor])
        best = self.metrics.get(self.monitor)
        better = best is None or (current > best if self.mode == "max" else current < best)  # False for NaN
        if better:
            self.metrics = {k: float(v) for k, v in trainer.callback_metrics.items()
                            if k.startswith("val/") and v.numel() == 1}
            self.metrics["step"] = trainer.global_step

    def state_dict(self) -> dict:
        return {"metrics": dict(self.metrics)}

    def load_state_dict(self, state: dict) -> None:
        self.metrics = dict(state["metrics"])
