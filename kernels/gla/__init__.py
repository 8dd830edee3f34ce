"""Gated linear attention (per-channel log decay): fla's Triton chunk kernel, a chunked torch path, a naive
token-by-token reference, and the dispatcher ``gla(..., backend=)``."""
from .chunk import chunk_gla_torch
from .naive import naive_recurrent_gla
from .op import BACKENDS, chunk_flops, gla

__all__ = ["BACKENDS", "chunk_flops", "chunk_gla_torch", "gla", "naive_recurrent_gla"]
