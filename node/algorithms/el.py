"""Epidemic Learning, EL-Local (de Vos et al., NeurIPS 2023): push to s random peers, in sync."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch

from node.algorithms.base import (
    Algorithm,
    AlgorithmConfig,
    Incoming,
    NodeContext,
    Outgoing,
    Rejected,
    check_degree,
    decoded,
    sharing_codec,
)
from node.checks import require
from node.sharing import Part, mean_of_parts

NOTHING = np.zeros(0, dtype=np.float32)  # the "not working with you this round" message


@dataclass(frozen=True, kw_only=True)
class ELConfig(AlgorithmConfig):
    """`degree`: s, the peers each node sends its model to per round."""

    degree: int = 7  # s (decentralizepy tutorial/EpidemicLearning/config_EL.ini)
    timeout: float = 10.0  # emulated seconds a round waits for a peer before a miss

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.degree >= 1, "algorithm.degree", "must be >= 1", "use e.g. 7")
        require(self.timeout > 0, "algorithm.timeout", "must be > 0", "use e.g. 10.0")

    def check(self, num_nodes: int) -> None:
        check_degree(self.degree, num_nodes)


class EpidemicLearning(Algorithm):
    """Each round a node draws s distinct peers of the complete graph, sends them its model and
    every other peer an empty message, as decentralizepy's EL-Local does, so that each node
    knows when its round is complete: one message from every other node, model or not. It
    then averages its own model with every model received, equal weights 1/(k+1) (no
    Metropolis-Hastings). Rounds are synchronous; a peer missing at `timeout` is a miss.
    With a sparse codec, each coordinate is averaged over the models that carried it.
    """

    config_class = ELConfig
    kinds = frozenset({"gossip"})
    merges_at = "round"
    uses_codec = True

    def __init__(self, config: ELConfig, ctx: NodeContext):
        super().__init__(config, ctx)
        self.ready_timeout = config.timeout
        self.degree = min(config.degree, len(ctx.peers))
        self.heard: dict[int, set[int]] = defaultdict(set)  # round -> senders heard from
        self.codec = sharing_codec(ctx)
        self.models: dict[int, list[Part]] = defaultdict(list)
        self.closed = -1
        self.counts = {"missed_peers": 0, "late_messages": 0}

    def init(self, params: torch.Tensor) -> None:
        self.codec.start(params)

    def round_messages(self, round: int, params: torch.Tensor) -> list[Outgoing]:
        chosen = set(self.ctx.rng.sample(self.ctx.peers, self.degree))
        message = self.codec.share(params)
        return [
            Outgoing.encoded(p, "gossip", message, model=True)
            if p in chosen
            else Outgoing(p, "gossip", NOTHING, aux={"model": False})
            for p in self.ctx.peers
        ]

    def on_message(self, msg: Incoming, params: torch.Tensor) -> list[Outgoing]:
        if msg.kind != "gossip" or msg.src == self.ctx.node_id:
            raise Rejected(f"unexpected {msg.kind} from {msg.src}")
        values = decoded(self.codec, msg) if msg.aux.get("model") else None
        if values is None and (msg.values.size != 0 or msg.extra):
            raise Rejected(f"an empty message from {msg.src} carries data")
        if msg.round <= self.closed:
            self.counts["late_messages"] += 1
            return []
        if msg.src not in self.heard[msg.round]:
            self.heard[msg.round].add(msg.src)
            if values is not None:
                self.models[msg.round].append(values)
        return []

    def ready(self, round: int) -> bool:
        return len(self.heard.get(round, ())) == len(self.ctx.peers)

    def aggregate(self, round: int, params: torch.Tensor) -> dict[str, float]:
        models = self.models.pop(round, [])
        self.counts["missed_peers"] += len(self.ctx.peers) - len(self.heard.pop(round, ()))
        params.copy_(mean_of_parts(params, models))
        self.closed = round
        for r in [r for r in self.heard if r <= round]:
            self.counts["late_messages"] += len(self.heard.pop(r))
            self.models.pop(r, None)
        return {"models_merged": len(models), **self.counts}
