"""DivShare (Biswas et al., WWW 2025) as the artifact runs it: fixed fragments to J random peers."""

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
    model_values,
)
from node.algorithms.latest import Latest
from node.checks import require


@dataclass(frozen=True, kw_only=True)
class DivShareConfig(AlgorithmConfig):
    """Fragment fraction Ω and J recipients per fragment, the artifact's values
    (sacs-epfl/divshare async-dp/tutorial/example_config.ini, scripts/example_deploy.sh)."""

    fraction: float = 0.1  # Ω: each fragment holds ~1/10 of every layer -> 10 fragments
    degree: int = 6  # J: distinct random peers per fragment per round (graph_degree = 6)

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            0 < self.fraction <= 1,
            "algorithm.fraction",
            f"Ω={self.fraction} is outside (0, 1]",
            "use 0.1 for 10 fragments or 1.0 for full models",
        )
        require(self.degree >= 1, "algorithm.degree", "must be >= 1", "use e.g. 6")

    def check(self, num_nodes: int) -> None:
        check_degree(self.degree, num_nodes)


def fragment_indices(
    layer_sizes: tuple[int, ...], num_fragments: int, seed: int
) -> list[torch.Tensor]:
    """The artifact's `ChunkSharingRandom` partition: each layer's indices permuted with one
    generator seeded once, fragments 0..n-2 take numel//n of every layer, the last the rest.
    Same seed, same partition on every node, every round."""
    generator = torch.Generator().manual_seed(seed)
    parts: list[list[torch.Tensor]] = [[] for _ in range(num_fragments)]
    offset = 0
    for numel in layer_sizes:
        perm = torch.randperm(numel, generator=generator) + offset
        share = numel // num_fragments
        for f in range(num_fragments):
            end = (f + 1) * share if f < num_fragments - 1 else numel
            parts[f].append(perm[f * share : end])
        offset += numel
    return [torch.cat(p) for p in parts]


def per_coordinate_mean(
    own: torch.Tensor, received: list[tuple[torch.Tensor, torch.Tensor]]
) -> torch.Tensor:
    """Coordinate p becomes (x_p + sum of received values at p) / (1 + copies received at p)."""
    total = own.clone()
    weight = torch.ones_like(own)
    for indices, values in received:
        total.index_add_(0, indices, values)
        weight.index_add_(0, indices, torch.ones_like(values))
    return total / weight


class DivShare(Algorithm):
    """Every round: each fragment to J distinct random peers, shuffled; unsent ones dropped.

    One deliberate difference from the artifact: its sender and receiver pause while the node
    aggregates and logs; here they keep running, since that phase takes well under a step.
    The drop is the artifact's socket flush: a fragment still on the wire when the new round's
    batch arrives is cut and lost, as with ZeroMQ `linger=0`.
    """

    config_class = DivShareConfig
    kinds = frozenset({"fragment"})
    merges_at = "round"
    drop_unsent = True  # never waits (ready is always true)
    kind = "fragment"

    def __init__(self, config: DivShareConfig, ctx: NodeContext):
        super().__init__(config, ctx)
        self.num_fragments = max(1, int(1 / config.fraction))
        self.indices = fragment_indices(ctx.layer_sizes, self.num_fragments, ctx.partition_seed)
        self.degree = min(config.degree, len(ctx.peers))
        # Latest copy per (sender, fragment): (round it was cut in, values).
        self.latest: Latest[torch.Tensor] = Latest()  # by (sender, fragment)

    def round_messages(self, round: int, params: torch.Tensor) -> list[Outgoing]:
        messages = []
        for frag, idx in enumerate(self.indices):
            values = params[idx].numpy()  # advanced indexing copies: later steps cannot alter it
            for peer in self.ctx.rng.sample(self.ctx.peers, self.degree):
                messages.append(Outgoing(peer, self.kind, values, frag=frag))
        self.ctx.rng.shuffle(messages)
        return messages

    def on_message(self, msg: Incoming, params: torch.Tensor) -> list[Outgoing]:
        if msg.kind != self.kind or not 0 <= msg.frag < self.num_fragments:
            raise Rejected(f"unexpected {msg.kind} fragment {msg.frag}")
        values = model_values(msg, len(self.indices[msg.frag]))  # the fragment's own size
        self.latest.offer((msg.src, msg.frag), msg.round, values)
        return []

    def aggregate(self, round: int, params: torch.Tensor) -> dict[str, float]:
        if not self.latest:
            return {"fragments_merged": 0, "staleness": 0.0}
        stats = {"fragments_merged": len(self.latest), "staleness": self.latest.staleness(round)}
        received = [(self.indices[f], v) for (_, f), v in self.latest.take()]
        params.copy_(per_coordinate_mean(params, received))
        return stats
