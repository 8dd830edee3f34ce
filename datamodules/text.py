"""Language-modelling data: local text/jsonl/parquet files or a Hugging Face hub dataset, tokenised once into a
memory-mapped token cache, split into train/val by document, packed into windows of ``seq_len + 1`` tokens
(docs/data.md).

    data: {name: text, path: data/tinyshakespeare.txt, tokenizer: char, seq_len: 256}
    data: {name: text, hub: cerebras/SlimPajama-627B, streaming: true, tokenizer: gpt2, max_tokens: 2000000000}

The sources it reads are in ``text_sources``; the split, the windows and the batch layout (``input_ids``,
``labels``, and with ``boundaries: respect``, the default, ``cu_seqlens`` so that no window mixes two documents;
``boundaries: concat`` is plain concatenation) in ``packing``. EOS follows each document. The run's seed orders
the training windows (``ResumableLoader``, which also resumes mid-epoch).

Build the cache ahead of a multi-GPU run (rank 0 would otherwise build it while the others wait):
    python -m datamodules.text configs/data/slimpajama.yaml [key=value ...]
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal, Optional

import lightning as L
import numpy as np
import torch

from mixers.base import check_choices

from .loader import ResumableLoader, evaluation_loader, fixed_batches
from .packing import PackedWindows, ShiftedWindows, collate_windows, split_segments
from .paths import REPO_ROOT
from .registry import register_datamodule
from .text_sources import resolve_source
from .token_cache import TokenCache, build_or_open, entry_name, write_tokens
from .tokenizers import (BPE_TRAIN_MAX_CHARS, HubUnavailableError, TextDataError, build_tokenizer, is_trained,
                         tokenizer_fingerprint, tokenizer_slug)

# The datamodule and the errors its users catch (a hub that cannot be reached, bad data).
__all__ = ["TextConfig", "TextDataModule", "TextDataError", "HubUnavailableError"]


@dataclass
class TextConfig:
    name: str = "text"
    # Where the text is: exactly one of a local path (file, folder or glob; a relative one from the current
    # directory, else from the repository root) and a hub dataset name.
    path: Optional[str] = None
    hub: Optional[str] = None
    hub_config: Optional[str] = None
    split: str = "train"  # split of the hub dataset (or save_to_disk folder) to read
    streaming: bool = True  # hub: stream documents instead of downloading the whole dataset first
    text_field: str = "text"  # column holding the text (jsonl/json/parquet/arrow/hub); dotted for nested fields
    doc_separator: Optional[str] = None  # .txt: split a file into documents on this string; "blank_line"
    tokenizer: str = "char"  # char | bpe | a Hugging Face tokenizer name (gpt2) | a local tokenizer dir/json
    vocab_size: int = 4096  # bpe only
    seq_len: int = 256
    batch_size: int = 32
    val_fraction: float = 0.1
    split_seed: int = 0  # picks the validation documents; independent of the run's seed
    boundaries: Literal["respect", "concat"] = "respect"
    cache_dir: Optional[str] = None  # default: $PRISM_CACHE_DIR or <repo>/.cache/text
    num_workers: int = 0
    max_documents: Optional[int] = None  # read at most this many documents
    max_tokens: Optional[int] = None  # keep at most this many tokens (the last document is cut)
    val_max_batches: Optional[int] = None  # validate on at most this many batches (evenly spaced windows)


def _to_config(config) -> TextConfig:
    if isinstance(config, TextConfig):
        return config
    if config is None:
        config = {}
    try:
        from omegaconf import DictConfig, OmegaConf
        if isinstance(config, DictConfig):
            config = OmegaConf.to_container(config, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    allowed = [f.name for f in fields(TextConfig)]
    unknown = sorted(set(config) - set(allowed))
    if unknown:
        raise TextDataError(f"data.{unknown[0]}: unknown key for the text datamodule; allowed keys: "
                            f"{', '.join(allowed)}")
    return TextConfig(**dict(config))


def _check_config(cfg: TextConfig) -> None:
    try:
        check_choices(cfg, "data")
    except ValueError as err:  # a config built in Python (a composed one was checked by OmegaConf)
        raise TextDataError(str(err)) from None
    problems = []
    if bool(cfg.path) == bool(cfg.hub):
        problems.append("data: set exactly one of data.path (local file, folder or glob) and data.hub (a Hugging "
                        f"Face dataset name); got path={cfg.path!r}, hub={cfg.hub!r}")
    if cfg.seq_len < 1:
        problems.append(f"data.seq_len={cfg.seq_len} must be >= 1")
    if cfg.batch_size < 1:
        problems.append(f"data.batch_size={cfg.batch_size} must be >= 1")
    if not 0.0 < cfg.val_fraction < 1.0:
        problems.append(f"data.val_fraction={cfg.val_fraction} must be between 0 and 1 (exclusive)")
    if cfg.tokenizer == "bpe" and cfg.vocab_size < 257:
        problems.append(f"data.vocab_size={cfg.vocab_size}: a byte-level BPE needs at least 257 (256 bytes + EOS)")
    for key in ("max_documents", "max_tokens", "val_max_batches"):
        value = getattr(cfg, key)
        if value is not None and value < 1:
            problems.append(f"data.{key}={value} must be >= 1 (or null for no cap)")
    if cfg.num_workers < 0:
        problems.append(f"data.num_workers={cfg.num_workers} must be >= 0")
    if problems:
        raise TextDataError("; ".join(problems))


def default_cache_dir() -> Path:
    return Path(os.environ.get("PRISM_CACHE_DIR") or REPO_ROOT / ".cache" / "text")


@register_datamodule("text")
class TextDataModule(L.LightningDataModule):
    Config = TextConfig
    task = "lm"

    def __init__(self, config=None, seed: int = 0):
        super().__init__()
        self.cfg = _to_config(config)
        _check_config(self.cfg)
        self.seed = int(seed)
        self.cache: Optional[TokenCache] = None
        self.cache_built = False  # True when this object tokenised the corpus (False: read from the cache)
        self.train_dataset: Optional[PackedWindows] = None
        self.val_dataset: Optional[PackedWindows] = None
        self._tokenizer = None
        self.split_description = ""

    # --- cache ----------------------------------------------------------------------------------------------
    @property
    def cache_root(self) -> Path:
        return Path(self.cfg.cache_dir).expanduser() if self.cfg.cache_dir else default_cache_dir()

    def _open_cache(self) -> TokenCache:
        if self.cache is not None:
            return self.cache
        cfg = self.cfg
        source = resolve_source(cfg)
        tok_key = tokenizer_fingerprint(cfg.tokenizer, cfg.vocab_size)
        name = entry_name(f"{source.slug}-{tokenizer_slug(cfg.tokenizer, cfg.vocab_size)}",
                          {"source": source.fingerprint, "tokenizer": tok_key})

        def build(directory: Path) -> dict:
            pretrained = None if is_trained(cfg.tokenizer) else build_tokenizer(cfg.tokenizer, cfg.vocab_size)
            if source.kind == "hub" and cfg.streaming and cfg.max_tokens is None and cfg.max_documents is None:
                print(f"[data] warning: no data.max_tokens or data.max_documents: the whole of {source.description}"
                      f" will be streamed into the token cache", file=sys.stderr, flush=True)
            print(f"[data] tokenising {source.description} with tokenizer {cfg.tokenizer!r} into "
                  f"{self.cache_root / name}", file=sys.stderr, flush=True)
            if pretrained is None:
                # Pass 1 learns the tokenizer; under max_tokens only text that can end up in the cache counts
                # (a character is one token, so max_tokens characters cover every kept document).
                limit = cfg.max_tokens if cfg.tokenizer == "char" else \
                    (min(BPE_TRAIN_MAX_CHARS, 8 * cfg.max_tokens) if cfg.max_tokens else None)
                tokenizer = build_tokenizer(cfg.tokenizer, cfg.vocab_size,
                                            lambda: source.documents(cfg, max_chars=limit))
            else:
                tokenizer = pretrained
            tokenizer.save(directory)
            meta = write_tokens(directory, tokenizer, source.documents(cfg), max_tokens=cfg.max_tokens)
            if meta["n_documents"] == 0:
                raise TextDataError(f"{source.description}: no documents with text found"
                                    + (f" (field {cfg.text_field!r} is empty or null everywhere)"
                                       if source.kind != "files" or any(k != "text" for _, k in source.files)
                                       else ""))
            meta.update(source=source.description, tokenizer=tokenizer.name, key={"source": source.fingerprint,
                                                                                  "tokenizer": tok_key})
            print(f"[data] cached {meta['n_documents']:,} documents, {meta['n_tokens']:,} tokens "
                  f"(vocab {meta['vocab_size']:,}) in {meta['tokenize_seconds']:.1f} s", file=sys.stderr, flush=True)
            return meta

        self.cache, self.cache_built = build_or_open(self.cache_root, name, build)
        return self.cache

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = self._open_cache().tokenizer()
        return self._tokenizer

    @property
    def vocab_size(self) -> int:
        return int(self._open_cache().meta["vocab_size"])

    @property
    def eos_id(self) -> int:
        return int(self._open_cache().meta["eos_id"])

    def save_tokenizer(self, directory: Path) -> None:
        """The tokenizer in transformers' format (``AutoTokenizer.from_pretrained(directory)`` reads it), so that a
        run folder alone can be exported, evaluated and sampled from (docs/evaluation.md)."""
        self.tokenizer.to_hf().save_pretrained(str(directory))

    # --- Lightning hooks --------------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        self._build_datasets()

    def setup(self, stage: Optional[str] = None) -> None:
        self._build_datasets()

    def _build_datasets(self) -> None:
        if self.train_dataset is not None:
            return
        cfg, cache = self.cfg, self._open_cache()
        T = cfg.seq_len
        train_seg, val_seg, how = split_segments(cache.doc_offsets, cfg.val_fraction, cfg.split_seed)
        respect = cfg.boundaries == "respect"
        train = PackedWindows(cache, train_seg, T, respect)
        val = PackedWindows(cache, val_seg, T, respect)
        where = f"{cache.meta['source']} ({cache.n_tokens:,} tokens in {cache.n_documents:,} documents with " \
                f"tokenizer {cache.meta['tokenizer']!r})"
        fits = max(1, min(train.n_tokens, val.n_tokens) - 1)  # the longest seq_len both splits can hold
        if train.n_windows == 0:
            raise TextDataError(
                f"data.seq_len={T} is larger than the data: the training split has {train.n_tokens:,} tokens of "
                f"{where}, and one window needs seq_len + 1 = {T + 1}. Lower data.seq_len to at most {fits} "
                f"(validation: {val.n_tokens:,} tokens, {how}) or use more text.")
        if val.n_windows == 0:
            raise TextDataError(
                f"data.seq_len={T} is larger than the validation split: it has {val.n_tokens:,} tokens "
                f"(data.val_fraction={cfg.val_fraction}, {how}) of {where}, and one window needs seq_len + 1 = "
                f"{T + 1}. Lower data.seq_len to at most {fits}, raise data.val_fraction or "
                f"use more text.")
        train = ShiftedWindows(train, self.seed)  # cut at other places every epoch (datamodules/packing.py)
        if cfg.val_max_batches is not None and cfg.val_max_batches * cfg.batch_size < val.n_windows:
            keep = np.unique(np.linspace(0, val.n_windows - 1, cfg.val_max_batches * cfg.batch_size).round())
            val = PackedWindows(cache, val_seg, T, respect, window_ids=keep.astype(np.int64))
        if len(train) < cfg.batch_size:
            raise TextDataError(f"data.batch_size={cfg.batch_size} is larger than the number of training windows "
                                f"({len(train)} windows of seq_len {T} from {train.n_tokens:,} tokens of {where}); "
                                f"lower data.batch_size or data.seq_len")
        self.train_dataset, self.val_dataset, self.split_description = train, val, how

    def _loader_kwargs(self) -> dict:
        workers = self.cfg.num_workers
        return {"num_workers": workers, "collate_fn": collate_windows, "persistent_workers": workers > 0,
                "pin_memory": torch.cuda.is_available()}

    def train_dataloader(self):
        self._build_datasets()
        return ResumableLoader(self.train_dataset, self.cfg.batch_size, shuffle=True, seed=self.seed,
                               **self._loader_kwargs())

    def val_dataloader(self):
        self._build_datasets()  # split by rank (datamodules/loader.py)
        return evaluation_loader(self.val_dataset, fixed_batches(len(self.val_dataset), self.cfg.batch_size),
                                 **self._loader_kwargs())

    def summary(self) -> str:
        self._build_datasets()
        c = self.cache
        return (f"{c.meta['source']}: {c.n_documents:,} documents, {c.n_tokens:,} tokens, tokenizer "
                f"{c.meta['tokenizer']} (vocab {self.vocab_size:,}); train {len(self.train_dataset):,} windows, "
                f"val {len(self.val_dataset):,} windows of {self.cfg.seq_len} ({self.split_description}); "
                f"cache {c.path} ({'built now' if self.cache_built else 'reused'})")


def _main(argv: list[str]) -> int:
    """python -m datamodules.text [data.yaml] [key=value ...]: build (or find) the token cache and summarise."""
    from omegaconf import OmegaConf
    merged = OmegaConf.structured(TextConfig)
    for arg in argv:
        if "=" not in arg:
            loaded = OmegaConf.load(arg)
            merged = OmegaConf.merge(merged, loaded.get("data", loaded))
        else:
            key, value = arg.split("=", 1)
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist([f"{key.removeprefix('data.')}={value}"]))
    try:
        dm = TextDataModule(merged)
        dm.prepare_data()
        print(dm.summary())
    except (TextDataError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
