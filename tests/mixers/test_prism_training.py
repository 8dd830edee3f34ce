"""End-to-end: a 2-layer PRISM language model composed from the config learns a recall task on the CPU, and a
hybrid [prism, prism, prism, attention] stack built from configuration alone decodes like its parallel forward."""
import pytest
import torch
import torch.nn.functional as F

from configs import compose_config, config_to_dict
from lit_modules.distributed import IGNORE_INDEX
from lit_modules.language_model import LanguageModel

VOCAB, PERIOD, T = 16, 5, 24


def periodic_batch(gen, batch=32):
    """A random pattern of PERIOD tokens repeated: after the first period every token is a recall."""
    pattern = torch.randint(1, VOCAB, (batch, PERIOD), generator=gen)
    seq = pattern.repeat(1, T // PERIOD + 1)[:, :T + 1]
    inputs, labels = seq[:, :-1], seq[:, 1:].clone()
    labels[:, :PERIOD - 1] = IGNORE_INDEX
    return inputs, labels


def train_losses(model, batches, lr: float) -> list[float]:
    """The loss of each AdamW step (no weight decay) on (inputs, labels) batches."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    for x, y in batches:
        logits, _ = model(x)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=IGNORE_INDEX)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def build(argv):
    cfg = compose_config(["model.d_model=32", "model.mixers.prism.num_heads=2", "model.mixers.prism.chunk_size=8",
                          *argv])
    torch.manual_seed(0)
    return LanguageModel(config_to_dict(cfg), vocab_size=VOCAB)


@pytest.mark.parametrize("mixer", ["prism", "prism_closed_form"])
def test_two_layer_prism_learns_to_recall(mixer):
    model = build([f"mixer={mixer}"])
    assert model.backbone.layer_names == ["prism", "prism"]
    gen = torch.Generator().manual_seed(0)
    losses = train_losses(model, (periodic_batch(gen) for _ in range(100)), lr=1e-2)
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.6 * first, f"{mixer}: loss {first:.3f} -> {last:.3f}"


def test_hybrid_stack_from_config_decodes_like_parallel_forward():
    model = build(["mixer=prism", "model.layers=[prism,prism,prism,attention]", "model.repeat=1"]).double()
    assert model.backbone.layer_names == ["prism", "prism", "prism", "attention"]
    x = torch.randint(0, VOCAB, (2, 13))
    logits, _ = model(x)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    steps, states = [], None
    for t in range(x.shape[1]):
        step, states = model(x[:, t:t + 1], states=states, use_cache=True)
        steps.append(step)
    torch.testing.assert_close(torch.cat(steps, 1), logits.detach(), rtol=1e-9, atol=1e-9)
