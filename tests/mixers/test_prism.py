"""The PRISM mixer: recurrent decoding equals the parallel forward, causality, padding, packing, configs, counts."""
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from mixers import MixerState, get_mixer
from mixers.prism import PRISM, PRISMConfig



D = 16
VARIANTS = {
    "default": {},
    "l1": dict(steps=1),
    "l3": dict(steps=3),
    "closed_form": dict(solver="closed_form", gain_rank=8),
    "shared_key": dict(shared_key=True),
    "no_conv": dict(anchor="none"),
    "no_gain": dict(gain="none"),
    "identity": dict(nonlinearity="identity"),
    "gdn_decay": dict(decay="gdn"),
    "narrow_heads": dict(head_dim=6),   # H * d != D: r[1] uses a linear map of U
    "low_rank_gain": dict(gain_rank=4, steps=4),
}


def make(seed=0, dtype=torch.float64, **kw):
    torch.manual_seed(seed)
    cfg = PRISMConfig(num_heads=2, chunk_size=8, **kw)
    return get_mixer("prism")(D, cfg).to(dtype)


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("name", list(VARIANTS))
def test_decoding_equals_parallel_forward(name):
    m = make(**VARIANTS[name])
    x = torch.randn(2, 19, D, dtype=torch.float64)
    y, final = m(x, use_cache=True)
    assert isinstance(final, MixerState)
    state, outs = None, []
    for t in range(x.shape[1]):  # token by token
        y_t, state = m(x[:, t:t + 1], state=state, use_cache=True)
        outs.append(y_t)
    assert rel(torch.cat(outs, 1), y) <= 1e-12
    assert rel(state.recurrent, final.recurrent) <= 1e-12
    state, outs = None, []
    for s in range(0, x.shape[1], 5):  # prefill in pieces of 5 tokens
        y_s, state = m(x[:, s:s + 5], state=state, use_cache=True)
        outs.append(y_s)
    assert rel(torch.cat(outs, 1), y) <= 1e-12


@pytest.mark.parametrize("name", ["default", "closed_form", "no_conv"])
def test_causality(name):
    m = make(**VARIANTS[name])
    x = torch.randn(1, 21, D, dtype=torch.float64)
    y, _ = m(x)
    for t in (0, 7, 8, 20):
        x2 = x.clone()
        x2[:, t] += torch.randn(D, dtype=torch.float64)
        y2, _ = m(x2)
        assert torch.allclose(y2[:, :t], y[:, :t], rtol=0, atol=1e-13), f"perturbing {t} changed earlier outputs"
        assert not torch.allclose(y2[:, t], y[:, t])


@pytest.mark.parametrize("name", ["default", "no_conv", "gdn_decay"])
def test_left_padding_with_mask_equals_unpadded(name):
    m = make(**VARIANTS[name])
    lens, T = [13, 6], 17
    xs = [torch.randn(1, n, D, dtype=torch.float64) for n in lens]
    x = torch.randn(len(lens), T, D, dtype=torch.float64) * 3       # junk in the padding
    mask = torch.zeros(len(lens), T, dtype=torch.bool)
    for i, n in enumerate(lens):
        x[i, T - n:] = xs[i][0]
        mask[i, T - n:] = True
    y, state = m(x, mask=mask, use_cache=True)
    for i, n in enumerate(lens):
        y_i, s_i = m(xs[i], use_cache=True)
        assert rel(y[i:i + 1, T - n:], y_i) <= 1e-12
        assert rel(state.recurrent[i:i + 1], s_i.recurrent) <= 1e-12


@pytest.mark.parametrize("name", ["default", "closed_form", "no_conv"])
def test_packed_sequences_equal_separate(name):
    m = make(**VARIANTS[name])
    lens = [5, 1, 17, 9]
    xs = [torch.randn(1, n, D, dtype=torch.float64) for n in lens]
    cu = torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), dtype=torch.int32)
    # each sequence continues from a state of its own (a prefix run separately)
    prefixes = [torch.randn(1, 3, D, dtype=torch.float64) for _ in lens]
    states = [m(p, use_cache=True)[1] for p in prefixes]
    conv = None if states[0].conv is None else torch.cat([s.conv for s in states])
    packed_state = MixerState(conv, torch.cat([s.recurrent for s in states]))
    y, final = m(torch.cat(xs, 1), cu_seqlens=cu, state=packed_state, use_cache=True)
    for i, x in enumerate(xs):
        y_i, s_i = m(x, state=states[i], use_cache=True)
        assert rel(y[:, cu[i]:cu[i + 1]], y_i) <= 1e-12
        assert rel(final.recurrent[i:i + 1], s_i.recurrent) <= 1e-12
        if s_i.conv is not None:
            assert rel(final.conv[i:i + 1], s_i.conv) <= 1e-12


def test_fp32_close_to_fp64_and_backward_reaches_every_parameter():
    m64 = make()
    m32 = make(dtype=torch.float32)
    x = torch.randn(2, 40, D, dtype=torch.float64)
    y64, _ = m64(x)
    y32, _ = m32(x.float())
    assert rel(y32.double(), y64) <= 1e-5
    y32.square().mean().backward()
    missing = [n for n, p in m32.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"parameters without a finite gradient: {missing}"


def test_initial_decay_and_gain():
    for decay in ("sigmoid", "gdn"):
        m = make(decay=decay)
        a = m.double()._project(torch.zeros(1, 1, D, dtype=torch.float64))[-1]   # the decay projection of U = 0
        alpha = m._log_decay(a).exp()
        assert ((alpha > 0.949) & (alpha < 0.991)).all(), f"{decay}: initial alpha {alpha}"
    u = torch.zeros(1, 1, D, dtype=torch.float64)
    for kw, gain in [({}, 1.0), ({"solver": "closed_form"}, 0.0), ({"gain_rank": 2}, 1.0)]:  # p near 1; P = 1/2
        for decay in ("sigmoid", "gdn"):  # the decay's parametrisation must not move the other biases
            m = make(decay=decay, **kw)
            p = m.p_proj(u) if m.p_proj is not None else m._project(u)[3]
            assert p.shape[-1] == m.steps * D and (p == gain).all(), (kw, decay, p)
            assert (m._project(u)[4] == 0).all(), (kw, decay)                            # beta starts at 1/2


def test_state_size_and_flops():
    m = make()
    H, d = 2, D // 2
    assert m.state_size() == H * d * d + D * 3
    assert make(anchor="none").state_size() == H * d * d
    f = m.flops
    assert f(64) == 2 * f(32)                            # linear in whole chunks (chunk size 8)
    linear_weights = sum(mod.weight.numel() for mod in m.modules() if isinstance(mod, torch.nn.Linear))
    assert f(64) > 2 * 64 * linear_weights               # projections are counted, and more than them
    assert make(steps=1).flops(64) < f(64) < make(steps=3).flops(64)
    # against a count of the matmuls actually run (the triangular solve is not counted by FlopCounterMode)
    from torch.utils.flop_counter import FlopCounterMode
    x = torch.randn(1, 64, D, dtype=torch.float64)
    with FlopCounterMode(display=False) as counter:
        m(x)
    measured = counter.get_total_flops()
    assert 0.8 * measured <= f(64) <= 1.5 * measured, (f(64), measured)


def test_config_errors():
    with pytest.raises(ValueError, match="solver"):
        PRISM(D, PRISMConfig(solver="newton"))
    with pytest.raises(ValueError, match="steps"):
        PRISM(D, PRISMConfig(steps=5))
    with pytest.raises(ValueError, match="gain"):
        PRISM(D, PRISMConfig(solver="closed_form", gain="none"))
    with pytest.raises(ValueError, match="num_heads"):
        PRISM(D, PRISMConfig(num_heads=3))


CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "mixer"


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("prism*.yaml")), ids=lambda p: p.stem)
def test_variant_configs_build_and_run(path):
    body = yaml.safe_load(path.read_text())
    assert set(body["model"]["layers"]) == {"prism"}
    fields = OmegaConf.merge(OmegaConf.structured(PRISMConfig), body["model"].get("mixers", {}).get("prism", {}))
    cfg = OmegaConf.to_object(fields)
    cfg.num_heads = 2
    torch.manual_seed(0)
    m = PRISM(D, cfg)
    y, _ = m(torch.randn(1, 9, D))
    assert y.shape == (1, 9, D) and torch.isfinite(y).all()


def test_variant_configs_exist():
    names = {p.stem for p in CONFIG_DIR.glob("prism*.yaml")}
    assert {"prism", "prism_l1", "prism_closed_form", "prism_shared_key", "prism_no_conv", "prism_no_gain",
            "prism_identity", "prism_gdn_decay"} <= names
