"""Local training only: no communication at all, the lower bound every algorithm must beat."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from node.algorithms.base import NodeContext, Outgoing
from node.config import AlgorithmConfig
from transport import Message


@dataclass(frozen=True, kw_only=True)
class LocalConfig(AlgorithmConfig):
    """Nothing beyond local SGD."""


class Local:
    """Each node trains on its own shard and never sends: how far apart models drift, and how
    good a node gets, without collaboration."""

    drop_unsent = False
    ready_timeout = 0.0

    def __init__(self, config: LocalConfig, ctx: NodeContext):
        self.config, self.ctx = config, ctx

    def round_messages(self, round: int, params: torch.Tensor) -> list[Outgoing]:
        return []

    def on_message(self, msg: Message, params: torch.Tensor) -> list[Outgoing]:
        raise ValueError(f"local training receives nothing, got {msg.kind} from {msg.src}")

    def ready(self, round: int) -> bool:
        return True

    def aggregate(self, round: int, params: torch.Tensor) -> dict[str, float]:
        return {}
