"""The language model computes its head and loss only at labelled positions: the loss, its gradients and the
validation counts (overall and per slice) must equal the dense computation over every position."""
import torch
import torch.nn.functional as F

from configs import compose_config, config_to_dict
from lit_modules.distributed import IGNORE_INDEX
from lit_modules.language_model import LanguageModel

VOCAB, B, T = 32, 5, 19


def tiny_model():
    cfg = compose_config(["mixer=gdn", "model.d_model=32", "model.mixers.gdn.num_heads=2"])
    torch.manual_seed(0)
    return LanguageModel(config_to_dict(cfg), vocab_size=VOCAB)


def sparse_batch(seed=0):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (B, T), generator=gen)
    labels = torch.randint(0, VOCAB, (B, T), generator=gen)
    labels[torch.rand(B, T, generator=gen) < 0.8] = IGNORE_INDEX  # about one position in five is labelled
    labels[2] = IGNORE_INDEX  # a sequence without any label
    return {"input_ids": ids, "labels": labels, "slice": torch.tensor([4, 8, 8, 16, 4])}


def dense_loss(model, batch):
    logits, _ = model(batch["input_ids"])
    labels = batch["labels"].flatten()
    return F.cross_entropy(logits.float().flatten(0, 1), labels, ignore_index=IGNORE_INDEX), logits


def test_training_loss_and_gradients_equal_the_dense_ones():
    model, batch = tiny_model(), sparse_batch()
    expected, _ = dense_loss(model, batch)
    expected.backward()
    dense_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    with_index = model.on_before_batch_transfer(dict(batch), 0)
    assert with_index["label_index"].numel() == (batch["labels"] != IGNORE_INDEX).sum()
    loss = model.training_step(with_index, 0)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    for p, g in zip(model.parameters(), dense_grads):
        torch.testing.assert_close(p.grad, g, rtol=1e-5, atol=1e-7)


def test_validation_counts_equal_the_dense_ones():
    model, batch = tiny_model(), sparse_batch(1)
    _, logits = dense_loss(model, batch)
    valid = batch["labels"] != IGNORE_INDEX
    correct = (logits.argmax(-1) == batch["labels"]) & valid
    model.on_validation_epoch_start()
    model.validation_step(model.on_before_batch_transfer(dict(batch), 0), 0)
    sums = model._val_sums
    assert sums["count"] == valid.sum() and sums["correct"] == correct.sum()
    for k in (4, 8, 16):
        rows = batch["slice"] == k
        assert sums[f"count@{k}"] == valid[rows].sum()
        assert sums[f"correct@{k}"] == correct[rows].sum()


def test_embedding_dropout_acts_in_training_steps_only():
    cfg = compose_config(["mixer=gdn", "model.d_model=32", "model.mixers.gdn.num_heads=2", "model.dropout=0.5"])
    torch.manual_seed(0)
    model = LanguageModel(config_to_dict(cfg), vocab_size=VOCAB)
    seen = []
    model.backbone.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    batch = model.on_before_batch_transfer(sparse_batch(), 0)
    embedded = model.embed(batch["input_ids"]).detach()

    model.train()
    model.training_step(batch, 0)
    dropped = seen[-1] == 0
    assert 0.4 < dropped.float().mean() < 0.6  # p = 0.5 of the embedding entries, through the training path
    torch.testing.assert_close(seen[-1][~dropped], 2 * embedded[~dropped])  # the rest scaled by 1 / (1 - p)

    model.eval()
    model.on_validation_epoch_start()
    model.validation_step(batch, 0)
    torch.testing.assert_close(seen[-1], embedded)  # evaluation sees the embeddings unchanged
