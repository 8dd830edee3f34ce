"""The PRISM paper's probing tasks as its authors generate them (github gpr-prism/prism, rec/test_syntheticdata.py,
the paper's Alg. 2), and the "probes_paper" datamodule: one task per run (docs/probing.md).

Each generator below is written from the authors' definition and draws from the same distribution, vectorised over
a block of examples. Every example is ``seq_len`` tokens of noise with the task's few tokens written at a random
place, and a query at the end; the answer labels the last position only (IGNORE_INDEX elsewhere), so ``val/acc``
is the authors' accuracy. Defaults are the authors' (vocabulary 32; the parameters they leave at the generators'
defaults). Token ids are the authors':

* ``mqar``: noise from [10, V) without the keys; ``num_pairs`` distinct keys in [10, V) with values drawn from
  [10, V) (repeats allowed), pair i at a distinct even position < seq_len / 2 (key, then value); then 1 and a key.
  Answer: its value.
* ``poly_recall``: noise from [10, V); the marker 2, then ``pairs`` (distinct key, value) pairs from [10, V) at a
  random place; then 1 and one of the keys. Answer: its value. (The keys may also occur as noise.)
* ``variable_tracking``: noise from [10, V); ``num_vars`` distinct variables from [10, V); ``updates`` assignments
  (a random variable, a value from [10, V)) at distinct sorted positions < seq_len - 10, written in order (a later
  one may overwrite the value token of an earlier one right before it); then 1 and one of the assigned variables,
  uniformly. Answer: its last assigned value.
* ``parity_check``: noise from [4, V); ``n_bits`` tokens from [4, 8) and the operator 3 at a random place; then the
  query 2. Answer: the parity of the sum of the bit tokens (token 0 or 1).
* ``modulo_add``: noise from [0, V - 2); a, b from [0, modulus) and the marker V - 2; then the query V - 1.
  Answer: (a + b) mod modulus.
* ``palindrome``: noise from [5, V); a, b, c, d from [5, V) and the marker 3; then the query 4. Half the examples
  have exactly one of c, d equal to a (answer 1, either with even odds), the other half neither (answer 0).
* ``mux_logic``: noise from [0, V); a selector (3 or 4), channel 0 from [5, V/2), channel 1 from [V/2, V) and the
  operator 2; then the query 1. Answer: the selected channel.
* ``local_xor``: noise from [5, V); a, b from [5, V - 10) and the operator 2; then the query 1. Answer: 3 if a and
  b have different parities, else 4.
* ``silent_gate``: noise from [0, V); a trigger (1 = on, 2 = off, even odds), a key and a value from [4, V - 5);
  then 3 and the key. Answer: the value if the trigger was on, else 0.
"""
from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from lit_modules.distributed import IGNORE_INDEX

from .registry import register_datamodule
from .synthetic import SyntheticLMConfig, SyntheticLMDataModule

PaperTask = Literal["mqar", "poly_recall", "variable_tracking", "parity_check", "modulo_add", "palindrome",
                    "mux_logic", "local_xor", "silent_gate"]
PAPER_TASKS = typing.get_args(PaperTask)


@dataclass
class PaperProbeParams:
    """The generators' parameters, at the values the authors' table uses."""
    num_pairs: int = 2          # mqar
    pairs: int = 2              # poly_recall (the authors' rank_difficulty)
    num_vars: int = 3           # variable_tracking
    updates: int = 3            # variable_tracking
    n_bits: int = 3             # parity_check
    modulus: int = 16           # modulo_add


def _need(ok: bool, task: str, V: int, N: int, what: str) -> None:
    if not ok:
        raise ValueError(f"probes_paper task {task!r} at vocab_size={V}, seq_len={N}: needs {what}")


def _distinct(rng, num: int, pool: int, k: int) -> np.ndarray:
    """[num, k] distinct draws from range(pool) per row, in random order (numpy's choice without replacement)."""
    return np.argsort(rng.random((num, pool)), 1)[:, :k]


def _excluding(rng, size: tuple[int, int], pool: int, excluded: np.ndarray) -> np.ndarray:
    """Uniform draws from range(pool) without each row's ``excluded`` (distinct) values."""
    u = rng.integers(0, pool - excluded.shape[1], size=size)
    for column in np.sort(excluded, 1).T:  # shift past each excluded value, smallest first
        u += u >= column[:, None]
    return u


def _pick(rng, values: np.ndarray) -> np.ndarray:
    """One entry per row, uniformly."""
    return values[np.arange(len(values)), rng.integers(0, values.shape[1], size=len(values))]


def _mqar(rng, num, V, N, p: PaperProbeParams):
    P, n, slots = p.num_pairs, V - 10, len(range(0, N // 2, 2))
    _need(1 <= P < n and P <= slots, "mqar", V, N, f"1 <= num_pairs < vocab_size - 10 and <= {slots} slots")
    rows = np.arange(num)[:, None]
    key_ids = _distinct(rng, num, n, P)
    keys, values = 10 + key_ids, rng.integers(10, V, size=(num, P))
    x = 10 + _excluding(rng, (num, N), n, key_ids)
    pos = 2 * _distinct(rng, num, slots, P)
    x[rows, pos], x[rows, pos + 1] = keys, values
    q = rng.integers(0, P, size=num)
    x[:, -2], x[:, -1] = 1, keys[rows[:, 0], q]
    return x, values[rows[:, 0], q]


def _poly_recall(rng, num, V, N, p: PaperProbeParams):
    R = p.pairs
    _need(1 <= R <= V - 10 and N - 2 * R - 5 > 0, "poly_recall", V, N, "1 <= pairs <= vocab_size - 10 and "
          "seq_len > 2 pairs + 5")
    r = np.arange(num)
    x = rng.integers(10, V, size=(num, N))
    keys, values = 10 + _distinct(rng, num, V - 10, R), rng.integers(10, V, size=(num, R))
    start = rng.integers(0, N - 2 * R - 5, size=num)
    x[r, start] = 2
    for i in range(R):
        x[r, start + 1 + 2 * i], x[r, start + 2 + 2 * i] = keys[:, i], values[:, i]
    q = rng.integers(0, R, size=num)
    x[:, -2], x[:, -1] = 1, keys[r, q]
    return x, values[r, q]


def _variable_tracking(rng, num, V, N, p: PaperProbeParams):
    U = p.updates
    _need(1 <= p.num_vars <= V - 10 and 1 <= U <= N - 10, "variable_tracking", V, N,
          "1 <= num_vars <= vocab_size - 10 and 1 <= updates <= seq_len - 10")
    r = np.arange(num)
    x = rng.integers(10, V, size=(num, N))
    variables = 10 + _distinct(rng, num, V - 10, p.num_vars)
    where = np.sort(_distinct(rng, num, N - 10, U), 1)
    assigned, values = np.zeros((num, U), dtype=np.int64), np.zeros((num, U), dtype=np.int64)
    for j in range(U):  # in position order: a later assignment may overwrite the one just before it
        assigned[:, j], values[:, j] = _pick(rng, variables), rng.integers(10, V, size=num)
        x[r, where[:, j]], x[r, where[:, j] + 1] = assigned[:, j], values[:, j]
    # the query: one of the distinct assigned variables, uniformly (in order of first assignment)
    first = np.stack([~(assigned[:, j, None] == assigned[:, :j]).any(1) for j in range(U)], 1)
    nth = (rng.random(num) * first.sum(1)).astype(np.int64)
    column = np.argmax(np.cumsum(first, 1) > nth[:, None], 1)
    query = assigned[r, column]
    last = U - 1 - np.argmax((assigned == query[:, None])[:, ::-1], 1)  # its last assignment
    x[:, -2], x[:, -1] = 1, query
    return x, values[r, last]


def _parity_check(rng, num, V, N, p: PaperProbeParams):
    n = p.n_bits
    _need(V >= 8 and N - n - 5 > 0, "parity_check", V, N, "vocab_size >= 8 and seq_len > n_bits + 5")
    r = np.arange(num)
    x = rng.integers(4, V, size=(num, N))
    bits = rng.integers(4, 8, size=(num, n))
    start = rng.integers(0, N - n - 5, size=num)
    for i in range(n):
        x[r, start + i] = bits[:, i]
    x[r, start + n], x[:, -1] = 3, 2
    return x, bits.sum(1) % 2


def _modulo_add(rng, num, V, N, p: PaperProbeParams):
    m = p.modulus
    _need(1 <= m <= V - 2 and N > 5, "modulo_add", V, N, "1 <= modulus <= vocab_size - 2 and seq_len > 5")
    r = np.arange(num)
    x = rng.integers(0, V - 2, size=(num, N))
    a, b = rng.integers(0, m, size=num), rng.integers(0, m, size=num)
    start = rng.integers(0, N - 5, size=num)
    x[r, start], x[r, start + 1], x[r, start + 2], x[:, -1] = a, b, V - 2, V - 1
    return x, (a + b) % m


def _palindrome(rng, num, V, N, p: PaperProbeParams):
    _need(V >= 7 and N > 5, "palindrome", V, N, "vocab_size >= 7 and seq_len > 5")
    r = np.arange(num)
    x = rng.integers(5, V, size=(num, N))
    positive, on_d = rng.random(num) > 0.5, rng.random(num) > 0.5
    a, b = rng.integers(5, V, size=num), rng.integers(5, V, size=num)

    def not_a():
        u = rng.integers(5, V - 1, size=num)
        return u + (u >= a)
    c = np.where(positive & ~on_d, a, not_a())  # positive: exactly one of c, d equals a
    d = np.where(positive & on_d, a, not_a())
    start = rng.integers(0, N - 5, size=num)
    x[r, start], x[r, start + 1], x[r, start + 2], x[r, start + 3], x[r, start + 4] = a, b, c, d, 3
    x[:, -1] = 4
    return x, positive.astype(np.int64)


def _mux_logic(rng, num, V, N, p: PaperProbeParams):
    _need(V // 2 > 5 and N > 10, "mux_logic", V, N, "vocab_size >= 12 and seq_len > 10")
    r = np.arange(num)
    x = rng.integers(0, V, size=(num, N))
    select = rng.integers(0, 2, size=num)
    ch0, ch1 = rng.integers(5, V // 2, size=num), rng.integers(V // 2, V, size=num)
    start = rng.integers(0, N - 10, size=num)
    x[r, start], x[r, start + 1], x[r, start + 2], x[r, start + 3] = 3 + select, ch0, ch1, 2
    x[:, -1] = 1
    return x, np.where(select == 0, ch0, ch1)


def _local_xor(rng, num, V, N, p: PaperProbeParams):
    _need(V > 15 and N > 8, "local_xor", V, N, "vocab_size >= 16 and seq_len > 8")
    r = np.arange(num)
    x = rng.integers(5, V, size=(num, N))
    a, b = rng.integers(5, V - 10, size=num), rng.integers(5, V - 10, size=num)
    start = rng.integers(0, N - 8, size=num)
    x[r, start], x[r, start + 1], x[r, start + 2], x[:, -1] = a, b, 2, 1
    return x, np.where(a % 2 != b % 2, 3, 4)


def _silent_gate(rng, num, V, N, p: PaperProbeParams):
    _need(V > 9 and N > 5, "silent_gate", V, N, "vocab_size >= 10 and seq_len > 5")
    r = np.arange(num)
    x = rng.integers(0, V, size=(num, N))
    key, value = rng.integers(4, V - 5, size=num), rng.integers(4, V - 5, size=num)
    on = rng.random(num) > 0.5
    start = rng.integers(0, N - 5, size=num)
    x[r, start], x[r, start + 1], x[r, start + 2] = np.where(on, 1, 2), key, value
    x[:, -2], x[:, -1] = 3, key
    return x, np.where(on, value, 0)


GENERATORS: dict[str, Callable] = {
    "mqar": _mqar, "poly_recall": _poly_recall, "variable_tracking": _variable_tracking,
    "parity_check": _parity_check, "modulo_add": _modulo_add, "palindrome": _palindrome, "mux_logic": _mux_logic,
    "local_xor": _local_xor, "silent_gate": _silent_gate,
}


def paper_probe_examples(task: str, num: int, *, vocab_size: int = 32, seq_len: int = 128, seed: int = 0,
                         params: PaperProbeParams | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs [num, seq_len], labels [num, seq_len]) of one task, labelled at the last position only; the same
    seed gives the same examples."""
    if task not in GENERATORS:
        raise ValueError(f"unknown probes_paper task {task!r}; choose one of: {', '.join(PAPER_TASKS)}")
    rng = np.random.default_rng([seed, PAPER_TASKS.index(task)])
    inputs, answers = GENERATORS[task](rng, num, vocab_size, seq_len, params or PaperProbeParams())
    labels = np.full(inputs.shape, IGNORE_INDEX, dtype=np.int64)
    labels[:, -1] = answers
    return torch.as_tensor(inputs, dtype=torch.long), torch.as_tensor(labels, dtype=torch.long)


class PaperProbeDataset(Dataset):
    """``size`` examples, generated in blocks on first access (one seed per block) and kept for the run."""

    BLOCK = 1024

    def __init__(self, task: str, size: int, *, seed: int, **kw):
        self.task, self.size, self.seed, self.kw = task, size, seed, kw
        paper_probe_examples(task, 1, seed=seed, **kw)  # bad settings fail here, not in the middle of training
        self._blocks: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.size:
            raise IndexError(index)
        block, row = divmod(index, self.BLOCK)
        if block not in self._blocks:
            seed = int(np.random.SeedSequence([self.seed, block]).generate_state(1)[0])
            inputs, labels = paper_probe_examples(self.task, self.BLOCK, seed=seed, **self.kw)
            self._blocks[block] = (inputs.to(torch.int16), labels[:, -1].clone())
        inputs, answers = self._blocks[block]
        labels = torch.full((inputs.shape[1],), IGNORE_INDEX, dtype=torch.long)
        labels[-1] = answers[row]
        return {"input_ids": inputs[row].long(), "labels": labels}


@dataclass
class ProbesPaperConfig(SyntheticLMConfig, PaperProbeParams):
    name: str = "probes_paper"
    task: PaperTask = "parity_check"
    vocab_size: int = 32
    seq_len: int = 128                # the authors: 64 for mqar, poly_recall and variable_tracking
    batch_size: int = 32
    train_examples: int = 320_000     # 10k steps of 32, each example seen once (the authors draw fresh ones)
    test_examples: int = 8000         # the validation set: fresh examples from their own seed stream


@register_datamodule("probes_paper")
class ProbesPaperDataModule(SyntheticLMDataModule):
    Config = ProbesPaperConfig

    def make_datasets(self, train_seed: int, val_seed: int) -> tuple[Dataset, Dataset]:
        c = self.config
        params = PaperProbeParams(**{f: getattr(c, f) for f in PaperProbeParams.__dataclass_fields__})
        kw = dict(vocab_size=c.vocab_size, seq_len=c.seq_len, params=params)
        return (PaperProbeDataset(c.task, c.train_examples, seed=train_seed, **kw),
                PaperProbeDataset(c.task, c.test_examples, seed=val_seed, **kw))
