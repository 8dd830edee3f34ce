"""The Triton PRISM op under Triton's interpreter, and inputs and gradients as the interpreted PRISM modules use
them. Importing this module applies tools/fla_interpret.py's patches: import it before anything that imports
triton or fla, in a process started with TRITON_INTERPRET=1."""
import tools.fla_interpret as fi

fi.patch_triton_interpreter()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from kernels.prism import prism_delta_rule  # noqa: E402

torch.set_num_threads(1)
NAMES = ["o", "ht", "dq", "dk", "dv", "dbeta", "dg", "dh0"]


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-300)).item()


def make(B, T, H, L, K, V, N, seed):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    q = r(B, T, H, K)
    k = F.normalize(r(B, T, H, L, K), dim=-1)
    v = r(B, T, H, L, V)
    beta = torch.sigmoid(r(B, T, H, L))
    g = F.logsigmoid(r(B, T, H) + 2.5)
    return [q, k, v, beta, g, r(N, H, K, V)]


def fwd_bwd(backend, xs, use_h0, **kw):
    xs = [x.clone().requires_grad_() for x in xs]
    q, k, v, beta, g, h0 = xs
    o, h = prism_delta_rule(q, k, v, beta, g, initial_state=h0 if use_h0 else None, output_final_state=True,
                            backend=backend, **kw)
    gen = torch.Generator().manual_seed(1)
    loss = (o * torch.randn(o.shape, generator=gen).to(o.dtype)).sum() \
        + (h * torch.randn(h.shape, generator=gen).to(h.dtype)).sum()
    return [o, h, *torch.autograd.grad(loss, xs if use_h0 else xs[:5])]
