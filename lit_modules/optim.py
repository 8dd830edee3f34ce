"""AdamW/Adam with weight decay only on weight matrices (never on norms, biases or gate/decay parameters), and a warmup + cosine/linear/constant schedule stepped per optimiser step."""
from __future__ import annotations

import math

import torch
from torch import nn

def _decays(name: str, param: nn.Parameter) -> bool:
    # Vectors are biases, norm weights and per-head gate/decay parameters (A_log, dt_bias, ...): never decayed.
    return param.ndim >= 2 and "norm" not in name


def _unwrapped_name(name: str) -> str:
    """The parameter's name in the model as built: FSDP (and its activation checkpointing) insert these."""
    return name.replace("_fsdp_wrapped_module.", "").replace("_checkpoint_wrapped_module.", "")


def decayed_names(module: nn.Module) -> set[str]:
    """The names of the parameters that decay. FSDP shards each parameter into a flat 1-D piece: ask before it
    wraps the model (TaskModule.setup)."""
    return {name for name, param in module.named_parameters() if _decays(name, param)}


def parameter_groups(module: nn.Module, weight_decay: float, decayed: set[str] | None = None) -> list[dict]:
    decayed = decayed_names(module) if decayed is None else decayed
    decay, no_decay = [], []
    for name, param in module.named_parameters():
        if param.requires_grad:
            (decay if _unwrapped_name(name) in decayed else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_factor(step: int, *, warmup_steps: int, max_steps: int, schedule: str, min_lr_ratio: float) -> float:
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    if schedule == "linear":
        return 1.0 - (1.0 - min_lr_ratio) * progress
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def configure_optimizers_from(module: nn.Module, optim_cfg, max_steps: int, decayed: set[str] | None = None) -> dict:
    groups = parameter_groups(module, optim_cfg["weight_decay"], decayed)
    cls = torch.optim.AdamW if optim_cfg["name"] == "adamw" else torch.optim.Adam
    if cls is torch.optim.Adam:  # Adam's weight_decay is L2 in the gradient: keep it off unless asked
        groups[0]["weight_decay"] = optim_cfg["weight_decay"]
    optimizer = cls(groups, lr=optim_cfg["lr"], betas=tuple(optim_cfg["betas"]), eps=optim_cfg["eps"])
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(
        step, warmup_steps=optim_cfg["warmup_steps"], max_steps=max_steps, schedule=optim_cfg["schedule"],
        min_lr_ratio=optim_cfg["min_lr_ratio"]))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step", "frequency": 1}}


def apply_settings(optimizer: torch.optim.Optimizer, scheduler, optim_cfg) -> None:
    """Put ``optim_cfg``'s lr, betas, eps and weight decay into a restored optimiser and schedule: restoring a
    checkpoint brings back the saved values, and a resumed run must go on with its own (overridden) ones."""
    for group in optimizer.param_groups:
        group.update(betas=tuple(optim_cfg["betas"]), eps=optim_cfg["eps"], initial_lr=optim_cfg["lr"])
    optimizer.param_groups[0]["weight_decay"] = optim_cfg["weight_decay"]  # the decayed group (parameter_groups)
    scheduler.base_lrs = [optim_cfg["lr"]] * len(optimizer.param_groups)
    for group, base, factor in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
        group["lr"] = base * factor(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
