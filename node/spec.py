"""Typed, frozen settings a node process receives: what to train, how to pace it, where to talk.
Built by the launcher's planner; the transport's types (`LinkSpec`, `Action`, `CurveKeys`)
and the algorithms' and codecs' configs are re-used here, not redefined, and not imported at
run time (an algorithm that imports the checks loads no transport)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from node.algorithms.base import AlgorithmConfig
    from node.sharing import SharingConfig
    from transport import Action, LinkSpec
    from transport.security import CurveKeys


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
    algorithm_class: str  # dotted path of the Algorithm subclass, as the YAML's _target_
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
    max_connections: int = 64  # outbound sockets open at once; beyond, least recently used close
    pace: bool = True
    pacing: str = "burst"  # "step": every step paced on its own, whatever the algorithm
    clock: str = "wall"  # "virtual": the launcher keeps the run's time (no transport threads)
    progress_every: float = 1.0
    # The run's scenario as every node needs it: who is up, which links flap, partitions
    scenario: tuple[Action, ...] = ()
    # A crashed node's new process: it joins at `start_at`, listening where the old one did
    # (`endpoint`); `checkpoint`: keep the settled model on disk, to join again with it
    start_at: float = 0.0
    endpoint: str | None = None
    checkpoint: bool = False
    # The run's CURVE key pair (None: plain sockets); never written to the run's folder
    curve: CurveKeys | None = None
    sharing: SharingConfig | None = None  # the run's codec (None: full)
    timeline: int = 0  # events this node keeps for the run's timeline (0: none recorded)
    extra: dict = field(default_factory=dict)
