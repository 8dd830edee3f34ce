"""PRISM on Triton.

chunk.py       the PRISM delta rule (exact chunked forward and backward) on fla's Gated DeltaNet kernels: the WY
               part on the corrected value, the state recurrence on an expanded sequence (Lp = next_pow2(L)
               sub-rows per token: the erase-corrected write and the L - 1 extra writes), output and backward on
               the original sequence plus correction.py's chunk-local kernels ("split", default; "expanded" runs
               every fla kernel on the expanded sequence). torch.library custom ops: one op for autograd and
               torch.compile. Backend "triton" of kernels.prism.prism_delta_rule ("auto" on CUDA).
correction.py  Triton kernels: the corrected value Δ' = Δ - Σ_l (Γ ⊙ tril_strict(K K_l^T)) W_l, the extra writes'
               output term and all their gradients (incl. the carried-state term), forward and backward.
state.py       default (PRISM_TRITON_IMPL=split_fused): the state recurrence on the original chunks, the extra writes
               added in its serial loop as a per-chunk state-independent term E_c = Σ_l (dte ⊙ K_l)^T W_l (no
               expanded sequence).
solver.py      the mixer's L-step residual solver fused into one elementwise kernel per direction.
qk_norm.py     the mixer's L2 normalisation of q and the keys, read from its merged projection's strided columns,
               one kernel per direction.

Knobs: PRISM_TRITON_IMPL = split_fused (default) | split | expanded; PRISM_TRITON_EXPANDED_MAX = the state
kernel's chunk Lp * C (default 128 for split: C = 64 for L = 2; 64 for expanded). benchmarks/op_throughput.py
compares them (docs/benchmarks.md): on an H200 split_fused was the fastest at every length (1.03-1.36x split) with
the least memory, so it is the default.
"""
from .chunk import pick_chunk_size, triton_prism_delta_rule
from .solver import prism_solver, prism_solver_reference

__all__ = ["pick_chunk_size", "prism_solver", "prism_solver_reference", "triton_prism_delta_rule"]
