"""Algorithms as plug-ins: every algorithm's and codec's config defaults in hydra's config store
(so a YAML lists only what it changes), and the folders on hydra's search path importable by
the nodes."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

from hydra.core.config_store import ConfigStore

from node.algorithms import AlgorithmConfig, builtin_algorithms
from node.sharing import CODECS

DEFAULTS_GROUP = "algorithm_defaults"
SHARING_DEFAULTS_GROUP = "sharing_defaults"


def config_defaults(config_class: type) -> dict:
    """The fields of an algorithm config that have a default, with it (`name` has none)."""
    values = {}
    for f in dataclasses.fields(config_class):
        if f.default is not dataclasses.MISSING:
            values[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            values[f.name] = f.default_factory()
    return values


def register_config_defaults() -> None:
    """`algorithm_defaults/<module>` for every built-in algorithm, `algorithm_defaults/base`
    (lr, batch_size, local_steps) for a plug-in's YAML to start from, and
    `sharing_defaults/<codec>` for every codec."""
    store = ConfigStore.instance()
    store.store(group=DEFAULTS_GROUP, name="base", node=config_defaults(AlgorithmConfig))
    for module, algorithm in builtin_algorithms().items():
        store.store(group=DEFAULTS_GROUP, name=module, node=config_defaults(algorithm.config_class))
    for name, codec in CODECS.items():
        store.store(
            group=SHARING_DEFAULTS_GROUP, name=name, node=config_defaults(codec.config_class)
        )


def add_plugin_paths(config_sources: list, conf_dir: str) -> list[str]:
    """Make every folder on hydra's search path (but the project's own conf/) importable here
    and in every process started from now on, so that a YAML's `_target_: my_module.MyAlgo`
    finds `my_module.py` in the same folder. Returns the folders added."""
    added = []
    for source in config_sources:
        if source.get("schema") != "file":
            continue
        folder = str(Path(source["path"]).resolve())
        if folder == str(Path(conf_dir).resolve()) or folder in sys.path:
            continue
        sys.path.insert(0, folder)
        added.append(folder)
    if added:
        # The forkserver and its nodes start later and inherit sys.path and the environment.
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [*added, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        )
    return added
