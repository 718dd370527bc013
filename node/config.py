"""Typed, frozen settings a node process receives: what to train, how to pace it, where to talk."""

from __future__ import annotations

from dataclasses import dataclass, field


class ConfigError(ValueError):
    """A bad setting: names the key and how to fix it."""

    def __init__(self, key: str, problem: str, fix: str):
        self.key, self.problem, self.fix = key, problem, fix
        super().__init__(f"config key '{key}': {problem}. Fix: {fix}")


def require(ok: bool, key: str, problem: str, fix: str) -> None:
    if not ok:
        raise ConfigError(key, problem, fix)


@dataclass(frozen=True, kw_only=True)
class AlgorithmConfig:
    """Local training shared by every algorithm: H steps of SGD per round."""

    name: str
    lr: float
    batch_size: int
    local_steps: int

    def __post_init__(self) -> None:
        require(self.lr > 0, "algorithm.lr", f"{self.lr} is not positive", "use e.g. 0.05")
        require(self.batch_size >= 1, "algorithm.batch_size", "must be >= 1", "use e.g. 8")
        require(self.local_steps >= 1, "algorithm.local_steps", "must be >= 1", "use e.g. 128")


@dataclass(frozen=True, kw_only=True)
class DivShareConfig(AlgorithmConfig):
    """DivShare: fragment fraction Ω, J recipients per fragment, artifact queue flush."""

    fraction: float
    degree: int

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            0 < self.fraction <= 1,
            "algorithm.fraction",
            f"Ω={self.fraction} is outside (0, 1]",
            "use 0.1 for 10 fragments or 1.0 for full models",
        )
        require(self.degree >= 1, "algorithm.degree", "must be >= 1", "use e.g. 6")


@dataclass(frozen=True, kw_only=True)
class LinkSpec:
    """One node's access link, in emulated units; `inf` Mbit/s is an unlimited link."""

    up_mbps: float
    down_mbps: float
    latency_ms: float
    # Per-destination path rate in Mbit/s beside the uplink (geo profile); empty = none.
    paths: dict[int, float] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class DataSpec:
    """Which data set, where its files are, and how it is split; keys a set does not use keep
    their defaults."""

    name: str
    root: str
    partition: str
    partition_seed: int
    num_samples: int = 20000  # mnist1d: generated samples (80% train)
    data_seed: int = 42  # mnist1d: generator seed
    shards_per_node: int = 5  # kshard
    alpha: float = 0.1  # Dirichlet concentration, used by partition=dirichlet only
    download: bool = True  # cifar10, movielens: fetch missing files when the machine is online
    train_fraction: float = 0.7  # movielens: share of each user's ratings used for training


@dataclass(frozen=True, kw_only=True)
class NodeSpec:
    """Everything one node process needs; built by the launcher's planner, never edited."""

    node_id: int
    num_nodes: int
    seed: int
    run_dir: str
    algorithm: AlgorithmConfig
    model: str
    model_dims: dict  # sizes the model takes from the data set (MovieLens users and items)
    data: DataSpec
    link: LinkSpec
    step_time: float
    duration: float
    eval_interval: float
    threads: int
    bind: str
    max_message_bytes: int
    pace: bool = True
    progress_every: float = 1.0
    extra: dict = field(default_factory=dict)
