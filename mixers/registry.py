"""Mixer registry: ``@register_mixer(name)`` on a Mixer subclass whose ``Config`` dataclass holds its
hyperparameters. A user's own mixer lives in any importable module (or .py file) named in ``model.plugins``."""
from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback
from dataclasses import is_dataclass
from pathlib import Path

from .base import Mixer

_MIXERS: dict[str, type[Mixer]] = {}
# Modules of this repository that register the built-in mixers, imported on the first look-up (not at import of
# this module, which the mixers themselves import).
_BUILTIN_MODULES = ("mixers.attention", "mixers.prism", "mixers.gdn", "mixers.gla", "mixers.mamba2",
                    "mixers.ttt_mlp", "mixers.linear_attention")


def register_mixer(name: str):
    def decorate(cls: type[Mixer]) -> type[Mixer]:
        if not (isinstance(cls, type) and issubclass(cls, Mixer)):
            raise TypeError(f"@register_mixer({name!r}) must decorate a subclass of mixers.base.Mixer, got {cls!r}")
        if not is_dataclass(cls.Config):
            raise TypeError(f"mixer {name!r}: {cls.__name__}.Config must be a dataclass of hyperparameters")
        other = _MIXERS.get(name)
        same_class_reloaded = other is not None and (other.__module__, other.__qualname__) == (
            cls.__module__, cls.__qualname__)
        if other is not None and other is not cls and not same_class_reloaded:
            raise ValueError(f"{cls.__module__}.{cls.__qualname__} registers the mixer name {name!r}, which "
                             f"{other.__module__}.{other.__qualname__} already has; rename it: "
                             f"@register_mixer(\"<another name>\") on {cls.__qualname__}")
        _MIXERS[name] = cls
        cls.registered_name = name
        return cls
    return decorate


def _load_builtins() -> None:
    for module in _BUILTIN_MODULES:  # each registers its classes on import
        importlib.import_module(module)


def import_plugins(plugins: list[str] | tuple[str, ...]) -> None:
    """Import user modules that register mixers: a dotted module name on sys.path, or a path to a .py file.
    The built-in mixers are registered first, so that a plugin reusing one of their names is the one refused."""
    _load_builtins()
    for plugin in plugins:
        path = Path(plugin)
        if plugin.endswith(".py"):
            if not path.is_file():
                raise FileNotFoundError(f"model.plugins: mixer plugin file {plugin!r} does not exist")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[path.stem] = module
            try:
                spec.loader.exec_module(module)
            except ValueError:  # register_mixer's own message
                raise
            except Exception as err:  # noqa: BLE001 - the user's module: name the file and line, not our stack
                line = next((f.lineno for f in reversed(traceback.extract_tb(err.__traceback__))
                             if f.filename == str(path)), None)
                where = f"{plugin}, line {line}" if line else plugin
                raise ImportError(f"model.plugins: importing {where} failed: {type(err).__name__}: {err}") from None
            continue
        try:
            importlib.import_module(plugin)
        except ModuleNotFoundError as err:
            raise ModuleNotFoundError(f"model.plugins: cannot import mixer plugin module {plugin!r} ({err}); "
                                      f"put its folder on PYTHONPATH or give the path to its .py file") from err


def mixer_names() -> list[str]:
    _load_builtins()
    return sorted(_MIXERS)


def get_mixer(name: str) -> type[Mixer]:
    _load_builtins()
    if name not in _MIXERS:
        raise KeyError(f"unknown mixer {name!r}; registered mixers: {', '.join(sorted(_MIXERS))} "
                       f"(a mixer of your own: register it with @register_mixer and name its module in model.plugins)")
    return _MIXERS[name]
