"""Faults a run meets and what it does about them, through train.py's command line: every user mistake stops it
in one line with exit code 2 and no run folder; divergence stops it in one line with exit code 1 and the last
good checkpoint kept; a full disk (a real 1.2 MB tmpfs) fails the write, not the files already there."""
import re
import subprocess
from pathlib import Path

import lightning.pytorch  # noqa: F401 - imported before any capsys test: its log handler keeps the stderr it sees
import pytest
import torch

from train import main

REPO = Path(__file__).resolve().parents[1]
QUIET = ["trainer.enable_progress_bar=false", "logging.wandb=false"]
TINY = ["data.vocab_size=64", "data.train_settings=[[32,4]]", "data.val_settings=[[32,4]]", "data.val_examples=32",
        "data.batch_size=16", "model.d_model=32", "trainer.val_check_interval=2", *QUIET]


def error_line(err: str) -> str:
    """The run's one error line; no traceback around it."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def readme_plugin(folder: Path) -> Path:
    """README.md's "your own mixer" example, pasted as is into my_mixers.py."""
    text = (REPO / "README.md").read_text()
    code = re.search(r"```python\n(# my_mixers\.py.*?)```", text, re.S).group(1)
    path = folder / "my_mixers.py"
    path.write_text(code)
    return path


def plugin_reusing_a_builtin_name(folder: Path) -> list[str]:
    path = folder / "clash.py"
    path.write_text("from mixers import Mixer, MixerConfig, register_mixer\n\n\n"
                    "@register_mixer('attention')\nclass MyAttention(Mixer):\n    Config = MixerConfig\n")
    return [*TINY, f"model.plugins=[{path}]"]


def nul_bytes(folder: Path) -> list[str]:
    path = folder / "zeros.txt"
    path.write_bytes(b"\0" * 5000)
    return ["experiment=lm_char", f"data.path={path}", f"data.cache_dir={folder / 'cache'}", *QUIET]


def negative_item_ids(folder: Path) -> list[str]:
    path = folder / "interactions.txt"
    path.write_text("".join(f"{u} {' '.join(str(i) for i in range(1, 8))}\n" for u in range(1, 20)) + "20 3 -4 5 6\n")
    return ["experiment=rec_beauty", f"data.path={path}", *QUIET]


@pytest.mark.parametrize("mistake, message", [
    (lambda d: [*TINY, "model.layers=[]"], "config key 'model.layers': model.layers is empty"),
    (lambda d: [*TINY, "model.d_model=30", "model.mixers.attention.num_heads=4"],
     "model.mixers.attention.num_heads=4 must divide model.d_model=30"),
    (lambda d: [*TINY, "optim.lr=-0.001"], "config key 'optim.lr': -0.001 is not allowed; it must be > 0"),
    (lambda d: [*TINY, "trainer.max_steps=-5"], "config key 'trainer.max_steps': -5 is not allowed; it must be >= 1"),
    (lambda d: [*TINY, "trainer.max_steps=0"], "config key 'trainer.max_steps': 0 is not allowed"),
    (lambda d: [*TINY, "trainer.max_time=90s"], "config key 'trainer.max_time': '90s' is not allowed"),
    (plugin_reusing_a_builtin_name, "clash.MyAttention registers the mixer name 'attention', which "
                                    "mixers.attention.Attention already has; rename it"),
    (nul_bytes, "zeros.txt: NUL byte at byte offset 0 (line 1): a binary file, not text"),
    (negative_item_ids, "interactions.txt:20: item id -4 is negative"),
], ids=["empty-layers", "heads", "negative-lr", "negative-steps", "zero-steps", "max-time", "plugin-name",
        "nul-bytes", "negative-item-id"])
def test_a_mistake_stops_in_one_line_with_exit_code_2_and_no_run_folder(tmp_path, capsys, mistake, message):
    out = tmp_path / "runs"
    code = main([*mistake(tmp_path), f"logging.out_dir={out}"])
    assert code == 2
    assert message in error_line(capsys.readouterr().err)
    assert not out.exists()


def test_the_readme_plugin_example_works_as_pasted(tmp_path, monkeypatch, capsys):
    readme_plugin(tmp_path)
    monkeypatch.chdir(tmp_path)  # the README's commands name the plugin by its relative path
    code = main(["model.plugins=[my_mixers.py]", "model.layers=[running_mean,attention]", "model.repeat=1",
                 *TINY, "trainer.max_steps=2", f"logging.out_dir={tmp_path / 'runs'}"])
    assert code == 0, capsys.readouterr().err
    assert "layers=['running_mean', 'attention']" in capsys.readouterr().out


def test_list_mixers_includes_the_plugins(tmp_path, capsys):
    plugin = readme_plugin(tmp_path)
    assert main(["--list-mixers", f"model.plugins=[{plugin}]"]) == 0
    listed = capsys.readouterr().out
    assert re.search(r"^running_mean +my_mixers\.RunningMean$", listed, re.M) and "attention" in listed


def test_divergence_stops_in_one_line_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    out = tmp_path / "runs"
    assert main([*TINY, f"logging.out_dir={out}", "trainer.max_steps=2", "logging.name=d"]) == 0
    run_dir = out / "mqar" / "d"
    # resumed with an lr (overrides apply on top of the run's own config) that blows the weights up
    code = main([f"ckpt_path={run_dir}", "trainer.max_steps=40", "optim.lr=1e3", "optim.warmup_steps=0"])
    assert code == 1
    line = error_line(capsys.readouterr().err)
    found = re.search(r"diverged at step (\d+): (train/loss|the gradient norm) = (nan|inf)", line)
    assert found, line
    assert f"the last good checkpoint is {run_dir / 'checkpoints' / 'last.ckpt'}" in line
    for name in ("last", "best"):  # saved before the diverged step, and finite: no diverged state was saved
        checkpoint = torch.load(run_dir / "checkpoints" / f"{name}.ckpt", weights_only=False)
        assert 2 <= checkpoint["global_step"] < int(found.group(1))
        assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values())
    summary = (run_dir / "summary.json").read_text()
    assert '"status": "diverged"' in summary


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1.2 MB tmpfs: a real full disk (needs root; skipped where mount is refused)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1200k", "tmpfs", str(disk)],
                                 capture_output=True).returncode == 0
    except FileNotFoundError:
        mounted = False
    if not mounted:
        pytest.skip("mounting a tmpfs needs root")
    yield disk
    subprocess.run(["umount", str(disk)], capture_output=True)


def test_a_full_disk_fails_the_write_and_keeps_the_checkpoints_already_there(tiny_disk, capsys):
    # two 450 KB checkpoints fit; the next one's temporary file does not
    code = main([*TINY, f"logging.out_dir={tiny_disk}", "trainer.max_steps=8", "logging.name=full"])
    assert code == 1
    line = error_line(capsys.readouterr().err)
    assert "No space left on device" in line and "previous version is kept" in line
    run_dir = tiny_disk / "mqar" / "full"
    for name in ("last", "best"):
        assert torch.load(run_dir / "checkpoints" / f"{name}.ckpt", weights_only=False)["global_step"] == 2
    assert not [p for p in tiny_disk.rglob("*") if ".tmp-" in p.name]
    assert "step" in (run_dir / "metrics.csv").read_text().splitlines()[0]


def test_a_full_disk_leaves_no_partial_token_cache(tiny_disk, tmp_path, data_file, capsys):
    out = tmp_path / "runs"
    code = main(["experiment=lm_char", f"data.path={data_file('tinyshakespeare')}",  # 2.2 MB of tokens
                 f"data.cache_dir={tiny_disk}", f"logging.out_dir={out}", "logging.wandb=false"])
    assert code == 2
    assert "No space left on device" in error_line(capsys.readouterr().err)
    assert [p.name for p in tiny_disk.iterdir() if not p.name.endswith(".lock")] == []
    assert not out.exists()


def test_a_run_that_fails_before_its_first_step_leaves_no_folder(tmp_path):
    # a bug in a user's mixer surfaces in the first forward pass, after the run folder was claimed
    plugin = tmp_path / "broken.py"
    plugin.write_text("from mixers import Mixer, MixerConfig, register_mixer\n\n\n@register_mixer('broken')\n"
                      "class Broken(Mixer):\n    Config = MixerConfig\n\n"
                      "    def forward(self, x, **kwargs):\n        raise RuntimeError('a bug in my mixer')\n")
    out = tmp_path / "runs"
    with pytest.raises(RuntimeError, match="a bug in my mixer"):
        main([*TINY, f"model.plugins=[{plugin}]", "model.layers=[broken]", f"logging.out_dir={out}"])
    assert not list(out.glob("mqar/*"))
