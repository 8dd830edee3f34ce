"""Simple gated linear attention (scalar log decay per head = Mamba2's SSD): fla's Triton chunk kernel, a
chunked torch path, a naive token-by-token reference, and the dispatcher ``simple_gla(..., backend=)``."""
from .chunk import chunk_simple_gla_torch
from .naive import naive_recurrent_simple_gla
from .op import BACKENDS, simple_gla

__all__ = ["BACKENDS", "chunk_simple_gla_torch", "naive_recurrent_simple_gla", "simple_gla"]
