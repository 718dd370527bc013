"""AD-PSGD as Lian et al. (ICML 2018) define it: atomic pairwise averages on a bipartite graph."""

from __future__ import annotations

import itertools
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


@dataclass(frozen=True, kw_only=True)
class ADPSGDAtomicConfig(AlgorithmConfig):
    """`timeout`: emulated seconds an active node waits for its partner before giving up."""

    timeout: float = 10.0

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.timeout > 0, "algorithm.timeout", "must be > 0", "use e.g. 10.0")


def is_active(node_id: int) -> bool:
    """The bipartite split: even ids initiate, odd ids only answer. Every averaging joins an
    active and a passive node, so no cycle of nodes waiting on each other can form."""
    return node_id % 2 == 0


class ADPSGDAtomic(Algorithm):
    """x_i, x_j <- (x_i + x_j) / 2 on both sides, with computation running on meanwhile.

    Two phases over the shaped links. At a round boundary an idle active node i snapshots
    s = x_i and sends it to a random passive node j (a "ping"). Node j handles the ping
    between two of its own steps, so atomically: x_j <- (s + x_j) / 2, and it sends that
    average back (a "pong"). Node i has kept training while the exchange was on the wire; it
    sets x_i <- avg + (x_i - s): the average, plus the (stale) gradient steps it took
    meanwhile, applied after the averaging as in the paper. Both nodes hold the same `avg`.

    One exchange at a time per active node, started at most once per `local_steps` (H = 1 is
    the paper's one averaging per gradient). A partner that does not answer within `timeout`
    emulated seconds is given up on; its late pong is then ignored and counted (the passive
    side has averaged alone, the only way atomicity can break, and only for a dead partner).
    """

    config_class = ADPSGDAtomicConfig
    kinds = frozenset({"ping", "pong"})  # rounds never wait: the exchange overlaps the next
    merges_at = "step"  # a ping averages the model at once, between two steps

    def __init__(self, config: ADPSGDAtomicConfig, ctx: NodeContext):
        super().__init__(config, ctx)
        self.active = is_active(ctx.node_id)
        self.partners = [p for p in ctx.peers if is_active(p) != self.active]
        self.exchange_ids = itertools.count(1)
        # The active side's open exchange: (id, partner, snapshot sent, emulated start).
        self.open: tuple[int, int, torch.Tensor, float] | None = None
        self.counts = {"averages": 0, "timeouts": 0, "late_pongs": 0}

    def round_messages(self, round: int, params: torch.Tensor) -> list[Outgoing]:
        if not self.active or not self.partners:
            return []
        if self.open is not None:
            if self.ctx.now() - self.open[3] < self.config.timeout:
                return []  # still on the wire: computation goes on, no second exchange
            self.counts["timeouts"] += 1
            self.open = None
        xid, partner = next(self.exchange_ids), self.ctx.rng.choice(self.partners)
        snapshot = params.clone()
        self.open = (xid, partner, snapshot, self.ctx.now())
        return [Outgoing(partner, "ping", snapshot.numpy(), aux={"xid": xid})]

    def on_message(self, msg: Incoming, params: torch.Tensor) -> list[Outgoing]:
        xid = msg.aux.get("xid")
        if msg.kind == "ping" and not self.active and is_active(msg.src) and type(xid) is int:
            average = (model_values(msg, self.ctx.model_size) + params) / 2
            params.copy_(average)
            self.counts["averages"] += 1
            return [Outgoing(msg.src, "pong", average.numpy(), aux={"xid": xid})]
        if msg.kind == "pong" and self.active and type(xid) is int:
            average = model_values(msg, self.ctx.model_size)
            if self.open is None or (xid, msg.src) != self.open[:2]:
                self.counts["late_pongs"] += 1
                return []
            params.add_(average - self.open[2])  # x_i <- avg + (x_i - s)
            self.open = None
            self.counts["averages"] += 1
            return []
        raise Rejected(f"unexpected {msg.kind} from {msg.src} at node {self.ctx.node_id}")

    def aggregate(self, round: int, params: torch.Tensor) -> dict[str, float]:
        return dict(self.counts)
