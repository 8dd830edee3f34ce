"""PRISM delta rule on Triton (fla's Gated DeltaNet kernels on an expanded sequence + a chunk-local correction).
See chunk.py for the design."""
from .chunk import pick_chunk_size, triton_prism_delta_rule

__all__ = ["pick_chunk_size", "triton_prism_delta_rule"]
