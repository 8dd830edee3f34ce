"""Ranking metrics for next-item recommendation, vectorised over a batch of users on the scores' device.

One relevant item per row. Ranks are pessimistic: rank = 1 + #(candidates other than the target whose score is
>= the target's score), so a model that gives every item the same score ranks the target last, never first.
NaN scores count as -inf (a NaN target therefore ties with, and ranks below, every -inf candidate).

  hr@K   = [rank <= K]
  ndcg@K = [rank <= K] / log2(1 + rank)        (one relevant item: the ideal DCG is 1)
  mrr    = 1 / rank                            (untruncated)
  auc    = (num_candidates - rank) / (num_candidates - 1): the share of other candidates scored strictly
           below the target (ties count against it); 1 when the target is the only candidate
"""
from __future__ import annotations

import math

import torch


def _clean(scores: torch.Tensor) -> torch.Tensor:
    return torch.nan_to_num(scores.float(), nan=-math.inf)


def pessimistic_rank(scores: torch.Tensor, target: torch.Tensor,
                     candidates: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """scores float[B, C]; target long[B] (column of the relevant item); candidates bool[B, C] or [C]: True
    where an item takes part in the ranking (padding or filtered items False). The target always takes part.
    Returns (rank long[B] in 1..num_candidates, num_candidates long[B])."""
    scores = _clean(scores)
    B, C = scores.shape
    t = target.long().view(B, 1)
    ge = scores >= scores.gather(1, t)
    if candidates is not None:
        cand = candidates.expand(B, C)
        ge = ge & cand
        num = cand.sum(1) + (~cand.gather(1, t)).view(B).long()
    else:
        num = torch.full((B,), C, dtype=torch.long, device=scores.device)
    ge = ge.scatter(1, t, False)
    return 1 + ge.sum(1), num


def sampled_rank(scores: torch.Tensor, target: torch.Tensor, negatives: torch.Tensor,
                 valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank of the target among itself and ``negatives`` (long[B, M] columns of ``scores``; duplicates count
    as often as they occur; entries where ``valid`` is False are ignored). Returns (rank, num_candidates)."""
    scores = _clean(scores)
    t = scores.gather(1, target.long().view(-1, 1))
    ge = scores.gather(1, negatives.long()) >= t
    if valid is not None:
        ge = ge & valid
        num = 1 + valid.sum(1)
    else:
        num = torch.full_like(target, negatives.shape[1] + 1, dtype=torch.long)
    return 1 + ge.sum(1), num


def rank_metrics(rank: torch.Tensor, num_candidates: torch.Tensor, ks) -> dict[str, torch.Tensor]:
    """Per-row hr@K, ndcg@K (for every K in ``ks``), mrr and auc as float[B] tensors."""
    r = rank.double()
    out: dict[str, torch.Tensor] = {}
    gain = 1.0 / torch.log2(r + 1.0)
    for k in sorted({int(k) for k in ks}):
        hit = r <= k
        out[f"hr@{k}"] = hit.double()
        out[f"ndcg@{k}"] = torch.where(hit, gain, torch.zeros_like(gain))
    out["mrr"] = 1.0 / r
    n = num_candidates.double()
    out["auc"] = torch.where(n > 1, (n - r) / (n - 1).clamp(min=1), torch.ones_like(r))
    return out


class MetricSums:
    """Sums of per-row metrics and the row count. With DDP every rank must know all names up front (pass them),
    so that the final all-reduce sums the same vector on every rank, even one that evaluated no rows; the means
    are then exact whatever the ranks' shares."""

    def __init__(self, names=(), device=None):
        self.device = device
        self.sums: dict[str, torch.Tensor] = {n: torch.zeros((), dtype=torch.float64, device=device) for n in names}
        self.count = torch.zeros((), dtype=torch.float64, device=device)

    def update(self, metrics: dict[str, torch.Tensor]) -> None:
        n = None
        for name, values in metrics.items():
            s = values.detach().double().sum()
            self.sums[name] = self.sums[name] + s if name in self.sums else s
            n = values.numel()
        if n is not None:
            self.count = self.count.to(s.device) + n

    def compute(self, reduce=None) -> dict[str, float]:
        """Means over rows (and ``num_rows``); ``reduce(vec) -> vec`` sums a float64 vector over ranks."""
        names = sorted(self.sums)
        device = self.count.device
        vec = torch.stack([self.sums[n].to(device) for n in names] + [self.count])
        if reduce is not None:
            vec = reduce(vec)
        count = vec[-1].clamp(min=1)
        return {n: float(vec[i] / count) for i, n in enumerate(names)} | {"num_rows": float(vec[-1])}
