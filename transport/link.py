"""What every node transport offers (the ZeroMQ one and its in-memory twin), and one node's
link settings turned into the shaper's buckets."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from transport.clock import Clock
from transport.shaper import Downlink, Egress, TokenBucket
from transport.stats import LinkStats
from transport.wire import Message, WireError

INBOX_SIZE = 4096  # delivered messages waiting for the training thread
OUTBOX_SIZE = 256  # batches waiting for the sender thread
MAX_PENDING_BYTES = 256 * 1024 * 1024  # bytes waiting in a downlink for their delivery instant
# The longest a transport thread sleeps with nothing due: how soon it notices `stop`. Every
# wake-up of an idle thread costs its process CPU and the training thread the GIL, times 60
# processes.
IDLE_S = 0.5


@dataclass(frozen=True, kw_only=True)
class LinkSpec:
    """One node's access link, in emulated units; `inf` Mbit/s is an unlimited link."""

    up_mbps: float
    down_mbps: float
    latency_ms: float
    # Per-destination path rate in Mbit/s beside the uplink (geo profile); empty = none.
    paths: dict[int, float] = field(default_factory=dict)
    # A scenario's changes, each (emulated t, new value) in force from t on: Mbit/s, ms.
    up_changes: tuple[tuple[float, float], ...] = ()
    down_changes: tuple[tuple[float, float], ...] = ()
    latency_changes: tuple[tuple[float, float], ...] = ()
    path_changes: dict[int, tuple[tuple[float, float], ...]] = field(default_factory=dict)

    def egress(self, peers: Sequence[int], clock: Callable[[], float]) -> Egress:
        """The uplink, plus a path bucket to each peer that has a path rate (or gets one)."""
        paths = {
            dst: TokenBucket(
                self.paths.get(dst, float("inf")) * 1e6,
                clock=clock,
                changes=_bps(self.path_changes.get(dst, ())),
            )
            for dst in set(self.paths) | set(self.path_changes)
            if dst in peers
        }
        uplink = TokenBucket(self.up_mbps * 1e6, clock=clock, changes=_bps(self.up_changes))
        return Egress(uplink, paths)

    def downlink(self, clock: Callable[[], float]) -> Downlink:
        return Downlink(
            self.down_mbps * 1e6,
            self.latency_ms / 1000,
            clock=clock,
            rate_changes=_bps(self.down_changes),
            latency_changes=[(t, ms / 1000) for t, ms in self.latency_changes],
        )


def _bps(changes) -> list[tuple[float, float]]:
    return [(t, mbps * 1e6) for t, mbps in changes]


def check_sendable(msg: Message, node_id: int, kinds: frozenset[str], peers) -> Message:
    """A bug in the sending algorithm is raised at `send`, in the caller's own thread."""
    if msg.kind not in kinds:
        raise WireError(f"kind {msg.kind!r} is not declared (declared: {sorted(kinds)})")
    if msg.src != node_id or msg.dst not in peers:
        raise WireError(f"node {node_id} cannot send {msg.src} -> {msg.dst}")
    return msg


class Transport(Protocol):
    """One node's transport: set up in three steps before the shared start, then used by the
    node's training thread only (`send`, `receive`), and closed once.

    `bind` readies the inbound side and returns its address; `connect` opens the outbound
    side to every peer; `start` arms the shared clock; `send` queues a batch for the shaped
    uplink (`replace`: everything unsent is dropped first) and returns False if the batch was
    refused because the node is far behind; `receive` returns the next delivered message,
    waiting for one until emulated instant `until` when given. `respond_with` installs a
    function called at each message's delivery instant, whose answers leave at once; `depart`
    (from any thread) gives a dead peer up.
    """

    stats: LinkStats

    def bind(self) -> str: ...

    def connect(self, peers: dict[int, str]) -> None: ...

    def start(self, clock: Clock) -> None: ...

    def respond_with(self, responder: Callable[[Message], Sequence[Message]]) -> None: ...

    def depart(self, peer: int) -> None:
        """`peer` is dead for good (the launcher saw it): what is for it is lost at once."""

    def send(self, messages: Sequence[Message], replace: bool = False) -> bool: ...

    def receive(self, until: float | None = None) -> Message | None: ...

    def errors(self) -> list[str]: ...

    def close(self) -> None: ...
