"""lit_modules/compile.py: trainer.compile's values and modes, and the gradients CUDA graphs need under
accumulation. Training with each mode: tests/test_training.py; with CUDA graphs on a GPU: test_compile_gpu.py."""
import typing

import pytest
import torch
from torch import nn

from configs.schema import TrainerConfig
from lit_modules.compile import MODES, allocate_missing_grads, compile_mode, uses_cuda_graphs


@pytest.mark.parametrize("value, mode", [(False, None), (None, None), (True, "default"),
                                         ("default", "default"), ("reduce-overhead", "reduce-overhead")])
def test_a_bool_or_a_mode_names_the_mode(value, mode):
    assert compile_mode(value) == mode


def test_a_bad_mode_is_one_line_naming_the_choices():
    with pytest.raises(ValueError) as err:
        compile_mode("fastest")
    message = str(err.value)
    assert "\n" not in message and "trainer.compile" in message and "'fastest'" in message
    assert all(mode in message for mode in MODES)


def test_the_config_field_offers_the_same_modes():
    bool_type, modes = typing.get_args(typing.get_type_hints(TrainerConfig)["compile"])
    assert bool_type is bool and typing.get_args(modes) == MODES


def test_cuda_graph_modes_are_torchs():
    assert [m for m in (None, *MODES) if uses_cuda_graphs(m)] == ["reduce-overhead", "max-autotune"]


def test_missing_grads_become_zeros_and_present_ones_stay():
    layer = nn.Linear(3, 2)
    layer.bias.requires_grad_(False)
    layer.weight.grad = None
    allocate_missing_grads(layer)
    assert torch.equal(layer.weight.grad, torch.zeros(2, 3)) and layer.bias.grad is None
    grad = layer.weight.grad
    layer(torch.ones(1, 3)).sum().backward()  # accumulated into the same tensor, as CUDA graphs need
    assert layer.weight.grad is grad and torch.equal(grad, torch.ones(2, 3))
    allocate_missing_grads(layer)
    assert layer.weight.grad is grad
