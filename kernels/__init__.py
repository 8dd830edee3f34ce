"""Sequence-mixing ops, one folder each (naive reference, chunked torch, Triton), each behind one function with a
``backend`` argument."""

# The backends of every chunked op: "auto" is "triton" on CUDA and "torch" elsewhere (docs/mixers.md).
BACKENDS = ("naive", "torch", "triton", "auto")
