"""The contract every token mixer obeys.

A mixer maps x[B, T, D] -> y[B, T, D] causally. It may carry a recurrent state between calls so that
running a sequence in one call and running it token by token give the same outputs.

Keyword arguments of ``forward``:
  mask:       bool[B, T], True where the token is real. Padding (False) must not change the state or any
              real token's output (left padding is what the recommender uses).
  cu_seqlens: int32[N + 1] cumulative lengths of N packed sequences; only with B == 1 (fla convention).
              The state is reset at each boundary; with ``state`` given, it holds N sequences.
  state:      whatever ``forward`` returned last time (None = start from scratch).
Returns (y, new_state). ``new_state`` is only built when ``use_cache`` is True (saves memory in training).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class MixerConfig:
    """Base class for mixer hyperparameters; subclasses add fields with defaults."""


class Mixer(nn.Module):
    Config: type = MixerConfig

    def __init__(self, d_model: int, config: MixerConfig, layer_idx: int = 0):
        super().__init__()
        self.d_model = d_model
        self.config = config
        self.layer_idx = layer_idx

    def forward(self, x: torch.Tensor, *, mask: torch.Tensor | None = None,
                cu_seqlens: torch.Tensor | None = None, state: Any = None,
                use_cache: bool = False) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError

    def state_size(self, seq_len: int | None = None) -> int:
        """Numbers held in the recurrent state of one sequence (after ``seq_len`` tokens, for a KV cache)."""
        raise NotImplementedError

    def flops(self, seq_len: int) -> int:
        """Forward FLOPs (multiply-add = 2) of this mixer for one sequence of ``seq_len`` tokens."""
        raise NotImplementedError
