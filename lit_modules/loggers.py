"""The run's loggers: metrics.csv always (written atomically, lit_modules/atomic.py) and W&B when
``logging.wandb``, with an identity that never collides: the W&B run id is the run folder's own (run.json), the
group is the comparison (``logging.group``) or the experiment and layer pattern, and the tags name the expanded
layer stack. The run summary gets the parameter count and the recurrent state size."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from .atomic_writers import AtomicCSVLogger


def describe_layers(layers: list[str]) -> str:
    """A short name of a layer stack: [gdn, gdn, gdn, attention] x 2 -> '(gdn*3,attention)*2';
    [attention, attention] -> 'attention*2'; [prism, attention] -> 'prism,attention'."""
    n = len(layers)
    period = next(p for p in range(1, n + 1) if n % p == 0 and layers == layers[:p] * (n // p))
    runs: list[list] = []  # run-length encoding of one period
    for name in layers[:period]:
        if runs and runs[-1][0] == name:
            runs[-1][1] += 1
        else:
            runs.append([name, 1])
    times = n // period
    if len(runs) == 1:
        name, count = runs[0]
        return name if count * times == 1 else f"{name}*{count * times}"
    body = ",".join(f"{name}*{count}" if count > 1 else name for name, count in runs)
    return body if times == 1 else f"({body})*{times}"


def eval_seq_len(data: dict) -> int | None:
    """The longest sequence the model is evaluated on (state sizes of attention are taken there)."""
    if data.get("val_settings"):
        return max(int(s[0]) for s in data["val_settings"])
    for key in ("seq_len", "max_len", "maxlen", "block_size"):
        if data.get(key):
            return int(data[key])
    return None


def model_sizes(module, config: dict) -> dict:
    """Parameters (tied weights once) and the recurrent state size at the evaluation length."""
    sizes = {"params": sum(p.numel() for p in module.parameters())}
    try:
        sizes["state_size"] = int(module.backbone.state_size(eval_seq_len(config["data"])))
    except (ValueError, TypeError, AttributeError, NotImplementedError):  # no length, or no state_size()
        pass
    return sizes


def wandb_mode(logging) -> str:
    """logging.wandb_mode, else $WANDB_MODE, else online with a WANDB_API_KEY and offline without."""
    return logging["wandb_mode"] or os.environ.get("WANDB_MODE") or (
        "online" if os.environ.get("WANDB_API_KEY") else "offline")


def build_loggers(config: dict, run_dir: Path, layers: list[str], run_id: str | None, resume_step: int | None):
    """run_id: the W&B run id from run.json (None on ranks other than 0, which log nothing)."""
    from lightning.pytorch.loggers import WandbLogger

    csv_logger = AtomicCSVLogger(run_dir)
    if resume_step is not None and run_id is not None:
        csv_logger.experiment.keep_rows_before(resume_step)
    loggers = [csv_logger]
    logging = config["logging"]
    if logging["wandb"]:
        mode = wandb_mode(logging)
        pattern = describe_layers(layers)
        tags = list(logging["tags"]) + [f"layers:{pattern}"[:64]] + [f"mixer:{m}" for m in dict.fromkeys(layers)]
        loggers.append(WandbLogger(
            project=logging["project"], group=logging["group"] or f"{config['experiment']}-{pattern}"[:128],
            name=run_dir.name, id=run_id, resume="allow", tags=list(dict.fromkeys(tags)), save_dir=str(run_dir),
            mode=mode, config=config, job_type=logging.get("job_type")))
    return loggers


def record_sizes(loggers, sizes: dict) -> None:
    """Put the model's sizes into the W&B run summary (rank 0)."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.summary.update(sizes)


def finish_wandb(failed: bool = False) -> None:
    """Lightning's WandbLogger reuses a W&B run still open in the process: close it when a run ends."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish(exit_code=1 if failed else 0)
