"""Synthetic generators: MQAR (Zoology's parameters) and the probing set. Shapes, label positions, distinct keys,
answers checked by an independent solver per task, determinism by seed, and the datamodules' batches."""
import pytest
import torch

from configs import ConfigError, compose_config
from datamodules.mqar import MQARDataModule, MQARDataset, mqar_examples
from datamodules.probes import (BIT0, BIT1, FILL, QUERY, SILENCE, SPEAK, SYMBOL0, TASKS, ProbesDataModule,
                                default_difficulties, probe_examples)
from lit_modules.distributed import IGNORE_INDEX


# ---- MQAR -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("V,T,kv", [(8192, 64, 4), (8192, 256, 64), (64, 128, 16)])
def test_mqar_follows_zoology(V, T, kv):
    x, y = mqar_examples(64, vocab_size=V, seq_len=T, num_kv_pairs=kv, seed=1)
    assert x.shape == y.shape == (64, T)
    half, ctx = V // 2, 2 * kv
    keys, values = x[:, 0:ctx:2], x[:, 1:ctx:2]
    assert ((keys >= 1) & (keys < half)).all() and ((values >= half) & (values < V)).all()
    for row in range(64):
        assert len(set(keys[row].tolist())) == kv, "a key is repeated in the context"
        assert len(set(values[row].tolist())) == kv
        pairs = dict(zip(keys[row].tolist(), values[row].tolist()))
        labelled = (y[row] != IGNORE_INDEX).nonzero().flatten()
        assert len(labelled) == kv  # one label per queried key, nothing else
        assert (labelled >= ctx).all() and ((labelled - ctx) % 2 == 0).all()  # queries in the even slots
        for t in labelled.tolist():
            assert pairs[x[row, t].item()] == y[row, t].item()  # the label is the value of the key just read
        assert sorted(x[row, labelled].tolist()) == sorted(pairs)  # every key is queried once
        assert (y[row, :ctx] == IGNORE_INDEX).all()


def test_mqar_query_gaps_follow_the_power_law():
    # one query: its gap i (0-based, in even slots) has probability ~ a (i+1)^(a-1), a = 0.01 (Zoology)
    x, y = mqar_examples(20000, vocab_size=256, seq_len=256, num_kv_pairs=1, seed=0)
    gaps = ((y != IGNORE_INDEX).nonzero()[:, 1] - 2) // 2  # the label sits at the query key: context (2) + 2 gap
    space = (256 - 2) // 2
    p = 0.01 * torch.arange(1, space + 1, dtype=torch.float64) ** (0.01 - 1)
    p = p / p.sum()
    for lo, hi in [(0, 1), (1, 4), (4, 30), (30, space)]:
        seen = ((gaps >= lo) & (gaps < hi)).double().mean().item()
        assert seen == pytest.approx(p[lo:hi].sum().item(), abs=0.015), (lo, hi)


def test_mqar_is_deterministic_by_seed():
    a = mqar_examples(8, vocab_size=256, seq_len=64, num_kv_pairs=8, seed=3)
    b = mqar_examples(8, vocab_size=256, seq_len=64, num_kv_pairs=8, seed=3)
    c = mqar_examples(8, vocab_size=256, seq_len=64, num_kv_pairs=8, seed=4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])


def test_mqar_dataset_counts_and_per_setting_validation_batches():
    kw = dict(vocab_size=512, power_a=0.01, random_non_queries=True, seed=0)
    ds = MQARDataset([[32, 4], [64, 8]], 0, counts=[30, 10], **kw)
    assert len(ds) == 40
    assert [ds[i]["slice"].item() for i in (0, 29, 30, 39)] == [4, 4, 8, 8]
    assert ds[0]["input_ids"].shape == (64,)
    assert (ds[0]["labels"][32:] == IGNORE_INDEX).all()  # padded to the longest setting
    with pytest.raises(IndexError):
        ds[40]
    cfg = compose_config(["data.vocab_size=512", "data.train_settings=[[32,4],[64,8]]", "data.train_counts=[30,10]",
                          "data.val_settings=[[32,4],[64,8],[128,16]]", "data.val_examples=5", "data.batch_size=4"])
    dm = MQARDataModule(cfg.data, seed=0)
    dm.setup("fit")
    assert len(dm.train_set) == 40
    batches = list(dm.val_dataloader())
    shapes = [(b["input_ids"].shape[1], set(b["slice"].tolist())) for b in batches]
    assert shapes == [(32, {4}), (32, {4}), (64, {8}), (64, {8}), (128, {16}), (128, {16})]  # no padding
    assert sum(len(b["slice"]) for b in batches) == 15


# ---- probing set ----------------------------------------------------------------------------------------------
def solve(task: str, seq: list[int]) -> list[int]:
    """An independent reading of each task's definition: the expected labels of the last position(s), from the
    tokens alone (not the difficulty: training mixes difficulties, so the answer must follow from the input)."""
    body = seq[:-1]
    bits = [t - BIT0 for t in body if t in (BIT0, BIT1)]
    if task == "parity":
        return [BIT0 + sum(bits) % 2]
    if task == "local_xor":
        return [BIT0 + sum(bits[-(body[-1] - SYMBOL0):]) % 2]
    if task == "modulo_add":
        return [SYMBOL0 + sum(t - SYMBOL0 for t in body if t >= SYMBOL0) % 16]
    if task == "palindrome":
        word = [t for t in body if t != FILL]
        return [BIT1 if word == word[::-1] else BIT0]
    if task == "mux":
        start = next(i for i, t in enumerate(body) if t >= SYMBOL0)
        return [body[start + 1 + body[start] - SYMBOL0]]
    if task == "silence_gate":
        is_open, last = False, None
        for t in body:
            if t in (SILENCE, SPEAK):
                is_open = t == SPEAK
            elif is_open:
                last = t
        return [last]
    if task == "variable_tracking":
        q = seq.index(QUERY)
        assign = {}
        stmts = [t for t in seq[:q] if t != FILL]
        for dst, src in zip(stmts[0::2], stmts[1::2]):
            assign[dst] = assign.get(src, src)
        return [assign[seq[q + 1]]]
    if task == "poly_recall":
        q = seq.index(QUERY)
        context = [t for t in seq[:q] if t != FILL]
        m = len(seq) - q - 1  # key + (value_len - 1) value tokens
        pairs = {context[i]: context[i + 1:i + 1 + m] for i in range(0, len(context), m + 1)}
        return pairs[seq[q + 1]]
    raise AssertionError(task)


def assigned_once(task: str, seq: list[int]) -> bool:
    """No key (poly_recall) or variable (variable_tracking) is defined twice in a context."""
    q = seq.index(QUERY)
    context = [t for t in seq[:q] if t != FILL]
    if task == "variable_tracking":
        defined = context[0::2]
    else:
        defined = context[0::4]  # value_len 3: key, v1, v2, v3
    return len(defined) == len(set(defined))


@pytest.mark.parametrize("task", [t for t in TASKS if t != "mqar"])
def test_probe_task_labels_and_answers(task):
    for k in default_difficulties(task, 128):
        x, y = probe_examples(task, 64, k=k, seed=k)
        assert x.shape == y.shape == (64, 128)
        n_labels = 3 if task == "poly_recall" else 1
        assert ((y != IGNORE_INDEX).sum(1) == n_labels).all()
        assert (y[:, -n_labels:] != IGNORE_INDEX).all()  # labels only at the last position(s)
        assert x.min() >= 0 and x.max() < 64 and y[y != IGNORE_INDEX].max() < 64
        for row in range(64):
            seq = x[row].tolist()
            assert solve(task, seq) == y[row, -n_labels:].tolist(), (task, k, seq)
            if task in ("variable_tracking", "poly_recall"):
                assert assigned_once(task, seq)
        if task in ("parity", "local_xor", "palindrome", "mux", "silence_gate"):
            share = (y[:, -1] == BIT1).float().mean().item()
            assert 0.2 < share < 0.8, f"{task} k={k}: answers are unbalanced ({share:.2f} yes)"


def test_probe_difficulty_is_what_it_says():
    x, _ = probe_examples("parity", 16, k=10, seed=0)
    assert ((x != FILL).sum(1) == 11).all()  # 10 bits + QUERY
    x, _ = probe_examples("variable_tracking", 16, k=3, seed=0, num_chains=4)
    assert ((x != FILL).sum(1) == 2 * 4 * 3 + 2).all()
    x, y = probe_examples("silence_gate", 400, k=5, seed=0)
    silent, shortcut = [], 0
    for row, answer in zip(x.tolist(), y[:, -1].tolist()):
        last_speak = max(i for i, t in enumerate(row) if t == SPEAK)
        closing = row.index(SILENCE, last_speak)
        silent.append(128 - 2 - closing)
        assert SPEAK not in row[closing:] and row[closing - 1] == answer
        last_silence = max(i for i, t in enumerate(row) if t == SILENCE)
        shortcut += row[last_silence - 1] == answer
    assert set(silent) == {1, 2, 3, 4, 5}  # the final silence has 1..k tokens
    assert shortcut < 0.95 * len(silent)  # "the token before the last SILENCE" is not the answer


def test_probe_mqar_is_zoology_mqar_at_the_probe_size():
    x, y = probe_examples("mqar", 32, k=8, seed=0)
    assert x.shape == (32, 128) and ((y != IGNORE_INDEX).sum(1) == 8).all()
    keys = x[:, 0:16:2]
    assert all(len(set(r)) == 8 for r in keys.tolist()) and keys.max() < 32


@pytest.mark.parametrize("task", TASKS)
def test_probes_are_deterministic_by_seed(task):
    k = default_difficulties(task, 128)[0]
    a, b, c = (probe_examples(task, 16, k=k, seed=s) for s in (5, 5, 6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_probe_errors_name_the_problem():
    with pytest.raises(ValueError, match="variable_tracking.*num_chains"):
        probe_examples("variable_tracking", 1, k=20, seq_len=64)
    with pytest.raises(ValueError, match="unknown probe task"):
        probe_examples("nosuch", 1, k=1)
    with pytest.raises(ConfigError, match="data.task"):
        compose_config(["data.name=probes", "data.task=nosuch"])


def test_probes_datamodule_batches_and_slices():
    cfg = compose_config(["data.name=probes", "data.task=mux", "data.difficulties=[4,8]", "data.val_examples=6",
                          "data.batch_size=4", "data.train_examples=64"])
    dm = ProbesDataModule(cfg.data, seed=0)
    dm.setup("fit")
    assert dm.vocab_size == 64
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape == (4, 128) and set(batch["slice"].tolist()) <= {4, 8}
    val = list(dm.val_dataloader())
    assert sum(len(b["slice"]) for b in val) == 12
    assert sorted(torch.cat([b["slice"] for b in val]).tolist()) == [4] * 6 + [8] * 6
    again = ProbesDataModule(cfg.data, seed=0)
    again.setup("fit")
    assert torch.equal(again.val_set[3]["input_ids"], dm.val_set[3]["input_ids"])
