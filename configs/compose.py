"""Compose a run configuration: schema defaults <- experiment YAML <- data/mixer group YAMLs <- command line.

    python train.py experiment=lm_char data=tinyshakespeare mixer=prism trainer.max_steps=200 model.layers='[prism,attention]'

A YAML file may start with ``defaults: {data: NAME, mixer: NAME}`` to pull in group files before its own keys.
YAML files hold only what differs from the dataclasses' defaults. A data group names a dataset: it replaces the
whole ``data`` section (the datamodule's defaults plus its keys); a mixer group adds its keys to ``model``.
Every problem (unknown key, wrong type, missing value, value outside its choices, unknown mixer or datamodule)
raises ConfigError naming the key's full path, where it came from and what is allowed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .schema import VALUE_RULES, RunConfig

CONFIG_DIR = Path(__file__).resolve().parent
GROUPS = ("experiment", "data", "mixer")
DEFAULT_EXPERIMENT = "mqar"


class ConfigError(ValueError):
    """A configuration problem, reported to the user without a traceback."""


def group_options(group: str) -> list[str]:
    """The group's config names, with subfolders (e.g. experiment probes_paper/mqar)."""
    folder = CONFIG_DIR / group
    return sorted(p.relative_to(folder).with_suffix("").as_posix() for p in folder.rglob("*.yaml"))


def _experiment_name(name: str) -> str:
    """The experiment's name in run folders and W&B groups: its path under configs/experiment without .yaml
    (probes_paper/mqar), or the stem of a user's own file."""
    path = _group_file("experiment", name).resolve()
    folder = (CONFIG_DIR / "experiment").resolve()
    return path.relative_to(folder).with_suffix("").as_posix() if path.is_relative_to(folder) else path.stem


def _load_yaml(path: Path, where: str) -> dict:
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: {path} is not valid YAML: {err}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{where}: {path} must hold a mapping of config sections, got {type(loaded).__name__}")
    return loaded


def _group_file(group: str, name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():  # a user's own recipe file
        return path
    path = CONFIG_DIR / group / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"{group}={name}: no such {group} config; choose one of: {', '.join(group_options(group))} "
                          f"(or give the path of a .yaml file)")
    return path


def _key_help(cfg: DictConfig, full_key: str) -> str:
    parent = full_key.rsplit(".", 1)[0] if "." in full_key else ""
    node = OmegaConf.select(cfg, parent) if parent else cfg
    if isinstance(node, DictConfig) and node._metadata.object_type not in (None, dict):
        return f"; allowed keys in {parent or 'the top level'}: {', '.join(node.keys())}"
    return ""


def _first_line(err: OmegaConfBaseException) -> str:
    """OmegaConf appends full_key/object_type lines to its messages; we name the key ourselves."""
    return str(err.msg).splitlines()[0]


def _merge(cfg: DictConfig, source: Any, where: str) -> DictConfig:
    """Merge one source into cfg; a ``data`` section naming another datamodule replaces the old one."""
    if isinstance(source, dict) and isinstance(source.get("data"), dict) and "name" in source["data"]:
        if source["data"]["name"] != cfg.data.get("name"):
            cfg.data = {}
    try:
        return OmegaConf.merge(cfg, source)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        unknown = "not in" in _first_line(err)
        raise ConfigError(f"config key '{key}' (from {where}): {_first_line(err)}"
                          f"{_key_help(cfg, str(key)) if unknown else ''}") from None


def _merge_file(cfg: DictConfig, group: str, name: str, seen: tuple = ()) -> DictConfig:
    path = _group_file(group, name)
    if path in seen:
        raise ConfigError(f"{path}: its defaults include itself")
    body = _load_yaml(path, f"{group}={name}")
    defaults = body.pop("defaults", {}) or {}
    if not isinstance(defaults, dict) or not set(defaults) <= set(GROUPS):
        raise ConfigError(f"{path}: 'defaults' must map some of {GROUPS} to config names, got {defaults!r}")
    for sub_group, sub_name in defaults.items():
        cfg = _merge_file(cfg, sub_group, str(sub_name), seen + (path,))
    if group == "data":
        cfg.data = {}
    return _merge(cfg, body, str(path))


def _parse_argv(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    groups, dotlist = {}, []
    for arg in argv:
        if "=" not in arg or arg.startswith("="):
            raise ConfigError(f"command-line argument {arg!r} is not of the form key=value "
                              f"(config groups: {', '.join(GROUPS)}; or a dotted key such as trainer.max_steps=200)")
        key = arg.split("=", 1)[0]
        if key in GROUPS:
            groups[key] = arg.split("=", 1)[1]
        else:
            dotlist.append(arg)
    return groups, dotlist


def _typed_section(schema: type, value: Any, where: str) -> DictConfig:
    base = OmegaConf.structured(schema)
    try:
        return OmegaConf.merge(base, value)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        allowed = f"; allowed keys: {', '.join(base.keys())}" if "not in" in str(err.msg) else ""
        raise ConfigError(f"config key '{where}.{key}': {_first_line(err)}{allowed}") from None


def _check_values(cfg: DictConfig) -> None:
    for key, (rule, test) in VALUE_RULES.items():
        value = OmegaConf.select(cfg, key)
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value)
        try:
            ok = test(value)
        except TypeError:
            ok = False
        if not ok:
            raise ConfigError(f"config key '{key}': {value!r} is not allowed; it {rule}")


def _validate_model_and_data(cfg: DictConfig) -> None:
    # Imported here: the config layer must not pull in torch just to report a typo.
    from datamodules.registry import get_datamodule
    from lit_modules.backbone import expand_layers
    from mixers.registry import get_mixer, import_plugins, mixer_names

    try:
        import_plugins(list(cfg.model.plugins))
    except Exception as err:  # noqa: BLE001 - whatever a user's module raises on import, in one line
        raise ConfigError(f"config key 'model.plugins': {err}") from None
    try:
        layers = expand_layers(cfg.model)
    except ValueError as err:
        raise ConfigError(f"config key 'model.layers': {err}") from None
    for i, name in enumerate(layers):
        try:
            get_mixer(name)
        except KeyError:
            raise ConfigError(f"config key 'model.layers': layer {i} names mixer {name!r}, which is not registered; "
                              f"registered mixers: {', '.join(mixer_names())}") from None
    mixers = {}
    for name in dict.fromkeys([*cfg.model.mixers.keys(), *layers]):  # a fixed order: the printed config is stable
        try:
            cls = get_mixer(name)
        except KeyError:
            raise ConfigError(f"config key 'model.mixers.{name}': no mixer named {name!r} is registered; "
                              f"registered mixers: {', '.join(mixer_names())}") from None
        mixers[name] = _typed_section(cls.Config, cfg.model.mixers.get(name, {}), f"model.mixers.{name}")
    cfg.model.mixers = mixers

    data_name = cfg.data.get("name")
    try:
        dm_cls = get_datamodule(str(data_name))
    except KeyError as err:
        raise ConfigError(f"config key 'data.name': {err.args[0]}") from None
    cfg.data = _typed_section(dm_cls.Config, cfg.data, "data")


def compose_config(argv: list[str] | tuple[str, ...] = (), base: Path | None = None) -> DictConfig:
    """``base``: a run folder's config.yaml, which takes the experiment's place (a resumed run goes on with its
    own config; the command line applies on top of it)."""
    groups, dotlist = _parse_argv(list(argv))
    cfg = OmegaConf.structured(RunConfig)
    if base is not None:
        cfg = _merge(cfg, _load_yaml(Path(base), "ckpt_path"), str(base))
    else:
        experiment = groups.get("experiment", DEFAULT_EXPERIMENT)
        cfg = _merge_file(cfg, "experiment", experiment)
        cfg.experiment = _experiment_name(experiment)
    for group in ("data", "mixer"):
        if group in groups:
            cfg = _merge_file(cfg, group, groups[group])
    for item in dotlist:
        try:
            override = OmegaConf.from_dotlist([item])
        except OmegaConfBaseException as err:
            raise ConfigError(f"command-line argument {item!r}: {_first_line(err)}") from None
        cfg = _merge(cfg, OmegaConf.to_container(override), f"command line '{item}'")
    _check_values(cfg)
    _validate_model_and_data(cfg)
    try:
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as err:
        raise ConfigError(f"config key '{getattr(err, 'full_key', '?')}': {_first_line(err)} (set it in a YAML file or on "
                          f"the command line)") from None
    return cfg


def config_to_dict(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
