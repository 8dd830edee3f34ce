"""TTT-MLP (test-time training with an MLP inner model, Sun et al. 2024): mini-batch dual form (batched torch,
optional torch.compile), a token-by-token primal reference, and the op ``ttt_mlp(..., backend=)``."""
from .dual import dual_step, ttt_mlp_dual
from .inner import gelu_tanh, gelu_tanh_grad, layer_norm, ln_fused_l2_bwd
from .naive import naive_ttt_mlp
from .op import BACKENDS, ttt_mlp

__all__ = ["BACKENDS", "dual_step", "gelu_tanh", "gelu_tanh_grad", "layer_norm", "ln_fused_l2_bwd",
           "naive_ttt_mlp", "ttt_mlp", "ttt_mlp_dual"]
