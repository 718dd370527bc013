"""Algorithms, each one module holding its class and its config; any of them, built in or a
researcher's plug-in, is loaded by the dotted path its YAML names in `_target_`."""

from __future__ import annotations

import importlib
import pkgutil

from node.algorithms.base import (
    Algorithm,
    AlgorithmConfig,
    Incoming,
    NodeContext,
    Outgoing,
    Rejected,
    View,
)


def load_algorithm(target: str) -> type[Algorithm]:
    """The Algorithm subclass at `target` ("package.module.Class"); ImportError or TypeError
    saying what is wrong."""
    module_name, _, class_name = str(target).rpartition(".")
    if not module_name:
        raise ImportError(f"{target!r} is not a dotted path of the form module.Class")
    module = importlib.import_module(module_name)
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ImportError(f"module {module_name!r} has no {class_name!r}")
    if not (isinstance(cls, type) and issubclass(cls, Algorithm)):
        raise TypeError(f"{target} is not a subclass of node.algorithms.base.Algorithm")
    return cls


def builtin_algorithms() -> dict[str, type[Algorithm]]:
    """Module name -> the Algorithm defined in that module of this package."""
    found = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, Algorithm)
                and value.__module__ == module.__name__
            ):
                found[info.name] = value
    return dict(sorted(found.items()))


__all__ = [
    "Algorithm",
    "AlgorithmConfig",
    "Incoming",
    "NodeContext",
    "Outgoing",
    "Rejected",
    "View",
    "builtin_algorithms",
    "load_algorithm",
]
