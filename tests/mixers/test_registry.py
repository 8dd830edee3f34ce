import subprocess
import sys
from pathlib import Path

import pytest

from mixers import Mixer, MixerConfig, get_mixer, mixer_names, register_mixer
from train import main

REPO = Path(__file__).resolve().parents[2]


def test_builtin_mixers_listed(capsys):
    assert "attention" in mixer_names()
    assert main(["--list-mixers"]) == 0
    assert "attention" in capsys.readouterr().out


def test_registering_two_mixers_under_one_name_is_an_error():
    with pytest.raises(ValueError, match="already registered"):
        @register_mixer("attention")
        class Impostor(Mixer):
            Config = MixerConfig


def test_register_requires_a_config_dataclass_and_a_mixer():
    with pytest.raises(TypeError):
        register_mixer("not_a_mixer")(object)


def test_unknown_mixer_lists_the_registered_ones():
    with pytest.raises(KeyError, match="registered mixers: .*attention"):
        get_mixer("nope")


def test_user_mixer_from_a_module_outside_the_repository(tmp_path, user_mixer_source):
    (tmp_path / "my_mixers.py").write_text(user_mixer_source)
    argv = ["model.plugins=[my_mixers]", "model.layers=[cummean,attention]", "model.mixers.cummean.scale=0.5",
            "trainer.max_steps=3", "trainer.val_check_interval=3", "data.val_examples=8", "logging.wandb=false",
            f"logging.out_dir={tmp_path / 'runs'}", "trainer.enable_progress_bar=false"]
    env = {"PYTHONPATH": f"{tmp_path}:{REPO}", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, str(REPO / "train.py"), *argv], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "done:" in result.stdout
    config = next((tmp_path / "runs" / "mqar").glob("*/config.yaml")).read_text()
    assert "cummean" in config and "scale: 0.5" in config


def test_user_mixer_from_a_file_path(tmp_path, user_mixer_source):
    plugin = tmp_path / "file_plugin.py"
    plugin.write_text(user_mixer_source.replace('"cummean"', '"cummean_file"'))
    from configs import compose_config

    cfg = compose_config([f"model.plugins=[{plugin}]", "model.layers=[cummean_file]"])
    assert "cummean_file" in cfg.model.mixers
