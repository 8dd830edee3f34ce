import subprocess
import sys
import typing
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
    with pytest.raises(ValueError, match="Impostor registers the mixer name .attention., which mixers.attention.Attention already has; rename it"):
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


def test_a_mixer_built_in_python_rejects_a_value_outside_its_literal_fields():
    checked = 0
    for name in mixer_names():
        cls = get_mixer(name)
        for field, hint in typing.get_type_hints(cls.Config).items():
            if typing.get_origin(hint) is typing.Literal:
                with pytest.raises(ValueError, match=rf"{name}\.{field}: invalid value 'nosuch', expected one of "
                                                     rf"\['{typing.get_args(hint)[0]}'"):
                    cls(32, cls.Config(**{field: "nosuch"}))
                checked += 1
    assert checked >= 5  # PRISM's solver, anchor, gain, nonlinearity and decay at least


def test_a_plugin_config_with_a_literal_field_is_checked_too(tmp_path):
    plugin = tmp_path / "literal_plugin.py"
    plugin.write_text(
        "from dataclasses import dataclass\n"
        "from typing import Literal, Optional\n"
        "from mixers import Mixer, MixerConfig, register_mixer\n"
        "@dataclass\n"
        "class C(MixerConfig):\n"
        "    mode: Optional[Literal['fast', 'exact']] = None\n"
        "@register_mixer('literal_plugin')\n"
        "class M(Mixer):\n"
        "    Config = C\n")
    from mixers.registry import import_plugins

    import_plugins([str(plugin)])
    cls = get_mixer("literal_plugin")
    cls(8, cls.Config(mode="exact"))
    cls(8, cls.Config())
    with pytest.raises(ValueError, match=r"literal_plugin\.mode: invalid value 'slow'"):
        cls(8, cls.Config(mode="slow"))
