"""The checks every config class runs before any process starts (the launcher's sections, each
data set's, algorithm's and codec's): errors that name the key and the fix. Imports nothing."""

from __future__ import annotations

from dataclasses import MISSING as NO_DEFAULT
from dataclasses import field


class ConfigError(ValueError):
    """A bad setting: names the key and how to fix it."""

    def __init__(self, key: str, problem: str, fix: str):
        self.key, self.problem, self.fix = key, problem, fix
        super().__init__(f"config key '{key}': {problem}. Fix: {fix}")


def require(ok: bool, key: str, problem: str, fix: str) -> None:
    if not ok:
        raise ConfigError(key, problem, fix)


REQUIRED = "???"  # OmegaConf's MISSING: a field the YAML must give (kept free of omegaconf here)


def hinted(hint: str, default=NO_DEFAULT):
    """A config field whose wrong-typed value gets `hint` as its fix; required by default."""
    return field(default=REQUIRED if default is NO_DEFAULT else default, metadata={"fix": hint})


def at_least(value, low: float, key: str, fix: str = "") -> None:
    require(value >= low, key, f"{value} is below {low}", fix or f"use >= {low}")


def node_ids(value, key: str, num_nodes: int) -> tuple[int, ...]:
    """`value`, a list of distinct node ids of a run of `num_nodes`."""
    ok = isinstance(value, list | tuple) and all(
        isinstance(v, int) and not isinstance(v, bool) and 0 <= v < num_nodes for v in value
    )
    require(ok, key, f"{value!r} is not a list of node ids in [0, {num_nodes})", "fix the ids")
    require(len(set(value)) == len(value), key, "repeats a node id", "list each node once")
    return tuple(value)
