"""Train a sequence model: compose the config, build datamodule + task module + trainer, fit (and test).

    python train.py                                   # default job: MQAR, offline, a few minutes on a CPU
    python train.py experiment=lm_char model.layers='[prism,attention]' trainer.max_steps=200
    python train.py experiment=lm_char --print-config # the resolved config, without training
    python train.py --list-mixers [model.plugins='[my_mixers.py]']
    python train.py ckpt_path=runs/lm_char/NAME       # resume that run with its own config (overrides on top)
    python train.py experiment=lm_char ckpt_path=last # resume the latest run of that experiment

Exit codes: 0 finished; 2 a mistake in the command line, config or data (one line, nothing written);
1 the run failed (diverged, a file could not be written, or trainer.eval_tasks could not run after a finished
run; the last good checkpoint and, after training, summary.json are kept);
128 + the signal's number when SIGTERM, SIGINT or SIGUSR1 stopped it (after saving a checkpoint to resume from).
"""
from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

from configs import ConfigError, compose_config, config_to_dict

USAGE = __doc__
LOCATING_KEYS = ("experiment", "logging.out_dir", "logging.name")  # what finds the run that ckpt_path=last means


def _key(arg: str) -> str:
    return arg.split("=", 1)[0]


def compose_run_config(argv: list[str]):
    """The run's config: the experiment with the command line on top or, when resuming a run (``ckpt_path=last``,
    ``best`` or a run folder), that run's own config.yaml with the command line on top."""
    from lit_modules.resume import is_run_dir, resume_target
    from lit_modules.run_dir import RunError

    ckpt = next((a.split("=", 1)[1] for a in reversed(argv) if _key(a) == "ckpt_path"), None)
    if ckpt in ("last", "best"):
        where = compose_config([a for a in argv if _key(a) in LOCATING_KEYS])
        run_dir, _ = resume_target(Path(where.logging.out_dir) / where.experiment, ckpt, where.logging.name)
    elif ckpt and is_run_dir(ckpt):
        run_dir = Path(ckpt)
    else:
        return compose_config(argv)
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        raise RunError(f"ckpt_path={ckpt}: {run_dir} has no config.yaml (not a run folder of train.py)")
    cfg = compose_config([a for a in argv if _key(a) != "experiment"], base=saved)
    cfg.ckpt_path = ckpt if ckpt == "best" else str(run_dir)
    cfg.logging.out_dir = str(run_dir.parents[len(Path(cfg.experiment).parts)])  # run_dir: out/<experiment>/<name>
    cfg.logging.name = run_dir.name
    return cfg


def validation_schedule(every) -> dict:
    """Lightning's arguments for trainer.val_check_interval: a number of training batches, counted across epochs,
    or "epoch": Lightning's own end-of-epoch validation, so that the epoch is each rank's share of the data."""
    if every == "epoch":
        return {"val_check_interval": 1.0, "check_val_every_n_epoch": 1}
    return {"val_check_interval": every, "check_val_every_n_epoch": None}


def build_trainer(cfg, run_dir, module, loggers):
    """run_dir: the SharedRunDir callback, which tells every rank rank 0's run folder."""
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, TQDMProgressBar

    from datamodules.loader import ConsumedBatches
    from lit_modules.atomic_writers import AtomicCheckpointIO
    from lit_modules.callbacks import (BestValidation, LogStepAfterResume, OptimSettingsOnResume, RNGState,
                                      StopOnDivergence, StopOnSignal, ValidateAtEnd)
    from lit_modules.strategy import build_strategy

    # The run folder is this run's own (lit_modules/run_dir.py): a resumed run's checkpoints are expected there.
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    t = cfg.trainer
    monitor, mode = module.monitor
    checkpoints = run_dir.run_dir / "checkpoints"
    callbacks = [
        run_dir, StopOnDivergence(), ValidateAtEnd(), LogStepAfterResume(), OptimSettingsOnResume(),
        ModelCheckpoint(dirpath=checkpoints, filename="best", monitor=monitor, mode=mode, save_top_k=1,
                        save_last=True, enable_version_counter=False),
        ConsumedBatches(), RNGState(), LearningRateMonitor(logging_interval="step"), BestValidation(monitor, mode),
        StopOnSignal(run_dir),  # after ConsumedBatches: its checkpoint counts the step's batch as consumed
    ]
    if t.ckpt_every_n_steps:
        callbacks.append(ModelCheckpoint(dirpath=checkpoints, filename="last", save_last=False,
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
        max_steps=t.max_steps, max_time=t.max_time, max_epochs=-1, **validation_schedule(t.val_check_interval),
        limit_val_batches=limit_val, accelerator=t.accelerator, devices=t.devices,
        num_nodes=t.num_nodes, strategy=build_strategy(t.strategy, module, precision), precision=precision,
        gradient_clip_val=t.gradient_clip_val,
        accumulate_grad_batches=t.accumulate_grad_batches, log_every_n_steps=t.log_every_n_steps,
        deterministic=t.deterministic, detect_anomaly=t.detect_anomaly, enable_progress_bar=t.enable_progress_bar,
        logger=loggers, callbacks=callbacks, plugins=[AtomicCheckpointIO()], use_distributed_sampler=False, num_sanity_val_steps=0,
        default_root_dir=str(run_dir.run_dir), enable_model_summary=False)


def build_inputs(cfg, config: dict):
    """The datamodule (set up for fitting) and the task module; a mistake in either is a RunError."""
    from datamodules.registry import get_datamodule
    from lit_modules import task_module
    from lit_modules.run_dir import RunError

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
    return datamodule, module


def run(cfg, argv: list[str] | None = None) -> dict:
    """Train (and test where the task has a test set) one configuration; returns the final metrics. ``argv``: the
    command line, recorded in the run folder's run.json."""
    import lightning as L
    import torch

    from lit_modules.distributed import is_launch_rank_zero
    from lit_modules.loggers import finish_wandb
    from lit_modules.resume import changed_settings, check_checkpoint_matches, check_strategy_reads, resume_target
    from lit_modules.run_dir import held_run_dir

    config = config_to_dict(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    # CPU: denormal floats (tiny activations and Adam moments late in training) made the default job 2-3x slower
    torch.set_flush_denormal(True)
    root = Path(cfg.logging.out_dir) / cfg.experiment
    resumed_dir, ckpt_path = resume_target(root, cfg.ckpt_path, cfg.logging.name)
    check_strategy_reads(ckpt_path, cfg.trainer.strategy)
    datamodule, module = build_inputs(cfg, config)
    resume_step = None
    if ckpt_path:
        changed = changed_settings(resumed_dir, config) if resumed_dir else []
        resume_step = check_checkpoint_matches(module, ckpt_path, changed)
    # Only now, with every input checked, does rank 0 claim the run folder; the other ranks learn it from rank 0.
    leader = is_launch_rank_zero()
    with held_run_dir(root, resumed_dir, cfg.logging.name, leader) as run_dir:
        try:
            return fit(cfg, run_dir, datamodule, module, ckpt_path, resume_step, leader, argv,
                       resumed=resumed_dir is not None)
        except BaseException:
            finish_wandb(failed=True)
            raise


def fit(cfg, run_dir: Path, datamodule, module, ckpt_path, resume_step, leader: bool, argv, resumed: bool) -> dict:
    """Write the run's config and identity (rank 0), fit, evaluate and write the summary. ``resumed``: the run goes
    on in its own folder (else it is a new run, from ``ckpt_path``'s weights if given)."""
    from omegaconf import OmegaConf

    from lit_modules import checkpoints
    from lit_modules.atomic import write_text_atomic
    from lit_modules.callbacks import SharedRunDir
    from lit_modules.compile import compile_for_training
    from lit_modules.loggers import build_loggers, model_sizes, record_sizes
    from lit_modules.run_dir import Diverged, checkpoint_file, run_identity, write_summary

    config = config_to_dict(cfg)
    identity = run_identity(run_dir, list(argv or [])) if leader else None
    if leader:  # without the resume itself (run.json has the commands): config.yaml stays a recipe
        saved = OmegaConf.merge(cfg, {"ckpt_path": None if resumed else ckpt_path})
        write_text_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(saved, resolve=True))
        if hasattr(datamodule, "save_tokenizer"):  # text: export, evaluate.py and generate.py read it
            datamodule.save_tokenizer(run_dir / "tokenizer")
    loggers = build_loggers(config, run_dir, module.backbone.layer_names, identity and identity["id"], resume_step)
    shared = SharedRunDir(run_dir)
    trainer = build_trainer(cfg, shared, module, loggers)
    compile_for_training(trainer, module.backbone, cfg.trainer.compile)  # in place: checkpoints keep their keys
    sizes = model_sizes(module, config)
    if leader:
        record_sizes(loggers, sizes)
    started = time.time()
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    except Diverged as err:
        last = checkpoint_file(shared.run_dir)
        if trainer.is_global_zero:
            write_summary(shared.run_dir, {"status": "diverged", "error": str(err), "step": trainer.global_step,
                                           **sizes, "run_dir": str(shared.run_dir)})
        kept = f"the last good checkpoint is {last}" if checkpoints.exists(last) else \
            "no checkpoint was saved before it"
        raise Diverged(f"{err}; {kept}") from None
    metrics = evaluate(trainer, module, datamodule)
    metrics.update(status="finished", step=trainer.global_step, seconds=round(time.time() - started, 1),
                   run_dir=str(shared.run_dir), **sizes, global_zero=trainer.is_global_zero)
    if trainer.is_global_zero:
        write_summary(shared.run_dir, metrics)  # before the evaluation: a task that fails leaves the run finished
    if cfg.trainer.eval_tasks and trainer.is_global_zero:
        from evaluate import evaluate_after_training

        metrics.update(evaluate_after_training(shared.run_dir, list(cfg.trainer.eval_tasks), loggers))
        write_summary(shared.run_dir, metrics)
    for logger in loggers:
        logger.finalize("success")
        if hasattr(logger, "experiment") and hasattr(logger.experiment, "finish"):
            logger.experiment.finish()  # W&B: flush the run's records before anyone reads them
    return metrics


def evaluate(trainer, module, datamodule) -> dict:
    """The validation metrics of the selected checkpoint (val/..., its step as best_step) and of the last
    validation (last/val/...; validated now when this process trained nothing: a run resumed at its last step),
    and the test metrics at the selected checkpoint where the task has a test set."""
    from lightning.pytorch.utilities.model_helpers import is_overridden

    from lit_modules.callbacks import BestValidation

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    if module.monitor[0] not in metrics:
        for result in trainer.validate(module, datamodule=datamodule, verbose=False):
            metrics.update({k: float(v) for k, v in result.items()})
    best = next(c for c in trainer.callbacks if isinstance(c, BestValidation)).metrics
    if best:
        metrics |= {f"last/{k}": v for k, v in metrics.items() if k.startswith("val/")}
        metrics |= {k: v for k, v in best.items() if k != "step"} | {"best_step": best["step"]}
    if is_overridden("test_step", module) and is_overridden("test_dataloader", datamodule):
        best = trainer.checkpoint_callback.best_model_path or None
        for result in trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False):
            metrics.update({k: float(v) for k, v in result.items()})
    return metrics


def summary_line(cfg, metrics: dict) -> str:
    headline = ("val/", "test/")
    shown = [f"{k}={metrics[k]:.4g}" for k in sorted(metrics)
             if k.startswith(headline) and ("@" not in k or k.endswith(("ndcg@10", "hr@10")))]
    return (f"done: experiment={cfg.experiment} layers={list(cfg.model.layers)}x{cfg.model.repeat} "
            f"steps={metrics['step']} {' '.join(shown)} time={metrics['seconds']}s run_dir={metrics['run_dir']}")


def main(argv: list[str] | None = None) -> int:
    from evaluate import EvaluationError
    from lit_modules.atomic import WriteFailed
    from lit_modules.distributed import is_launch_rank_zero
    from lit_modules.run_dir import Diverged, Interrupted, RunError

    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(USAGE)
        return 0
    flags = {"--list-mixers", "--print-config"} & set(argv)
    argv = [a for a in argv if a not in flags]
    say = is_launch_rank_zero()  # one message per run, not one per rank
    try:
        if "--list-mixers" in flags:
            from mixers.registry import get_mixer, mixer_names

            compose_config(argv)  # imports model.plugins
            for name in mixer_names():
                cls = get_mixer(name)
                print(f"{name:12s} {cls.__module__}.{cls.__qualname__}")
            return 0
        cfg = compose_run_config(argv)
        if "--print-config" in flags:
            from omegaconf import OmegaConf

            print(OmegaConf.to_yaml(cfg, resolve=True), end="")
            return 0
        metrics = run(cfg, argv)
    except (ConfigError, RunError) as err:
        if say:
            print(f"error: {err}", file=sys.stderr)
        return 2
    except (Diverged, WriteFailed, EvaluationError) as err:
        if say:
            print(f"error: {err}", file=sys.stderr)
        return 1
    except Interrupted as err:
        if say:
            print(f"stopped: {err}; resume with: python train.py ckpt_path={err.checkpoint.parent.parent}",
                  file=sys.stderr)
        return 128 + err.signum
    if metrics["global_zero"]:
        print(summary_line(cfg, metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
