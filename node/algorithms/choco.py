"""CHOCO-SGD (Koloskova, Stich, Jaggi, ICML 2019): compressed differences against public copies,
on D-PSGD's graphs."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from node.algorithms.base import Incoming, NodeContext, Outgoing, Rejected, decoded
from node.algorithms.dpsgd import DPSGD, DPSGDConfig
from node.checks import require
from node.sharing import Part


@dataclass(frozen=True, kw_only=True)
class ChocoConfig(DPSGDConfig):
    """D-PSGD's graph and wait, and the consensus step size γ."""

    gamma: float = 0.2  # consensus step: x <- x + γ (Σ_j w_ij x̂_j - x̂_i); smaller if it diverges

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            0 < self.gamma <= 1,
            "algorithm.gamma",
            f"γ={self.gamma} is outside (0, 1]",
            "use e.g. 0.2 (smaller with stronger compression: top-10% diverges at 0.5)",
        )


def add_part(target: torch.Tensor, weight: float, part: Part) -> None:
    """target += weight * part, wherever the part has values."""
    if part.dense:
        target.add_(part.values, alpha=weight)
    else:
        target.index_add_(0, part.indices, part.values, alpha=weight)


class Choco(DPSGD):
    """Every node keeps x̂_i, the public copy of its own model that its neighbours also know,
    and s_i = Σ_j w_ij x̂_j over itself and its neighbours (the memory-efficient form of
    decentralizepy's `Choco` sharing). Each round, after the local steps:

        q_i = C(x_i - x̂_i)          sent to every neighbour through the run's codec
        x̂_i += q_i;  s_i += w_ii q_i + Σ_j w_ij q_j
        x_i += γ (s_i - x̂_i)

    C is any codec's `compress` (sharing=topk, random, quantize; full makes CHOCO exact
    gossip with step γ). Every copy starts at the initial model, which every node shares
    (decentralizepy starts them at zero). The round waits for each neighbour's q of this round
    up to `timeout`; a q that comes later is still added to s when it arrives (s is a sum, so
    the copies stay exact), and counted late. A node that leaves and rejoins restarts its
    copies from its model: its neighbours' copies of it are then off (CHOCO assumes nodes stay).
    D-PSGD's node gives the graph, its weights, the codec and the counts.
    """

    config_class = ChocoConfig
    kinds = frozenset({"choco"})

    def __init__(self, config: ChocoConfig, ctx: NodeContext):
        super().__init__(config, ctx)
        self.public: torch.Tensor | None = None  # x̂_i
        self.mixed: torch.Tensor | None = None  # s_i
        self.pending: list[tuple[int, int, Part]] = []  # (sender, round, q) not yet in s
        self.heard: dict[int, int] = {}  # sender -> the latest round of it received
        self.own_q: Part | None = None

    def init(self, params: torch.Tensor) -> None:
        self.public, self.mixed = params.clone(), params.clone()

    def round_messages(self, round: int, params: torch.Tensor) -> list[Outgoing]:
        message = self.codec.compress(params - self.public)
        # What the neighbours will decode, exactly: x̂_i must stay their copy of it.
        self.own_q = self.codec.decompress(message.values, message.extra, message.aux)
        return [Outgoing.encoded(j, "choco", message) for j in self.neighbours]

    def on_message(self, msg: Incoming, params: torch.Tensor) -> list[Outgoing]:
        if msg.kind != "choco" or msg.src not in self.weights or msg.src == self.ctx.node_id:
            raise Rejected(f"unexpected {msg.kind} from {msg.src}")
        part = decoded(self.codec, msg)
        self.pending.append((msg.src, msg.round, part))
        self.heard[msg.src] = max(self.heard.get(msg.src, -1), msg.round)
        return []

    def ready(self, round: int) -> bool:
        return all(self.heard.get(j, -1) >= round for j in self.neighbours)

    def aggregate(self, round: int, params: torch.Tensor) -> dict[str, float]:
        arrived = sum(1 for j in self.neighbours if self.heard.get(j, -1) >= round)
        self.counts["missed_models"] += len(self.neighbours) - arrived
        # q of rounds already closed here when they came (a neighbour ahead is not late)
        self.counts["late_models"] += sum(1 for _, r, _ in self.pending if r < round)
        me = self.ctx.node_id
        add_part(self.public, 1.0, self.own_q)
        add_part(self.mixed, self.weights[me], self.own_q)
        # in (sender, round) order: the bits must not depend on arrival order
        for sender, _, part in sorted(self.pending, key=lambda item: item[:2]):
            add_part(self.mixed, self.weights[sender], part)
        merged, self.pending = len(self.pending), []
        params.add_(self.mixed - self.public, alpha=self.config.gamma)
        return {"models_merged": merged, **self.counts}
