"""Gated delta rule (Gated DeltaNet): fla's Triton chunk kernel, the exact chunked torch path (kernels.prism
with L = 1), a naive token-by-token reference, and the dispatcher ``gated_delta_rule(..., backend=)``."""
from .op import BACKENDS, chunk_flops, gated_delta_rule, l2norm

__all__ = ["BACKENDS", "chunk_flops", "gated_delta_rule", "l2norm"]
