"""mamba2 against outside implementations with copied weights, forward and backward, on the CPU (fp32):
fla.layers.Mamba2's own torch path (n_groups = 1) and transformers' Mamba2Mixer, whose torch path follows
mamba_ssm's kernels (n_groups = 2: heads h*H/G .. (h+1)*H/G - 1 share group h; docs/mixers.md says why fla's CPU
path is not the reference there)."""
import pytest
import torch

from mixers.mamba2 import Mamba2, Mamba2Config

D = 32
# ours -> theirs: parameter names (the conv weight has a channel dim of 1 in nn.Conv1d)
NAMES = {"in_proj.weight": "in_proj.weight", "conv.weight": "conv1d.weight", "conv.bias": "conv1d.bias",
         "dt_bias": "dt_bias", "A_log": "A_log", "D": "D", "norm_weight": "norm.weight",
         "out_proj.weight": "out_proj.weight"}


def fla_mamba2(n_groups):
    from fla.layers.mamba2 import Mamba2 as FlaMamba2
    from fla.modules.norm.layernorm_gated import rms_norm_ref

    layer = FlaMamba2(head_dim=16, hidden_size=D, state_size=8, expand=2, n_groups=n_groups, chunk_size=8)
    # its torch path (torch_forward) off CUDA, with its two Triton helpers swapped for their torch equivalents:
    # the SiLU, and the gated RMSNorm for fla's own reference of it
    norm = layer.norm
    layer.act = torch.nn.functional.silu
    norm.forward = lambda x, z=None: rms_norm_ref(x, norm.weight, None, z, norm.eps, norm.group_size,
                                                  norm.norm_before_gate)
    return layer, lambda x: layer(x)[0]


def transformers_mamba2(n_groups):
    from transformers import Mamba2Config as HFConfig
    from transformers.models.mamba2.modeling_mamba2 import Mamba2Mixer

    cfg = HFConfig(hidden_size=D, num_heads=64 // 16, head_dim=16, state_size=8, expand=2, n_groups=n_groups,
                   chunk_size=8, conv_kernel=4, use_conv_bias=True, layer_norm_epsilon=1e-5, num_hidden_layers=1)
    layer = Mamba2Mixer(cfg, 0)
    return layer, lambda x: layer(x)


@pytest.mark.parametrize("reference,n_groups", [(fla_mamba2, 1), (transformers_mamba2, 2)])
def test_outputs_and_gradients_equal_the_reference_with_copied_weights(reference, n_groups):
    torch.manual_seed(0)
    ours = Mamba2(D, Mamba2Config(head_dim=16, state_size=8, n_groups=n_groups, chunk_size=8, init_std=0.2))
    theirs, run = reference(n_groups)
    params = dict(theirs.named_parameters())
    with torch.no_grad():
        ours.conv.bias.normal_(std=0.1)  # not zero: the bias must land where theirs does
        ours.D.uniform_(0.5, 1.5)
        ours.norm_weight.uniform_(0.5, 1.5)
        for mine, name in NAMES.items():
            params[name].copy_(ours.get_parameter(mine).reshape(params[name].shape))
    x = torch.randn(2, 21, D, requires_grad=True)
    y = ours(x)[0]
    y_ref = run(x)
    assert ((y - y_ref).norm() / y_ref.norm()).item() < 1e-5
    w = torch.randn_like(y)
    grads = torch.autograd.grad((y * w).sum(), [x, *(ours.get_parameter(n) for n in NAMES)])
    grads_ref = torch.autograd.grad((y_ref * w).sum(), [x, *(params[n] for n in NAMES.values())])
    for name, g, g_ref in zip(["x", *NAMES], grads, grads_ref):
        g_ref = g_ref.reshape(g.shape)
        assert ((g - g_ref).norm() / g_ref.norm()).item() < 1e-4, name


def test_a_checkpoint_that_names_the_conv_bias_conv_bias_still_loads():
    """Checkpoints written before the bias moved into ShortConv hold it as ``conv_bias``: they load and resume."""
    torch.manual_seed(0)
    cfg = Mamba2Config(head_dim=16, state_size=8, chunk_size=8)
    old = Mamba2(D, cfg)
    with torch.no_grad():
        old.conv.bias.normal_(std=0.1)
    state = {("conv_bias" if k == "conv.bias" else k): v for k, v in old.state_dict().items()}
    new = Mamba2(D, cfg)
    new.load_state_dict(state)  # strict
    x = torch.randn(2, 9, D)
    torch.testing.assert_close(new(x)[0], old(x)[0], rtol=0, atol=0)
