import gzip
import json
import logging

import numpy as np
import pytest
import torch

from datamodules.rec import RecConfig, RecDataModule
from datamodules.rec_formats import detect_format, kcore_filter, read_interactions, build_sequences


def _dm(path, **kw) -> RecDataModule:
    dm = RecDataModule(RecConfig(path=str(path), **kw), seed=0)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def _all(data):
    return data.__getitems__(list(range(len(data))))


def _user_of_rows(dm, idx):
    return np.searchsorted(dm.seq.offsets, idx, side="right") - 1


# ---- formats -------------------------------------------------------------------------------------------------
def test_user_lines_keeps_contiguous_ids(tmp_path):
    p = _write(tmp_path, "u.txt", "1 1 2 3 4\n2 5 2 6\n\n3 1 7 5\n")
    seq = build_sequences(read_interactions(p, "auto")[0])
    assert seq.num_users == 3 and seq.num_items == 7
    assert seq.items.tolist() == [1, 2, 3, 4, 5, 2, 6, 1, 7, 5]  # ids 1..7 already contiguous: unchanged
    assert seq.offsets.tolist() == [0, 4, 7, 10]


def test_pairs_sorted_by_time_stably_and_remapped(tmp_path):
    # user 7: timestamps 5, 3, 3 -> file order breaks the tie; item ids 10/20/30/40 -> 1..4
    p = _write(tmp_path, "p.txt", "7 30 5\n7 10 3\n9 40 1\n7 20 3\n9 10 2,\n".replace(",", ""))
    inter, fmt = read_interactions(p, "auto")
    assert fmt == "pairs"
    seq = build_sequences(inter)
    assert seq.items.tolist() == [1, 2, 3, 4, 1]
    assert seq.times.tolist() == [3, 3, 5, 1, 2]
    assert seq.item_ids[1:].tolist() == [10, 20, 30, 40] and seq.user_ids.tolist() == [7, 9]


def test_pairs_without_timestamps_use_file_order(tmp_path):
    p = _write(tmp_path, "p.csv", "1,5\n1,3\n2,3\n1,4\n")
    seq = build_sequences(read_interactions(p, "pairs")[0])
    assert seq.items.tolist() == [3, 1, 2, 1] and seq.times is None


def test_movielens(tmp_path):
    p = _write(tmp_path, "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n1::914::3::978301968\n")
    inter, fmt = read_interactions(p)
    assert fmt == "movielens"
    seq = build_sequences(inter)
    assert [seq.item_ids[i] for i in seq.items] == [1193, 914, 661]


def test_amazon_json_gz_loose_literals_and_kcore(tmp_path):
    rows = []
    for u in range(6):  # 6 users x items A..E each (5-core), plus a user and an item outside the 5-core
        for j, item in enumerate("ABCDE"):
            rows.append({"reviewerID": f"U{u}", "asin": item, "unixReviewTime": 100 * u + (5 - j), "overall": 5.0})
    rows.append({"reviewerID": "U0", "asin": "Z", "unixReviewTime": 1})
    rows.append({"reviewerID": "LONER", "asin": "A", "unixReviewTime": 1})
    p = tmp_path / "reviews.json.gz"
    with gzip.open(p, "wt") as f:
        for i, r in enumerate(rows):
            f.write((json.dumps(r) if i % 2 else repr(r)) + "\n")  # half JSON, half Python literals (2014 dumps)
    assert detect_format(p) == "amazon_json"
    inter, _ = read_interactions(p)
    assert len(inter.items) == 32
    seq = build_sequences(kcore_filter(inter, 5))
    assert seq.num_users == 6 and seq.num_items == 5
    assert [seq.item_ids[i] for i in seq.items[:5]] == list("EDCBA")  # sorted by unixReviewTime
    dm = _dm(p, kcore=5)
    assert dm.num_items == 5 and dm.vocab_size == 6


# ---- bad input -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt, text, match", [
    ("user_lines", "1 1 2 3\n2 4 x 5\n", r"u\.txt:2: item id 'x' is not an integer"),
    ("user_lines", "1 1 2 3\n2 4 3.5 5\n", r"u\.txt:2: item id '3.5' is not an integer"),
    ("user_lines", "1 1 2 3\n\n7\n", r"u\.txt:3: expected 'user item item"),
    ("user_lines", "1 1 2 3\nabc 1 2 3\n", r"u\.txt:2: user id 'abc' is not an integer"),
    ("user_lines", "1 1 2 3\n1 4 5 6\n", r"u\.txt:2: user 1 already has a line \(1\)"),
    ("pairs", "1 2 3\n1 3\n", r"u\.txt:2: missing timestamp"),
    ("pairs", "1 2\n1 3 4 5 6\n", r"u\.txt:2: expected 'user item \[timestamp\]'"),
    ("pairs", "1 2 7\n1 3 soon\n", r"u\.txt:2: timestamp 'soon' is not a number"),
    ("movielens", "1::2::5::9\n1::2::5\n", r"u\.txt:2: expected 'user::item::rating::timestamp'"),
    ("amazon_json", '{"reviewerID": "a", "asin": "b", "unixReviewTime": 1}\n{"asin": "b"}\n',
     r"u\.txt:2: review lacks field\(s\) reviewerID, unixReviewTime"),
    ("amazon_json", "{not json\n", r"u\.txt:1: not a JSON object"),
])
def test_malformed_lines_name_file_and_line(tmp_path, fmt, text, match):
    p = _write(tmp_path, "u.txt", text)
    with pytest.raises(ValueError, match=match):
        _dm(p, format=fmt)


@pytest.mark.parametrize("text, match", [("", "empty file"), ("\n  \n", "no interactions found")])
def test_empty_file(tmp_path, text, match):
    p = _write(tmp_path, "e.txt", text)
    with pytest.raises(ValueError, match=match):
        _dm(p)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="data.path"):
        _dm(tmp_path / "nope.txt")


def test_short_users_error_by_default_or_dropped(tmp_path):
    p = _write(tmp_path, "s.txt", "1 1 2 3 4\n2 5 6\n3 1 7 5\n4 8\n")
    with pytest.raises(ValueError, match=r"user 2 \(line 2\) has 2 interaction\(s\).*at least 3.*2 user\(s\)"):
        _dm(p)
    dm = _dm(p, short_users="drop")
    assert dm.seq.user_ids.tolist() == [1, 3]
    assert dm.seq.item_ids[1:].tolist() == [1, 2, 3, 4, 5, 7]  # 6 and 8 only belonged to dropped users
    assert dm.num_items == 6 and dm.seq.items.max() == 6  # ids renumbered without them
    assert len(dm.val_data) == 2


def test_time_split_needs_timestamps(tmp_path):
    p = _write(tmp_path, "u.txt", "1 1 2 3 4\n2 5 2 6\n")
    with pytest.raises(ValueError, match="data.split=time needs timestamps"):
        _dm(p, split="time")


def test_bad_config_values():
    with pytest.raises(ValueError, match=r"data.split: invalid value 'random', expected one of \['loo', 'time'\]"):
        RecDataModule(RecConfig(split="random"))
    with pytest.raises(ValueError, match="data.sampled_eval"):
        RecDataModule(RecConfig(sampled_eval=["pop100"]))
    with pytest.raises(ValueError, match="data.time_split"):
        RecDataModule(RecConfig(time_split=[0.5, 0.5, 0.5]))


def test_compose_rejects_unknown_choice():
    from configs import ConfigError, compose_config

    with pytest.raises(ConfigError, match="data.loss"):
        compose_config(["experiment=rec_beauty", "data.loss=hinge"])
    with pytest.raises(ConfigError, match="data.lossy"):
        compose_config(["experiment=rec_beauty", "data.lossy=1"])


# ---- splits on Beauty ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def beauty(data_file):
    return _dm(data_file("beauty"), sampled_eval=["uniform100", "excl99", "excl_history100"])


def test_beauty_counts(beauty):
    assert beauty.num_items == 12101 and beauty.seq.num_users == 22363 and len(beauty.seq.items) == 198502
    assert len(beauty.val_data) == len(beauty.test_data) == 22363


def test_loo_split_never_leaks(beauty):
    seq, maxlen = beauty.seq, beauty.config.maxlen
    ends = seq.offsets[1:]
    val_item, test_item = seq.items[ends - 2], seq.items[ends - 1]
    data = beauty.train_data
    batch = _all(data)
    inputs, targets = batch["input_ids"].numpy(), batch["targets"].numpy()
    user = _user_of_rows(beauty, data.lo)
    assert inputs.shape[1] <= maxlen
    assert not (inputs == test_item[user][:, None]).any()          # no test item in a training input
    assert not (inputs == val_item[user][:, None]).any()           # nor the validation item
    assert not (targets == val_item[user][:, None]).any()          # validation item never a training target
    assert not (targets == test_item[user][:, None]).any()
    # every training prefix is a target exactly once: each user's training part minus its first item
    assert (targets > 0).sum() == len(seq.items) - 3 * seq.num_users
    # targets follow their inputs: within a row, target[t] is the item after input[t]
    real = inputs > 0
    assert ((targets > 0) == real).all()
    assert (inputs[:, 1:][real[:, :-1]] == targets[:, :-1][real[:, :-1]]).all()


def test_loo_eval_rows(beauty):
    seq, maxlen = beauty.seq, beauty.config.maxlen
    u = int(np.argmax(seq.lengths))  # the longest user: maxlen truncation
    s, e = seq.offsets[u], seq.offsets[u + 1]
    val, test = beauty.val_data.__getitems__([u]), beauty.test_data.__getitems__([u])
    assert val["target"].item() == seq.items[e - 2] and test["target"].item() == seq.items[e - 1]
    assert val["input_ids"][0].tolist() == seq.items[e - 2 - maxlen:e - 2].tolist()
    assert test["input_ids"][0].tolist() == seq.items[e - 1 - maxlen:e - 1].tolist()  # includes the val item
    assert sorted(test["history"][0].tolist()) == sorted(seq.items[s:e - 1].tolist())  # whole history
    first = beauty.val_data.__getitems__([0])
    assert first["input_ids"][0].tolist() == [1, 2, 3] and first["target"].item() == 4  # "1 1 2 3 4 5"


def test_sampled_negatives(beauty, data_file):
    for data in (beauty.val_data, beauty.test_data):
        batch = data.__getitems__(list(range(2000)))
        target = batch["target"][:, None]
        uni, excl = batch["negatives_uniform100"], batch["negatives_excl99"]
        assert uni.shape[1] == 100 and excl.shape[1] == 99
        assert ((uni >= 1) & (uni <= 12101)).all() and not (uni == target).any()
        assert ((excl >= 1) & (excl <= 12101)).all()
        assert (excl.sort(1).values.diff(dim=1) > 0).all()  # distinct
        seq = beauty.seq
        for u in range(0, 2000, 97):
            owned = set(seq.items[seq.offsets[u]:seq.offsets[u + 1]].tolist())
            assert not owned & set(excl[u].tolist())  # never an item of the user's sequence
        # SASRec's: 100 draws with replacement, never the target or an item of the input history
        hist = batch["negatives_excl_history100"]
        assert hist.shape[1] == 100 and ((hist >= 1) & (hist <= 12101)).all() and not (hist == target).any()
        assert not (hist[:, :, None] == batch["history"][:, None, :]).any()
        assert (hist.sort(1).values.diff(dim=1) == 0).any()  # repeats happen (with replacement)
    again = _dm(data_file("beauty"), sampled_eval=["excl99"])  # fixed by data.eval_seed
    assert np.array_equal(again.test_data.negatives["excl99"], beauty.test_data.negatives["excl99"])


def test_eval_rows_shard_over_ranks(beauty):
    shards = [beauty.val_data.shard(r, 3) for r in range(3)]
    assert sum(len(s) for s in shards) == len(beauty.val_data)
    assert sorted(np.concatenate([s.hi for s in shards]).tolist()) == sorted(beauty.val_data.hi.tolist())


# ---- other training-row modes and the time split ------------------------------------------------------------
def test_prefix_rows_and_window_tiling(tmp_path):
    p = _write(tmp_path, "u.txt", "1 " + " ".join(map(str, range(1, 13))) + "\n2 3 4 5\n")
    seq2seq = _dm(p, maxlen=4)  # user 1: training part items 1..10, 9 targets -> windows of 4 + 4 + 1
    b = _all(seq2seq.train_data)
    assert b["targets"][b["targets"] > 0].sort().values.tolist() == list(range(2, 11))  # user 2: none
    assert len(seq2seq.train_data) == 3
    prefix = _dm(p, maxlen=4, train_samples="prefix")
    b = _all(prefix.train_data)
    assert len(prefix.train_data) == 9 and ((b["targets"] > 0).sum(1) == 1).all()
    assert (b["targets"][:, :-1] == 0).all()
    row = b["input_ids"][8].tolist()  # the last prefix of user 1: the last 4 items before item 10
    assert row == [6, 7, 8, 9] and b["targets"][8, -1].item() == 10


def test_time_split(tmp_path):
    rng = np.random.default_rng(0)
    lines = []
    for u in range(1, 41):
        times = np.sort(rng.choice(1000, size=rng.integers(2, 12), replace=False))
        items = rng.choice(np.arange(1, 60), size=len(times), replace=False)
        lines += [f"{u} {i} {t}" for i, t in zip(items, times)]
    rng.shuffle(lines)
    p = _write(tmp_path, "pairs.txt", "\n".join(lines) + "\n")
    dm = _dm(p, split="time", maxlen=5, sampled_eval=["excl99", "uniform100", "excl_history100"])
    seq, times = dm.seq, dm.seq.times
    cut1, cut2 = np.sort(times)[[round(0.7 * len(times)), round(0.85 * len(times))]]
    tr = dm.train_data
    assert (times[tr.hi] < cut1).all()  # the last target index of every training row is before the first cut
    val, test = dm.val_data, dm.test_data
    assert ((times[val.hi] >= cut1) & (times[val.hi] < cut2)).all() and (times[test.hi] >= cut2).all()
    n_val = ((times >= cut1) & (times < cut2)).sum()
    assert 0 < len(val) <= n_val
    train_targets = set(tr.hi.tolist()) | {i for lo, hi in zip(tr.lo, tr.hi) for i in range(lo + 1, hi + 1)}
    train_inputs = {i for lo, hi in zip(tr.lo, tr.hi) for i in range(lo, hi)}
    assert not train_targets & set(val.hi.tolist()) and not train_inputs & set(test.hi.tolist())
    # a test row's history holds the user's validation-period interactions too
    b = test.__getitems__(list(range(len(test))))
    for r in range(len(test)):
        start = test.start[r]
        assert sorted(b["history"][r][b["history"][r] > 0].tolist()) == sorted(seq.items[start:test.hi[r]].tolist())
    assert b["input_ids"].shape[1] <= 5
    # tiny catalogue: fewer unseen items than 99 -> all of them, padded with 0
    assert (b["negatives_excl99"] == 0).any() and (b["negatives_uniform100"] != b["target"][:, None]).all()
    hist = b["negatives_excl_history100"]  # 59 items, at most 11 of them the history and the target
    assert (hist > 0).all() and not (hist == b["target"][:, None]).any()
    assert not (hist[:, :, None] == b["history"][:, None, :]).any()


def test_loaders(tmp_path, data_file):
    dm = _dm(data_file("beauty"), batch_size=64, eval_batch_size=500)
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape[0] == 64 and batch["input_ids"].dtype == torch.long
    assert batch["input_ids"][:, -1].gt(0).all()  # left padding: the last column is always a real item
    val = next(iter(dm.val_dataloader()))
    assert val["input_ids"].shape[0] == 500 and set(val) == {"input_ids", "target", "history"}


def test_start_up_line_names_the_format_and_the_counts(tmp_path, caplog):
    p = _write(tmp_path, "u.txt", "1 1 2 3 4 5\n2 3 4 5\n")
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")  # Lightning's, which does not propagate
    logger.addHandler(caplog.handler)
    try:
        _dm(p)
        _dm(p, format="user_lines")
    finally:
        logger.removeHandler(caplog.handler)
    assert ("rec: u.txt (format user_lines, detected; leave-one-out): 2 users, 5 items, 8 interactions; train: 4 "
            "interactions of 2 users, 2 targets in 1 rows; validation: 2 targets of 2 users; test: 2 targets of 2 "
            "users") in caplog.text
    assert "(format user_lines; leave-one-out)" in caplog.text
