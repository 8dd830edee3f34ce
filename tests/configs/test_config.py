from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from configs import ConfigError, compose_config
from train import main


def test_default_composes_to_the_mqar_job():
    cfg = compose_config([])
    assert cfg.experiment == "mqar" and cfg.data.name == "mqar"
    assert list(cfg.model.layers) == ["attention"] and cfg.model.repeat == 2
    assert cfg.model.mixers.attention.num_heads == 2  # from configs/mixer/attention.yaml via defaults


def test_command_line_overrides_and_list_values():
    cfg = compose_config(["trainer.max_steps=7", "model.layers=[attention,attention,attention]", "optim.lr=0.01"])
    assert cfg.trainer.max_steps == 7 and len(cfg.model.layers) == 3 and cfg.optim.lr == 0.01


@pytest.mark.parametrize("argv, expected", [
    (["trainer.max_stepz=3"], ["trainer.max_stepz", "max_steps"]),  # unknown key: full path + allowed keys
    (["trainer.max_steps=abc"], ["trainer.max_steps", "abc"]),  # wrong type
    (["optim.schedule=exponential"], ["optim.schedule", "'cosine', 'constant', 'linear'"]),  # outside a Literal
    (["trainer.compile=fastest"], ["trainer.compile", "fastest", "reduce-overhead", "max-autotune"]),
    (["mixer=prism", "model.mixers.prism.decay=exp"], ["model.mixers.prism.decay", "'sigmoid', 'gdn'"]),
    (["data.name=probes", "data.task=sort"], ["data.task", "'parity'"]),
    (["model.layers=[attention,nosuchmixer]"], ["model.layers", "nosuchmixer", "attention"]),
    (["model.mixers.attention.num_headz=2"], ["model.mixers.attention.num_headz", "num_heads"]),
    (["model.mixers.nosuch.x=1"], ["model.mixers.nosuch", "registered mixers"]),
    (["data.name=nosuch"], ["data.name", "nosuch", "mqar"]),
    (["data.vocab_sise=3"], ["data.vocab_sise", "vocab_size"]),
    (["experiment=nosuch"], ["experiment=nosuch", "mqar"]),
    (["mixer=nosuch"], ["mixer=nosuch", "attention"]),
    (["trainer.max_steps"], ["key=value"]),
])
def test_bad_config_names_the_key_and_the_choices(argv, expected):
    with pytest.raises(ConfigError) as err:
        compose_config(argv)
    for text in expected:
        assert text in str(err.value)


@pytest.mark.parametrize("value, expected", [("true", True), ("false", False), ("reduce-overhead", "reduce-overhead"),
                                             ("max-autotune", "max-autotune")])
def test_compile_takes_a_bool_or_a_mode_from_the_command_line_and_yaml(tmp_path, value, expected):
    assert compose_config([f"trainer.compile={value}"]).trainer.compile == expected
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"trainer:\n  compile: {value}\n")
    assert compose_config([f"experiment={recipe}"]).trainer.compile == expected


def test_missing_value_is_reported(tmp_path):
    plugin = tmp_path / "needs_width.py"
    plugin.write_text(
        "from dataclasses import dataclass\n"
        "from omegaconf import MISSING\n"
        "from mixers import Mixer, MixerConfig, register_mixer\n"
        "@dataclass\n"
        "class C(MixerConfig):\n"
        "    width: int = MISSING\n"
        "@register_mixer('needs_width')\n"
        "class M(Mixer):\n"
        "    Config = C\n")
    argv = [f"model.plugins=[{plugin}]", "model.layers=[needs_width]"]
    with pytest.raises(ConfigError, match="model.mixers.needs_width.width"):
        compose_config(argv)
    assert compose_config(argv + ["model.mixers.needs_width.width=3"]).model.mixers.needs_width.width == 3


def test_cli_prints_config_without_training(capsys, tmp_path):
    assert main(["--print-config", "trainer.max_steps=5", f"logging.out_dir={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert "max_steps: 5" in out and "layers:" in out
    assert not any(tmp_path.iterdir())  # nothing written


def test_cli_error_exits_2_with_message_and_no_output(capsys, tmp_path):
    assert main(["trainer.max_stepz=3", f"logging.out_dir={tmp_path}"]) == 2
    assert "trainer.max_stepz" in capsys.readouterr().err
    assert main(["optim.name=sgd", f"logging.out_dir={tmp_path}"]) == 2
    assert capsys.readouterr().err == ("error: config key 'optim.name' (from command line 'optim.name=sgd'): "
                                       "Invalid value 'sgd', expected one of ['adamw', 'adam']\n")
    # values only the mixer can judge are reported in one line too, before anything is written
    assert main(["mixer=prism", "model.mixers.prism.steps=5", f"logging.out_dir={tmp_path}"]) == 2
    assert capsys.readouterr().err == "error: model: prism.steps (solver steps L) must be in 1..4, got 5\n"
    assert not any(tmp_path.iterdir())


CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def _leaves(node: dict, prefix: str = ""):
    for key, value in node.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*/**/*.yaml")),
                         ids=lambda p: p.relative_to(CONFIG_DIR).with_suffix("").as_posix())
def test_yaml_files_hold_only_what_differs_from_the_defaults(path, tmp_path):
    """Defaults live in the dataclasses: every key of a recipe changes the config it is merged into (the schema's
    and the Config dataclasses' defaults, after the recipe's own ``defaults`` groups)."""
    body = yaml.safe_load(path.read_text())
    groups = body.pop("defaults", {})
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({"defaults": groups} if groups else {}))
    selector = body.get("data", {}).get("name")
    cfg = compose_config([f"experiment={base}"] + ([f"data.name={selector}"] if selector else [])
                         + [f"model.layers=[{name}]" for name in body.get("model", {}).get("mixers", {})][:1])
    for key, value in _leaves(body):
        if key in ("data.name", "model.layers"):  # they choose the datamodule and the mixer, they do not tune them
            continue
        assert OmegaConf.select(cfg, key) != value, f"{path.name}: {key}: {value!r} is already the default"


def test_a_data_group_replaces_the_data_section_and_a_mixer_group_keeps_the_experiments_settings():
    cfg = compose_config(["experiment=lm_char", "data=slimpajama"])  # text -> text: no tinyshakespeare path left
    assert cfg.data.hub and cfg.data.path is None and cfg.data.tokenizer == "gpt2"
    cfg = compose_config(["experiment=slimpajama_130m", "mixer=prism"])  # the recipe's heads survive the group
    assert (cfg.model.mixers.prism.num_heads, cfg.model.mixers.prism.head_dim) == (6, 128)
