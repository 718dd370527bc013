"""What an algorithm is: a base class whose hooks have defaults, its config, the messages it
receives and sends, and the helpers most algorithms share. Tensor logic only: no transport."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from node.checks import require
from node.sharing import FULL, Codec, CodecError, Encoded, Part, SharingConfig, make_codec


class Rejected(Exception):
    """A received message this algorithm refuses (bad shape, unexpected sender, stale...): the
    runtime drops it and counts it. Any other exception is a bug and ends the node."""


@dataclass(frozen=True, kw_only=True)
class AlgorithmConfig:
    """Local training shared by every algorithm: H steps of SGD per round. Defaults are the
    DivShare artifact's (TRAIN_PARAMS.rounds = 128, batch 8, plain SGD at lr 0.05), so that
    algorithms compare on the same compute; a YAML lists only what it changes."""

    name: str
    lr: float = 0.05
    batch_size: int = 8
    local_steps: int = 128  # H: local SGD steps per round

    def __post_init__(self) -> None:
        require(self.lr > 0, "algorithm.lr", f"{self.lr} is not positive", "use e.g. 0.05")
        require(self.batch_size >= 1, "algorithm.batch_size", "must be >= 1", "use e.g. 8")
        require(self.local_steps >= 1, "algorithm.local_steps", "must be >= 1", "use e.g. 128")

    def check(self, num_nodes: int) -> None:
        """Checks that need the whole run (e.g. a graph on `num_nodes`), before any process
        starts; raise ConfigError (through `require`)."""


def check_degree(degree: int, num_nodes: int) -> None:
    """`degree` distinct peers per message need that many other nodes."""
    require(
        degree <= num_nodes - 1,
        "algorithm.degree",
        f"{degree} peers per message but only {num_nodes - 1} other nodes",
        f"use algorithm.degree<={num_nodes - 1} or more nodes",
    )


@dataclass(frozen=True)
class Outgoing:
    """One message an algorithm wants sent; `values` (and `extra`, the arrays a codec adds:
    indices, scales) are private copies nobody mutates again."""

    dst: int
    kind: str
    values: np.ndarray
    frag: int = 0
    aux: dict = field(default_factory=dict)
    extra: tuple[np.ndarray, ...] = ()

    @classmethod
    def encoded(cls, dst: int, kind: str, message: Encoded, **aux) -> Outgoing:
        """A codec's message to `dst`, with the algorithm's own header fields `aux`."""
        return cls(dst, kind, message.values, aux={**message.aux, **aux}, extra=message.extra)


@dataclass(frozen=True)
class Incoming:
    """One delivered message: who sent it in which of its rounds, its array of values and the
    arrays a codec added (read-only, backed by the receive buffer: copy what you keep)."""

    kind: str
    src: int
    round: int
    values: np.ndarray
    frag: int = 0
    aux: dict = field(default_factory=dict)
    sent_at: float = 0.0  # emulated instant it started leaving its sender
    extra: tuple[np.ndarray, ...] = ()


@dataclass(frozen=True)
class View:
    """The nodes this node can count on from an instant on: `members` (itself included) are up
    and reachable from it. `epoch` counts the membership changes before that instant, the same
    count on every node, so that nodes agree on which view a message belongs to."""

    epoch: int
    members: tuple[int, ...]


@dataclass(frozen=True)
class NodeContext:
    """What an algorithm may know about its node: identity, peers, layout and its own RNG."""

    node_id: int
    num_nodes: int
    layer_sizes: tuple[int, ...]
    rng: random.Random
    partition_seed: int
    now: Callable[[], float] = lambda: 0.0  # this node's emulated clock, for timeouts
    # Who is up and reachable at an emulated instant, by the run's scenario and the deaths the
    # launcher announced; None: everyone, always (a static run).
    view_at: Callable[[float], View] | None = None
    sharing: SharingConfig = FULL  # the run's codec, for algorithms that exchange models

    @property
    def peers(self) -> list[int]:
        return [n for n in range(self.num_nodes) if n != self.node_id]

    def view(self) -> View:
        """The view at this node's emulated now."""
        if self.view_at is None:
            return View(0, tuple(range(self.num_nodes)))
        return self.view_at(self.now())

    @property
    def model_size(self) -> int:
        return sum(self.layer_sizes)


def model_values(msg: Incoming, size: int) -> torch.Tensor:
    """The float32 vector of `size` values a model message must carry, as a tensor of its own
    (the receive buffer is not kept alive); Rejected if it is anything else."""
    values = msg.values
    if values.dtype != np.float32 or values.shape != (size,):
        raise Rejected(f"{msg.kind} from {msg.src} is not a float32 vector of {size}")
    return torch.from_numpy(values.copy())


def sharing_codec(ctx: NodeContext) -> Codec:
    """The run's codec for this node's model (`sharing=` in the config)."""
    return make_codec(ctx.sharing, ctx.model_size, ctx.rng)


def decoded(codec: Codec, msg: Incoming) -> Part:
    """What a codec-encoded message carries; Rejected if the codec cannot read it."""
    try:
        return codec.decompress(msg.values, msg.extra, msg.aux)
    except CodecError as err:
        raise Rejected(f"{msg.kind} from {msg.src}: {err}") from None


def uniform_mean(own: torch.Tensor, received: list[torch.Tensor]) -> torch.Tensor:
    """(own + sum of received) / (1 + k): equal weights, the artifact's and EL's rule."""
    total = own.clone()
    for values in received:
        total += values
    return total / (1 + len(received))


class Algorithm:
    """One round = `config.local_steps` SGD steps, then `round_messages`, then wait until
    `ready`, then `aggregate`. `on_message` runs for every delivery, between two local steps,
    and may answer. Override what your algorithm needs; every hook has a default.

    - asynchronous push (DivShare, Swift, EL): `ready` is always true;
    - synchronous gossip (D-PSGD): `ready` once every neighbour's round-r model is in, or
      after `ready_timeout` emulated seconds (a counted miss);
    - request/response (AD-PSGD) and collectives (ring All-Reduce, RelaySum): `on_message`
      answers or forwards, and `aggregate` folds in whatever the exchange has completed.
    """

    config_class: ClassVar[type[AlgorithmConfig]] = AlgorithmConfig
    kinds: ClassVar[frozenset[str]] = frozenset()  # the message kinds it sends and accepts
    drop_unsent: ClassVar[bool] = False  # a new round's batch drops what is still unsent
    ready_timeout: float = 0.0  # emulated seconds `ready` may keep a round waiting
    # When a received message can change the model: only at round boundaries ("round": the
    # node computes a round's steps back to back and hands it what arrived at the boundary)
    # or between any two steps ("step": paced step by step, messages handed over as they
    # arrive). "step" is always faithful; "round" is much cheaper to emulate.
    merges_at: ClassVar[str] = "step"
    # Sends models through a codec (`sharing_codec`), so that any `sharing=` applies; the
    # others accept only sharing=full (checked before the run starts).
    uses_codec: ClassVar[bool] = False

    def __init__(self, config: AlgorithmConfig, ctx: NodeContext):
        self.config, self.ctx = config, ctx

    def init(self, params: torch.Tensor) -> None:
        """Called once with the initial model (the same on every node), before round 0."""

    def optimizer_options(self) -> dict[str, float]:
        """Extra arguments of the local SGD optimizer (e.g. momentum) besides `lr`."""
        return {}

    def round_messages(self, round: int, params: torch.Tensor) -> list[Outgoing]:
        """What to send at the end of local round `round`, from the trained `params`."""
        return []

    def on_message(self, msg: Incoming, params: torch.Tensor) -> list[Outgoing]:
        """Fold in or keep a delivered message; raise Rejected for one you refuse."""
        raise Rejected(f"{type(self).__name__} expects no {msg.kind!r} from {msg.src}")

    def reply(self, msg: Incoming) -> list[Outgoing]:
        """An answer due at the instant `msg` is delivered, whatever the node is computing
        (AD-PSGD's pong). Runs in the transport's receiver thread, before `on_message` sees
        the same message at the next merge: read only what the training thread no longer
        changes (e.g. the model sent at the last round boundary)."""
        return []

    def ready(self, round: int) -> bool:
        """May round `round` end now? (synchronous algorithms wait for their neighbours)"""
        return True

    def aggregate(self, round: int, params: torch.Tensor) -> dict[str, float]:
        """Fold what arrived into `params` in place; returns metrics for the round's log."""
        return {}
