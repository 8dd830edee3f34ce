"""A language model of this repository as a Hugging Face ``transformers`` model (docs/evaluation.md).

``MixerLMConfig`` holds the layer pattern, every mixer's hyperparameters, the backbone's and the embedding's
settings; ``MixerLMModel`` is the token embedding and this repository's ``Backbone``; ``MixerLMForCausalLM`` adds the
output head and works with ``generate()``. The mixers' recurrent states (KV cache, conv tail, matrix state, ...) are
not key/value pairs, so they travel between decoding steps in ``MixerCache``, a ``transformers`` Cache that holds
each layer's state as its mixer returned it. Importing this module registers the classes with ``AutoConfig`` and
``AutoModelForCausalLM``.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from huggingface_hub.dataclasses import strict
from omegaconf import OmegaConf
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, GenerationMixin, PreTrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

from mixers.base import Mixer, MixerState
from mixers.registry import import_plugins

from .backbone import build_backbone
from .distributed import IGNORE_INDEX


@strict
class MixerLMConfig(PreTrainedConfig):
    """``layer_pattern``: the mixer of every layer, in order (the run's ``model.layers`` expanded); ``mixers``: each
    named mixer's full ``Config`` as a dict; ``plugins``: modules to import first (mixers of your own)."""
    model_type = "mixer_lm"
    keys_to_ignore_at_inference = ["past_key_values"]

    vocab_size: int = 256
    hidden_size: int = 128
    layer_pattern: list[str] | None = None
    mixers: dict[str, dict] | None = None
    plugins: list[str] | None = None
    intermediate_size: int | None = None  # the SwiGLU width; None: lit_modules.backbone.mlp_width's default
    rms_norm_eps: float = 1e-6
    dropout: float = 0.0
    initializer_range: float = 0.02
    max_position_embeddings: int | None = None  # the training sequence length (evaluation windows use it)
    tie_word_embeddings: bool = True
    use_cache: bool = True
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None

    def __post_init__(self, **kwargs):
        self.layer_pattern = list(self.layer_pattern or ["attention"])
        self.mixers = {name: dict(values) for name, values in (self.mixers or {}).items()}
        self.plugins = list(self.plugins or [])
        super().__post_init__(**kwargs)

    @property
    def num_hidden_layers(self) -> int:
        return len(self.layer_pattern)

    def backbone_config(self):
        """The ``model`` section that lit_modules.backbone.build_backbone reads."""
        return OmegaConf.create({
            "d_model": self.hidden_size, "layers": self.layer_pattern, "repeat": 1, "insert_every": 0,
            "insert_mixer": self.layer_pattern[0], "mixers": self.mixers, "plugins": self.plugins,
            "mlp_hidden": self.intermediate_size, "norm_eps": self.rms_norm_eps, "dropout": self.dropout,
            "checkpointing": False, "init_std": self.initializer_range})


class MixerCache(Cache):
    """Every layer's recurrent state as its mixer returned it (``MixerState`` for the built-in mixers), carried by
    ``generate()`` from one step to the next. A recurrent state cannot be cut back to an earlier token, so the cache
    cannot be cropped (no assisted or speculative decoding); beam search reorders ``MixerState`` states only."""
    is_compileable = False
    is_croppable = False

    def __init__(self, states: list | None = None, seen_tokens: int = 0):
        super().__init__(layers=[])
        self.states = list(states or [])
        self.seen_tokens = seen_tokens

    def __len__(self) -> int:
        return len(self.states)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seen_tokens

    def get_max_length(self, layer_idx: int | None = None) -> int:
        return -1

    def _map(self, fn) -> None:
        for i, state in enumerate(self.states):
            if state is not None and not isinstance(state, MixerState):
                raise NotImplementedError(f"layer {i}: its mixer's state is a {type(state).__name__}, not a "
                                          f"MixerState, so it cannot be reordered (beam search, several samples)")
            self.states[i] = None if state is None else state.map(fn)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self._map(lambda t: t.index_select(0, beam_idx.to(t.device)))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._map(lambda t: t[indices.to(t.device)])

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._map(lambda t: t.repeat_interleave(repeats, dim=0))

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("MixerCache holds recurrent states, which cannot be cropped")

    def reset(self) -> None:
        self.states, self.seen_tokens = [], 0


class MixerLMPreTrainedModel(PreTrainedModel):
    config: MixerLMConfig
    config_class = MixerLMConfig
    base_model_prefix = "model"
    _is_stateful = True  # recurrent states: generate() must not try assisted decoding
    _no_split_modules = ["Block"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """As the Lightning module initialises: embeddings normal(initializer_range), every other part its own
        init. from_pretrained builds the model on the meta device and loads only saved tensors, so a mixer's
        non-persistent buffers (e.g. TTT-MLP's token index) are rebuilt here from a fresh mixer of the same config."""
        if isinstance(module, nn.Embedding):
            init.normal_(module.weight, std=self.config.initializer_range)
        elif isinstance(module, Mixer) and any(m._non_persistent_buffers_set for m in module.modules()):
            with torch.device("cpu"):
                fresh = type(module)(module.d_model, module.config, module.layer_idx)
            fresh_modules = dict(fresh.named_modules())
            for name, sub in module.named_modules():
                for buffer in sub._non_persistent_buffers_set:
                    init.copy_(getattr(sub, buffer), getattr(fresh_modules[name], buffer))

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # the model makes its own MixerCache


class MixerLMModel(MixerLMPreTrainedModel):
    def __init__(self, config: MixerLMConfig):
        super().__init__(config)
        import_plugins(config.plugins)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.embed_dropout = nn.Dropout(config.dropout)  # the training model's (no weights)
        self.backbone = build_backbone(config.backbone_config())
        self.post_init()

    def forward(self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None,
                past_key_values: MixerCache | None = None, inputs_embeds: torch.Tensor | None = None,
                use_cache: bool | None = None, **kwargs: Any) -> BaseModelOutputWithPast:
        """attention_mask [B, past + T]: 1 on real tokens, 0 on padding (left padding in batched generation); its
        last T columns go to every mixer as ``mask``. Positions are counted by the mixers over real tokens only, so
        position_ids are not used."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids and inputs_embeds")
        h = self.embed_dropout(self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds)
        mask = None
        if attention_mask is not None:
            mask = attention_mask[:, -h.shape[1]:].bool()
            if bool(mask.all()):
                mask = None  # no padding: the mixers' unmasked paths
        if past_key_values is not None and not isinstance(past_key_values, MixerCache):
            raise TypeError(f"past_key_values must be a MixerCache (the mixers' states), got "
                            f"{type(past_key_values).__name__}")
        use_cache = past_key_values is not None if use_cache is None else use_cache
        past = past_key_values.states if past_key_values is not None and past_key_values.states else None
        h, states = self.backbone(h, mask=mask, states=past, use_cache=use_cache)
        cache = None
        if use_cache:  # updated in place, as transformers' own caches are
            cache = past_key_values if past_key_values is not None else MixerCache()
            cache.states, cache.seen_tokens = states, cache.seen_tokens + h.shape[1]
        return BaseModelOutputWithPast(last_hidden_state=h, past_key_values=cache)


class MixerLMForCausalLM(MixerLMPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: MixerLMConfig):
        super().__init__(config)
        self.model = MixerLMModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def forward(self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None,
                past_key_values: MixerCache | None = None, inputs_embeds: torch.Tensor | None = None,
                labels: torch.LongTensor | None = None, use_cache: bool | None = None,
                logits_to_keep: int | torch.Tensor = 0, **kwargs: Any) -> CausalLMOutputWithPast:
        """labels [B, T]: the inputs themselves (shifted here), -100 where no loss is taken."""
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, past_key_values=past_key_values,
                         inputs_embeds=inputs_embeds, use_cache=use_cache)
        h = out.last_hidden_state
        if isinstance(logits_to_keep, int):
            h = h[:, -logits_to_keep:] if logits_to_keep else h
        else:
            h = h[:, logits_to_keep]
        logits = self.lm_head(h)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(),
                                   ignore_index=IGNORE_INDEX)
        return CausalLMOutputWithPast(loss=loss, logits=logits, past_key_values=out.past_key_values)


AutoConfig.register(MixerLMConfig.model_type, MixerLMConfig, exist_ok=True)
AutoModelForCausalLM.register(MixerLMConfig, MixerLMForCausalLM, exist_ok=True)
