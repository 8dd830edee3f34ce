"""Next-token language modelling (also used for synthetic recall tasks, whose labels mark only the answers)."""
from __future__ import annotations

import math
import resource
import sys
import time
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import build_backbone
from .base import TaskModule
from .distributed import IGNORE_INDEX, mean_over_targets, sums_over_ranks
from .init import torch_default_init

# Lightning warns whenever a LightningModule overrides a batch-transfer hook while a LightningDataModule is in use;
# LanguageModel's hook is meant for every datamodule.
warnings.filterwarnings("ignore", message="You have overridden `on_before_batch_transfer` in `LightningModule`")
# Lightning recommends sync_dist for epoch-level logs under DDP; the validation metrics are sums over all ranks already.
warnings.filterwarnings("ignore", message=r"It is recommended to use `self.log\('val/")

# Dense bf16 peak TFLOP/s of GPUs whose name contains the key (for perf/mfu).
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "4090": 165.0}


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 30
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss_kib / (2 ** 30 if sys.platform == "darwin" else 2 ** 20)


def label_index(labels: torch.Tensor) -> torch.Tensor:
    """Flat positions of the labelled tokens (label != IGNORE_INDEX)."""
    return (labels.reshape(-1) != IGNORE_INDEX).nonzero().squeeze(1)


class LanguageModel(TaskModule):
    monitor = ("val/loss", "min")

    def __init__(self, cfg: dict, vocab_size: int):
        super().__init__(cfg)
        model_cfg = self.cfg.model
        self.embed = nn.Embedding(vocab_size, model_cfg.d_model)
        nn.init.normal_(self.embed.weight, std=model_cfg.init_std)
        self.embed_dropout = nn.Dropout(model_cfg.dropout)  # as GPT-2 and nanoGPT drop the embeddings
        self.backbone = build_backbone(model_cfg)
        self.head = nn.Linear(model_cfg.d_model, vocab_size, bias=False)
        if model_cfg.tie_embeddings:
            self.head.weight = self.embed.weight
        else:
            nn.init.normal_(self.head.weight, std=model_cfg.init_std)
        if model_cfg.init == "torch":
            torch_default_init(self)
        self._val_sums: dict[str, torch.Tensor] = {}
        self._window: dict = {}

    @classmethod
    def from_datamodule(cls, cfg: dict, datamodule) -> "LanguageModel":
        return cls(cfg, vocab_size=datamodule.vocab_size)

    # ---- model -------------------------------------------------------------------------------------------
    def _embed(self, input_ids):
        return self.embed_dropout(self.embed(input_ids))

    def forward(self, input_ids, *, cu_seqlens=None, mask=None, states=None, use_cache=False):
        h, states = self.backbone(self._embed(input_ids), mask=mask, cu_seqlens=cu_seqlens, states=states,
                                  use_cache=use_cache)
        return self.head(h), states

    def on_before_batch_transfer(self, batch, dataloader_idx):
        # Found on the host, so that selecting the labelled positions on the GPU needs no device sync.
        if isinstance(batch, dict) and "labels" in batch:
            batch["label_index"] = label_index(batch["labels"])
        return batch

    def _logits_and_labels(self, batch):
        """Logits [N, V] and targets [N] at the N labelled positions only, and their flat positions in the batch.
        MQAR and the probes label a few positions per sequence: the head, the fp32 logits and the loss are then
        a fraction of the dense ones (same values)."""
        input_ids, labels, cu_seqlens = batch["input_ids"], batch["labels"], batch.get("cu_seqlens")
        if cu_seqlens is not None:  # documents packed across the batch: one stream, state reset at boundaries
            input_ids = input_ids.reshape(1, -1)
        h, _ = self.backbone(self._embed(input_ids), cu_seqlens=cu_seqlens)
        index = batch.get("label_index")
        if index is None:  # called outside a Trainer
            index = label_index(labels)
        return self.head(h.flatten(0, 1)[index]), labels.reshape(-1)[index], index

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token: 3x the forward of backbone and output head."""
        d, vocab = self.embed.embedding_dim, self.embed.num_embeddings
        return 3 * (self.backbone.flops(seq_len) / seq_len + 2 * d * vocab)

    # ---- training ----------------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        logits, targets, _ = self._logits_and_labels(batch)
        loss_sum = F.cross_entropy(logits.float(), targets, reduction="sum")
        # a fill, not a copy from the host: a host-to-device copy would synchronise the GPU in every step
        valid = targets.new_full((), targets.numel())
        self.log("train/loss", loss_sum.detach() / valid.clamp(min=1), prog_bar=True, sync_dist=False)
        return mean_over_targets(loss_sum, valid)

    # ---- throughput: over each logging interval (data loading included), so that the GPU is synchronised once
    # per interval; a sync in every step would keep the host from queueing the next step while the GPU runs one.
    def _restart_window(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self._window = {"start": time.perf_counter(), "tokens_by_len": {}, "step": self.trainer.global_step}

    def on_train_start(self):
        self._restart_window()

    def on_validation_end(self):
        if self.trainer.state.fn == "fit":  # validation inside fit: its time is not training throughput
            self._restart_window()

    def on_train_batch_end(self, outputs, batch, batch_idx):
        window = self._window
        if not window:  # fit did not start through on_train_start
            return
        # tokens per sequence length: the FLOPs per token depend on it, and are counted only when logged
        by_len, seq_len = window["tokens_by_len"], batch["input_ids"].shape[-1]
        by_len[seq_len] = by_len.get(seq_len, 0) + batch["input_ids"].numel() * self.trainer.world_size
        step = self.trainer.global_step  # the step Lightning logs at after this hook
        if step == window["step"] or step % max(1, self.trainer.log_every_n_steps):
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = max(time.perf_counter() - window["start"], 1e-9)
        self.log("perf/tokens_per_s", sum(by_len.values()) / seconds, prog_bar=True)
        self.log("perf/peak_mem_gib", peak_memory_gib(self.device))
        peak = self.cfg.trainer.get("peak_tflops") or self._detected_peak_tflops()
        if peak:
            flops = sum(self.flops_per_token(n) * tokens for n, tokens in by_len.items())
            self.log("perf/mfu", flops / seconds / self.trainer.world_size / (peak * 1e12))
        self._restart_window()

    def _detected_peak_tflops(self) -> float | None:
        if self.device.type != "cuda":
            return None
        name = torch.cuda.get_device_name(self.device)
        return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)

    # ---- evaluation --------------------------------------------------------------------------------------
    def on_validation_epoch_start(self):
        self._val_sums = {}

    def _accumulate(self, key: str, value: torch.Tensor):
        self._val_sums[key] = self._val_sums.get(key, 0) + value.detach().double()

    def validation_step(self, batch, batch_idx):
        logits, targets, index = self._logits_and_labels(batch)
        loss_sum = F.cross_entropy(logits.float(), targets, reduction="sum")
        correct = logits.argmax(-1) == targets
        self._accumulate("loss_sum", loss_sum)
        self._accumulate("correct", correct.sum())
        self._accumulate("count", targets.new_tensor(targets.numel()))
        if "slice" in batch:  # accuracy by difficulty (e.g. number of key-value pairs), one per sequence
            slices = batch["slice"].repeat_interleave(batch["labels"].shape[-1])[index]
            for value in batch["slice"].unique().tolist():
                rows = slices == value
                self._accumulate(f"correct@{value}", correct[rows].sum())
                self._accumulate(f"count@{value}", rows.sum())

    def validation_metrics(self) -> dict[str, float]:
        """val/loss, val/ppl, val/acc (and val/acc@<slice>) over the whole validation set: sums of every rank's
        share (datamodules/loader.py splits it), so the means are exact however the shares fall."""
        sums = sums_over_ranks(self._val_sums, self.device)
        if not sums:
            return {}
        count = max(float(sums["count"]), 1.0)
        loss = float(sums["loss_sum"]) / count
        metrics = {"val/loss": loss, "val/ppl": math.exp(min(loss, 50.0)), "val/acc": float(sums["correct"]) / count}
        for key in sums:
            if key.startswith("correct@"):
                value = key.split("@", 1)[1]
                metrics[f"val/acc@{value}"] = float(sums[key]) / max(float(sums[f"count@{value}"]), 1.0)
        return metrics

    def on_validation_epoch_end(self):
        for name, value in self.validation_metrics().items():  # the same on every rank: no sync_dist
            self.log(name, value, prog_bar=name in ("val/loss", "val/acc"), sync_dist=False)

    # ---- generation --------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, max_new_tokens: int, *, temperature: float = 1.0,
                 top_k: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample continuations of input_ids [B, T] with each layer's recurrent state (one token per step)."""
        was_training = self.training
        self.eval()
        logits, states = self(input_ids, use_cache=True)
        out = [input_ids]
        for _ in range(max_new_tokens):
            next_logits = logits[:, -1].float()
            if temperature <= 0:
                token = next_logits.argmax(-1, keepdim=True)
            else:
                next_logits = next_logits / temperature
                if top_k:
                    kth = next_logits.topk(min(top_k, next_logits.shape[-1]), -1).values[:, -1:]
                    next_logits = next_logits.masked_fill(next_logits < kth, float("-inf"))
                token = torch.multinomial(next_logits.softmax(-1), 1, generator=generator)
            out.append(token)
            logits, states = self(token, states=states, use_cache=True)
        self.train(was_training)
        return torch.cat(out, dim=1)
