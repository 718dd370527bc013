"""RelaySGD (Vogels et al., NeurIPS 2021; epfml/relaysgd): model sums relayed along trees."""

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
    model_values,
)
from node.checks import require

TOPOLOGIES = ("chain", "binary_tree", "double_binary_tree")
FILLS = ("initial", "own", "counts")


@dataclass(frozen=True, kw_only=True)
class RelaySGDConfig(AlgorithmConfig):
    """Spanning tree(s), what stands in for the workers a node has not heard of yet, local
    momentum, and how long a round may wait for a neighbour."""

    # The paper's best CIFAR setting: two binary trees, the second on reversed ids, each
    # relaying half of the coordinates, x[0::2] and x[1::2].
    topology: str = "double_binary_tree"  # chain | binary_tree | double_binary_tree
    # Weight n - C of the workers not heard of yet: initial (x0, the reference code's
    # RelaySum/Model default) | own (the README's academic version) | counts (normalise by C).
    fill: str = "initial"
    momentum: float = 0.0  # local SGD momentum; the paper's "+ local momentum" rows use 0.9
    timeout: float = 10.0  # emulated seconds a round waits for a tree neighbour before a miss

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            self.topology in TOPOLOGIES,
            "algorithm.topology",
            f"unknown tree {self.topology!r}",
            f"use one of {list(TOPOLOGIES)}",
        )
        require(
            self.fill in FILLS,
            "algorithm.fill",
            f"unknown fill {self.fill!r}",
            f"use one of {list(FILLS)}",
        )
        require(
            0 <= self.momentum < 1,
            "algorithm.momentum",
            f"{self.momentum} is outside [0, 1)",
            "use 0 (plain SGD) or 0.9 (the paper's local momentum)",
        )
        require(self.timeout > 0, "algorithm.timeout", "must be > 0", "use e.g. 10.0")


def chain(num_nodes: int) -> dict[int, list[int]]:
    """The path 0-1-...-n-1 (epfml/relaysgd `ChainTopology`)."""
    return {i: [j for j in (i - 1, i + 1) if 0 <= j < num_nodes] for i in range(num_nodes)}


def binary_tree(num_nodes: int, reverse: bool = False) -> dict[int, list[int]]:
    """epfml/relaysgd `BinaryTreeTopology`, on its 0-based ranks: position p >= 1 hangs off
    position p // 2, so positions 1.. form a heap rooted at 1 (children 2p, 2p+1) and position
    0 is a leaf of 1. `reverse` puts node n-1-p at position p (the second of the double trees).
    """
    n = num_nodes
    node = (lambda p: n - 1 - p) if reverse else (lambda p: p)
    graph: dict[int, list[int]] = {i: [] for i in range(n)}
    for p in range(1, n):
        child, parent = node(p), node(p // 2)
        graph[child].append(parent)
        graph[parent].append(child)
    return {i: sorted(nbrs) for i, nbrs in graph.items()}


def trees(topology: str, num_nodes: int) -> list[dict[int, list[int]]]:
    """The spanning tree(s); with two trees, tree t relays the coordinates x[t::2]."""
    if topology == "chain":
        return [chain(num_nodes)]
    if topology == "binary_tree":
        return [binary_tree(num_nodes)]
    return [binary_tree(num_nodes), binary_tree(num_nodes, reverse=True)]


class RelaySGD(Algorithm):
    """RelaySum/Model: each round (H local steps), on every tree edge i -> j send
    m_ij = x_i + sum_{k in N(i)\\{j}} m_ki and c_ij = 1 + sum_{k in N(i)\\{j}} c_ki, using the
    messages received in the previous round (none before round 0); once every neighbour's
    message of this round is in, with C = 1 + sum_k c_ki,

        x_i <- (x_i + sum_k m_ki + (n - C) * x_fill) / n      (fill: initial x0 or own x_i)
        x_i <- (x_i + sum_k m_ki) / C                          (fill: counts)

    so a worker at tree distance d arrives d rounds late but exactly once, with weight 1/n.
    With double trees each half of the coordinates (stride 2) runs on its own tree.

    A neighbour's message missing at `timeout` counts as zero, sum and count, in this round
    and in what is relayed onward next round (epfml/relaysgd 0e7551a, dropped messages). A
    message of a closed round is dropped and counted; an early one waits for its round.
    Stats: `relay_count` is this round's C (the smaller of the two trees'), then the running
    `missed_relays` and `late_relays`.
    """

    config_class = RelaySGDConfig
    kinds = frozenset({"relay"})
    merges_at = "round"

    def __init__(self, config: RelaySGDConfig, ctx: NodeContext):
        super().__init__(config, ctx)
        self.ready_timeout = config.timeout
        self.trees = [g[ctx.node_id] for g in trees(config.topology, ctx.num_nodes)]
        self.stride = len(self.trees)
        self.sizes = [len(range(t, ctx.model_size, self.stride)) for t in range(self.stride)]
        # round -> tree -> sender -> (m, c); the last closed round's, relayed on next round
        self.inbox: dict[int, list[dict]] = defaultdict(lambda: [{} for _ in self.trees])
        self.relayed: list[dict[int, tuple[torch.Tensor, int]]] = [{} for _ in self.trees]
        self.x0: torch.Tensor | None = None
        self.closed = -1
        self.counts = {"missed_relays": 0, "late_relays": 0}

    def init(self, params: torch.Tensor) -> None:
        """The initial model, identical on every node: the fill for workers not yet heard of."""
        self.x0 = params.clone()

    def optimizer_options(self) -> dict[str, float]:
        return {"momentum": self.config.momentum}  # local momentum, never averaged

    def round_messages(self, round: int, params: torch.Tensor) -> list[Outgoing]:
        out = []
        for t, nbrs in enumerate(self.trees):
            x = params[t :: self.stride]
            for j in nbrs:
                m, c = x.clone(), 1
                for k, (m_k, c_k) in self.relayed[t].items():
                    if k != j:
                        m += m_k
                        c += c_k
                out.append(Outgoing(j, "relay", m.numpy(), frag=t, aux={"count": c}))
        return out

    def on_message(self, msg: Incoming, params: torch.Tensor) -> list[Outgoing]:
        t = msg.frag
        if msg.kind != "relay" or not 0 <= t < self.stride or msg.src not in self.trees[t]:
            raise Rejected(f"unexpected {msg.kind} (tree {t}) from {msg.src}")
        count = msg.aux.get("count")
        if (
            not isinstance(count, int)
            or isinstance(count, bool)
            or not 1 <= count < self.ctx.num_nodes
        ):
            raise Rejected(f"relay from {msg.src} carries count {count!r}")
        values = model_values(msg, self.sizes[t])  # this tree's half (or all) of the model
        if msg.round <= self.closed:
            self.counts["late_relays"] += 1
        else:
            self.inbox[msg.round][t].setdefault(msg.src, (values, count))
        return []

    def ready(self, round: int) -> bool:
        got = self.inbox.get(round)
        if got is None:
            return all(not nbrs for nbrs in self.trees)
        return all(len(got[t]) == len(nbrs) for t, nbrs in enumerate(self.trees))

    def aggregate(self, round: int, params: torch.Tensor) -> dict[str, float]:
        n, fill = self.ctx.num_nodes, self.config.fill
        if fill == "initial" and self.x0 is None:
            raise RuntimeError("RelaySGD with fill=initial needs init(params) before round 0")
        arrived = self.inbox.pop(round, None) or [{} for _ in self.trees]
        counts = []
        for t, nbrs in enumerate(self.trees):
            got = arrived[t]
            self.counts["missed_relays"] += len(nbrs) - len(got)
            x = params[t :: self.stride]  # a view: writing it writes params
            total, c = x.clone(), 1
            for m_k, c_k in got.values():
                total += m_k
                c += c_k
            if fill == "counts":
                total /= c
            else:
                if c < n:
                    fallback = x if fill == "own" else self.x0[t :: self.stride]
                    total += (n - c) * fallback
                total /= n
            x.copy_(total)
            self.relayed[t] = got
            counts.append(c)
        self.closed = round
        for r in [r for r in self.inbox if r <= round]:
            self.counts["late_relays"] += sum(len(got) for got in self.inbox.pop(r))
        return {"relay_count": min(counts), **self.counts}
