"""The algorithm protocol: pure tensor logic deciding what to send, how to fold in, when to wait."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from transport import Message


@dataclass(frozen=True)
class Outgoing:
    """One message an algorithm wants sent; `values` is a private copy nobody mutates again."""

    dst: int
    kind: str
    values: np.ndarray
    frag: int = 0
    aux: dict = field(default_factory=dict)


@dataclass(frozen=True)
class NodeContext:
    """What an algorithm may know about its node: identity, peers, layout and its own RNG."""

    node_id: int
    num_nodes: int
    layer_sizes: tuple[int, ...]
    rng: random.Random
    partition_seed: int
    now: Callable[[], float] = lambda: 0.0  # this node's emulated clock, for timeouts

    @property
    def peers(self) -> list[int]:
        return [n for n in range(self.num_nodes) if n != self.node_id]

    @property
    def model_size(self) -> int:
        return sum(self.layer_sizes)


def model_values(msg: Message, size: int) -> torch.Tensor:
    """The one float32 vector of `size` values a full-model message must carry, as a tensor
    of its own (the receive buffer is not kept alive); ValueError if it is anything else."""
    if len(msg.buffers) != 1:
        raise ValueError(f"{msg.kind} from {msg.src} carries {len(msg.buffers)} buffers, not 1")
    (values,) = msg.buffers
    if values.dtype != np.float32 or values.shape != (size,):
        raise ValueError(f"{msg.kind} from {msg.src} is not a float32 vector of {size}")
    return torch.from_numpy(values.copy())


def uniform_mean(own: torch.Tensor, received: list[torch.Tensor]) -> torch.Tensor:
    """(own + sum of received) / (1 + k): equal weights, the artifact's and EL's rule."""
    total = own.clone()
    for values in received:
        total += values
    return total / (1 + len(received))


class Algorithm(Protocol):
    """One round = `local_steps` SGD steps, then `round_messages`, then wait for `ready`, then
    `aggregate`. `on_message` runs for every delivery, between steps, and may answer.

    - asynchronous push (DivShare, Swift, EL): `ready` is always true;
    - synchronous gossip (D-PSGD): `ready` once every neighbour's round-r model is in;
    - request/response (AD-PSGD) and collectives (ring All-Reduce, RelaySum): `on_message`
      answers or forwards, and `aggregate` folds in whatever the exchange has completed.

    Optional: `init(params)`, if defined, is called once with the initial model (the same on
    every node) right after construction, before calibration and round 0 (RelaySGD's x0).
    """

    drop_unsent: bool  # True: a new round's batch replaces what is still unsent (and counts it)
    ready_timeout: float  # emulated seconds `ready` may keep a round waiting before a miss

    def round_messages(self, round: int, params: torch.Tensor) -> list[Outgoing]: ...

    def on_message(self, msg: Message, params: torch.Tensor) -> list[Outgoing]: ...

    def ready(self, round: int) -> bool: ...

    def aggregate(self, round: int, params: torch.Tensor) -> dict[str, float]: ...
