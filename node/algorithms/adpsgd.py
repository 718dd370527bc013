"""AD-PSGD as the DivShare artifact runs it: a ping to J/2 random peers, each answered by a pong."""

from __future__ import annotations

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
    uniform_mean,
)
from node.config import require


@dataclass(frozen=True, kw_only=True)
class ADPSGDConfig(AlgorithmConfig):
    """`degree // 2` pings per round, as the artifact's `ADPSGD.py` (degree 6 -> 3 pings)."""

    degree: int = 6  # graph_degree of tutorial/example_config_adpsgd.ini

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.degree >= 2, "algorithm.degree", "must be >= 2 (degree // 2 pings)", "use 6")
        # No upper bound: the pings' peers are drawn with replacement (2 nodes may ping 3x).


class ADPSGD(Algorithm):
    """The artifact's pairwise exchange, not Lian et al.'s atomic average (see `adpsgd_atomic`).

    After each round the node sends its freshly trained model to `degree // 2` peers drawn
    with replacement ("ping"). A node receiving a ping answers at once, at the instant it is
    delivered, with its own latest round-boundary model ("pong"; before its first round, the
    initial model). Every model received, ping or pong, is kept (latest per sender) and
    averaged uniformly with the own model at the next round boundary. Nothing queued is ever
    dropped: a straggler's backlog goes out in FIFO order.

    The artifact queues one shared dict for all pings and flips its `first_ping` flag to
    send a pong, which can turn still-queued pings into pongs. Here every message is its own
    immutable value with its own kind, so a ping stays a ping.
    """

    config_class = ADPSGDConfig
    kinds = frozenset({"ping", "pong"})  # never waits, never drops
    merges_at = "round"  # the pong leaves at receipt (`reply`); models merge at boundaries

    def __init__(self, config: ADPSGDConfig, ctx: NodeContext):
        super().__init__(config, ctx)
        self.pings = config.degree // 2
        self.latest_sent: torch.Tensor | None = None  # what a pong answers with
        self.received: dict[int, tuple[int, torch.Tensor]] = {}  # sender -> (round, model)
        self.pongs_sent = 0  # written by the receiver thread only

    def init(self, params: torch.Tensor) -> None:
        self.latest_sent = params.clone()  # a ping before the first round gets the initial model

    def round_messages(self, round: int, params: torch.Tensor) -> list[Outgoing]:
        # Cut before this round's aggregation, as the artifact's `latest_model`.
        self.latest_sent = params.clone()
        values = self.latest_sent.numpy()
        peers = self.ctx.peers
        return [Outgoing(self.ctx.rng.choice(peers), "ping", values) for _ in range(self.pings)]

    def reply(self, msg: Incoming) -> list[Outgoing]:
        if msg.kind != "ping":
            return []
        self.pongs_sent += 1
        # `latest_sent` is replaced, never changed in place: a reference read is safe here.
        return [Outgoing(msg.src, "pong", self.latest_sent.numpy())]

    def on_message(self, msg: Incoming, params: torch.Tensor) -> list[Outgoing]:
        if msg.kind not in self.kinds:
            raise Rejected(f"unexpected {msg.kind}")
        values = model_values(msg, self.ctx.model_size)
        if msg.src not in self.received or self.received[msg.src][0] <= msg.round:
            self.received[msg.src] = (msg.round, values)
        return []

    def aggregate(self, round: int, params: torch.Tensor) -> dict[str, float]:
        stats = {"models_merged": len(self.received), "pongs_sent": self.pongs_sent}
        if self.received:
            stats["staleness"] = sum(round - r for r, _ in self.received.values()) / len(
                self.received
            )
            params.copy_(uniform_mean(params, [v for _, v in self.received.values()]))
            self.received.clear()
        return stats
