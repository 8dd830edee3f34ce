"""Datamodule registry: ``data.name`` in the config picks a LightningDataModule registered here.

A registered datamodule has a ``Config`` dataclass (the schema of the ``data`` config section), a ``task``
("lm": next-token prediction on ``input_ids``/``labels`` batches; "rec": sequential recommendation), and is
built as ``cls(config, seed=...)``. ``vocab_size`` (and for LM a ``tokenizer`` with ``decode``) must be
available after ``prepare_data()`` + ``setup("fit")``, which must be safe to call from every DDP rank.
"""
from __future__ import annotations

import importlib
from dataclasses import is_dataclass

_DATAMODULES: dict[str, type] = {}
_BUILTIN_MODULES = ("datamodules.mqar", "datamodules.text", "datamodules.rec", "datamodules.probes",
                    "datamodules.probes_paper")


def register_datamodule(name: str):
    def decorate(cls):
        if not is_dataclass(getattr(cls, "Config", None)):
            raise TypeError(f"datamodule {name!r}: {cls.__name__}.Config must be a dataclass")
        if getattr(cls, "task", None) is None:
            raise TypeError(f"datamodule {name!r}: {cls.__name__}.task must name the task (lm or rec)")
        if name in _DATAMODULES and _DATAMODULES[name] is not cls:
            raise ValueError(f"datamodule name {name!r} is already registered by {_DATAMODULES[name].__qualname__}")
        _DATAMODULES[name] = cls
        return cls
    return decorate


def _load_builtins() -> None:
    for module in _BUILTIN_MODULES:  # each registers its classes on import
        importlib.import_module(module)


def datamodule_names() -> list[str]:
    _load_builtins()
    return sorted(_DATAMODULES)


def get_datamodule(name: str):
    _load_builtins()
    if name not in _DATAMODULES:
        raise KeyError(f"data.name: unknown datamodule {name!r}; choose one of {', '.join(sorted(_DATAMODULES))}")
    return _DATAMODULES[name]
