"""The comparison every kernel test makes: outputs and the gradients of all inputs under one fixed random weighting."""
import torch


def fwd_bwd(fn, *xs, seed=1):
    """[o, final state, d/dx for x in xs] of ``fn(*xs) -> (o, s)`` under loss = sum(o * r1) + sum(s * r2), with r1, r2
    random (seeded) so that every output element and every state element carries gradient."""
    o, s = fn(*xs)
    g = torch.Generator().manual_seed(seed)
    loss = (o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum() \
        + (s * torch.randn(s.shape, generator=g, dtype=s.dtype)).sum()
    return [o, s, *torch.autograd.grad(loss, xs)]
