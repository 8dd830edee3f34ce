"""trainer.compile with CUDA graphs on a GPU: training with reduce-overhead, with and without gradient
accumulation, ends with the eager run's weights (fp32), for attention, PRISM and GDN (whose fla op,
kernels/gated_delta_rule/fla_op.py, is then captured inside the graphs). Without lit_modules/compile.py's
CUDAGraphSteps the accumulating runs fail (torch: "accessing gradient tensor output of CUDAGraphs that has been
overwritten"). And the GDN custom op against fla's own function in bf16. Skipped without CUDA.

    python -m pytest -q -p no:xdist tests/lit_modules/test_compile_gpu.py
"""
import pytest
import torch

from configs import compose_config
from train import run

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

TINY_MQAR = ["data.vocab_size=64", "data.train_settings=[[32,4]]", "data.val_settings=[[32,4]]",
             "data.val_examples=64", "data.batch_size=32", "model.d_model=32", "trainer.enable_progress_bar=false",
             "trainer.accelerator=gpu", "trainer.devices=1", "trainer.precision=32-true", "trainer.max_steps=6",
             "logging.wandb=false", "optim.warmup_steps=0"]


@pytest.mark.parametrize("mixer", ["attention", "prism", "gdn"])
@pytest.mark.parametrize("accumulate", [1, 2])
def test_cuda_graph_training_matches_eager(tmp_path, mixer, accumulate):
    from torch._dynamo.utils import counters

    common = [*TINY_MQAR, f"logging.out_dir={tmp_path}", f"mixer={mixer}",
              f"trainer.accumulate_grad_batches={accumulate}", f"trainer.val_check_interval={6 * accumulate}"]
    eager = run(compose_config([*common, "logging.name=eager"]))
    counters.clear()
    graphs = run(compose_config([*common, "logging.name=graphs", "trainer.compile=reduce-overhead"]))
    assert counters["inductor"]["cudagraph_skips"] == 0  # the graphs did run
    assert graphs["val/loss"] == pytest.approx(eager["val/loss"], rel=1e-3)
    a, b = (torch.load(f"{r['run_dir']}/checkpoints/last.ckpt", weights_only=False)["state_dict"]
            for r in (eager, graphs))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-3, atol=1e-4, msg=key)


def test_gdn_custom_op_matches_flas_function_in_bf16():
    import torch.nn.functional as F
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule

    from kernels.gated_delta_rule import gated_delta_rule

    g = torch.Generator(device="cuda").manual_seed(0)
    T, H, K, V = 2048, 6, 128, 128
    q, k = (torch.randn(1, T, H, K, device="cuda", generator=g, dtype=torch.bfloat16) for _ in range(2))
    v = torch.randn(1, T, H, V, device="cuda", generator=g, dtype=torch.bfloat16)
    gate = F.logsigmoid(torch.randn(1, T, H, device="cuda", generator=g) + 3)
    beta = torch.rand(1, T, H, device="cuda", generator=g)
    h0 = torch.randn(2, H, K, V, device="cuda", generator=g)
    kw = dict(output_final_state=True, cu_seqlens=torch.tensor([0, 777, T], device="cuda"))
    do = torch.randn_like(v)

    def run(fn):
        xs = [x.clone().requires_grad_() for x in (q, k, v, gate, beta, h0)]
        o, ht = fn(*xs)
        return [o, ht, *torch.autograd.grad((o * do).sum() + ht.sum(), xs)]

    ours = run(lambda q, k, v, g, b, h: gated_delta_rule(q, k, v, g, b, initial_state=h, use_qk_l2norm=True,
                                                         backend="triton", **kw))
    theirs = run(lambda q, k, v, g, b, h: chunk_gated_delta_rule(q, k, v, g, b, initial_state=h,
                                                                 use_qk_l2norm_in_kernel=True, **kw))
    for name, a, b in zip(["o", "ht", "dq", "dk", "dv", "dg", "dbeta", "dh0"], ours, theirs):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        err = ((a.double() - b.double()).norm() / b.double().norm()).item()
        assert err < 1e-3, (name, err)  # the same kernels with the same arguments
