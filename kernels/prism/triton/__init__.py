"""PRISM on Triton.

chunk.py       the PRISM delta rule (exact chunked forward and backward): fla's Gated DeltaNet kernels (kkt + solve_tril
               + recompute_w_u, chunk_fwd_h, chunk_fwd_o and their backward) run on an expanded sequence in which
               every token contributes Lp = next_pow2(L) sub-rows (the erase-corrected write and the L - 1 extra
               writes), plus correction.py's chunk-local corrected value. torch.library custom ops (one op for
               autograd and torch.compile). Backend "triton" of kernels.prism.prism_delta_rule ("auto" on CUDA).
correction.py  Triton kernels for the corrected value Δ' = Δ - Σ_l (Γ ⊙ tril_strict(K K_l^T)) W_l, fwd and bwd.
solver.py      the mixer's L-step residual solver fused into one elementwise kernel per direction.

Known costs / next steps: the expanded kernels process Lp× GDN's rows (the output kernel computes Lp - 1 unused
sub-rows per token); with the default 64-row expanded chunk, L = 2 uses C = 32 and hence 2× GDN's serial state steps
(PRISM_TRITON_EXPANDED_MAX=128 keeps C = 64). A dedicated state kernel that adds the extra writes as a per-chunk
state-independent term, and an output kernel that reads only the query rows, would remove both.
"""
from .chunk import pick_chunk_size, triton_prism_delta_rule
from .solver import prism_solver, prism_solver_reference

__all__ = ["pick_chunk_size", "prism_solver", "prism_solver_reference", "triton_prism_delta_rule"]
