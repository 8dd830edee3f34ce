"""trainer.compile with CUDA graphs on a GPU: training with reduce-overhead, with and without gradient
accumulation, ends with the eager run's weights (fp32). Without lit_modules/compile.py's CUDAGraphSteps the
accumulating run fails (torch: "accessing gradient tensor output of CUDAGraphs that has been overwritten").
Skipped without CUDA.

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


@pytest.mark.parametrize("mixer", ["attention", "prism"])
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
