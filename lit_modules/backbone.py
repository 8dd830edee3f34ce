"""The shared backbone: pre-norm residual blocks (RMSNorm -> mixer -> RMSNorm -> SwiGLU MLP) built from a
layer pattern of registered mixer names, with one recurrent state per layer for generation."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from mixers.registry import get_mixer


def expand_layers(model_cfg) -> list[str]:
    """``layers`` repeated ``repeat`` times, then every ``insert_every``-th layer (1-based) -> ``insert_mixer``."""
    period = [str(name) for name in model_cfg.layers]
    if not period:
        raise ValueError("model.layers is empty: name at least one mixer")
    if model_cfg.repeat < 1:
        raise ValueError(f"model.repeat must be >= 1, got {model_cfg.repeat}")
    layers = period * model_cfg.repeat
    if model_cfg.insert_every:
        layers = [model_cfg.insert_mixer if (i + 1) % model_cfg.insert_every == 0 else name
                  for i, name in enumerate(layers)]
    return layers


def mlp_width(model_cfg) -> int:
    if model_cfg.mlp_hidden:
        return model_cfg.mlp_hidden
    return -(-int(8 * model_cfg.d_model / 3) // 64) * 64


class SwiGLU(nn.Module):
    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.gate_up = nn.Linear(d_model, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)

    def flops(self, seq_len: int) -> int:
        return 2 * seq_len * (self.gate_up.in_features * self.gate_up.out_features
                              + self.down.in_features * self.down.out_features)


class Block(nn.Module):
    def __init__(self, d_model: int, mixer: nn.Module, mlp_hidden: int, eps: float, dropout: float):
        super().__init__()
        self.mixer_norm = nn.RMSNorm(d_model, eps=eps)
        self.mixer = mixer
        self.mlp_norm = nn.RMSNorm(d_model, eps=eps)
        self.mlp = SwiGLU(d_model, mlp_hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h, mask=None, cu_seqlens=None, state=None, use_cache=False):
        y, state = self.mixer(self.mixer_norm(h), mask=mask, cu_seqlens=cu_seqlens, state=state, use_cache=use_cache)
        h = h + self.dropout(y)
        h = h + self.dropout(self.mlp(self.mlp_norm(h)))
        return h, state


class Backbone(nn.Module):
    """Embedding-free stack; the task module owns embeddings and heads."""

    def __init__(self, model_cfg, mixer_configs: dict[str, Any]):
        super().__init__()
        self.layer_names = expand_layers(model_cfg)
        self.checkpointing = model_cfg.checkpointing
        d, hidden = model_cfg.d_model, mlp_width(model_cfg)
        blocks = []
        for i, name in enumerate(self.layer_names):
            mixer = get_mixer(name)(d, mixer_configs[name], layer_idx=i)
            blocks.append(Block(d, mixer, hidden, model_cfg.norm_eps, model_cfg.dropout))
        self.blocks = nn.ModuleList(blocks)
        self.final_norm = nn.RMSNorm(d, eps=model_cfg.norm_eps)
        for block in self.blocks:  # mixers initialise themselves; the MLPs use the usual small normal init
            for linear in block.mlp.modules():
                if isinstance(linear, nn.Linear):
                    nn.init.normal_(linear.weight, std=model_cfg.init_std)

    def forward(self, h: torch.Tensor, *, mask: torch.Tensor | None = None, cu_seqlens: torch.Tensor | None = None,
                states: list | None = None, use_cache: bool = False) -> tuple[torch.Tensor, list | None]:
        """states: one per layer, each as its mixer returned it (a MixerState for the built-in mixers, whatever a
        plugin mixer returns otherwise); only handed back to the same mixer."""
        states = states if states is not None else [None] * len(self.blocks)
        new_states = []
        for block, state in zip(self.blocks, states):
            if self.checkpointing and self.training and not use_cache:
                h, state = checkpoint(block, h, mask, cu_seqlens, state, use_cache, use_reentrant=False)
            else:
                h, state = block(h, mask, cu_seqlens, state, use_cache)
            new_states.append(state)
        return self.final_norm(h), (new_states if use_cache else None)

    def flops(self, seq_len: int) -> int:
        """Forward FLOPs of the stack for one sequence (mixers report their own)."""
        return sum(b.mixer.flops(seq_len) + b.mlp.flops(seq_len) for b in self.blocks)

    def state_size(self, seq_len: int | None = None) -> int:
        return sum(b.mixer.state_size(seq_len) for b in self.blocks)


def mixer_configs(model_cfg) -> dict[str, Any]:
    """Each mixer of the stack's pattern -> its ``Config`` dataclass (defaults filled in), in layer order."""
    configs = {}
    for name in dict.fromkeys(expand_layers(model_cfg)):
        cfg = model_cfg.mixers.get(name, {}) if hasattr(model_cfg.mixers, "get") else {}
        configs[name] = _as_dataclass(get_mixer(name).Config, cfg)
    return configs


def build_backbone(model_cfg) -> Backbone:
    """model_cfg: the composed ``model`` section (``mixers`` already typed per mixer by configs.compose)."""
    return Backbone(model_cfg, mixer_configs(model_cfg))


def _as_dataclass(schema: type, values) -> Any:
    from omegaconf import OmegaConf

    if isinstance(values, schema):
        return values
    merged = OmegaConf.merge(OmegaConf.structured(schema), values or {})
    return OmegaConf.to_object(merged)
