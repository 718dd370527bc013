"""Swift as the DivShare artifact runs it: full models to J random peers, FIFO backlog kept."""

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
    check_degree,
    decoded,
    sharing_codec,
)
from node.algorithms.latest import Latest
from node.checks import require
from node.sharing import Part, mean_of_parts


@dataclass(frozen=True, kw_only=True)
class SwiftConfig(AlgorithmConfig):
    """J distinct random peers per round; the model always travels whole (the artifact's
    tutorial/example_config_swift.ini: chunk_fraction = 1.0, graph_degree = 6)."""

    degree: int = 6  # J

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.degree >= 1, "algorithm.degree", "must be >= 1", "use e.g. 6")

    def check(self, num_nodes: int) -> None:
        check_degree(self.degree, num_nodes)


class Swift(Algorithm):
    """The artifact's `Swift.py` is `DivShare.py` with one fragment (the whole model) and
    without the queue flush: a straggler's unsent models stay queued and go out in order,
    however stale. Receivers keep the latest model per sender and fold it in with the uniform
    mean at their round boundary (per coordinate, over the senders that sent it, with a sparse
    codec).

    Not SWIFT's original (Bornstein et al., ICLR 2023: a static topology, pull from shared
    buffers, client-influence weights); that one is not reproduced here.
    """

    config_class = SwiftConfig
    kinds = frozenset({"model"})
    merges_at = "round"
    drop_unsent = False
    uses_codec = True

    def __init__(self, config: SwiftConfig, ctx: NodeContext):
        super().__init__(config, ctx)
        self.degree = min(config.degree, len(ctx.peers))
        self.codec = sharing_codec(ctx)
        self.latest: Latest[Part] = Latest()  # by sender: the round it was cut in, the model

    def init(self, params: torch.Tensor) -> None:
        self.codec.start(params)

    def round_messages(self, round: int, params: torch.Tensor) -> list[Outgoing]:
        message = self.codec.share(params)
        peers = self.ctx.rng.sample(self.ctx.peers, self.degree)
        messages = [Outgoing.encoded(peer, "model", message) for peer in peers]
        self.ctx.rng.shuffle(messages)  # as DivShare shuffles its fragments' messages
        return messages

    def on_message(self, msg: Incoming, params: torch.Tensor) -> list[Outgoing]:
        if msg.kind != "model" or msg.frag != 0:
            raise Rejected(f"unexpected {msg.kind} fragment {msg.frag}")
        part = decoded(self.codec, msg)
        self.latest.offer(msg.src, msg.round, part)
        return []

    def aggregate(self, round: int, params: torch.Tensor) -> dict[str, float]:
        if not self.latest:
            return {"fragments_merged": 0, "staleness": 0.0}
        stats = {"fragments_merged": len(self.latest), "staleness": self.latest.staleness(round)}
        params.copy_(mean_of_parts(params, [part for _, part in self.latest.take()]))
        return stats
