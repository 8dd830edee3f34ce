"""The Lightning strategy that ``trainer.strategy`` names (docs/training.md#multi-device).

``fsdp`` is Lightning's FSDPStrategy set up for the backbone: one FSDP unit per block (the embedding, head and final
norm stay in the root unit), each block's activations recomputed in the backward pass when
``model.checkpointing=true``, bf16 (or fp16) compute with fp32 gradient reduction under a ``*-mixed`` precision,
and sharded checkpoints (a folder of one file per rank, written and read in parallel). Any other name (``ddp``,
``auto``, ...) is Lightning's own.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import torch
from lightning.pytorch.strategies import FSDPStrategy

from .atomic import replace_folder
from .backbone import Block
from .language_model import LanguageModel
from .run_dir import RunError

LOW_PRECISION = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


class BlockFSDP(FSDPStrategy):
    """Lightning's FSDPStrategy with sharded checkpoints renamed into place, and on the CPU as well: torch's FSDP runs
    there (gloo) when told the device, where Lightning passes only a CUDA device index (and refuses the accelerator
    for its own class alone). The tests run it on the CPU to check sharding, checkpoints and resumes; on a GPU the
    model is wrapped by Lightning's code unchanged."""

    def _setup_model(self, model):
        if self.root_device.type != "cpu":
            return super()._setup_model(model)
        from lightning.fabric.strategies.fsdp import _setup_activation_checkpointing
        from torch.distributed.fsdp import FullyShardedDataParallel

        model = FullyShardedDataParallel(model, cpu_offload=self.cpu_offload, sharding_strategy=self.sharding_strategy,
                                         mixed_precision=self.mixed_precision_config, device_id=self.root_device,
                                         **self.kwargs)
        _setup_activation_checkpointing(model, self._activation_checkpointing_kwargs)
        return model

    def save_checkpoint(self, checkpoint, filepath, storage_options=None) -> None:
        """Every rank writes its shard into a staging folder beside the checkpoint, which rank 0 then renames into
        place: a crash or a full disk mid-write leaves the previous checkpoint whole (lit_modules/atomic.py)."""
        path = Path(self.broadcast(str(filepath)))
        staging = path.with_name(f".{path.name}.partial")
        if self.global_rank == 0:
            shutil.rmtree(staging, ignore_errors=True)
        self.barrier()
        super().save_checkpoint(checkpoint, staging, storage_options)
        self.barrier()
        if self.global_rank == 0:
            replace_folder(staging, path)
        self.barrier()


def fsdp_mixed_precision(precision: str):
    """Parameters gathered and computed in the low precision, gradients reduced in fp32, or None (all fp32).
    Lightning's own bf16-mixed for FSDP reduces the gradients in bf16 as well."""
    from torch.distributed.fsdp import MixedPrecision

    low = LOW_PRECISION.get(precision)
    return None if low is None else MixedPrecision(param_dtype=low, reduce_dtype=torch.float32)


def build_strategy(name: str, module, precision: str):
    """The strategy for Lightning's Trainer: ``name`` itself except for ``fsdp``. For FSDP, the backbone's own
    per-block checkpointing is switched off: the FSDP policy checkpoints the same blocks, inside their units."""
    if name != "fsdp":
        return name
    if not isinstance(module, LanguageModel):  # FSDP gathers weights in every forward: every rank must run the same
        # number of evaluation batches, which the language models' loaders ensure (datamodules/loader.py)
        raise RunError(f"trainer.strategy=fsdp: only for language models; train {type(module).__name__} with "
                       f"trainer.strategy=ddp")
    backbone = module.backbone
    checkpointing = backbone.checkpointing
    backbone.checkpointing = False
    return BlockFSDP(auto_wrap_policy={Block}, activation_checkpointing_policy={Block} if checkpointing else None,
                     mixed_precision=fsdp_mixed_precision(precision), state_dict_type="sharded")
