"""The run configuration schema (OmegaConf structured configs). Sections whose schema depends on a choice
(``data`` on ``data.name``, ``model.mixers.<name>`` on the mixer) are validated against the chosen class's
own ``Config`` dataclass in compose.py. A field with a few allowed values is a ``Literal[...]``, which OmegaConf
checks (its error lists the allowed values)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Literal, Optional, Union


@dataclass
class ModelConfig:
    d_model: int = 128
    # One period of the layer pattern (mixer names), repeated `repeat` times; then every `insert_every`-th
    # layer (1-based) is replaced by `insert_mixer`: hybrid stacks are configuration.
    layers: List[str] = field(default_factory=lambda: ["attention", "attention"])
    repeat: int = 1
    insert_every: int = 0
    insert_mixer: str = "attention"
    # Hyperparameters per mixer name, checked against that mixer's Config dataclass.
    mixers: Dict[str, Any] = field(default_factory=dict)
    # Modules (dotted names or .py paths) imported before building, to register mixers of your own.
    plugins: List[str] = field(default_factory=list)
    mlp_hidden: Optional[int] = None  # SwiGLU width; default 8/3 * d_model rounded up to a multiple of 64
    norm_eps: float = 1e-6
    dropout: float = 0.0  # on the token embeddings and on each block's two residual branches (mixer, MLP)
    tie_embeddings: bool = True
    checkpointing: bool = False  # activation checkpointing per block
    init_std: float = 0.02
    # normal: every projection and embedding N(0, init_std) (mixers: their own init_std). torch: PyTorch's own
    # defaults, as nn.Linear and nn.Embedding initialise themselves (the PRISM authors' probing models).
    init: Literal["normal", "torch"] = "normal"


@dataclass
class OptimConfig:
    name: Literal["adamw", "adam"] = "adamw"
    lr: float = 1e-3
    betas: List[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    weight_decay: float = 0.1  # never applied to norms, biases, embeddings of gates (see lit_modules/optim.py)
    warmup_steps: int = 100
    schedule: Literal["cosine", "constant", "linear"] = "cosine"
    min_lr_ratio: float = 0.1


@dataclass
class TrainerConfig:
    max_steps: int = 1000
    # training batches between validations (counted across epochs), or "epoch": one pass over the training data
    # (the datamodule's epoch length, whatever the data set)
    val_check_interval: Union[int, str] = 200
    limit_val_batches: float = 1.0  # fraction (<= 1.0) or number of batches (> 1)
    accelerator: str = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "auto"  # auto: bf16-mixed on GPU, 32-true on CPU
    gradient_clip_val: float = 1.0
    accumulate_grad_batches: int = 1
    log_every_n_steps: int = 10
    ckpt_every_n_steps: Optional[int] = None  # default: at every validation
    early_stopping_patience: Optional[int] = None  # validations without improvement of the monitored metric
    max_time: Optional[str] = None  # wall-clock budget "DD:HH:MM:SS": training stops there, as at max_steps
    enable_progress_bar: bool = True
    deterministic: bool = False
    detect_anomaly: bool = False  # torch's anomaly detection: names the op that made a NaN (slow; for debugging)
    peak_tflops: Optional[float] = None  # for perf/mfu; known GPUs are detected
    # torch.compile the backbone in place (checkpoints keep their keys) in this mode; true = default, and
    # reduce-overhead / max-autotune replay CUDA graphs (lit_modules/compile.py, docs/training.md#compilation)
    compile: Union[bool, Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]] = False
    # lm-evaluation-harness tasks (names or task YAML files) run on the best checkpoint after training (evaluate.py)
    eval_tasks: List[str] = field(default_factory=list)


@dataclass
class LoggingConfig:
    out_dir: str = "runs"
    name: Optional[str] = None  # run name; default: a timestamp
    wandb: bool = True
    wandb_mode: Optional[str] = None  # online | offline | disabled; default offline without WANDB_API_KEY
    project: str = "prism"
    group: Optional[str] = None  # default: the experiment name
    job_type: Optional[str] = None  # W&B job type (compare.py: the pattern's label)
    tags: List[str] = field(default_factory=list)


@dataclass
class RunConfig:
    experiment: str = "mqar"
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    data: Any = field(default_factory=lambda: {"name": "mqar"})
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    ckpt_path: Optional[str] = None  # last | best | a path: resume (last) or start from that checkpoint
    compare: Optional[Dict[str, Any]] = None  # set by compare.py: label, pattern, setting, seed, lr of this run


def _positive(v) -> bool:
    return v > 0


def _at_least_one(v) -> bool:
    return v >= 1


def _unset_or_at_least_one(v) -> bool:
    return v is None or v >= 1


def _non_negative(v) -> bool:
    return v >= 0


# Rules on values that the types cannot say: key -> (the rule as the error states it, its test). Each is checked
# after composition, so a mistake stops the run before anything is written.
VALUE_RULES = {
    "seed": ("must be in 0..4294967295", lambda v: 0 <= v < 2 ** 32),
    "model.d_model": ("must be >= 1", _at_least_one),
    "model.repeat": ("must be >= 1", _at_least_one),
    "model.insert_every": ("must be >= 0 (0: no inserted layers)", _non_negative),
    "model.mlp_hidden": ("must be unset or >= 1", _unset_or_at_least_one),
    "model.norm_eps": ("must be > 0", _positive),
    "model.dropout": ("must be in [0, 1)", lambda v: 0 <= v < 1),
    "model.init_std": ("must be > 0", _positive),
    "optim.lr": ("must be > 0", _positive),
    "optim.betas": ("must be two values in [0, 1)", lambda v: len(v) == 2 and all(0 <= b < 1 for b in v)),
    "optim.eps": ("must be > 0", _positive),
    "optim.weight_decay": ("must be >= 0", _non_negative),
    "optim.warmup_steps": ("must be >= 0", _non_negative),
    "optim.min_lr_ratio": ("must be in [0, 1]", lambda v: 0 <= v <= 1),
    "trainer.max_steps": ("must be >= 1 (the number of optimiser steps to train)", _at_least_one),
    "trainer.val_check_interval": ("must be >= 1 (training steps between validations) or 'epoch'",
                                   lambda v: v == "epoch" or (isinstance(v, int) and v >= 1)),
    "trainer.limit_val_batches": ("must be > 0 (a fraction <= 1.0 or a number of batches)", _positive),
    "trainer.num_nodes": ("must be >= 1", _at_least_one),
    "trainer.gradient_clip_val": ("must be >= 0 (0: no clipping)", _non_negative),
    "trainer.accumulate_grad_batches": ("must be >= 1", _at_least_one),
    "trainer.log_every_n_steps": ("must be >= 1", _at_least_one),
    "trainer.ckpt_every_n_steps": ("must be unset or >= 1", _unset_or_at_least_one),
    "trainer.early_stopping_patience": ("must be unset or >= 1", _unset_or_at_least_one),
    "trainer.max_time": ("must be DD:HH:MM:SS, e.g. 00:02:30:00",
                         lambda v: v is None or re.fullmatch(r"\d+:\d\d:\d\d:\d\d", v) is not None),
}
