"""A Lightning checkpoint as a file (written by one process) or as a sharded folder (FSDP with sharded state: one
file of weights and optimiser state per rank, ``.metadata`` and Lightning's ``meta.pt`` with everything else;
docs/training.md#multi-device). Both are read here into the same dictionary, in one process."""
from __future__ import annotations

from pathlib import Path

import torch

SHARDED_MARKER = "meta.pt"  # Lightning's file of the non-tensor state in a sharded checkpoint folder


def is_sharded(path) -> bool:
    return Path(path).is_dir() and (Path(path) / SHARDED_MARKER).is_file()


def exists(path) -> bool:
    """Whether ``path`` is a checkpoint file or a sharded checkpoint folder."""
    return Path(path).is_file() or is_sharded(path)


def load(path) -> dict:
    """The whole checkpoint (``state_dict``, ``optimizer_states``, ``global_step``, ...) on the CPU; a sharded one
    is gathered from its shards (as Lightning's ``consolidate_checkpoint`` does)."""
    if not is_sharded(path):
        return torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    from lightning.fabric.utilities.load import _load_distributed_checkpoint
    from lightning.pytorch.utilities.consolidate_checkpoint import _format_checkpoint

    return _format_checkpoint(_load_distributed_checkpoint(Path(path)))


def shapes_and_step(path) -> tuple[dict[str, torch.Size], int]:
    """The model's tensor shapes by name and the global step, without reading a sharded checkpoint's tensors."""
    if not is_sharded(path):
        checkpoint = load(path)
        return {k: v.shape for k, v in checkpoint["state_dict"].items()}, int(checkpoint.get("global_step", 0))
    from torch.distributed.checkpoint import FileSystemReader

    tensors = FileSystemReader(str(path)).read_metadata().state_dict_metadata
    meta = torch.load(Path(path) / SHARDED_MARKER, map_location="cpu", weights_only=False)
    shapes = {k.removeprefix("model."): v.size for k, v in tensors.items() if k.startswith("model.")}
    return shapes, int(meta.get("global_step", 0))
