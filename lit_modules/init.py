"""``model.init: torch``: the weights PyTorch's own modules start from, in place of the N(0, init_std) init."""
from __future__ import annotations

import math

from torch import nn


def torch_default_init(module: nn.Module) -> None:
    """Every nn.Linear weight kaiming-uniform (a = sqrt 5: std 1/sqrt(3 fan_in)) and every nn.Embedding N(0, 1)
    (a padding row stays zero), as their reset_parameters() do. Biases, norms and the mixers' own parameters
    (gates, decays, conv filters) keep the values their modules gave them: those are the mixers' choices, not a
    scale. Embeddings go last, so a head tied to the embedding ends as the embedding."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5))
    for m in module.modules():
        if isinstance(m, nn.Embedding):
            m.reset_parameters()
