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
    decoded,
    sharing_codec,
)
from node.algorithms.latest import Latest
from node.checks import require
from node.sharing import Encoded, Part, mean_of_parts


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

    With a codec, the round's model is encoded once, at its boundary: its pings and the pongs
    that answer until the next boundary carry that one message.
    """

    config_class = ADPSGDConfig
    kinds = frozenset({"ping", "pong"})  # never waits, never drops
    merges_at = "round"  # the pong leaves at receipt (`reply`); models merge at boundaries
    uses_codec = True

    def __init__(self, config: ADPSGDConfig, ctx: NodeContext):
        super().__init__(config, ctx)
        self.pings = config.degree // 2
        self.codec = sharing_codec(ctx)
        self.latest_sent: Encoded | None = None  # what a pong answers with
        self.received: Latest[Part] = Latest()  # by sender: its round, its model
        self.pongs_sent = 0  # written by the receiver thread only

    def init(self, params: torch.Tensor) -> None:
        self.codec.start(params)
        # a ping before the first round gets the initial model
        self.latest_sent = self.codec.compress(params)

    def round_messages(self, round: int, params: torch.Tensor) -> list[Outgoing]:
        # Cut before this round's aggregation, as the artifact's `latest_model`.
        self.latest_sent = self.codec.share(params)
        peers = self.ctx.peers
        return [
            Outgoing.encoded(self.ctx.rng.choice(peers), "ping", self.latest_sent)
            for _ in range(self.pings)
        ]

    def reply(self, msg: Incoming) -> list[Outgoing]:
        if msg.kind != "ping":
            return []
        self.pongs_sent += 1
        # `latest_sent` is replaced, never changed in place: a reference read is safe here.
        return [Outgoing.encoded(msg.src, "pong", self.latest_sent)]

    def on_message(self, msg: Incoming, params: torch.Tensor) -> list[Outgoing]:
        if msg.kind not in self.kinds:
            raise Rejected(f"unexpected {msg.kind}")
        part = decoded(self.codec, msg)
        self.received.offer(msg.src, msg.round, part)
        return []

    def aggregate(self, round: int, params: torch.Tensor) -> dict[str, float]:
        stats = {"models_merged": len(self.received), "pongs_sent": self.pongs_sent}
        if self.received:
            stats["staleness"] = self.received.staleness(round)
            params.copy_(mean_of_parts(params, [part for _, part in self.received.take()]))
        return stats
