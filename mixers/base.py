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

The built-in mixers' state is a ``MixerState``. A mixer of your own may return any object as its state: the
backbone and generation only hand it back to the same mixer on the next call.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Literal

import torch
from torch import nn


def _allowed(hint: Any) -> tuple | None:
    """The values a ``Literal[...]`` type admits (with None for ``Optional[Literal[...]]``); None for other types."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        return typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        parts = [_allowed(arg) if arg is not type(None) else (None,) for arg in typing.get_args(hint)]
        return None if any(p is None for p in parts) else tuple(v for p in parts for v in p)
    return None


def check_choices(config: Any, section: str) -> None:
    """Raise ValueError when a ``Literal[...]`` field (or list of them) of the dataclass ``config`` holds another
    value: configs built in Python. A composed config (an OmegaConf node) was checked by OmegaConf already."""
    if not dataclasses.is_dataclass(config):
        return
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        hint, values = hints.get(f.name), [getattr(config, f.name)]
        if typing.get_origin(hint) is list and typing.get_args(hint):  # List[Literal[...]]
            hint, values = typing.get_args(hint)[0], list(values[0] or [])
        allowed = _allowed(hint)
        for value in values if allowed is not None else ():
            if value not in allowed:
                raise ValueError(f"{section}.{f.name}: invalid value {value!r}, expected one of {list(allowed)}")


@dataclass
class MixerState:
    """The recurrent state of N sequences, as the built-in mixers return it (every tensor's first dim is N).

    conv:      tail of the short convolution, its last K-1 inputs [N, C, K-1]; None for a mixer without one.
    recurrent: the mixer's memory: the matrix state [N, H, d_k, d_v] of PRISM, gdn, gla and mamba2; attention's
               KV cache and ttt_mlp's inner weights with its incomplete mini-batch, as dicts of named tensors.
    """
    conv: torch.Tensor | None
    recurrent: torch.Tensor | dict[str, torch.Tensor]

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "MixerState":
        """This state with fn applied to every tensor, e.g. ``state.map(lambda t: t[order])`` to reorder or select
        the sequences of a batch during generation."""
        recurrent = ({k: fn(v) for k, v in self.recurrent.items()} if isinstance(self.recurrent, dict)
                     else fn(self.recurrent))
        return MixerState(None if self.conv is None else fn(self.conv), recurrent)


@dataclass
class MixerConfig:
    """Base class for mixer hyperparameters; subclasses add fields with defaults. A string field with a few
    allowed values is a ``Literal[...]``: OmegaConf checks it when composing and ``Mixer.__init__`` when a config
    is built in Python."""


class Mixer(nn.Module):
    Config: type = MixerConfig

    def __init__(self, d_model: int, config: MixerConfig, layer_idx: int = 0):
        super().__init__()
        check_choices(config, getattr(type(self), "registered_name", type(self).__name__))
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
