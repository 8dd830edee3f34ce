"""Run by tests/mixers/test_common.py under Triton's interpreter: the mixers' short convolution on fla's Triton
causal_conv1d (the CUDA path) against its torch path, with and without the activation and the bias, padding mask and
packed sequences. Prints {case: [relative errors]} and {case_contiguous: bool} as JSON."""
import tools.fla_interpret as fi

fi.patch_triton_interpreter()  # before anything imports triton or fla

import json  # noqa: E402

import torch  # noqa: E402

from mixers.common import ShortConv  # noqa: E402


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def main():
    torch.manual_seed(0)
    out = {}
    for activation, bias in (("silu", False), (None, False), ("silu", True), (None, True)):  # None + bias: mamba2
        conv = ShortConv(12, 4, activation, bias=bias)
        label = f"{activation}_bias" if bias else str(activation)
        for name, T, kw in [("dense", 37, {}), ("masked", 37, {"mask": torch.rand(2, 37) > 0.3}),
                            ("packed", 29, {"cu_seqlens": torch.tensor([0, 1, 13, 29])})]:
            x = torch.randn(1 if "cu_seqlens" in kw else 2, T, 12, requires_grad=True)
            ys = [conv(x, fused=f, **kw)[0] for f in (False, True)]
            w = torch.randn(ys[0].shape)
            grads = [torch.autograd.grad((y * w).sum(), [x, *conv.parameters()]) for y in ys]
            out[f"{label}_{name}"] = [rel(ys[1], ys[0])] + [rel(b, a) for a, b in zip(*grads)]
            out[f"{label}_{name}_contiguous"] = ys[1].is_contiguous()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
