"""The PRISM paper's probing set as seeded generators, and the "probes" datamodule (one task per run).

The paper's exact task definitions are not available here; these are standard formulations chosen for this
repository, written down precisely so that results can be compared. The paper's setting is V = 64 tokens and
sequences of N = 128 (we read its D = 16 as the model width, which the experiment config sets), 2 layers,
last-token accuracy.

Every example is exactly ``seq_len`` (N) tokens. ``labels[t]`` is the target of the prediction made at position
t (next-token convention, as in MQAR); all labels are IGNORE_INDEX (no loss) except at the last position(s), so
the LM module's ``val/acc`` is last-token accuracy. Each example has a difficulty ``k`` (one of the configured
difficulties) that is returned as the batch's ``slice``, so validation also reports ``val/acc@<k>``. The payload
of a task is right-aligned: positions before it hold FILL.

Token layout (V >= 8 + what a task needs): 0 FILL, 1 QUERY, 2 SILENCE, 3 SPEAK, 4 BIT0 (also "no"),
5 BIT1 (also "yes"), 6-7 unused, symbols S[i] = 8 + i.

* ``mqar`` (k = key-value pairs): Zoology's multi-query associative recall at V, N (datamodules/mqar.py, its own
  token layout: keys [1, V/2), values [V/2, V)); the one task with a label after every queried key, not only at
  the last position.
* ``parity`` (k = bits): k random bits, then QUERY; answer BIT(sum of bits mod 2).
* ``local_xor`` (k = window): N-2 random bits, the window S[k], then QUERY; answer BIT(XOR of the last k bits).
  Only the last k bits matter; the others are distractors.
* ``modulo_add`` (k = operands): k operands S[a_i], a_i uniform in [0, m) (m = ``modulus``), then QUERY;
  answer S[(sum a_i) mod m].
* ``palindrome`` (k = word length >= 2): a word of k symbols from the first ``alphabet`` symbols, then QUERY;
  answer "yes" iff the word reads the same backwards. Half the words are palindromes; the others are palindromes
  with one symbol of the first half changed (a near miss, so the answer needs the whole word).
* ``mux`` (k = data bits): a k-to-1 multiplexer: a select token S[s] (s uniform in [0, k)), k data bits, QUERY;
  answer the data bit number s (counting from 0 after the select token).
* ``silence_gate`` (k = longest final silence): a stream of N-1 tokens: bits and gate tokens (SILENCE closes the
  gate, SPEAK opens it, whatever its state: a gate token may be redundant). The stream starts with SPEAK; each
  later token is a gate token with probability 0.1 (SPEAK or SILENCE, even odds), else a bit. It ends with a bit
  spoken while open, SILENCE, and a silent span of s ~ U[1, k] tokens (bits, each replaced by a redundant SILENCE
  with probability 0.1), then QUERY; answer the last bit spoken while the gate was open. A model must stop
  writing while the gate is closed (the token before the last SILENCE is often a silent bit).
* ``variable_tracking`` (k = hops): ``num_chains`` chains of assignments, two tokens each (destination, source):
  ``x1 = value``, ``x2 = x1``, ..., ``xk = x(k-1)``, the chains' statements interleaved at random (each chain in
  order); variables are distinct symbols from the first 3/4 of S, values distinct symbols from the last 1/4.
  Then QUERY and the last variable of one chain; answer that chain's value.
* ``poly_recall`` (k = key-value pairs): associative recall of multi-token values: k distinct keys (first half of
  S), each followed by its value of ``value_len`` tokens (second half of S, drawn independently); then QUERY, one
  of the keys, and the first value_len - 1 tokens of its value: the labels are the value_len value tokens (the
  last value_len positions), teacher-forced.
"""
from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Callable, List, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from lit_modules.distributed import IGNORE_INDEX

from .mqar import mqar_examples
from .registry import register_datamodule
from .synthetic import SyntheticLMConfig, SyntheticLMDataModule

FILL, QUERY, SILENCE, SPEAK, BIT0, BIT1 = 0, 1, 2, 3, 4, 5
SYMBOL0 = 8  # S[i] = SYMBOL0 + i
Task = Literal["mqar", "parity", "local_xor", "modulo_add", "palindrome", "mux", "silence_gate", "variable_tracking",
               "poly_recall"]
TASKS = typing.get_args(Task)
GATE_P = 0.1  # silence_gate: probability that a stream token is a gate token


def default_difficulties(task: str, seq_len: int) -> list[int]:
    """Difficulties used when the config gives none (N = seq_len)."""
    n = seq_len - 1
    return {
        "mqar": [4, 8, 16],
        "parity": [16, 64, n],
        "local_xor": [2, 4],
        "modulo_add": [4, 16, n],
        "palindrome": [8, 32, n],
        "mux": [8, 16, 32],
        "silence_gate": [4, 16, 64],
        "variable_tracking": [1, 2, 4],
        "poly_recall": [4, 8, 16],
    }[task]


class _Spec:
    """What a task needs from the generator, checked once (clear errors instead of silent clipping)."""

    def __init__(self, vocab_size: int, seq_len: int, modulus: int, alphabet: int, num_chains: int, value_len: int):
        self.V, self.N, self.modulus, self.alphabet = vocab_size, seq_len, modulus, alphabet
        self.num_chains, self.value_len = num_chains, value_len
        self.symbols = vocab_size - SYMBOL0

    def need(self, ok: bool, task: str, k: int, what: str) -> None:
        if not ok:
            raise ValueError(f"probe task {task!r} with difficulty k={k} at vocab_size={self.V}, seq_len={self.N}: "
                             f"{what}")


def _right_align(num: int, N: int, payload: np.ndarray) -> np.ndarray:
    inputs = np.full((num, N), FILL, dtype=np.int64)
    inputs[:, N - payload.shape[1]:] = payload
    return inputs


def _answered(inputs: np.ndarray, answer: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, labels): the answer [num] (or [num, m]) labels the last (m) positions, and no other position."""
    answer = answer.reshape(len(inputs), -1)
    labels = np.full(inputs.shape, IGNORE_INDEX, dtype=np.int64)
    labels[:, -answer.shape[1]:] = answer
    return inputs, labels


def _bits(rng, shape) -> np.ndarray:
    return rng.integers(0, 2, size=shape)


def _parity(rng, num, k, s: _Spec):
    s.need(1 <= k <= s.N - 1, "parity", k, "needs 1 <= k <= seq_len - 1 bits")
    bits = _bits(rng, (num, k))
    payload = np.concatenate([BIT0 + bits, np.full((num, 1), QUERY)], 1)
    return _answered(_right_align(num, s.N, payload), BIT0 + bits.sum(1) % 2)


def _local_xor(rng, num, k, s: _Spec):
    s.need(1 <= k <= s.N - 2, "local_xor", k, "needs 1 <= window <= seq_len - 2")
    s.need(k < s.symbols, "local_xor", k, f"needs window < {s.symbols} symbols")
    bits = _bits(rng, (num, s.N - 2))
    # the window is in the input: with several windows in training, the answer must not depend on which one
    # the generator picked
    payload = np.concatenate([BIT0 + bits, np.full((num, 1), SYMBOL0 + k), np.full((num, 1), QUERY)], 1)
    return _answered(_right_align(num, s.N, payload), BIT0 + bits[:, -k:].sum(1) % 2)


def _modulo_add(rng, num, k, s: _Spec):
    s.need(1 <= k <= s.N - 1, "modulo_add", k, "needs 1 <= operands <= seq_len - 1")
    s.need(2 <= s.modulus <= s.symbols, "modulo_add", k, f"modulus {s.modulus} needs 2..{s.symbols} symbols")
    ops = rng.integers(0, s.modulus, size=(num, k))
    payload = np.concatenate([SYMBOL0 + ops, np.full((num, 1), QUERY)], 1)
    return _answered(_right_align(num, s.N, payload), SYMBOL0 + ops.sum(1) % s.modulus)


def _palindrome(rng, num, k, s: _Spec):
    s.need(2 <= k <= s.N - 1, "palindrome", k, "needs 2 <= word length <= seq_len - 1")
    s.need(2 <= s.alphabet <= s.symbols, "palindrome", k, f"alphabet {s.alphabet} needs 2..{s.symbols} symbols")
    half = (k + 1) // 2
    first = rng.integers(0, s.alphabet, size=(num, half))
    word = np.concatenate([first, first[:, :k // 2][:, ::-1]], 1)
    negative = rng.random(num) < 0.5
    where = rng.integers(0, k // 2, size=num)  # a position that has a mirror partner
    shift = rng.integers(1, s.alphabet, size=num)  # a different symbol
    rows = np.nonzero(negative)[0]
    word[rows, where[rows]] = (word[rows, where[rows]] + shift[rows]) % s.alphabet
    payload = np.concatenate([SYMBOL0 + word, np.full((num, 1), QUERY)], 1)
    return _answered(_right_align(num, s.N, payload), np.where(negative, BIT0, BIT1))


def _mux(rng, num, k, s: _Spec):
    s.need(1 <= k <= s.N - 2, "mux", k, "needs 1 <= data bits <= seq_len - 2")
    s.need(k <= s.symbols, "mux", k, f"needs k <= {s.symbols} select symbols")
    select = rng.integers(0, k, size=num)
    bits = _bits(rng, (num, k))
    payload = np.concatenate([(SYMBOL0 + select)[:, None], BIT0 + bits, np.full((num, 1), QUERY)], 1)
    return _answered(_right_align(num, s.N, payload), BIT0 + bits[np.arange(num), select])


def _silence_gate(rng, num, k, s: _Spec):
    s.need(1 <= k <= s.N - 6, "silence_gate", k, "needs 1 <= final silence <= seq_len - 6")
    n = s.N - 1  # the stream before QUERY
    inputs = np.zeros((num, s.N), dtype=np.int64)
    answers = np.zeros(num, dtype=np.int64)
    for r in range(num):
        silent = int(rng.integers(1, k + 1))
        prefix_len = n - 1 - silent  # prefix, then SILENCE, then the silent span
        stream, is_open = [SPEAK], True
        gates, coins, bits = rng.random(prefix_len), rng.random(prefix_len), _bits(rng, prefix_len)
        for i in range(1, prefix_len - 2):
            if gates[i] < GATE_P:  # set (SPEAK) or reset (SILENCE), whatever the gate's state
                stream.append(SPEAK if coins[i] < 0.5 else SILENCE)
                is_open = stream[-1] == SPEAK
            else:
                stream.append(BIT0 + int(bits[i]))
        stream.append(BIT0 + int(bits[0]) if is_open else SPEAK)  # make sure the gate is open for the answer
        answer = BIT0 + int(bits[-1])
        stream += [answer, SILENCE]
        # the silent span: bits, and redundant SILENCE tokens, so that the answer is not simply the token
        # before the last SILENCE
        span = BIT0 + _bits(rng, silent)
        span[rng.random(silent) < GATE_P] = SILENCE
        stream.extend(span.tolist())
        stream.append(QUERY)
        inputs[r] = stream
        answers[r] = answer
    return _answered(inputs, answers)


def _variable_tracking(rng, num, k, s: _Spec):
    C = s.num_chains
    n_vars = 3 * s.symbols // 4
    s.need(k >= 1 and C >= 1 and 2 * C * k + 2 <= s.N, "variable_tracking", k,
           f"needs 2 * num_chains * hops + 2 <= seq_len (num_chains {C})")
    s.need(C * k <= n_vars and C <= s.symbols - n_vars, "variable_tracking", k,
           f"needs num_chains * hops <= {n_vars} variables and num_chains <= {s.symbols - n_vars} values")
    inputs = np.zeros((num, s.N), dtype=np.int64)
    answers = np.zeros(num, dtype=np.int64)
    for r in range(num):
        names = SYMBOL0 + rng.permutation(n_vars)[:C * k].reshape(C, k)
        values = SYMBOL0 + n_vars + rng.permutation(s.symbols - n_vars)[:C]
        order = rng.permutation(np.repeat(np.arange(C), k))
        hop = np.zeros(C, dtype=np.int64)
        statements = []
        for c in order:
            j = hop[c]
            statements += [names[c, j], values[c] if j == 0 else names[c, j - 1]]
            hop[c] += 1
        target = int(rng.integers(0, C))
        payload = statements + [QUERY, names[target, k - 1]]
        inputs[r, s.N - len(payload):] = payload
        answers[r] = values[target]
    return _answered(inputs, answers)


def _poly_recall(rng, num, k, s: _Spec):
    m = s.value_len
    n_keys = s.symbols // 2
    s.need(m >= 1 and (m + 1) * k + m + 1 <= s.N, "poly_recall", k, f"needs (value_len + 1) * pairs + value_len + 1 "
           f"<= seq_len (value_len {m})")
    s.need(1 <= k <= n_keys, "poly_recall", k, f"needs 1 <= pairs <= {n_keys} distinct keys")
    keys = SYMBOL0 + np.argsort(rng.random((num, n_keys)), 1)[:, :k]
    values = SYMBOL0 + n_keys + rng.integers(0, s.symbols - n_keys, size=(num, k, m))
    context = np.concatenate([keys[:, :, None], values], 2).reshape(num, k * (m + 1))
    target = rng.integers(0, k, size=num)
    rows = np.arange(num)
    answer = values[rows, target]  # [num, m]
    payload = np.concatenate([context, np.full((num, 1), QUERY), keys[rows, target][:, None], answer[:, :-1]], 1)
    return _answered(_right_align(num, s.N, payload), answer)


def _mqar(rng, num, k, s: _Spec):
    seed = int(rng.integers(0, 2 ** 62))
    inputs, labels = mqar_examples(num, vocab_size=s.V, seq_len=s.N, num_kv_pairs=k, seed=seed)
    return inputs.numpy(), labels.numpy()


GENERATORS: dict[str, Callable] = {
    "mqar": _mqar, "parity": _parity, "local_xor": _local_xor, "modulo_add": _modulo_add,
    "palindrome": _palindrome, "mux": _mux, "silence_gate": _silence_gate,
    "variable_tracking": _variable_tracking, "poly_recall": _poly_recall,
}


def probe_examples(task: str, num: int, *, k: int, vocab_size: int = 64, seq_len: int = 128, seed: int = 0,
                   modulus: int = 16, alphabet: int = 8, num_chains: int = 4,
                   value_len: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs [num, seq_len], labels [num, seq_len]) of one task at difficulty k; the same seed gives the same
    examples."""
    if task not in GENERATORS:
        raise ValueError(f"unknown probe task {task!r}; choose one of: {', '.join(TASKS)}")
    spec = _Spec(vocab_size, seq_len, modulus, alphabet, num_chains, value_len)
    if task != "mqar":
        spec.need(vocab_size >= SYMBOL0 + 2, task, k, f"needs vocab_size >= {SYMBOL0 + 2}")
    rng = np.random.default_rng([seed, TASKS.index(task), k])
    inputs, labels = GENERATORS[task](rng, num, k, spec)
    return torch.as_tensor(inputs, dtype=torch.long), torch.as_tensor(labels, dtype=torch.long)


class ProbeDataset(Dataset):
    """``size`` examples of one task, round-robin over the difficulties, generated in blocks on first access and
    kept for the run. ``slice`` = difficulty."""

    BLOCK = 512

    def __init__(self, task: str, difficulties: list[int], size: int, *, seed: int, **kw):
        self.task, self.size, self.seed, self.kw = task, size, seed, kw
        self.difficulties = [int(k) for k in difficulties]
        if not self.difficulties:
            raise ValueError(f"probe task {task!r}: no difficulties given")
        for k in self.difficulties:  # fail at construction, not in the middle of training
            probe_examples(task, 1, k=k, seed=seed, **kw)
        self._blocks: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def _block(self, setting: int, block: int):
        if (setting, block) not in self._blocks:
            # one seed per (run seed, difficulty, block): a block is the same whatever the access order
            seed = int(np.random.SeedSequence([self.seed, setting, block]).generate_state(1)[0])
            inputs, labels = probe_examples(self.task, self.BLOCK, k=self.difficulties[setting], seed=seed, **self.kw)
            self._blocks[(setting, block)] = (inputs.to(torch.int16), labels.to(torch.int16))
        return self._blocks[(setting, block)]

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.size:
            raise IndexError(index)
        setting, j = index % len(self.difficulties), index // len(self.difficulties)
        inputs, labels = self._block(setting, j // self.BLOCK)
        return {"input_ids": inputs[j % self.BLOCK].long(), "labels": labels[j % self.BLOCK].long(),
                "slice": torch.tensor(self.difficulties[setting])}


@dataclass
class ProbesConfig(SyntheticLMConfig):
    name: str = "probes"
    task: Task = "parity"
    vocab_size: int = 64
    seq_len: int = 128
    # Difficulty k per example (see the module docstring); empty: the task's defaults (default_difficulties).
    difficulties: List[int] = field(default_factory=list)
    val_difficulties: List[int] = field(default_factory=list)  # empty: the training difficulties
    modulus: int = 16          # modulo_add
    alphabet: int = 8          # palindrome
    num_chains: int = 4        # variable_tracking
    value_len: int = 3         # poly_recall
    train_examples: int = 200_000
    val_examples: int = 512    # per difficulty


@register_datamodule("probes")
class ProbesDataModule(SyntheticLMDataModule):
    Config = ProbesConfig

    def make_datasets(self, train_seed: int, val_seed: int) -> tuple[Dataset, Dataset]:
        c = self.config
        train = list(c.difficulties) or default_difficulties(c.task, c.seq_len)
        val = list(c.val_difficulties) or train
        kw = dict(vocab_size=c.vocab_size, seq_len=c.seq_len, modulus=c.modulus, alphabet=c.alphabet,
                  num_chains=c.num_chains, value_len=c.value_len)
        return (ProbeDataset(c.task, train, c.train_examples, seed=train_seed, **kw),
                ProbeDataset(c.task, val, c.val_examples * len(val), seed=val_seed, **kw))
