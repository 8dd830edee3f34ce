"""Lightning's checkpoint writer and metrics.csv writer, writing through lit_modules/atomic.py: a failed write
(a full disk) leaves the previous checkpoint or metrics.csv whole."""
from __future__ import annotations

import csv
import io
import os
import shutil
from pathlib import Path

import torch
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.plugins.io import TorchCheckpointIO

from .atomic import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, with the checkpoint renamed into place from the same folder."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if "://" in str(path):  # remote storage: fsspec's own transaction
            return super().save_checkpoint(checkpoint, path, storage_options)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()  # serialised first (as Lightning does): a failed write is then a plain OSError
        torch.save(checkpoint, buffer)
        with atomic_write(path, "wb") as f:
            f.write(buffer.getbuffer())


class AtomicMetricsWriter(ExperimentWriter):
    """Lightning's metrics.csv writer, rewriting the file atomically at each flush (the old rows are copied, the new
    appended) instead of appending in place. It never deletes an existing metrics.csv: the run folder is the run's
    own (lit_modules/run_dir.py), and a resumed run keeps the rows logged before its checkpoint."""

    def _check_log_dir_exists(self) -> None:  # Lightning's version deletes metrics.csv and warns
        pass

    def keep_rows_before(self, step: int) -> None:
        """Resuming at ``step``: drop the rows logged at or after it (they are logged again)."""
        path = Path(self.metrics_file_path)
        if not path.is_file():
            return
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            self.metrics_keys = sorted(reader.fieldnames or [])
            rows = [row for row in reader if row.get("step") and int(row["step"]) < step]
        self._write(rows)

    def save(self) -> None:
        if not self.metrics:
            return
        new_keys = self._record_new_keys()
        path = Path(self.metrics_file_path)
        if new_keys or not path.is_file():  # a new header: every old row is rewritten under it
            rows = []
            if path.is_file():
                with path.open(newline="") as f:
                    rows = list(csv.DictReader(f))
            self._write(rows + self.metrics)
        else:
            with atomic_write(path, "w", newline="") as out, path.open(newline="") as old:
                shutil.copyfileobj(old, out)
                csv.DictWriter(out, fieldnames=self.metrics_keys).writerows(self.metrics)
        self.metrics = []

    def _write(self, rows: list[dict]) -> None:
        with atomic_write(self.metrics_file_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.metrics_keys)
            writer.writeheader()
            writer.writerows(rows)


class AtomicCSVLogger(CSVLogger):
    """CSVLogger writing ``<save_dir>/metrics.csv`` through AtomicMetricsWriter. No hparams.yaml: the run folder's
    config.yaml holds the resolved config."""

    def __init__(self, save_dir: str | os.PathLike):
        super().__init__(save_dir=str(save_dir), name="", version="")

    @property
    @rank_zero_experiment
    def experiment(self) -> AtomicMetricsWriter:
        if self._experiment is None:
            self._experiment = AtomicMetricsWriter(log_dir=self.log_dir)
        return self._experiment

    def log_hyperparams(self, params=None) -> None:
        pass
