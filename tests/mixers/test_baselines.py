"""The baseline mixers gdn, gla, mamba2, ttt_mlp, linear_attention (torch paths, CPU, fp32): decoding token by token
equals the parallel forward, causality, left padding with a mask equals the unpadded input, packed sequences equal
separate runs, gradients reach every parameter, state_size/flops are consistent, and each trains in the backbone on
MQAR."""
import re

import pytest
import torch

from configs import compose_config, config_to_dict
from datamodules.mqar import mqar_examples
from lit_modules.backbone import expand_layers
from lit_modules.language_model import LanguageModel
from mixers import MixerState
from mixers.registry import get_mixer
from tests.mixers.test_prism_training import train_losses

D = 32
CASES = {
    "gdn": ("gdn", dict(num_heads=2, head_dim=8, chunk_size=8)),
    "gdn_plain": ("gdn", dict(num_heads=2, head_dim=8, use_short_conv=False, use_gate=False, allow_neg_eigval=True)),
    "gla": ("gla", dict(num_heads=2, chunk_size=16)),
    "gla_conv": ("gla", dict(num_heads=2, use_short_conv=True, chunk_size=16)),
    "mamba2": ("mamba2", dict(head_dim=8, state_size=8, n_groups=2, chunk_size=8)),
    "ttt_mlp": ("ttt_mlp", dict(head_dim=16, mini_batch_size=4)),
    "ttt_mlp_b16": ("ttt_mlp", dict(head_dim=16)),
    "linear_attention": ("linear_attention", dict(num_heads=2, chunk_size=8)),
    "linear_attention_decay": ("linear_attention", dict(num_heads=2, conv_size=3, decay="learned", chunk_size=8)),
    "linear_attention_no_conv": ("linear_attention", dict(conv_size=0)),
}


def build(case, **extra):
    name, kw = CASES[case]
    cls = get_mixer(name)
    torch.manual_seed(0)
    return cls(D, cls.Config(init_std=0.2, **kw, **extra)).eval()


def inputs(B, T, seed=0):
    return torch.randn(B, T, D, generator=torch.Generator().manual_seed(seed))


def close(a, b, tol=1e-5):
    err = (a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt().clamp_min(1e-12)
    assert err < tol, f"relative RMS error {err:.2e}"


def flat_state(state: MixerState) -> list[torch.Tensor]:
    recurrent = state.recurrent.values() if isinstance(state.recurrent, dict) else [state.recurrent]
    return [t for t in (state.conv, *recurrent) if t is not None]


def compare_states(a, b, tol=1e-5):
    for x, y in zip(flat_state(a), flat_state(b), strict=True):
        if x.dtype in (torch.long, torch.int32):
            assert torch.equal(x, y)
        else:
            close(x.float(), y.float(), tol)


def run_calls(m, x, sizes, state=None):
    outs = []
    t = 0
    for n in sizes:
        y, state = m(x[:, t:t + n], state=state, use_cache=True)
        outs.append(y)
        t += n
    return torch.cat(outs, 1), state


@pytest.mark.parametrize("case", CASES)
@torch.no_grad()
def test_token_by_token_and_split_calls_equal_parallel(case):
    m = build(case)
    x = inputs(2, 21)
    y, state = m(x, use_cache=True)
    assert isinstance(state, MixerState)
    y_plain, none = m(x)
    assert none is None
    close(y_plain, y)
    steps, step_state = run_calls(m, x, [1] * 21)
    close(steps, y)
    compare_states(step_state, state)
    split, split_state = run_calls(m, x, [5, 11, 5])
    close(split, y)
    compare_states(split_state, state)


@pytest.mark.parametrize("case", CASES)
@torch.no_grad()
def test_causal(case):
    m = build(case)
    x = inputs(2, 21)
    x2 = x.clone()
    x2[:, 10:] = inputs(2, 11, seed=1)
    y, y2 = m(x)[0], m(x2)[0]
    torch.testing.assert_close(y2[:, :10], y[:, :10], rtol=1e-5, atol=1e-6)
    assert (y2[:, 10:] - y[:, 10:]).abs().max() > 1e-3


@pytest.mark.parametrize("case", CASES)
@torch.no_grad()
def test_left_padding_with_mask_equals_unpadded(case):
    m = build(case)
    lens, T = [14, 21], 21
    xs = [inputs(1, n, seed=i) for i, n in enumerate(lens)]
    padded = torch.cat([torch.cat([inputs(1, T - n, seed=9), x], 1) for n, x in zip(lens, xs)])
    mask = torch.stack([torch.arange(T) >= T - n for n in lens])
    y, state = m(padded, mask=mask, use_cache=True)
    assert (y[~mask] == 0).all()
    more = inputs(2, 3, seed=5)
    y_more = run_calls(m, more, [1, 2], state)[0]
    for i, (n, x) in enumerate(zip(lens, xs)):
        ref, ref_state = m(x, use_cache=True)
        close(y[i:i + 1, T - n:], ref)
        close(y_more[i:i + 1], run_calls(m, more[i:i + 1], [1, 2], ref_state)[0])


@pytest.mark.parametrize("case", CASES)
@torch.no_grad()
def test_packed_sequences_equal_separate_runs(case):
    m = build(case)
    lens = [5, 13, 1, 6]
    xs = [inputs(1, n, seed=i) for i, n in enumerate(lens)]
    prefix = [inputs(1, 3 + i, seed=10 + i) for i in range(len(lens))]  # earlier tokens: a state per sequence
    cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], dtype=torch.int32)
    cu_prefix = torch.tensor([0, *torch.tensor([p.shape[1] for p in prefix]).cumsum(0).tolist()], dtype=torch.int32)
    _, state = m(torch.cat(prefix, 1), cu_seqlens=cu_prefix, use_cache=True)
    y, new_state = m(torch.cat(xs, 1), cu_seqlens=cu, state=state, use_cache=True)
    for i, x in enumerate(xs):
        _, s = m(prefix[i], use_cache=True)
        ref, ref_state = m(x, state=s, use_cache=True)
        close(y[:, cu[i]:cu[i + 1]], ref)
        compare_states(sequence_of(new_state, i), ref_state)


def sequence_of(state: MixerState, i: int) -> MixerState:
    """Sequence i of a batched state (every tensor's first dim is the sequence)."""
    return state.map(lambda t: t[i:i + 1])


@pytest.mark.parametrize("case", CASES)
def test_gradients_reach_every_parameter(case):
    m = build(case).train()
    y, _ = m(inputs(2, 21))
    y.pow(2).mean().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().max() > 0, name


@pytest.mark.parametrize("case", CASES)
@torch.no_grad()
def test_state_size_and_flops(case):
    m = build(case)
    _, state = m(inputs(3, 21), use_cache=True)
    per_sequence = sum(t.numel() for t in flat_state(state)) // 3
    assert m.state_size() == per_sequence == m.state_size(4096)
    linear_params = sum(mod.weight.numel() for mod in m.modules() if isinstance(mod, torch.nn.Linear))
    for T in (64, 256):
        assert m.flops(T) > 2 * T * linear_params  # projections plus the sequence mixing itself
    assert m.flops(512) == 2 * m.flops(256)  # linear in the sequence length


@pytest.mark.parametrize("case,old", [("gdn", "fla"), ("gla", "fla"), ("mamba2", "fla"), ("ttt_mlp", "triton"),
                                      ("linear_attention", "fla")])
def test_backend_outside_the_vocabulary_names_the_choices(case, old):
    choices = "'naive', 'torch', 'auto'" if case == "ttt_mlp" else "'naive', 'torch', 'triton', 'auto'"
    with pytest.raises(ValueError, match=re.escape(f"{case}.backend: invalid value '{old}', expected one of [{choices}]")):
        build(case, backend=old)


@pytest.mark.parametrize("name,overrides", [
    ("gdn", ["model.mixers.gdn.num_heads=2", "model.mixers.gdn.chunk_size=16"]),
    ("gla", ["model.mixers.gla.chunk_size=16"]),
    ("mamba2", ["model.mixers.mamba2.head_dim=16", "model.mixers.mamba2.state_size=16",
                "model.mixers.mamba2.chunk_size=16"]),
    ("ttt_mlp", ["model.mixers.ttt_mlp.head_dim=16"]),
    ("linear_attention", ["model.mixers.linear_attention.chunk_size=16"]),
])
def test_trains_in_the_backbone_on_mqar(name, overrides):
    cfg = compose_config([f"mixer={name}", "model.d_model=32", *overrides])
    assert expand_layers(cfg.model) == [name, name]
    torch.manual_seed(0)
    model = LanguageModel(config_to_dict(cfg), vocab_size=32)
    batches = (mqar_examples(16, vocab_size=32, seq_len=32, num_kv_pairs=4, seed=step) for step in range(20))
    losses = train_losses(model, batches, lr=3e-3)
    assert all(torch.isfinite(torch.tensor(losses)))
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first - 0.1, f"{name}: loss {first:.3f} -> {last:.3f}"  # ln 32 = 3.47 at the start


def test_hybrid_stack_decodes_like_parallel_forward():
    cfg = compose_config(["mixer=gdn", "model.d_model=32", "model.layers=[gdn,gla,mamba2,ttt_mlp,attention]", "model.repeat=1",
                          "model.mixers.gdn.num_heads=2", "model.mixers.mamba2.head_dim=16",
                          "model.mixers.mamba2.state_size=16", "model.mixers.ttt_mlp.head_dim=16",
                          "model.mixers.attention.num_heads=2"])
    torch.manual_seed(0)
    model = LanguageModel(config_to_dict(cfg), vocab_size=32).eval()
    assert model.backbone.layer_names == ["gdn", "gla", "mamba2", "ttt_mlp", "attention"]
    x = torch.randint(0, 32, (2, 19))
    with torch.no_grad():
        logits, _ = model(x)
        steps, states = [], None
        for t in range(x.shape[1]):
            step, states = model(x[:, t:t + 1], states=states, use_cache=True)
            steps.append(step)
    close(torch.cat(steps, 1), logits)
