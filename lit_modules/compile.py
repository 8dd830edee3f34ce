"""``trainer.compile``: compile a module in place in a torch.compile mode, and what the training loop must do for
the modes that replay CUDA graphs (docs/training.md#compilation). train.py and benchmarks/throughput.py both
compile through here, so training gets what the benchmark measures."""
from __future__ import annotations

import torch
from lightning.pytorch import Callback
from torch import nn

# torch.compile's modes (torch._inductor.list_mode_options); configs/schema.py's trainer.compile lists the same
MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compile_mode(value: bool | str | None) -> str | None:
    """The torch.compile mode a ``trainer.compile`` value asks for: None (eager) for false, "default" for true."""
    if value is None or value is False:
        return None
    if value is True:
        return "default"
    if value not in MODES:
        raise ValueError(f"trainer.compile: expected true, false or one of {', '.join(MODES)}, got {value!r}")
    return value


def uses_cuda_graphs(mode: str | None) -> bool:
    """Whether a mode replays each compiled graph as a CUDA graph (reduce-overhead, max-autotune). Only on CUDA
    tensors: on the CPU Inductor skips the graphs, and the step marks cost nothing."""
    from torch._inductor import list_mode_options

    return mode is not None and bool(list_mode_options(mode).get("triton.cudagraphs", False))


def compile_in_place(module: nn.Module, value: bool | str | None) -> bool:
    """Compile ``module`` in place (``nn.Module.compile``: no ``_orig_mod`` wrapper, so its state dict and
    checkpoints are an eager module's) in the mode ``value`` names. Returns whether its calls replay CUDA graphs:
    then the caller marks the start of every step (``torch.compiler.cudagraph_mark_step_begin``), since a replay
    overwrites the outputs of the last one."""
    mode = compile_mode(value)
    if mode is not None:
        module.compile(**({} if mode == "default" else {"mode": mode}))
    return uses_cuda_graphs(mode)


def allocate_missing_grads(module: nn.Module) -> None:
    """Give every trainable parameter without a gradient a zero one."""
    for p in module.parameters():
        if p.requires_grad and p.grad is None:
            p.grad = torch.zeros_like(p)


class CUDAGraphSteps(Callback):
    """What a Lightning loop needs when the model replays CUDA graphs (torch's CUDA-graph trees):

    - every batch (training, validation, test, predict) starts a new step, so the replay may reuse the memory of
      the last step's outputs, which are consumed by then;
    - with gradient accumulation, the first backward of a window would hand the backward graph's own output
      buffers to ``param.grad``, and the next micro-batch's replay overwrites them (torch then refuses: "accessing
      gradient tensor output of CUDAGraphs that has been overwritten"). Zero gradients allocated outside the
      graphs before each backward make autograd add every micro-batch's gradients into them instead (only the
      compiled module's parameters: the others' gradients are computed eagerly).
    """

    def __init__(self, compiled: nn.Module):
        self.compiled = compiled

    def _new_step(self, *args) -> None:
        torch.compiler.cudagraph_mark_step_begin()

    on_train_batch_start = on_validation_batch_start = on_test_batch_start = on_predict_batch_start = _new_step

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        if trainer.accumulate_grad_batches > 1:
            allocate_missing_grads(self.compiled)


def compile_for_training(trainer, module: nn.Module, value: bool | str | None) -> None:
    """``trainer.compile``: compile ``module`` (the backbone) in place and, for the CUDA-graph modes, give the
    Lightning trainer the CUDAGraphSteps callback."""
    if compile_in_place(module, value):
        trainer.callbacks.append(CUDAGraphSteps(module))
