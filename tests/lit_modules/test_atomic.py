"""Atomic writes under a real OS fault: a file-size limit (RLIMIT_FSIZE, no root needed) makes the write fail
mid-file with EFBIG, as a full disk fails it with ENOSPC. The previous file must survive whole, and no temporary
file may be left."""
import csv
import resource
from contextlib import contextmanager

import pytest
import torch

from lit_modules.atomic import WriteFailed, atomic_write
from lit_modules.atomic_writers import AtomicCheckpointIO, AtomicMetricsWriter


@contextmanager
def file_size_limit(limit: int):
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))  # Python ignores SIGXFSZ: the write raises EFBIG
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_a_write_that_fails_midway_keeps_the_previous_file(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text("old and complete")
    with file_size_limit(64 * 1024), pytest.raises(WriteFailed, match="summary.json.*previous version is kept"):
        with atomic_write(path, "wb") as f:
            f.write(b"x" * (1 << 20))
    assert path.read_text() == "old and complete"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_checkpoint_failing_midway_leaves_the_last_good_checkpoint(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"w": torch.ones(4)}, path)
    with file_size_limit(64 * 1024), pytest.raises(WriteFailed):
        io.save_checkpoint({"w": torch.zeros(1 << 18)}, path)  # 1 MiB
    assert torch.equal(torch.load(path)["w"], torch.ones(4))
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]


def test_metrics_writer_rewrites_whole_rows_and_keeps_rows_before_a_resume(tmp_path):
    writer = AtomicMetricsWriter(str(tmp_path))
    for step in range(3):
        writer.log_metrics({"train/loss": 1.0 + step}, step)
    writer.save()
    writer.log_metrics({"val/loss": 9.0}, 3)  # a new column: every row is rewritten under the new header
    writer.save()
    writer.log_metrics({"train/loss": 5.0}, 4)  # same columns: old rows copied, the new one appended
    writer.save()
    with (tmp_path / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows] == ["0", "1", "2", "3", "4"] and rows[3]["val/loss"] == "9.0"
    resumed = AtomicMetricsWriter(str(tmp_path))  # a resumed run: the file is kept, not deleted
    resumed.keep_rows_before(3)
    with (tmp_path / "metrics.csv").open() as f:
        assert [r["step"] for r in csv.DictReader(f)] == ["0", "1", "2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv"]
