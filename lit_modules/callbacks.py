"""Callbacks that make a run resumable and stop it safely: the RNG states in every checkpoint, a stop at the first
non-finite loss or gradient norm (no checkpoint of a diverged model is ever written), and a checkpoint at the
current step when the process is told to stop (SIGTERM, SIGINT, SIGUSR1)."""
from __future__ import annotations

import random
import signal
import threading
from pathlib import Path

import torch
from lightning.pytorch import Callback

from .optim import apply_settings
from .run_dir import Diverged, Interrupted, checkpoint_file


class RNGState(Callback):
    """Saves and restores the torch (CPU and CUDA) and Python RNG states with every checkpoint, so dropout and
    sampling after a resume draw the same numbers as an uninterrupted run. Validation inside fit leaves the RNG
    states as it found them (its loaders draw seeds from the global RNG): where and how often a run validates,
    e.g. once more where it stopped, never changes its training."""

    _after_step = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # the last hook before a validation inside fit creates its loader iterator (which draws a seed)
        self._after_step = self.state_dict()

    def on_validation_end(self, trainer, pl_module) -> None:  # before the checkpoint callbacks save
        if trainer.state.fn == "fit" and self._after_step is not None:
            self.load_state_dict(self._after_step)

    def state_dict(self) -> dict:
        state = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict) -> None:
        torch.set_rng_state(state["torch"])
        random.setstate(state["python"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


class BestValidation(Callback):
    """The validation metrics of the selected checkpoint: those of the validation whose monitored metric was the
    best so far (strictly better, as ModelCheckpoint decides; NaN never is), kept in checkpoints so that a resumed
    run still knows them. ``metrics`` holds them with the validation's ``step``."""

    def __init__(self, monitor: str, mode: str):
        self.monitor, self.mode = monitor, mode
        self.metrics: dict[str, float] = {}

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        current = float(trainer.callback_metrics[self.monitor])
        best = self.metrics.get(self.monitor)
        better = best is None or (current > best if self.mode == "max" else current < best)  # False for NaN
        if better:
            self.metrics = {k: float(v) for k, v in trainer.callback_metrics.items()
                            if k.startswith("val/") and v.numel() == 1}
            self.metrics["step"] = trainer.global_step

    def state_dict(self) -> dict:
        return {"metrics": dict(self.metrics)}

    def load_state_dict(self, state: dict) -> None:
        self.metrics = dict(state["metrics"])


class LogStepAfterResume(Callback):
    """Lightning restores its logging step (``_batches_that_stepped``) one behind the optimiser step from a
    checkpoint saved at the end of a validation, so each resume would shift metrics.csv's later rows by one more
    step and overwrite earlier ones. With one optimiser it equals the optimiser step: set it so."""

    def on_train_start(self, trainer, pl_module) -> None:
        self._first_batch = True

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._first_batch:  # the first hook after the epoch loop has restored its counters
            self._first_batch = False
            trainer.fit_loop.epoch_loop._batches_that_stepped = trainer.global_step


class OptimSettingsOnResume(Callback):
    """A resumed run trains with its own ``optim`` settings (e.g. an ``optim.lr`` override), not the ones the
    checkpoint restored into the optimiser and schedule."""

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.ckpt_path and trainer.lr_scheduler_configs:
            apply_settings(trainer.optimizers[0], trainer.lr_scheduler_configs[0].scheduler, pl_module.cfg.optim)


class ValidateAtEnd(Callback):
    """The last training step is always validated and checkpointed: when ``val_check_interval`` does not divide
    ``max_steps``, the steps after the last validation would be in no checkpoint (``max_time`` already stops
    the same way)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if 0 < trainer.max_steps <= trainer.global_step:
            trainer.should_stop = True  # Lightning validates (and checkpoints) at a step that stops the run


class StopOnDivergence(Callback):
    """Stops training at the first non-finite training loss or gradient norm (before clipping), by raising
    Diverged. The values are checked on the device every step and read on the host only at logging steps,
    before every validation and before every checkpoint (one device sync each, as the loggers need anyway), so
    the check never stalls the GPU's queue; a checkpoint is refused while any parameter is non-finite. The
    diverged steps after the first are never saved: the last good checkpoint stays the run's last.ckpt."""

    def __init__(self):
        self._first = None  # device tensors: [optimiser step, which (0 loss, 1 gradient norm), value] of the first

    def on_train_start(self, trainer, pl_module) -> None:
        self._first = torch.tensor([-1.0, -1.0, 0.0], device=pl_module.device, dtype=torch.float64)

    def _note(self, value: torch.Tensor, step: int, which: int) -> None:
        value = value.detach().reshape(()).to(torch.float64)
        bad = ~torch.isfinite(value) & (self._first[0] < 0)
        record = torch.stack([torch.full_like(value, step), torch.full_like(value, which), value])
        self._first = torch.where(bad, record, self._first)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if getattr(trainer.precision_plugin, "scaler", None) is not None:
            return  # fp16 loss scaling skips steps with non-finite gradients by design
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        if grads and self._first is not None:
            self._note(torch.nn.utils.get_total_norm(grads), trainer.global_step + 1, 1)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._first is None:
            return
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            self._note(loss, trainer.global_step, 0)
        if pl_module.device.type == "cpu" or trainer.global_step % max(1, trainer.log_every_n_steps) == 0:
            self.check(trainer)

    def on_validation_start(self, trainer, pl_module) -> None:
        if trainer.state.fn == "fit":
            self.check(trainer)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        self.check(trainer)
        bad = [name for name, p in pl_module.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise Diverged(f"training diverged by step {trainer.global_step}: parameter {bad[0]} is not finite "
                           f"(no checkpoint written)")

    def check(self, trainer) -> None:
        """Raise Diverged on every rank when any rank has seen a non-finite value."""
        if self._first is None:
            return
        step, which, value = self._first.tolist()
        if not trainer.strategy.reduce_boolean_decision(step >= 0, all=False):
            return
        if step < 0:
            raise Diverged("training diverged on another rank")
        metric = "train/loss" if which == 0 else "the gradient norm"
        raise Diverged(f"training diverged at step {int(step)}: {metric} = {value}")


class SharedRunDir(Callback):
    """The run folder as rank 0 chose it, on every rank. The other ranks (started by torchrun or srun beside rank
    0, or by Lightning's DDP launcher) cannot know a new run's folder before the process group exists; setup is
    the first hook after it does."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.run_dir = Path(trainer.strategy.broadcast(str(self.run_dir), src=0))


class StopOnSignal(Callback):
    """SIGTERM, SIGINT (Ctrl-C) and SIGUSR1 (SLURM's warning before its time limit, with ``--signal=USR1@90``)
    finish the current optimiser step, save ``checkpoint`` (a checkpoint the run resumes from exactly) and stop by
    raising Interrupted. A second Ctrl-C stops at once. Under DDP every rank stops at the same step: the ranks
    agree after each step on whether any of them was signalled."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)

    def __init__(self, run_dir: SharedRunDir):
        self.run_dir = run_dir
        self.received: int | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        # After Lightning installed its own SIGTERM handler (which stops between steps without a checkpoint, and
        # differently on each rank): ours replace it; Lightning restores the original handlers at its teardown.
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                signal.signal(signum, self._handle)

    def _handle(self, signum, frame) -> None:
        if signum == signal.SIGINT and self.received == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = self.received or signum

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.fit_loop.epoch_loop._should_accumulate():  # mid-accumulation: gradients are not checkpointed
            return
        stop = self.received is not None
        if trainer.world_size > 1:
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if stop:
            # Lightning logs this step's row after this hook, which the raise below skips: log it now, or a stop
            # at a logging step would lose that row from metrics.csv
            trainer._logger_connector.on_batch_end()
            trainer._logger_connector.update_train_step_metrics()
            path = checkpoint_file(self.run_dir.run_dir)
            trainer.save_checkpoint(path)
            raise Interrupted(self.received or signal.SIGTERM, trainer.global_step, path)
