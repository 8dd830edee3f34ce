"""The authors' probing tasks (datamodules/probes_paper.py): labels at the last position only, value ranges as the
authors', answers read back from the tokens by an independent solver, determinism, and the datamodule."""
import numpy as np
import pytest
import torch

from configs import ConfigError, compose_config
from datamodules.probes_paper import PAPER_TASKS, PaperProbeParams, ProbesPaperDataModule, paper_probe_examples
from lit_modules.distributed import IGNORE_INDEX

V = 32
MEMORY = ("mqar", "poly_recall", "variable_tracking")


def examples(task, num=512, seed=0):
    x, y = paper_probe_examples(task, num, vocab_size=V, seq_len=64 if task in MEMORY else 128, seed=seed)
    return x.numpy(), y.numpy()


def only(seq, token):
    """The position of the one occurrence of token in seq (asserted unique)."""
    where = np.flatnonzero(seq == token)
    assert len(where) == 1, (token, seq.tolist())
    return int(where[0])


def matches(seq, checks):
    """Start positions i where checks[j](seq[i + j]) holds for every j."""
    n = len(checks)
    return [i for i in range(len(seq) - n + 1) if all(c(seq[i + j]) for j, c in enumerate(checks))]


# Solvers of the tasks whose answer the tokens determine: each reads the task's marked span back.
def solve(task, s):
    body = s[:-1]
    if task == "mqar":
        assert s[-2] == 1 and ((s[:-2] >= 10) & (s[:-2] < V)).all()
        even = s[:len(s) // 2:2]                             # keys never occur as noise; a value may equal a key
        i = 2 * only(even, s[-1])
        return s[i + 1]
    if task == "poly_recall":
        assert s[-2] == 1
        i = only(s[:-2], 2)
        pairs = {s[i + 1]: s[i + 2], s[i + 3]: s[i + 4]}
        assert len(pairs) == 2 and ((np.delete(s[:-2], i) >= 10)).all()
        return pairs[s[-1]]
    if task == "parity_check":
        assert s[-1] == 2 and (np.delete(body, only(body, 3)) >= 4).all()
        bits = body[only(body, 3) - 3:only(body, 3)]
        assert ((bits >= 4) & (bits < 8)).all()
        return bits.sum() % 2
    if task == "modulo_add":
        assert s[-1] == V - 1 and (np.delete(body, only(body, V - 2)) < V - 2).all()
        a, b = body[only(body, V - 2) - 2:only(body, V - 2)]
        assert a < 16 and b < 16
        return (a + b) % 16
    if task == "palindrome":
        assert s[-1] == 4 and (np.delete(body, only(body, 3)) >= 5).all()
        a, _, c, d = body[only(body, 3) - 4:only(body, 3)]
        assert not (c == a and d == a)
        return int(c == a or d == a)
    if task == "local_xor":
        assert s[-1] == 1 and (np.delete(body, only(body, 2)) >= 5).all()
        a, b = body[only(body, 2) - 2:only(body, 2)]
        assert 5 <= a < V - 10 and 5 <= b < V - 10
        return 3 if a % 2 != b % 2 else 4
    raise AssertionError(task)


@pytest.mark.parametrize("task", PAPER_TASKS)
def test_labels_only_at_the_last_position_and_tokens_in_the_vocabulary(task):
    x, y = examples(task)
    assert x.shape == y.shape == (512, 64 if task in MEMORY else 128)
    assert (y[:, :-1] == IGNORE_INDEX).all() and (y[:, -1] != IGNORE_INDEX).all()
    assert x.min() >= 0 and x.max() < V and y[:, -1].min() >= 0 and y[:, -1].max() < V


@pytest.mark.parametrize("task", ["mqar", "poly_recall", "parity_check", "modulo_add", "palindrome", "local_xor"])
def test_answer_is_read_back_from_the_tokens(task):
    x, y = examples(task)
    for s, answer in zip(x, y[:, -1]):
        assert solve(task, s) == answer, s.tolist()


def test_answer_ranges_and_balance_are_the_authors():
    answers = {t: examples(t, 4000)[1][:, -1] for t in PAPER_TASKS}
    assert set(answers["parity_check"]) == {0, 1} and set(answers["palindrome"]) == {0, 1}
    assert set(answers["local_xor"]) == {3, 4} and set(answers["modulo_add"]) == set(range(16))
    assert set(answers["mux_logic"]) == set(range(5, V))
    assert set(answers["silent_gate"]) == {0} | set(range(4, V - 5))
    for t in MEMORY:
        assert set(answers[t]) == set(range(10, V))
    for t, yes in [("parity_check", 1), ("palindrome", 1), ("local_xor", 3), ("silent_gate", 0)]:
        assert 0.45 < (answers[t] == yes).mean() < 0.55, t
    assert 0.45 < (answers["mux_logic"] < V // 2).mean() < 0.55


# Tasks whose noise may repeat the marked pattern (as in the authors' generators): the solver must be right whenever
# the pattern occurs once. The ambiguous share caps the reachable accuracy (docs/probing.md): about 4 % of mux_logic
# examples and 17 % of silent_gate examples.
def test_mux_logic_and_silent_gate_where_the_pattern_is_unique():
    for task, pattern, answer_of in [
        ("mux_logic", lambda s: matches(s[:-1], [lambda t: t in (3, 4), lambda t: 5 <= t < V // 2,
                                                  lambda t: V // 2 <= t, lambda t: t == 2]),
         lambda s, i: s[i + 1] if s[i] == 3 else s[i + 2]),
        ("silent_gate", lambda s: matches(s[:-2], [lambda t: t in (1, 2), lambda t: True,
                                                    lambda t: 4 <= t < V - 5]),
         lambda s, i: s[i + 2] if s[i] == 1 else 0),
    ]:
        x, y = examples(task, 2000)
        unique = 0
        for s, answer in zip(x, y[:, -1]):
            found = pattern(s)
            if task == "silent_gate":
                found = [i for i in found if s[i + 1] == s[-1]]
                assert s[-2] == 3
            else:
                assert s[-1] == 1
            assert found, s.tolist()
            if len(found) == 1:
                unique += 1
                assert answer_of(s, found[0]) == answer, (task, s.tolist())
        assert unique / len(x) > {"mux_logic": 0.9, "silent_gate": 0.75}[task], (task, unique / len(x))


def test_variable_tracking_answer_follows_an_assignment_of_the_query():
    x, y = examples("variable_tracking", 2000)
    follows = 0
    for s, answer in zip(x, y[:, -1]):
        assert s[-2] == 1 and (s[:-2] >= 10).all()
        follows += bool(((s[:53] == s[-1]) & (s[1:54] == answer)).any())  # assignments start before seq_len - 10
    assert follows / len(x) > 0.85  # the rest: the value token was overwritten by the next assignment


@pytest.mark.parametrize("task", PAPER_TASKS)
def test_deterministic_by_seed(task):
    a, b, c = (examples(task, 8, seed=s)[0] for s in (3, 3, 4))
    assert (a == b).all() and not (a == c).all()


def test_datamodule_batches_fresh_test_set_and_errors():
    cfg = compose_config(["experiment=probes_paper/mqar", "data.train_examples=2048", "data.test_examples=40"])
    assert (cfg.data.seq_len, cfg.model.d_model, cfg.data.task, cfg.data.vocab_size) == (64, 128, "mqar", 32)
    dm = ProbesPaperDataModule(cfg.data, seed=0)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape == (32, 64) and (batch["labels"][:, :-1] == IGNORE_INDEX).all()
    val = list(dm.val_dataloader())
    assert sum(len(b["input_ids"]) for b in val) == 40
    train_rows = {tuple(dm.train_set[i]["input_ids"].tolist()) for i in range(2048)}
    assert not any(tuple(r.tolist()) in train_rows for b in val for r in b["input_ids"])  # another seed stream
    with pytest.raises(ConfigError, match="data.task"):
        compose_config(["experiment=probes_paper", "data.task=parity"])
    with pytest.raises(ValueError, match="mqar.*num_pairs"):
        paper_probe_examples("mqar", 1, seq_len=8, params=PaperProbeParams(num_pairs=5))
    with pytest.raises(ValueError, match="unknown probes_paper task"):
        paper_probe_examples("nosuch", 1)
    again = ProbesPaperDataModule(cfg.data, seed=0)
    again.setup("fit")
    assert torch.equal(again.val_set[3]["input_ids"], dm.val_set[3]["input_ids"])
