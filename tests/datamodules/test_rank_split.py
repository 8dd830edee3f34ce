"""The data's split across ranks, in two CPU processes (gloo): every training step sees the same examples on one
rank or two with the same global batch (and a loader's position resumes on another number of ranks); evaluation
batches are shared out without overlap, in equal numbers; the LM validation metrics of two ranks are those of one
(text, MQAR and probes data)."""
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from configs import compose_config, config_to_dict
from datamodules.loader import RankBatches, ResumableLoader, fixed_batches
from datamodules.registry import get_datamodule
from lit_modules import task_module

TEXT = "".join(f"line {i}: the quick brown fox jumps over the lazy dog {i * 7 % 13}.\n" for i in range(60))


def lm_configs(tmp_path) -> dict[str, list[str]]:
    (tmp_path / "corpus.txt").write_text(TEXT)
    common = ["model.d_model=16", "model.repeat=1", "model.mixers.attention.num_heads=2"]
    return {  # odd numbers of validation batches of unequal sizes: two ranks hold unequal shares
        "text": ["experiment=lm_char", f"data.path={tmp_path / 'corpus.txt'}", f"data.cache_dir={tmp_path / 'c'}",
                 "data.seq_len=16", "data.batch_size=6", "data.val_fraction=0.2", "mixer=attention", *common],
        "mqar": ["experiment=mqar", "data.vocab_size=32", "data.train_settings=[[16,2]]",
                 "data.val_settings=[[16,2],[32,4],[32,8]]", "data.val_examples=10", "data.batch_size=4", *common],
        "probes": ["experiment=prism_probes", "data.task=parity", "data.seq_len=16", "data.difficulties=[4,8]", "data.val_examples=13",
                   "data.batch_size=4", *common],
    }


def lm_validation(argv: list[str]) -> dict:
    """The validation metrics of a freshly initialised (seeded) model on this rank's share of the data."""
    cfg = compose_config(argv)
    datamodule = get_datamodule(cfg.data.name)(cfg.data, seed=cfg.seed)
    datamodule.prepare_data()
    datamodule.setup("fit")
    torch.manual_seed(0)
    module = task_module(datamodule.task).from_datamodule(config_to_dict(cfg), datamodule).eval()
    module.on_validation_epoch_start()
    batches = list(datamodule.val_dataloader())
    with torch.no_grad():
        for i, batch in enumerate(batches):
            module.validation_step(module.on_before_batch_transfer(batch, 0), i)
    return {"batches": len(batches), "metrics": module.validation_metrics()}


def rank_results(lm_argvs: dict[str, list[str]]) -> dict:
    """What one rank sees: its training batches, a loader position, its evaluation batches, its LM metrics."""
    loader = ResumableLoader(list(range(40)), batch_size=3, shuffle=True, seed=5)
    train = [b.tolist() for b in loader]
    loader.consumed = 2
    return {"train": train, "state": loader.state_dict(), "eval": RankBatches(fixed_batches(7, 2)).batches,
            "lm": {name: lm_validation(argv) for name, argv in lm_argvs.items()}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, lm_argvs, results) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        results[rank] = rank_results(lm_argvs)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """(one process's results, [rank 0's, rank 1's] of two processes)."""
    argvs = lm_configs(tmp_path_factory.mktemp("rank_split"))
    one = rank_results(argvs)  # also builds the text token cache, which the two ranks then read
    results = mp.Manager().dict()
    # forked: the ranks start with this process's imports (a spawned process spends seconds importing them again)
    mp.start_processes(_worker, args=(_free_port(), argvs, results), nprocs=2, join=True, start_method="fork")
    return one, [results[0], results[1]]


def test_each_step_sees_one_global_batch_on_any_number_of_ranks(ranks):
    one, two = ranks
    reference = [b.tolist() for b in ResumableLoader(list(range(40)), batch_size=6, shuffle=True, seed=5)]
    assert len(two[0]["train"]) == len(two[1]["train"]) == len(reference) == 40 // 6
    for step, batch in enumerate(reference):
        assert two[0]["train"][step] + two[1]["train"][step] == batch  # rank r: the r-th part of each global batch


def test_a_loader_position_resumes_on_another_number_of_ranks(ranks):
    state = ranks[1][0]["state"]  # two ranks of 3 after 2 steps: 12 examples consumed
    assert state["examples"] == 12
    single = ResumableLoader(list(range(40)), batch_size=6, shuffle=True, seed=5)
    single.load_state_dict(state)
    reference = [b.tolist() for b in ResumableLoader(list(range(40)), batch_size=6, shuffle=True, seed=5)]
    assert [b.tolist() for b in single] == reference[2:]


def test_evaluation_batches_are_shared_out_evenly(ranks):
    one, two = ranks
    assert one["eval"] == [[(i, True) for i in b] for b in fixed_batches(7, 2)]
    shares = [r["eval"] for r in two]
    assert len(shares[0]) == len(shares[1]) == 2  # 4 batches: 2 each
    labelled = sorted(i for share in shares for batch in share for i, keep in batch if keep)
    assert labelled == list(range(7))
    assert shares[1] == [[(2, True), (3, True)], [(6, True)]]
    odd = [r["lm"]["mqar"]["batches"] for r in two]
    assert odd == [5, 5] and one["lm"]["mqar"]["batches"] == 9  # the shorter share padded with an unlabelled batch


@pytest.mark.parametrize("data", ["text", "mqar", "probes"])
def test_lm_validation_of_two_ranks_equals_one_rank(ranks, data):
    one, two = ranks
    assert two[0]["lm"][data]["batches"] < one["lm"][data]["batches"]  # each rank validated a share only
    expected = one["lm"][data]["metrics"]
    assert "val/loss" in expected and len(expected) >= 3
    for rank in two:
        got = rank["lm"][data]["metrics"]
        assert got.keys() == expected.keys()
        for key in expected:
            assert got[key] == pytest.approx(expected[key], rel=1e-12, abs=1e-12), (data, key)
