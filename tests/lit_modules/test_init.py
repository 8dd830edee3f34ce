"""model.init=torch: the weights PyTorch's modules start from (the PRISM authors' probing models), in place of the
N(0, init_std) init; every other parameter as the mixer set it."""
import math

import pytest
import torch
from torch import nn

from configs import compose_config, config_to_dict
from lit_modules.language_model import LanguageModel


def build(*overrides):
    cfg = compose_config(["experiment=probes_paper", "model.d_model=64", *overrides])
    torch.manual_seed(0)
    return LanguageModel(config_to_dict(cfg), vocab_size=32)


@pytest.mark.parametrize("mixer", ["attention", "prism", "mamba2"])
def test_torch_init_gives_pytorchs_scales_and_keeps_the_mixers_own_parameters(mixer):
    normal, torch_init = build(f"mixer={mixer}", "model.init=normal"), build(f"mixer={mixer}", "model.init=torch")
    linears = {name for name, m in torch_init.named_modules() if isinstance(m, nn.Linear)}
    for name, m in torch_init.named_modules():
        if isinstance(m, nn.Linear) and m.weight.numel() >= 2048:  # enough entries for a std
            bound = 1 / math.sqrt(m.in_features)  # kaiming-uniform with a = sqrt 5: U(+-1/sqrt(fan_in))
            assert m.weight.abs().max() <= bound, name
            assert m.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1), name
    assert torch_init.embed.weight.std().item() == pytest.approx(1.0, rel=0.1)  # nn.Embedding: N(0, 1)
    assert normal.embed.weight.std().item() == pytest.approx(0.02, rel=0.1)
    reinitialised = {f"{n}.weight" for n in linears} | {"embed.weight"}
    kept = [n for n, _ in normal.named_parameters() if n not in reinitialised]
    assert any("conv" in n for n in kept)  # the mixers' convs, norms, gates and decays are among them
    for name in kept:
        torch.testing.assert_close(torch_init.get_parameter(name), normal.get_parameter(name), msg=name)


def test_torch_init_keeps_the_recommenders_padding_item_at_zero():
    from lit_modules.recommender import SequentialRecommender

    cfg = compose_config(["experiment=rec_beauty", "model.init=torch", "model.d_model=32"])
    model = SequentialRecommender(config_to_dict(cfg), num_items=50)
    assert model.item_emb.weight[0].abs().max() == 0 and model.item_emb.weight[1:].std() > 0.5


def test_an_unknown_init_is_a_one_line_config_error():
    from configs import ConfigError

    with pytest.raises(ConfigError, match="model.init"):
        compose_config(["model.init=xavier"])
