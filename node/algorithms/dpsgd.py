"""D-PSGD (Lian et al., NeurIPS 2017): synchronous gossip on a fixed graph, Metropolis-Hastings."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch

from node.algorithms.base import (
    Algorithm,
    AlgorithmConfig,
    Incoming,
    NodeContext,
    Outgoing,
    Rejected,
    decoded,
    sharing_codec,
)
from node.checks import require
from node.sharing import Part, weighted_mix

TOPOLOGIES = ("ring", "regular", "complete")


@dataclass(frozen=True, kw_only=True)
class DPSGDConfig(AlgorithmConfig):
    """A fixed graph (`topology`, `degree` for `regular`) and how long a round may wait."""

    topology: str = "regular"  # ring | regular (circulant, `degree` neighbours) | complete
    degree: int = 6  # used by `regular`: the same fan-out as DivShare's J
    timeout: float = 10.0  # emulated seconds a round waits for a neighbour before a miss

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            self.topology in TOPOLOGIES,
            "algorithm.topology",
            f"unknown graph {self.topology!r}",
            f"use one of {list(TOPOLOGIES)}",
        )
        require(self.degree >= 1, "algorithm.degree", "must be >= 1", "use e.g. 4")
        require(self.timeout > 0, "algorithm.timeout", "must be > 0", "use e.g. 10.0")

    def check(self, num_nodes: int) -> None:
        """Raise ConfigError now, before any process starts, if the graph cannot be built."""
        neighbours(self.topology, num_nodes, self.degree)


def neighbours(topology: str, num_nodes: int, degree: int = 2) -> dict[int, set[int]]:
    """A deterministic undirected graph on ids 0..n-1.

    `regular`: the circulant graph linking i to i±1..i±degree//2, plus the opposite node
    i+n/2 when degree is odd (n must then be even): every node has exactly `degree`
    neighbours. `ring` is `regular` of degree 2; `complete` links every pair.
    """
    n = num_nodes
    if topology == "complete":
        return {i: {j for j in range(n) if j != i} for i in range(n)}
    if topology == "ring":
        degree = 2
    require(
        degree <= n - 1,
        "algorithm.degree",
        f"{degree} neighbours but only {n - 1} other nodes",
        "lower it",
    )
    require(
        degree % 2 == 0 or n % 2 == 0,
        "algorithm.degree",
        f"no {degree}-regular graph on {n} nodes (odd degree needs an even node count)",
        "use an even degree",
    )
    graph: dict[int, set[int]] = defaultdict(set)
    for i in range(n):
        for k in range(1, degree // 2 + 1):
            graph[i] |= {(i + k) % n, (i - k) % n}
        if degree % 2:
            graph[i].add((i + n // 2) % n)
    return {i: graph[i] - {i} for i in range(n)}


def metropolis_hastings(graph: dict[int, set[int]], node: int) -> dict[int, float]:
    """Row `node` of W: 1/(1 + max(deg_i, deg_j)) per neighbour, the rest on the node itself.
    W is symmetric and doubly stochastic for any undirected graph."""
    row = {j: 1.0 / (1 + max(len(graph[node]), len(graph[j]))) for j in graph[node]}
    row[node] = 1.0 - sum(row.values())
    return row


class DPSGD(Algorithm):
    """Each round: send the model to every neighbour, wait for every neighbour's model of the
    same round (up to `timeout` emulated seconds), then x_i <- sum_j W_ij x_j.

    As decentralizepy's `DPSGDNode`: H local steps between exchanges, messages tagged with
    their round, early ones (a neighbour already a round ahead) kept for later, late ones
    (a round that has been closed) dropped and counted. A neighbour missing at the timeout
    counts as a miss and its weight stays on the node's own model, so rows still sum to 1.
    """

    config_class = DPSGDConfig
    kinds = frozenset({"gossip"})
    merges_at = "round"
    uses_codec = True

    def __init__(self, config: DPSGDConfig, ctx: NodeContext):
        super().__init__(config, ctx)
        self.ready_timeout = config.timeout
        graph = neighbours(config.topology, ctx.num_nodes, config.degree)
        self.neighbours = sorted(graph[ctx.node_id])
        self.weights = metropolis_hastings(graph, ctx.node_id)
        self.codec = sharing_codec(ctx)
        self.inbox: dict[int, dict[int, Part]] = defaultdict(dict)  # round -> src -> x_src
        self.closed = -1  # highest round aggregated
        self.counts = {"missed_models": 0, "late_models": 0}

    def init(self, params: torch.Tensor) -> None:
        self.codec.start(params)

    def round_messages(self, round: int, params: torch.Tensor) -> list[Outgoing]:
        message = self.codec.share(params)
        return [Outgoing.encoded(j, "gossip", message) for j in self.neighbours]

    def on_message(self, msg: Incoming, params: torch.Tensor) -> list[Outgoing]:
        if msg.kind != "gossip" or msg.src not in self.weights or msg.src == self.ctx.node_id:
            raise Rejected(f"unexpected {msg.kind} from {msg.src}")
        part = decoded(self.codec, msg)
        if msg.round <= self.closed:
            self.counts["late_models"] += 1
        else:
            self.inbox[msg.round][msg.src] = part
        return []

    def ready(self, round: int) -> bool:
        return len(self.inbox.get(round, ())) == len(self.neighbours)

    def aggregate(self, round: int, params: torch.Tensor) -> dict[str, float]:
        arrived = self.inbox.pop(round, {})
        missing = len(self.neighbours) - len(arrived)
        self.counts["missed_models"] += missing
        own = self.weights[self.ctx.node_id] + sum(
            self.weights[j] for j in self.neighbours if j not in arrived
        )
        # in id order: the bits must not depend on arrival order
        parts = [(self.weights[j], arrived[j]) for j in sorted(arrived)]
        params.copy_(weighted_mix(params, own, parts))
        self.closed = round
        for r in [r for r in self.inbox if r <= round]:
            self.counts["late_models"] += len(self.inbox.pop(r))
        return {"models_merged": len(arrived), **self.counts}
