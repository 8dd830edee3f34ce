"""Sequential recommendation with any mixer pattern as the sequence encoder (SASRec-style next-item model).

item embedding (+ optional learned positional embedding, ``data.pos_emb``) -> dropout -> shared backbone with
the padding mask -> score every item with the (tied) item embedding matrix. Sequences are left-padded with item
0 and the mask tells every mixer which tokens are real, so padding never enters a recurrent state and the last
column always holds the most recent item.

Losses (``data.loss``): ``ce`` full-softmax cross-entropy over items 1..N (default); ``sampled_softmax`` softmax
over the target and ``num_negatives`` (default 256) uniform negatives shared by the batch (a negative equal to
a row's target is masked); ``bce`` binary cross-entropy with ``num_negatives`` (default 1) uniform negatives per
target, never the target itself (SASRec). Losses are normalised by the global number of targets.

Evaluation (see lit_modules/rank_metrics.py), one pass for every protocol: every item 1..N is scored (padding
never), pessimistic rank of the target, HR@K, NDCG@K, MRR and AUC against the whole catalogue (``val/...``) and
against the catalogue without the user's earlier items (``val/filtered/...``, the target always stays); the
sampled protocols of ``data.sampled_eval`` rank the target against the datamodule's fixed negatives and are
logged under ``val/sampled_<protocol>/...``. ``data.filter_seen`` picks the protocol whose NDCG@10 selects the
checkpoint (``val/ndcg@10`` or ``val/filtered/ndcg@10``); the test reports every protocol at that checkpoint.
"""
from __future__ import annotations

import typing
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import build_backbone
from .base import TaskModule
from .distributed import mean_over_targets, sum_over_ranks
from .init import torch_default_init
from .rank_metrics import MetricSums, pessimistic_rank, rank_metrics, sampled_rank

Loss = Literal["ce", "sampled_softmax", "bce"]
DEFAULT_NEGATIVES = {"sampled_softmax": 256, "bce": 1}
# Sampled evaluation protocols (``data.sampled_eval``): negatives ranked against the target in each row.
SAMPLED_SIZES = {"uniform100": 100, "excl99": 99, "excl_history100": 100}
SampledProtocol = Literal[tuple(SAMPLED_SIZES)]


class SequentialRecommender(TaskModule):

    def __init__(self, cfg: dict, num_items: int):
        super().__init__(cfg)
        model_cfg, data_cfg = self.cfg.model, self.cfg.data
        self.num_items = int(num_items)
        if self.num_items < 1:
            raise ValueError("recommender: the catalogue is empty")
        d = model_cfg.d_model
        self.maxlen = int(data_cfg.maxlen)
        self.loss_name = str(data_cfg.get("loss", "ce"))
        losses = typing.get_args(Loss)
        if self.loss_name not in losses:
            raise ValueError(f"data.loss: invalid value {self.loss_name!r}, expected one of {list(losses)}")
        self.num_negatives = int(data_cfg.get("num_negatives") or DEFAULT_NEGATIVES.get(self.loss_name, 0))
        self.filter_seen = bool(data_cfg.get("filter_seen", False))
        self.monitor = ("val/filtered/ndcg@10" if self.filter_seen else "val/ndcg@10", "max")
        self.ks = sorted({int(k) for k in data_cfg.get("ks", [10, 20])} | {10})  # 10: the monitored NDCG@10
        self.sampled_protocols = [str(p) for p in data_cfg.get("sampled_eval", [])]

        self.item_emb = nn.Embedding(self.num_items + 1, d, padding_idx=0)
        nn.init.normal_(self.item_emb.weight, std=model_cfg.init_std)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        self.pos_emb = nn.Embedding(self.maxlen, d) if data_cfg.get("pos_emb", False) else None
        if self.pos_emb is not None:
            nn.init.normal_(self.pos_emb.weight, std=model_cfg.init_std)
        self.emb_dropout = nn.Dropout(model_cfg.dropout)
        self.backbone = build_backbone(model_cfg)
        self.out_emb = None
        if not model_cfg.tie_embeddings:
            self.out_emb = nn.Embedding(self.num_items + 1, d)
            nn.init.normal_(self.out_emb.weight, std=model_cfg.init_std)
        if model_cfg.init == "torch":
            torch_default_init(self)
        self._sums: MetricSums | None = None

    @classmethod
    def from_datamodule(cls, cfg: dict, datamodule) -> "SequentialRecommender":
        return cls(cfg, num_items=datamodule.num_items)

    # ---- model -------------------------------------------------------------------------------------------
    @property
    def output_weight(self) -> torch.Tensor:
        """[N + 1, D] item vectors that score the encoder's output (row 0 = padding, never ranked)."""
        return (self.out_emb if self.out_emb is not None else self.item_emb).weight

    def encode(self, input_ids: torch.Tensor) -> torch.Tensor:
        """input_ids long[B, T], left-padded with 0 -> hidden states [B, T, D] (padding rows meaningless)."""
        T = input_ids.shape[1]
        if T > self.maxlen and self.pos_emb is not None:
            raise ValueError(f"recommender: sequence of {T} items is longer than data.maxlen={self.maxlen}")
        mask = input_ids > 0
        h = self.item_emb(input_ids)
        if self.pos_emb is not None:  # distance from the most recent item, so left padding does not shift it
            h = h + self.pos_emb(torch.arange(T - 1, -1, -1, device=input_ids.device))
        h = self.emb_dropout(h) * mask.unsqueeze(-1).to(h.dtype)
        h, _ = self.backbone(h, mask=mask)
        return h

    def score_items(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Scores float32[B, N + 1] of every item as the next one after each row's sequence (column 0 = -inf)."""
        h = self.encode(input_ids)[:, -1]
        with torch.autocast(device_type=h.device.type, enabled=False):  # fp32 scores: bf16 would create ties
            scores = h.float() @ self.output_weight.float().T
        scores[:, 0] = float("-inf")
        return scores

    # ---- training ----------------------------------------------------------------------------------------
    def _loss_sum(self, h: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Summed loss of hidden states h[n, D] predicting items target[n] (1..N)."""
        W = self.output_weight
        if self.loss_name == "ce":
            logits = h @ W[1:].T
            return F.cross_entropy(logits.float(), target - 1, reduction="sum")
        if self.loss_name == "sampled_softmax":
            neg = torch.randint(1, self.num_items + 1, (self.num_negatives,), device=h.device)
            pos_logit = (h * W[target]).sum(-1, keepdim=True)
            neg_logits = (h @ W[neg].T).masked_fill(neg[None, :] == target[:, None], float("-inf"))
            logits = torch.cat([pos_logit, neg_logits], dim=1).float()
            return F.cross_entropy(logits, torch.zeros_like(target), reduction="sum")
        # bce: negatives uniform over the catalogue without the target
        if self.num_items < 2:
            raise ValueError("data.loss=bce needs at least 2 items")
        neg = torch.randint(1, self.num_items, (h.shape[0], self.num_negatives), device=h.device)
        neg = neg + (neg >= target[:, None]).long()
        pos_logit = (h * W[target]).sum(-1).float()
        neg_logits = torch.einsum("nd,nmd->nm", h, W[neg]).float()
        return F.softplus(-pos_logit).sum() + F.softplus(neg_logits).sum()

    def training_step(self, batch, batch_idx):
        input_ids, targets = batch["input_ids"], batch["targets"]
        h = self.encode(input_ids)
        selected = targets > 0
        loss_sum = self._loss_sum(h[selected], targets[selected])
        count = selected.sum()
        self.log("train/loss", loss_sum.detach() / count.clamp(min=1), prog_bar=True)
        return mean_over_targets(loss_sum, count)

    # ---- evaluation --------------------------------------------------------------------------------------
    def metric_names(self) -> list[str]:
        full = list(rank_metrics(torch.ones(1), torch.ones(1), self.ks))
        names = ["loss"] + full + [f"filtered/{m}" for m in full]
        for p in self.sampled_protocols:
            ks = [k for k in self.ks if k <= SAMPLED_SIZES.get(p, 100)]
            names += [f"sampled_{p}/{m}" for m in rank_metrics(torch.ones(1), torch.ones(1), ks)]
        return names

    def _start(self):
        self._sums = MetricSums(self.metric_names(), device=self.device)

    def _eval_step(self, batch):
        scores = self.score_items(batch["input_ids"])
        target = batch["target"]
        B = scores.shape[0]
        candidates = torch.ones_like(scores, dtype=torch.bool)
        candidates[:, 0] = False
        metrics = rank_metrics(*pessimistic_rank(scores, target, candidates), self.ks)
        unseen = candidates.scatter(1, batch["history"], False)  # the history's padding 0 is out already
        metrics.update({f"filtered/{m}": v for m, v in
                        rank_metrics(*pessimistic_rank(scores, target, unseen), self.ks).items()})
        metrics["loss"] = torch.logsumexp(scores[:, 1:], dim=1) - scores.gather(1, target.view(B, 1)).view(B)
        for p in self.sampled_protocols:
            negatives = batch[f"negatives_{p}"]
            srank, snum = sampled_rank(scores, target, negatives, valid=negatives > 0)
            ks = [k for k in self.ks if k <= negatives.shape[1]]
            metrics.update({f"sampled_{p}/{m}": v for m, v in rank_metrics(srank, snum, ks).items()})
        self._sums.update(metrics)

    def _finish(self, prefix: str):
        means = self._sums.compute(sum_over_ranks)
        # Every rank already holds the exact global means; sync_dist only averages equal values (and keeps
        # Lightning from warning about unsynchronised epoch-level metrics).
        for name, value in means.items():
            self.log(f"{prefix}/{name}", value, prog_bar=name in ("ndcg@10", "hr@10"), sync_dist=True)
        self.log(f"{prefix}/filter_seen", float(self.filter_seen), sync_dist=True)
        self._sums = None

    def on_validation_epoch_start(self):
        self._start()

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch)

    def on_validation_epoch_end(self):
        self._finish("val")

    def on_test_epoch_start(self):
        self._start()

    def test_step(self, batch, batch_idx):
        self._eval_step(batch)

    def on_test_epoch_end(self):
        self._finish("test")
