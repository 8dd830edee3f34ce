import math

import pytest
import torch

from lit_modules.rank_metrics import MetricSums, pessimistic_rank, rank_metrics, sampled_rank

NO_PAD = torch.tensor([False, True, True, True, True])  # column 0 is the padding item


def test_tie_with_the_target_counts_against_it():
    scores = torch.tensor([[9.0, 0.5, 0.3, 0.5, 0.2]])  # padding scores highest but is no candidate
    rank, num = pessimistic_rank(scores, torch.tensor([1]), NO_PAD)
    assert rank.tolist() == [2] and num.tolist() == [4]
    m = rank_metrics(rank, num, [1, 2])
    assert m["hr@1"].item() == 0 and m["hr@2"].item() == 1
    assert m["ndcg@1"].item() == 0
    assert m["ndcg@2"].item() == pytest.approx(1 / math.log2(3))
    assert m["mrr"].item() == pytest.approx(0.5)
    assert m["auc"].item() == pytest.approx(2 / 3)  # 2 of the 3 other candidates are strictly below


def test_constant_scores_rank_last_never_first():
    scores = torch.zeros(3, 5)
    rank, num = pessimistic_rank(scores, torch.tensor([1, 2, 4]), NO_PAD)
    assert rank.tolist() == [4, 4, 4]
    m = rank_metrics(rank, num, [1, 3])
    assert m["hr@3"].sum().item() == 0 and m["auc"].sum().item() == 0


def test_hand_computed_batch():
    scores = torch.tensor([[0.0, 0.9, 0.1, 0.4, 0.8],
                           [0.0, 0.1, 0.2, 0.3, 0.4],
                           [0.0, 0.4, 0.4, 0.4, 0.1]])
    rank, num = pessimistic_rank(scores, torch.tensor([4, 1, 2]), NO_PAD)
    assert rank.tolist() == [2, 4, 3]  # row 2: two ties above-or-equal
    m = rank_metrics(rank, num, [2])
    assert m["hr@2"].tolist() == [1, 0, 0]
    torch.testing.assert_close(m["ndcg@2"], torch.tensor([1 / math.log2(3), 0, 0], dtype=torch.float64))
    torch.testing.assert_close(m["mrr"], torch.tensor([1 / 2, 1 / 4, 1 / 3], dtype=torch.float64))


def test_k_larger_than_the_catalogue():
    scores = torch.tensor([[0.0, 0.3, 0.2, 0.1]])  # 3 items
    for target, expected_rank in ((1, 1), (3, 3)):
        rank, num = pessimistic_rank(scores, torch.tensor([target]), NO_PAD[:4])
        m = rank_metrics(rank, num, [10, 500])
        assert rank.item() == expected_rank and num.item() == 3
        assert m["hr@10"].item() == 1 and m["hr@500"].item() == 1
        assert m["ndcg@500"].item() == pytest.approx(1 / math.log2(expected_rank + 1))


def test_filter_seen_removes_history_but_never_the_target():
    scores = torch.tensor([[0.0, 0.9, 0.8, 0.7, 0.6]])
    target = torch.tensor([3])
    rank, num = pessimistic_rank(scores, target, NO_PAD)
    assert rank.item() == 3
    history = torch.tensor([[1, 3, 0]])  # seen: items 1 and 3 (3 = a repeat of the target), 0 = padding
    candidates = torch.ones(1, 5, dtype=torch.bool).scatter(1, history, False)
    candidates[:, 0] = False
    rank, num = pessimistic_rank(scores, target, candidates)
    assert rank.item() == 2 and num.item() == 3  # item 2 remains above; items 2, 3, 4 are ranked


def test_nan_target_ranks_last():
    scores = torch.tensor([[0.0, float("nan"), 0.1, -1.0, 0.2]])
    rank, _ = pessimistic_rank(scores, torch.tensor([1]), NO_PAD)
    assert rank.item() == 4


def test_sampled_rank_with_duplicates_and_padding():
    scores = torch.tensor([[0.0, 0.5, 0.6, 0.5, 0.1]])
    negatives = torch.tensor([[2, 2, 3, 4, 0, 0]])  # item 2 drawn twice (with replacement), 0 = no negative
    rank, num = sampled_rank(scores, torch.tensor([1]), negatives, valid=negatives > 0)
    assert rank.item() == 4 and num.item() == 5  # 2, 2 and the tie 3 count against it


def test_metric_sums_are_exact_over_unequal_ranks():
    values = torch.rand(11)
    parts = [values[:8], values[8:], values[:0]]  # three "ranks", one without rows
    sums = []
    for part in parts:
        s = MetricSums(["x"])
        if part.numel():
            s.update({"x": part})
        sums.append(s)
    total = torch.stack([torch.stack([s.sums["x"], s.count]) for s in sums]).sum(0)
    means = sums[0].compute(reduce=lambda vec: total)  # what an all-reduce of the three vectors returns
    assert means["x"] == pytest.approx(values.double().mean().item())
    assert means["num_rows"] == 11
