"""Train a sequence model: compose the config, build datamodule + task module + trainer, fit (and test).

    python train.py                                   # default job: MQAR, offline, a few minutes on a CPU
    python train.py experiment=lm_char model.layers='[prism,attention]' trainer.max_steps=200
    python train.py experiment=lm_char --print-config # the resolved config, without training
    python train.py --list-mixers
    python train.py experiment=lm_char ckpt_path=last # resume the latest run of that experiment
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
from datetime import datetime
from pathlib import Path

from configs import ConfigError, compose_config, config_to_dict

USAGE = __doc__


class RunError(RuntimeError):
    """A problem with the run's inputs (data, checkpoint) reported without a traceback."""


def resolve_run_dir(cfg) -> tuple[Path, str | None]:
    """The run's folder and the checkpoint to resume from (``ckpt_path``: last | best | a file)."""
    root = Path(cfg.logging.out_dir) / cfg.experiment
    ckpt = cfg.ckpt_path
    if ckpt in ("last", "best"):
        if cfg.logging.name:
            run_dir = root / cfg.logging.name
        else:  # the most recent run of this experiment that has that checkpoint
            runs = sorted((p.parent.parent for p in root.glob(f"*/checkpoints/{ckpt}.ckpt")),
                          key=lambda p: p.stat().st_mtime)
            if not runs:
                raise RunError(f"ckpt_path={ckpt}: no run of experiment {cfg.experiment!r} under {root} has a "
                               f"{ckpt}.ckpt checkpoint")
            run_dir = runs[-1]
        path = run_dir / "checkpoints" / f"{ckpt}.ckpt"
        if not path.is_file():
            raise RunError(f"ckpt_path={ckpt}: {path} does not exist")
        return run_dir, str(path)
    # DDP re-runs this script once per rank: the first process picks the name and the others inherit it.
    name = cfg.logging.name or os.environ.get("PRISM_RUN_NAME") or datetime.now().strftime("%Y%m%d-%H%M%S")
    os.environ["PRISM_RUN_NAME"] = name
    if ckpt is not None and not Path(ckpt).is_file():
        raise RunError(f"ckpt_path: checkpoint file {ckpt!r} does not exist")
    return root / name, ckpt


def check_checkpoint_matches(module, ckpt_path: str) -> int:
    """Refuse a checkpoint of another model before Lightning fails deep inside load_state_dict; returns the
    checkpoint's global step."""
    import torch

    try:
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False, mmap=True)
        saved, step = checkpoint["state_dict"], int(checkpoint.get("global_step", 0))
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise RunError(f"ckpt_path: {ckpt_path} is not a readable Lightning checkpoint ({err})") from None
    own = module.state_dict()
    missing = sorted(set(own) - set(saved))
    unexpected = sorted(set(saved) - set(own))
    reshaped = sorted(k for k in set(own) & set(saved) if own[k].shape != saved[k].shape)
    if missing or unexpected or reshaped:
        parts = []
        if reshaped:
            k = reshaped[0]
            parts.append(f"{len(reshaped)} tensors of other shapes (e.g. {k}: checkpoint "
                         f"{tuple(saved[k].shape)}, model {tuple(own[k].shape)})")
        if missing:
            parts.append(f"{len(missing)} tensors missing from it (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} tensors the model does not have (e.g. {unexpected[0]})")
        raise RunError(f"ckpt_path: {ckpt_path} was saved from a different model: " + "; ".join(parts))
    return step


def keep_metrics_before(csv_logger, step: int) -> None:
    """Resuming into a run folder: Lightning's CSV logger deletes metrics.csv when it starts, so put back the rows
    logged before the checkpoint's step (those after it are logged again) under the header the new rows extend."""
    import csv

    from lightning.pytorch.utilities import rank_zero_only

    path = Path(csv_logger.log_dir) / "metrics.csv"
    if rank_zero_only.rank != 0 or not path.is_file():
        return
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        fields = sorted(reader.fieldnames or [])
        rows = [row for row in reader if row.get("step") and int(row["step"]) < step]
    writer = csv_logger.experiment  # creating it deletes the file
    with path.open("w", newline="") as f:
        out = csv.DictWriter(f, fieldnames=fields)
        out.writeheader()
        out.writerows(rows)
    writer.metrics_keys = list(fields)  # new keys extend this header; the file is then rewritten with them


def build_loggers(cfg, run_dir: Path, config: dict, resume_step: int | None = None):
    from lightning.pytorch.loggers import CSVLogger, WandbLogger

    loggers = [CSVLogger(save_dir=str(run_dir), name="", version="")]
    if resume_step is not None:
        keep_metrics_before(loggers[0], resume_step)
    if cfg.logging.wandb:
        from lit_modules.run_summary import wandb_mode

        mode = wandb_mode(cfg.logging)
        tags = list(cfg.logging.tags) + ["layers:" + "-".join(dict.fromkeys(map(str, cfg.model.layers)))]
        wandb = WandbLogger(project=cfg.logging.project, group=cfg.logging.group or cfg.experiment,
                            name=run_dir.name, tags=tags, save_dir=str(run_dir), mode=mode, config=config,
                            id=run_dir.name.replace("/", "-"), resume="allow", job_type=cfg.logging.job_type)
        loggers.append(wandb)
    return loggers


def validation_interval(cfg, datamodule) -> int:
    """trainer.val_check_interval in training batches: as given, or the length of one epoch for "epoch"."""
    value = cfg.trainer.val_check_interval
    if value == "epoch":
        return max(1, len(datamodule.train_dataloader()))
    if isinstance(value, int) and value >= 1:
        return value
    raise RunError(f"trainer.val_check_interval: a number of training batches (>= 1) or 'epoch', got {value!r}")


def build_trainer(cfg, run_dir: Path, module, loggers, val_check_interval: int):
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, TQDMProgressBar

    from datamodules.loader import ConsumedBatches
    from lit_modules.callbacks import BestValidation, RNGState
    from lit_modules.run_summary import ModelSizeSummary

    t = cfg.trainer
    monitor, mode = module.monitor
    callbacks = [
        ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor=monitor, mode=mode, save_top_k=1,
                        save_last=True, enable_version_counter=False),
        ConsumedBatches(), RNGState(), LearningRateMonitor(logging_interval="step"), BestValidation(monitor, mode), ModelSizeSummary(),
    ]
    if t.ckpt_every_n_steps:
        callbacks.append(ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", save_last=False,
                                         every_n_train_steps=t.ckpt_every_n_steps, enable_version_counter=False))
    if t.early_stopping_patience:
        callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=t.early_stopping_patience))
    if t.enable_progress_bar:
        callbacks.append(TQDMProgressBar(refresh_rate=max(1, t.log_every_n_steps)))
    precision = t.precision
    if precision == "auto":
        gpu = t.accelerator in ("gpu", "cuda") or (t.accelerator == "auto" and torch.cuda.is_available())
        precision = "bf16-mixed" if gpu else "32-true"
    limit_val = t.limit_val_batches if t.limit_val_batches <= 1.0 else int(t.limit_val_batches)
    return L.Trainer(
        max_steps=t.max_steps, max_time=t.max_time, max_epochs=-1, val_check_interval=val_check_interval,
        check_val_every_n_epoch=None,
        limit_val_batches=limit_val, accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes,
        strategy=t.strategy, precision=precision, gradient_clip_val=t.gradient_clip_val,
        accumulate_grad_batches=t.accumulate_grad_batches, log_every_n_steps=t.log_every_n_steps,
        deterministic=t.deterministic, enable_progress_bar=t.enable_progress_bar, logger=loggers,
        callbacks=callbacks, use_distributed_sampler=False, num_sanity_val_steps=0, default_root_dir=str(run_dir),
        enable_model_summary=False)


def run(cfg) -> dict:
    """Train (and test where the task has a test set) one configuration; returns the final metrics."""
    try:
        return _run(cfg)
    finally:
        os.environ.pop("PRISM_RUN_NAME", None)  # the next run in this process picks its own name


def _run(cfg) -> dict:
    import lightning as L
    import torch
    from omegaconf import OmegaConf

    from lightning.pytorch.utilities import rank_zero_info
    from lightning.pytorch.utilities.model_helpers import is_overridden

    from datamodules.registry import get_datamodule
    from lit_modules import task_module
    from lit_modules.callbacks import BestValidation
    from lit_modules.compile import compile_for_training

    config = config_to_dict(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    # CPU: denormal floats (tiny activations and Adam moments late in training) made the default job 2-3x slower
    torch.set_flush_denormal(True)
    run_dir, ckpt_path = resolve_run_dir(cfg)
    max_time = cfg.trainer.max_time
    if max_time is not None and not re.fullmatch(r"\d+:\d\d:\d\d:\d\d", max_time):
        raise RunError(f"trainer.max_time: expected DD:HH:MM:SS (e.g. 00:02:30:00), got {max_time!r}")
    try:
        datamodule = get_datamodule(cfg.data.name)(cfg.data, seed=cfg.seed)
        datamodule.prepare_data()
        datamodule.setup("fit")
    except (ValueError, OSError) as err:  # bad input data: name it and stop before any output is written
        raise RunError(f"data: {err}") from None
    try:
        module = task_module(datamodule.task).from_datamodule(config, datamodule)
    except ValueError as err:  # a value the mixers reject (e.g. prism.steps=5, a head count that does not divide)
        raise RunError(f"model: {err}") from None
    resume_step = check_checkpoint_matches(module, ckpt_path) if ckpt_path else None
    interval = validation_interval(cfg, datamodule)
    if cfg.trainer.val_check_interval == "epoch":
        rank_zero_info(f"validation every epoch: {interval} training batches")
    run_dir.mkdir(parents=True, exist_ok=True)
    loggers = build_loggers(cfg, run_dir, config, resume_step)
    trainer = build_trainer(cfg, run_dir, module, loggers, interval)
    compile_for_training(trainer, module.backbone, cfg.trainer.compile)  # in place: checkpoints keep their keys
    if trainer.is_global_zero:
        OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
        if hasattr(datamodule, "save_tokenizer"):  # text: export, evaluate.py and generate.py read it
            datamodule.save_tokenizer(run_dir / "tokenizer")
    started = time.time()
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    # val/... of the selected checkpoint (the one the test ran on), the last validation's under last/val/...
    best = next(c for c in trainer.callbacks if isinstance(c, BestValidation)).metrics
    if best:
        metrics |= {f"last/{k}": v for k, v in metrics.items() if k.startswith("val/")}
        metrics |= {k: v for k, v in best.items() if k != "step"} | {"best_step": best["step"]}
    if is_overridden("test_step", module) and is_overridden("test_dataloader", datamodule):
        best = trainer.checkpoint_callback.best_model_path or None
        for result in trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False):
            metrics.update({k: float(v) for k, v in result.items()})
    metrics.update(step=trainer.global_step, seconds=round(time.time() - started, 1), run_dir=str(run_dir),
                   params=sum(p.numel() for p in module.parameters()),  # tied weights once
                   global_zero=trainer.is_global_zero)
    if cfg.trainer.eval_tasks and trainer.is_global_zero:
        from evaluate import evaluate_after_training

        metrics.update(evaluate_after_training(run_dir, list(cfg.trainer.eval_tasks), loggers))
    if trainer.is_global_zero:
        (run_dir / "summary.json").write_text(json.dumps(metrics, indent=2))
    for logger in loggers:
        logger.finalize("success")
        if hasattr(logger, "experiment") and hasattr(logger.experiment, "finish"):
            logger.experiment.finish()  # W&B: flush the run's records before anyone reads them
    return metrics


def summary_line(cfg, metrics: dict) -> str:
    headline = ("val/", "test/")
    shown = [f"{k}={metrics[k]:.4g}" for k in sorted(metrics)
             if k.startswith(headline) and ("@" not in k or k.endswith(("ndcg@10", "hr@10")))]
    return (f"done: experiment={cfg.experiment} layers={list(cfg.model.layers)}x{cfg.model.repeat} "
            f"steps={metrics['step']} {' '.join(shown)} time={metrics['seconds']}s run_dir={metrics['run_dir']}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(USAGE)
        return 0
    if "--list-mixers" in argv:
        from mixers.registry import get_mixer, mixer_names

        for name in mixer_names():
            cls = get_mixer(name)
            print(f"{name:12s} {cls.__module__}.{cls.__qualname__}")
        return 0
    print_only = "--print-config" in argv
    argv = [a for a in argv if a != "--print-config"]
    try:
        cfg = compose_config(argv)
        if print_only:
            from omegaconf import OmegaConf

            print(OmegaConf.to_yaml(cfg, resolve=True), end="")
            return 0
        metrics = run(cfg)
    except (ConfigError, RunError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if metrics["global_zero"]:
        print(summary_line(cfg, metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
