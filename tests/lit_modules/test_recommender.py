import json
import math
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from configs import compose_config, config_to_dict
from lit_modules.recommender import SequentialRecommender
from mixers.base import Mixer, MixerConfig
from mixers.registry import register_mixer


pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny matrices: with the cores shared, OpenMP threads spin-wait for each other (100x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@dataclass
class _EMAConfig(MixerConfig):
    decay: float = 0.8
    honour_mask: bool = True


@register_mixer("rec_test_ema")
class _EMA(Mixer):
    """A tiny recurrent mixer: s_t = decay * s_{t-1} + (W x_t + b), y_t = s_t. With honour_mask, padding
    tokens leave the state untouched (the contract); without, the bias b leaks padding into the state."""
    Config = _EMAConfig

    def __init__(self, d_model, config, layer_idx=0):
        super().__init__(d_model, config, layer_idx)
        self.proj = nn.Linear(d_model, d_model)
        nn.init.normal_(self.proj.bias, std=0.5)

    def forward(self, x, *, mask=None, cu_seqlens=None, state=None, use_cache=False):
        write = self.proj(x)
        s = torch.zeros_like(write[:, 0]) if state is None else state
        out = []
        for t in range(x.shape[1]):
            new = self.config.decay * s + write[:, t]
            if mask is not None and self.config.honour_mask:
                new = torch.where(mask[:, t, None], new, s)
            s = new
            out.append(s)
        return torch.stack(out, 1), (s if use_cache else None)

    def state_size(self, seq_len=None):
        return self.d_model

    def flops(self, seq_len):
        return 2 * seq_len * self.d_model ** 2


def _cfg(*overrides) -> dict:
    return config_to_dict(compose_config(["experiment=rec_beauty", "model.d_model=16", "model.layers=[attention]",
                                          "model.repeat=1", "model.dropout=0.0", *overrides]))


def _model(num_items=30, *overrides) -> SequentialRecommender:
    torch.manual_seed(0)
    return SequentialRecommender(_cfg(*overrides), num_items=num_items)


@pytest.mark.parametrize("layers, pos_emb", [("[attention,attention]", False), ("[rec_test_ema]", False),
                                             ("[rec_test_ema,attention]", True)])
def test_left_padding_never_changes_scores(layers, pos_emb):
    model = _model(30, f"model.layers={layers}", f"data.pos_emb={str(pos_emb).lower()}").eval()
    short = torch.tensor([[3, 7, 1, 9]])
    padded = torch.cat([torch.zeros(1, 6, dtype=torch.long), short], 1)
    with torch.no_grad():
        a, b = model.score_items(short), model.score_items(padded)
    assert torch.isinf(a[:, 0]).all() and a[:, 0].item() < 0  # padding is never a candidate
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mixer", ["attention", "prism", "gdn", "gla", "mamba2", "ttt_mlp"])
def test_every_compared_mixer_ignores_left_padding_and_trains(mixer):
    from mixers.registry import mixer_names

    if mixer not in mixer_names():
        pytest.skip(f"mixer {mixer} is not registered in this checkout")
    model = _model(30, f"mixer={mixer}", f"model.layers=[{mixer}]", "model.repeat=2", "model.d_model=64")
    model.eval()
    short = torch.tensor([[3, 7, 1, 9, 4, 4, 2]])
    padded = torch.cat([torch.zeros(1, 9, dtype=torch.long), short], 1)
    with torch.no_grad():
        torch.testing.assert_close(model.score_items(short), model.score_items(padded), rtol=1e-5, atol=1e-5)
    model.train()
    batch = {"input_ids": torch.cat([torch.zeros(2, 3, dtype=torch.long), torch.randint(1, 31, (2, 5))], 1)}
    batch["targets"] = torch.where(batch["input_ids"] > 0, torch.randint(1, 31, (2, 8)), 0)
    loss = model.training_step(batch, 0)
    loss.backward()
    assert math.isfinite(loss.item()) and model.item_emb.weight.grad.abs().sum() > 0


def test_a_mixer_that_ignores_the_mask_is_caught():
    model = _model(30, "model.layers=[rec_test_ema]", "model.mixers.rec_test_ema.honour_mask=false").eval()
    short = torch.tensor([[3, 7, 1, 9]])
    padded = torch.cat([torch.zeros(1, 6, dtype=torch.long), short], 1)
    with torch.no_grad():
        assert not torch.allclose(model.score_items(short), model.score_items(padded), atol=1e-4)


@pytest.mark.parametrize("loss", ["ce", "sampled_softmax", "bce"])
def test_losses_learn_a_batch(loss):
    model = _model(40, f"data.loss={loss}")
    torch.manual_seed(1)
    batch = {"input_ids": torch.randint(1, 41, (8, 6)), "targets": torch.randint(1, 41, (8, 6))}
    batch["input_ids"][:2, :3] = 0  # left padding without targets
    batch["targets"][:2, :3] = 0
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        loss_value = model.training_step(batch, 0)
        opt.zero_grad()
        loss_value.backward()
        assert model.item_emb.weight.grad[0].abs().sum() == 0  # the padding row never learns
        opt.step()
        losses.append(loss_value.item())
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < 0.7 * losses[0], losses


def test_untied_output_and_monitor():
    model = _model(20, "model.tie_embeddings=false")
    assert model.out_emb is not None and model.output_weight is model.out_emb.weight
    assert model.monitor == ("val/ndcg@10", "max")
    assert _model(20, "data.filter_seen=true").monitor == ("val/filtered/ndcg@10", "max")


def _evaluate(model, scores, batch):
    model.score_items = lambda input_ids: scores.clone()
    model._start()
    model._eval_step(batch)
    return model._sums.compute()


def test_eval_ranks_full_catalogue_filter_seen_and_sampled():
    scores = torch.tensor([[float("-inf"), 0.9, 0.8, 0.7, 0.6, 0.5],
                           [float("-inf"), 0.1, 0.2, 0.3, 0.4, 0.5]])
    batch = {"input_ids": torch.tensor([[1, 2], [0, 5]]), "target": torch.tensor([3, 4]),
             "history": torch.tensor([[1, 2], [0, 5]]),
             "negatives_uniform100": torch.tensor([[1, 4, 4, 0], [5, 1, 1, 2]]),
             "negatives_excl99": torch.tensor([[4, 5, 0, 0], [1, 2, 3, 0]]),
             "negatives_excl_history100": torch.tensor([[4, 5, 5, 0], [1, 5, 3, 0]])}
    model = _model(5, "data.ks=[1,2,20]", "data.sampled_eval=[uniform100,excl99,excl_history100]")
    m = _evaluate(model, scores, batch)
    # full ranking: ranks 3 and 2 among 5 items
    assert m["hr@1"] == 0 and m["hr@2"] == 0.5 and m["hr@20"] == 1
    assert m["mrr"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert m["ndcg@2"] == pytest.approx(0.5 / math.log2(3))
    assert m["auc"] == pytest.approx((2 / 4 + 3 / 4) / 2)
    # sampled: row 0 beats 4, 4, loses to 1 -> rank 2 of 4; row 1 loses to 5 -> rank 2 of 5
    assert m["sampled_uniform100/mrr"] == pytest.approx(0.5)
    assert m["sampled_excl99/mrr"] == pytest.approx((1 + 1) / 2)
    assert "sampled_excl99/hr@20" in m  # K = 20 <= 99 negatives
    assert m["num_rows"] == 2
    assert m["loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(scores[:, 1:], torch.tensor([2, 3]))))
    assert m["sampled_excl_history100/mrr"] == pytest.approx((1 + 1 / 2) / 2)  # row 1 loses to 5
    # the same pass, filtered: items 1, 2 (row 0) and 5 (row 1) leave the ranking, the padding column never enters
    assert m["filtered/hr@1"] == 1 and m["filtered/mrr"] == 1 and m["filtered/auc"] == 1
    assert m["filtered/ndcg@20"] == 1 and "filtered/loss" not in m
    # data.filter_seen only picks the monitored protocol: the numbers are the same
    assert _evaluate(_model(5, "data.ks=[1,2,20]", "data.filter_seen=true", "data.sampled_eval=[uniform100,excl99,"
                                "excl_history100]"), scores, batch) == m


def test_trains_on_a_beauty_slice_and_tests_at_the_best_checkpoint(data_file, tmp_path):
    import train

    lines = data_file("beauty").read_text().splitlines()[:400]
    path = tmp_path / "beauty_slice.txt"
    path.write_text("\n".join(lines) + "\n")
    cfg = compose_config(["experiment=rec_beauty", f"data.path={path}", "model.d_model=16",
                          "model.layers=[attention,rec_test_ema]", "model.repeat=1", "data.batch_size=64",
                          "data.maxlen=20",
                          "data.sampled_eval=[uniform100,excl99,excl_history100]", "data.pos_emb=true",
                          "trainer.max_steps=8",
                          "trainer.val_check_interval=4", "logging.wandb=false", f"logging.out_dir={tmp_path}",
                          "logging.name=run", "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1"])
    metrics = train.run(cfg)
    assert metrics["step"] == 8
    for split in ("val", "test"):
        for name in ("hr@10", "ndcg@10", "hr@20", "ndcg@20", "mrr", "auc", "loss", "sampled_uniform100/hr@10",
                     "sampled_excl99/ndcg@10", "sampled_excl_history100/mrr", "filtered/ndcg@10", "filtered/auc",
                     "filter_seen"):
            assert f"{split}/{name}" in metrics, f"{split}/{name}"
        assert 0 <= metrics[f"{split}/ndcg@10"] <= metrics[f"{split}/hr@10"] <= metrics[f"{split}/hr@20"] <= 1
    assert metrics["test/num_rows"] == 400 and metrics["test/filter_seen"] == 0
    assert metrics["test/filtered/hr@10"] >= metrics["test/hr@10"]  # fewer candidates: never a worse rank
    # sampled protocols rank among 100 candidates: far easier than the full catalogue
    assert metrics["test/sampled_uniform100/hr@10"] >= metrics["test/hr@10"]
    summary = json.loads((tmp_path / "rec_beauty" / "run" / "summary.json").read_text())
    assert (tmp_path / "rec_beauty" / "run" / "checkpoints" / "best.ckpt").is_file()
    assert summary["test/ndcg@10"] == pytest.approx(metrics["test/ndcg@10"])


def test_time_split_protocol_end_to_end(tmp_path):
    """Raw Amazon-style reviews -> 5-core -> global time split -> H/N@K up to 500 and AUC."""
    import gzip
    import random

    import train

    rng = random.Random(0)
    path = tmp_path / "reviews.json.gz"
    with gzip.open(path, "wt") as f:
        for u in range(60):
            for j, item in enumerate(rng.sample(range(40), 6)):
                f.write(json.dumps({"reviewerID": f"U{u}", "asin": f"B{item:03d}",
                                    "unixReviewTime": 1_000_000 + 86400 * (u % 7 + 5 * j)}) + "\n")
    cfg = compose_config(["experiment=rec_beauty_time", f"data.path={path}", "model.d_model=16",
                          "model.layers=[rec_test_ema]", "data.batch_size=16", "trainer.max_steps=4",
                          "trainer.val_check_interval=2", "logging.wandb=false", f"logging.out_dir={tmp_path}",
                          "trainer.enable_progress_bar=false"])
    metrics = train.run(cfg)
    for name in ("hr@500", "ndcg@200", "auc", "mrr"):
        assert f"test/{name}" in metrics
    assert metrics["test/hr@500"] == 1.0  # 40 items: K > catalogue
    assert 0.0 <= metrics["test/auc"] <= 1.0 and metrics["test/num_rows"] > 0


def test_rec_beauty_recipe_runs_any_data_set_validating_every_epoch(tmp_path):
    import csv

    import train

    path = tmp_path / "pairs.txt"  # not Beauty: another format and size
    path.write_text("".join(f"{u} {(u * 7 + j) % 30 + 1}\n" for u in range(48) for j in range(5)))
    cfg = compose_config(["experiment=rec_beauty", f"data.path={path}", "model.d_model=16",
                          "model.layers=[rec_test_ema]", "data.batch_size=16", "trainer.max_steps=6",
                          "logging.wandb=false", f"logging.out_dir={tmp_path}", "logging.name=run",
                          "trainer.enable_progress_bar=false"])
    assert (cfg.data.format, cfg.trainer.val_check_interval) == ("auto", "epoch")
    metrics = train.run(cfg)
    with (tmp_path / "rec_beauty" / "run" / "metrics.csv").open() as f:
        steps = [int(r["step"]) for r in csv.DictReader(f) if r.get("val/ndcg@10")]
    assert steps == [2, 5]  # 48 training rows at batch 16: an epoch is 3 steps
    assert metrics["test/num_rows"] == 48
