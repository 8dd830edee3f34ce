import pytest
import torch
from omegaconf import OmegaConf

from configs import compose_config, config_to_dict
from lit_modules.backbone import expand_layers
from lit_modules.language_model import LanguageModel


def model_cfg(**kw):
    return OmegaConf.create({"layers": ["a"], "repeat": 1, "insert_every": 0, "insert_mixer": "attention", **kw})


@pytest.mark.parametrize("kw, expected", [
    (dict(layers=["prism", "attention"]), ["prism", "attention"]),
    (dict(layers=["prism", "prism", "prism", "attention"], repeat=2), ["prism"] * 3 + ["attention"] + ["prism"] * 3
     + ["attention"]),
    (dict(layers=["gdn"], repeat=6, insert_every=3), ["gdn", "gdn", "attention"] * 2),
])
def test_layer_patterns(kw, expected):
    assert expand_layers(model_cfg(**kw)) == expected


def test_bad_patterns():
    with pytest.raises(ValueError, match="empty"):
        expand_layers(model_cfg(layers=[]))
    with pytest.raises(ValueError, match="repeat"):
        expand_layers(model_cfg(repeat=0))


def lm(*overrides, vocab=50):
    cfg = compose_config(["model.d_model=32", "model.mixers.attention.num_heads=4", *overrides])
    torch.manual_seed(0)
    return LanguageModel(config_to_dict(cfg), vocab_size=vocab).double()


def test_hybrid_stack_from_configuration():
    model = lm("model.layers=[attention,attention]", "model.repeat=2", "model.insert_every=2",
               "model.mixers.attention.window=4")
    assert len(model.backbone.blocks) == 4
    assert model.backbone.flops(16) > 0 and model.backbone.state_size(16) > 0


def test_weight_tying_option():
    tied = lm()
    assert tied.head.weight is tied.embed.weight
    untied = lm("model.tie_embeddings=false")
    assert untied.head.weight is not untied.embed.weight


def test_activation_checkpointing_gives_the_same_gradients():
    ids = torch.randint(0, 50, (2, 12))
    grads = []
    for flag in ("false", "true"):
        model = lm(f"model.checkpointing={flag}").train()
        logits, _ = model(ids)
        logits.square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1])


def test_token_by_token_with_states_equals_parallel():
    model = lm("model.layers=[attention,attention]").eval()
    ids = torch.randint(0, 50, (2, 10))
    full, _ = model(ids)
    logits, states = model(ids[:, :3], use_cache=True)
    outs = [logits]
    for t in range(3, 10):
        logits, states = model(ids[:, t:t + 1], states=states, use_cache=True)
        outs.append(logits)
    torch.testing.assert_close(torch.cat(outs, 1), full)


def test_generate_uses_the_state_and_is_reproducible():
    model = lm().float()
    prompt = torch.randint(0, 50, (2, 5))
    a = model.generate(prompt, 6, temperature=1.0, top_k=10, generator=torch.Generator().manual_seed(1))
    b = model.generate(prompt, 6, temperature=1.0, top_k=10, generator=torch.Generator().manual_seed(1))
    assert a.shape == (2, 11) and torch.equal(a, b) and torch.equal(a[:, :5], prompt)
    greedy = model.generate(prompt, 4, temperature=0)
    full, _ = model(greedy[:, :-1])  # greedy tokens are the argmax of the parallel forward
    assert torch.equal(full[:, 4:].argmax(-1), greedy[:, 5:])
