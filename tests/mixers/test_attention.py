import pytest
import torch

from mixers import MixerState
from mixers.attention import Attention, AttentionConfig


def make(**kw):
    torch.manual_seed(0)
    return Attention(32, AttentionConfig(**kw)).double()


CASES = [dict(num_heads=4), dict(num_heads=4, num_kv_heads=2), dict(num_heads=4, window=5)]


@pytest.mark.parametrize("kw", CASES)
def test_causal(kw):
    attn = make(**kw)
    x = torch.randn(2, 13, 32, dtype=torch.float64)
    y, _ = attn(x)
    x2 = x.clone()
    x2[:, 7] += 1.0
    y2, _ = attn(x2)
    assert torch.equal(y[:, :7], y2[:, :7]) and not torch.allclose(y[:, 7:], y2[:, 7:])


@pytest.mark.parametrize("kw", CASES)
def test_cached_decoding_equals_parallel(kw):
    attn = make(**kw)
    x = torch.randn(2, 11, 32, dtype=torch.float64)
    full, _ = attn(x)
    y, state = attn(x[:, :4], use_cache=True)  # a prompt, then one token at a time
    assert isinstance(state, MixerState) and state.conv is None
    outs = [y]
    for t in range(4, 11):
        y, state = attn(x[:, t:t + 1], state=state, use_cache=True)
        outs.append(y)
    torch.testing.assert_close(torch.cat(outs, 1), full)


@pytest.mark.parametrize("kw", CASES)
def test_left_padding_with_mask_equals_unpadded(kw):
    attn = make(**kw)
    x = torch.randn(1, 9, 32, dtype=torch.float64)
    padded = torch.cat([torch.randn(1, 4, 32, dtype=torch.float64), x], 1)
    mask = torch.tensor([[False] * 4 + [True] * 9])
    y, _ = attn(padded, mask=mask)
    torch.testing.assert_close(y[:, 4:], attn(x)[0])


@pytest.mark.parametrize("lens", [[3, 8, 1, 6, 8, 0, 3], [7, 7, 0, 7]])  # a pack of equal windows is one view
@pytest.mark.parametrize("kw", CASES)
def test_packed_sequences_equal_separate(kw, lens):
    attn = make(**kw)
    # documents of one length are attended as one batch; an empty one is skipped
    xs = [torch.randn(1, n, 32, dtype=torch.float64) for n in lens]
    cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], dtype=torch.int32)
    packed = torch.cat(xs, 1).requires_grad_()
    y, _ = attn(packed, cu_seqlens=cu)
    w = torch.randn_like(y)
    (grad,) = torch.autograd.grad((y * w).sum(), packed)
    for i, x in enumerate(xs):
        x = x.clone().requires_grad_()
        alone = attn(x)[0]
        torch.testing.assert_close(y[:, cu[i]:cu[i + 1]], alone)
        (g,) = torch.autograd.grad((alone * w[:, cu[i]:cu[i + 1]]).sum(), x)
        torch.testing.assert_close(grad[:, cu[i]:cu[i + 1]], g)


def test_dropout_on_the_attention_weights_only_while_training():
    attn = make(num_heads=4, dropout=0.5)
    x = torch.randn(2, 12, 32, dtype=torch.float64)
    plain = make(num_heads=4)
    plain.load_state_dict(attn.state_dict())
    torch.testing.assert_close(attn.eval()(x)[0], plain(x)[0])  # evaluation: no dropout
    attn.train()
    torch.manual_seed(0)
    a = attn(x)[0]
    torch.manual_seed(0)
    torch.testing.assert_close(attn(x)[0], a)  # the global RNG decides (restored with checkpoints)
    assert not torch.allclose(a, plain(x)[0])
    cu = torch.tensor([0, 12, 24], dtype=torch.int32)
    assert not torch.allclose(attn(x.reshape(1, 24, 32), cu_seqlens=cu)[0].reshape(2, 12, 32), plain(x)[0])
    with pytest.raises(ValueError, match="attention.dropout=1.0"):
        make(num_heads=4, dropout=1.0)


def test_state_size_and_flops():
    attn = make(num_heads=4, num_kv_heads=2)
    assert attn.state_size(100) == 2 * 100 * 2 * 8
    assert make(num_heads=4, window=5).state_size(100) == 2 * 5 * 4 * 8
    assert attn.flops(64) > attn.flops(32) * 2  # quadratic part
    with pytest.raises(ValueError):
        make(num_heads=4, num_kv_heads=3)


# ---- conv_size: the PRISM paper's probing Transformer (causal depthwise conv + SiLU before q, k, v) -------------
CONV = dict(num_heads=2, conv_size=3)


def test_conv_front_equals_its_equations():
    attn = make(**CONV)
    x = torch.randn(2, 10, 32, dtype=torch.float64)
    w = attn.conv.weight  # [D, 3]: tap 2 on the current token
    xp = torch.nn.functional.pad(x, (0, 0, 2, 0))
    u = torch.nn.functional.silu(sum(w[:, j] * xp[:, j:j + 10] for j in range(3)))
    plain = Attention(32, AttentionConfig(num_heads=2)).double()
    plain.load_state_dict({k: v for k, v in attn.state_dict().items() if not k.startswith("conv.")})
    torch.testing.assert_close(attn(x)[0], plain(u)[0], rtol=1e-12, atol=1e-12)
    assert attn.state_size(10) == plain.state_size(10) + 32 * 2
    assert attn.flops(10) == plain.flops(10) + 2 * 10 * 32 * 3


def test_conv_front_decodes_pads_and_packs_like_the_parallel_forward():
    attn = make(**CONV)
    x = torch.randn(2, 11, 32, dtype=torch.float64)
    full, _ = attn(x)
    y, state = attn(x[:, :4], use_cache=True)
    assert state.conv.shape == (2, 32, 2)
    outs = [y]
    for t in range(4, 11):  # the conv tail travels in the state
        y, state = attn(x[:, t:t + 1], state=state, use_cache=True)
        outs.append(y)
    torch.testing.assert_close(torch.cat(outs, 1), full)
    padded = torch.cat([torch.randn(2, 3, 32, dtype=torch.float64), x], 1)
    mask = torch.tensor([[False] * 3 + [True] * 11] * 2)
    torch.testing.assert_close(attn(padded, mask=mask)[0][:, 3:], full)
    cu = torch.tensor([0, 11, 22], dtype=torch.int32)
    torch.testing.assert_close(attn(x.reshape(1, 22, 32), cu_seqlens=cu)[0].reshape(2, 11, 32), full)
