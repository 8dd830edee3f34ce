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
