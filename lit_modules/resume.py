"""Resuming a run: which run folder and checkpoint ``ckpt_path`` means, and whether the checkpoint fits the model
about to be trained (a mismatch is named in one line, before Lightning fails deep inside load_state_dict)."""
from __future__ import annotations

from pathlib import Path

import yaml

from . import checkpoints
from .run_dir import CHECKPOINTS, RunError, checkpoint_file


def resume_target(root: Path, ckpt_path: str | None, name: str | None) -> tuple[Path | None, str | None]:
    """(the run folder a resumed run goes on in, or None for a new run; the checkpoint file to load, or None).

    ``ckpt_path``: ``last`` | ``best`` (of run ``name``, else of the experiment's most recent run), a run folder
    (its last checkpoint), or a checkpoint file or sharded checkpoint folder (a new run starts from its weights and
    training state)."""
    if ckpt_path in ("last", "best"):
        if name:
            run_dir = root / name
        else:
            runs = sorted((p.parent.parent for p in root.glob(f"*/{CHECKPOINTS}/{ckpt_path}.ckpt")),
                          key=lambda p: p.stat().st_mtime)
            if not runs:
                raise RunError(f"ckpt_path={ckpt_path}: no run under {root} has a {ckpt_path}.ckpt checkpoint")
            run_dir = runs[-1]
        path = checkpoint_file(run_dir, ckpt_path)
        if not checkpoints.exists(path):
            raise RunError(f"ckpt_path={ckpt_path}: {path} does not exist")
        return run_dir, str(path)
    if ckpt_path is not None and is_run_dir(ckpt_path):
        run_dir = Path(ckpt_path)
        path = checkpoint_file(run_dir)
        if not checkpoints.exists(path):
            raise RunError(f"ckpt_path={ckpt_path}: the folder has no {CHECKPOINTS}/last.ckpt to resume from")
        return run_dir, str(path)
    if ckpt_path is not None and not checkpoints.exists(ckpt_path):
        raise RunError(f"ckpt_path: checkpoint file {ckpt_path!r} does not exist")
    return None, ckpt_path


def check_strategy_reads(ckpt_path: str | None, strategy: str) -> None:
    """A sharded checkpoint (FSDP's, one file per rank) loads only into FSDP, on any number of devices; a one-file
    checkpoint only into the other strategies (Lightning's FSDP would hand its optimiser states, which
    lit_modules/optim.py groups by weight decay, to other parameters)."""
    if not ckpt_path or checkpoints.is_sharded(ckpt_path) == (strategy == "fsdp"):
        return
    if strategy == "fsdp":
        raise RunError(f"ckpt_path: {ckpt_path} is a one-file checkpoint (DDP or one device); resume it with the "
                       f"strategy it was saved with, not trainer.strategy=fsdp")
    raise RunError(f"ckpt_path: {ckpt_path} is a sharded FSDP checkpoint; resume it with trainer.strategy=fsdp "
                   f"(on any number of devices), not trainer.strategy={strategy}")


def is_run_dir(path) -> bool:
    """A folder that is not itself a (sharded) checkpoint: a run folder as ``ckpt_path`` means."""
    return Path(path).is_dir() and not checkpoints.is_sharded(path)


def changed_settings(run_dir: Path, config: dict) -> list[str]:
    """``key=value`` of every model and data setting that differs from the run folder's config.yaml."""
    def flat(value, prefix: str) -> dict:
        if not isinstance(value, dict):
            return {prefix: value}
        return {k: v for key, item in value.items() for k, v in flat(item, f"{prefix}.{key}").items()}

    try:
        saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return []
    old, new = (flat({s: c.get(s) for s in ("model", "data")}, "") for c in (saved, config))
    return [f"{k[1:]}={new.get(k)}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


def check_checkpoint_matches(module, ckpt_path: str, changed: list[str]) -> int:
    """Refuse a checkpoint of another model before Lightning fails deep inside load_state_dict; ``changed``: the
    settings that differ from the resumed run's own config. Returns the checkpoint's global step."""
    try:
        saved, step = checkpoints.shapes_and_step(ckpt_path)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise RunError(f"ckpt_path: {ckpt_path} is not a readable Lightning checkpoint ({err})") from None
    own = module.state_dict()
    missing = sorted(set(own) - set(saved))
    unexpected = sorted(set(saved) - set(own))
    reshaped = sorted(k for k in set(own) & set(saved) if own[k].shape != saved[k])
    if missing or unexpected or reshaped:
        parts = []
        if reshaped:
            k = reshaped[0]
            parts.append(f"{len(reshaped)} tensors of other shapes (e.g. {k}: checkpoint "
                         f"{tuple(saved[k])}, model {tuple(own[k].shape)})")
        if missing:
            parts.append(f"{len(missing)} tensors missing from it (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} tensors the model does not have (e.g. {unexpected[0]})")
        if changed:
            raise RunError(f"{' '.join(changed)}: changes the shape of the resumed model ({'; '.join(parts)}); "
                           f"resume without it, or start a new run from the checkpoint file with another "
                           f"logging.name")
        raise RunError(f"ckpt_path: {ckpt_path} was saved from a different model: " + "; ".join(parts))
    return step
