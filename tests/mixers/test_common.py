import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mixers.common import ShortConv

BIAS = pytest.mark.parametrize("bias", [False, True])


def _conv(K=4, D=6, bias=False):
    torch.manual_seed(0)
    return ShortConv(D, K, bias=bias)


@pytest.mark.parametrize("activation", ["silu", None])
def test_short_conv_with_bias_is_a_causal_nn_conv1d(activation):
    conv = ShortConv(6, 3, activation, bias=True)
    assert conv.bias.abs().max() <= 3 ** -0.5 and conv.bias.std() > 0  # nn.Conv1d's U(+-1/sqrt(fan_in))
    ref = nn.Conv1d(6, 6, 3, padding=2, groups=6)  # the PRISM authors' CausalConv1d: pad both sides, keep the first T
    with torch.no_grad():
        ref.weight.copy_(conv.weight.unsqueeze(1))
        ref.bias.copy_(conv.bias)
    x = torch.randn(2, 9, 6)
    expected = ref(x.transpose(1, 2))[..., :9].transpose(1, 2)
    expected = F.silu(expected) if activation else expected
    torch.testing.assert_close(conv(x)[0], expected)


@BIAS
def test_short_conv_token_by_token_equals_full(bias):
    conv = _conv(bias=bias)
    x = torch.randn(2, 11, 6)
    full, _ = conv(x)
    state, outs = None, []
    for t in range(x.shape[1]):
        y, state = conv(x[:, t:t + 1], state=state, use_cache=True)
        outs.append(y)
    torch.testing.assert_close(torch.cat(outs, 1), full)


@BIAS
def test_short_conv_packed_equals_separate_with_state(bias):
    conv = _conv(bias=bias)
    lens = [1, 5, 2, 7]
    xs = [torch.randn(1, n, 6) for n in lens]
    states = [torch.randn(1, 6, 3) for _ in lens]
    cu = torch.tensor([0, 1, 6, 8, 15], dtype=torch.int32)
    packed, tail = conv(torch.cat(xs, 1), cu_seqlens=cu, state=torch.cat(states), use_cache=True)
    for i, (x, s) in enumerate(zip(xs, states)):
        ref, ref_tail = conv(x, state=s, use_cache=True)
        torch.testing.assert_close(packed[:, cu[i]:cu[i + 1]], ref)
        torch.testing.assert_close(tail[i:i + 1], ref_tail)


@BIAS
def test_short_conv_left_padding_is_ignored(bias):
    conv = _conv(bias=bias)
    x = torch.randn(1, 7, 6)
    padded = torch.cat([torch.randn(1, 3, 6), x], 1)
    mask = torch.tensor([[False] * 3 + [True] * 7])
    y, _ = conv(padded, mask=mask)
    torch.testing.assert_close(y[:, 3:], conv(x)[0])


def test_fused_short_conv_matches_torch_path(interpret):
    """fla's Triton causal_conv1d (the CUDA path) under Triton's interpreter against the torch path: output and the
    gradients of the input, the filter and the bias, with and without the activation and the bias, padding mask and
    packed sequences (tests/kernels/interpreted/short_conv.py)."""
    out = interpret("tests.kernels.interpreted.short_conv", timeout=600)
    assert len(out) == 24
    for case, errs in out.items():
        if case.endswith("_contiguous"):
            assert errs is True, case
        else:
            assert max(errs) < 1e-5, (case, errs)
